"""DARTS' genotype notation: the :class:`Genotype` of a normal and a reduction cell, parsed from DARTS' own
``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], ...)`` without evaluating code, and
formatted back. It accepts any genotype the DARTS network can build (literature cells such as NASNet-A have five
nodes); which of them the search space holds is :mod:`nassearch.spaces.darts`'s business.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

import numpy as np

from nassearch.errors import InvalidArchitecture
from nassearch.spaces.base import arch_text, clip
from nassearch.spaces.darts_network import OPERATIONS
from nassearch.validation import shown

#: Operations any parsed genotype may name: the primitives and those of NASNet-A and AmoebaNet-A.
GENOTYPE_OPS: tuple[str, ...] = tuple(OPERATIONS)
FIELDS: tuple[str, ...] = ("normal", "normal_concat", "reduce", "reduce_concat")
CELLS: tuple[str, ...] = ("normal", "reduce")
#: Most intermediate nodes a parsed genotype's cell may have (the literature's have 4 or 5).
MAX_NODES = 64
#: Most syntax-tree nodes of a genotype expression (the published genotypes have about 100), and their
#: deepest nesting (the published genotypes': 5); deeper trees would exhaust the stack of ``ast`` helpers.
MAX_SYNTAX_NODES = 2_000
MAX_SYNTAX_DEPTH = 20
_BIG_INTEGER = "an integer is out of range; node indices are small numbers"
GENOTYPE_FORMAT = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5], "
                   "reduce=[('max_pool_3x3', 0), ...], reduce_concat=[2, 3, 4, 5])")

Pairs = tuple[tuple[str, int], ...]


class _Problem(Exception):
    """What is wrong with a genotype, before it is worded as an InvalidArchitecture."""


def _genotype_error(problem: str, text: Any = None) -> InvalidArchitecture:
    quoted = "" if text is None else " " + shown(text)
    return InvalidArchitecture(f"invalid DARTS genotype{quoted}: {problem}. Expected {GENOTYPE_FORMAT}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _checked_pairs(cell: str, pairs: Any) -> Pairs:
    if not isinstance(pairs, (list, tuple)):
        raise _Problem(f"{cell} must be a list of (op, input) pairs, got {shown(pairs)}")
    if not pairs or len(pairs) % 2 or len(pairs) > 2 * MAX_NODES:
        raise _Problem(f"{cell} has {len(pairs)} (op, input) pair(s); a cell needs two per intermediate node, "
                       f"of which it may have 1 to {MAX_NODES}")
    checked = []
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str)
                and _is_int(pair[1])):
            raise _Problem(f"{cell} pair {i} must be ('op', input), got {shown(pair)}")
        op, index, node = pair[0], int(pair[1]), i // 2 + 2
        if op not in GENOTYPE_OPS:
            raise _Problem(f"{cell} pair {i}: unknown operation {shown(op)}; known: {', '.join(GENOTYPE_OPS)}")
        if not 0 <= index < node:
            raise _Problem(f"{cell} pair {i} feeds node {node}, which may take inputs 0..{node - 1}, not {index}")
        checked.append((op, index))
    return tuple(checked)


def _checked_concat(cell: str, concat: Any, num_nodes: int) -> tuple[int, ...]:
    name = f"{cell}_concat"
    if isinstance(concat, range):
        concat = tuple(concat)
    if not isinstance(concat, (list, tuple)) or not concat or not all(_is_int(i) for i in concat):
        raise _Problem(f"{name} must be a non-empty list of node indices, got {shown(concat)}")
    checked = tuple(int(i) for i in concat)
    for node in checked:
        if not 2 <= node < num_nodes + 2:
            raise _Problem(f"{name} names node {node}, but the {cell} cell produces nodes 2..{num_nodes + 1}")
    if len(set(checked)) != len(checked):
        raise _Problem(f"{name} repeats a node: {shown(list(checked))}")
    return checked


def _checked(fields: dict[str, Any]) -> dict[str, Any]:
    """The four genotype fields checked, as tuples; raise _Problem naming the first problem."""
    checked: dict[str, Any] = {}
    for cell in CELLS:
        checked[cell] = _checked_pairs(cell, fields[cell])
        checked[f"{cell}_concat"] = _checked_concat(cell, fields[f"{cell}_concat"], len(checked[cell]) // 2)
    return checked


@dataclass(frozen=True)
class Genotype:
    """A DARTS genotype (checked at construction; lists become tuples, so it is hashable)."""

    normal: Pairs
    normal_concat: tuple[int, ...]
    reduce: Pairs
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        try:
            checked = _checked({name: getattr(self, name) for name in FIELDS})
        except _Problem as problem:
            raise _genotype_error(str(problem)) from None
        for name, value in checked.items():
            object.__setattr__(self, name, value)


def _literal(field: str, node: ast.expr) -> Any:
    """The value of a literal expression, or of ``range(...)`` with literal integer arguments."""
    failures = (ValueError, TypeError, SyntaxError, MemoryError, RecursionError)
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"):
        try:
            return ast.literal_eval(node)
        except failures:
            raise _Problem(f"{field} = {clip(ast.unparse(node))} is not a literal list") from None
    try:
        bounds = [ast.literal_eval(arg) for arg in node.args]
    except failures:
        bounds = []
    if node.keywords or not 1 <= len(bounds) <= 3 or not all(_is_int(b) for b in bounds) or bounds[2:] == [0]:
        raise _Problem(f"{field} = {clip(ast.unparse(node))} must be range() of one to three integers "
                       "(a step other than 0)")
    nodes = range(*bounds)
    if len(nodes) > MAX_NODES:
        raise _Problem(f"{field} = {clip(ast.unparse(node))} names {len(nodes):,} nodes; a cell has at most "
                       f"{MAX_NODES}")
    return tuple(nodes)


def _syntax_tree(text: str) -> ast.expr:
    """The parsed expression, refused when it is not Python, nested deeper than MAX_SYNTAX_DEPTH, larger than
    MAX_SYNTAX_NODES, or holds an integer beyond 32 bits (hexadecimal literals escape Python's digit limit)."""
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as error:
        if "integer string conversion" in str(error.msg):  # a decimal literal beyond Python's digit limit
            raise _Problem(_BIG_INTEGER) from None
        raise _Problem(f"not a Genotype(...) expression ({error.msg})") from None
    except (ValueError, MemoryError, RecursionError):  # null bytes (some 3.11 releases); nesting too deep
        raise _Problem("not a Genotype(...) expression (null bytes, or nested too deeply)") from None
    stack, count = [(tree, 1)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_SYNTAX_NODES:
            raise _Problem(f"the expression has more than {MAX_SYNTAX_NODES:,} parts; a genotype has a few hundred")
        if depth > MAX_SYNTAX_DEPTH:
            raise _Problem(f"the expression is nested more than {MAX_SYNTAX_DEPTH} levels deep; a genotype has 5")
        if isinstance(node, ast.Constant) and _is_int(node.value) and not -2**31 <= node.value < 2**31:
            raise _Problem(_BIG_INTEGER)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return tree


def _parse_fields(text: Any) -> dict[str, Any]:
    text = arch_text(text, _Problem)
    call = _syntax_tree(text)
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
        raise _Problem("expected an expression of the form Genotype(...)")
    if call.args:
        raise _Problem(f"give the fields by name ({', '.join(f + '=' for f in FIELDS)})")
    fields: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg not in FIELDS:
            raise _Problem(f"unknown field {shown(keyword.arg or '**')}; the fields are {', '.join(FIELDS)}")
        if keyword.arg in fields:
            raise _Problem(f"field {keyword.arg} is given twice")
        fields[keyword.arg] = _literal(keyword.arg, keyword.value)
    missing = [f for f in FIELDS if f not in fields]
    if missing:
        raise _Problem(f"missing field(s) {', '.join(missing)}")
    return fields


def parse_genotype(text: str) -> Genotype:
    """Parse DARTS' genotype notation (no code is evaluated); raise InvalidArchitecture naming any problem."""
    try:
        fields = _checked(_parse_fields(text))
    except _Problem as problem:
        raise _genotype_error(str(problem), text) from None
    return Genotype(**fields)


def format_genotype(genotype: Genotype) -> str:
    """DARTS' notation of ``genotype``: lists, single quotes, e.g. ``normal_concat=[2, 3, 4, 5]``."""
    def pairs(cell: Pairs) -> str:
        return "[" + ", ".join(f"({op!r}, {index})" for op, index in cell) + "]"

    return (f"Genotype(normal={pairs(genotype.normal)}, normal_concat={list(genotype.normal_concat)}, "
            f"reduce={pairs(genotype.reduce)}, reduce_concat={list(genotype.reduce_concat)})")
