"""The house rules of docs/design.md, checked on the source: one import root, imports that go one way
between rooms and modules, and no private name used outside its own module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
#: Where each room's modules live (folder -> import prefix).
FOLDERS = {"nassearch": "nassearch", "spaces": "nassearch.spaces", "searchers": "nassearch.searchers",
           "evaluators": "nassearch.evaluators"}
#: Rooms a room must never import (the design's import direction).
FORBIDDEN = {
    "nassearch.spaces": ("nassearch.searchers", "nassearch.evaluators", "nassearch.predictors", "nassearch.bench",
                         "nassearch.training", "nassearch.runner", "nassearch.api", "nassearch.cli",
                         "nassearch.config", "nassearch.registry", "nassearch.store"),
    "nassearch.predictors": ("nassearch.spaces", "nassearch.searchers", "nassearch.evaluators", "nassearch.bench",
                             "nassearch.runner", "nassearch.api", "nassearch.cli"),
    "nassearch.searchers": ("nassearch.evaluators", "nassearch.bench", "nassearch.runner", "nassearch.api",
                            "nassearch.cli", "nassearch.store", "nassearch.training"),
    "nassearch.evaluators": ("nassearch.searchers", "nassearch.bench", "nassearch.runner", "nassearch.api",
                             "nassearch.cli"),
    "nassearch.training": ("nassearch.searchers", "nassearch.evaluators", "nassearch.bench", "nassearch.runner",
                           "nassearch.api", "nassearch.cli"),
    "nassearch.latency": ("nassearch.spaces", "nassearch.searchers", "nassearch.evaluators", "nassearch.bench",
                          "nassearch.runner", "nassearch.api", "nassearch.cli"),
}


def modules() -> dict[str, Path]:
    """Every engine module by its import name."""
    found = {}
    for folder, prefix in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((prefix, *parts)).removesuffix(".__init__")
            if folder == "nassearch" or not name.startswith("nassearch.nassearch"):
                found.setdefault(name, path)
    return found


MODULES = modules()


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import statement of a file that runs (imports for type
    checkers only, under ``if TYPE_CHECKING:``, are left out)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def test_every_import_uses_the_one_root():
    old = [(name, module) for name, path in MODULES.items() for module, _ in imports(path)
           if module.split(".")[0] in ("spaces", "searchers", "evaluators")]
    assert old == []


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_imports_go_one_way(room):
    wrong = [(name, module) for name, path in MODULES.items() if name == room or name.startswith(room + ".")
             for module, _ in imports(path) if module.startswith(FORBIDDEN[room])]
    assert wrong == []


def test_nothing_below_the_cli_imports_it_or_the_benchmarks():
    wrong = [(name, module) for name, path in MODULES.items() for module, _ in imports(path)
             if (module == "nassearch.cli" and name != "nassearch.__main__")
             or (module.startswith("nassearch.bench") and not name.startswith(("nassearch.bench", "nassearch.cli")))]
    assert wrong == []


def test_module_imports_have_no_cycles():
    graph = {name: {m for m, taken in imports(path) for m in [m, *(f"{m}.{t}" for t in taken)] if m in MODULES}
             for name, path in MODULES.items()}
    graph = {name: {m for m in deps if not name.startswith(m + ".") and m != name} for name, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, trail + [dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_private_names_stay_in_their_module():
    wrong = [(name, module, taken) for name, path in MODULES.items() for module, names in imports(path)
             for taken in names if taken.startswith("_") and not taken.startswith("__") and module in MODULES]
    assert wrong == []
