"""Declared capabilities: what a searcher may need beyond the base interfaces, and the executor interface.

A space or predictor has a capability when it implements the protocol's methods; a searcher lists the
protocols it needs in ``requires_space`` / ``requires_predictor``, and :func:`check_requirements` refuses a
combination that lacks one when a config is validated or a search is set up, before anything runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from nassearch.errors import ConfigError


@runtime_checkable
class SupportsCrossover(Protocol):
    """A space that can recombine two architectures."""

    def crossover(self, a: Any, b: Any, rng: np.random.Generator) -> Any:
        """A child combining ``a`` and ``b``."""


@runtime_checkable
class Enumerable(Protocol):
    """A finite space whose every architecture can be listed."""

    def enumerate(self) -> Iterator[Any]:
        """Every architecture, once."""

    def size(self) -> int | None:
        """How many architectures ``enumerate`` yields."""


@runtime_checkable
class PredictsTiers(Protocol):
    """A predictor that sorts architectures into performance tiers (NAR).

    After ``fit`` it offers the tiers' ``tier_statistics``, which ``nar_sampling`` samples from."""

    def predict_tiers(self, graphs: Sequence[Any]) -> np.ndarray:
        """The tier of each graph (0 the best)."""


@runtime_checkable
class Executor(Protocol):
    """Runs the evaluations of a batch: ``serial`` in this process, ``ray`` as Ray tasks."""

    def start(self) -> Any:
        """Prepare to run (start or connect to workers); called once before the first batch."""

    def run(self, evaluator: Any, archs: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Yield ``(position in archs, Result or Failure)`` for every architecture, in any order."""


def _has(component: Any, protocol: type) -> bool:
    return issubclass(component, protocol) if isinstance(component, type) else isinstance(component, protocol)


def check_requirements(searcher: type, space: Any, predictor: Any = None) -> None:
    """ConfigError when ``space`` or ``predictor`` (classes or instances; predictor None when absent) lacks a
    capability the searcher class declares it needs. An instance predictor must also declare the capability
    enabled in its ``requirements()`` (NAR in ranking mode has no tiers)."""
    searcher_name = searcher.name or searcher.__name__
    for protocol in getattr(searcher, "requires_space", ()):
        if not _has(space, protocol):
            space_name = getattr(space, "name", "") or type(space).__name__
            raise ConfigError(f"searcher {searcher_name!r} needs a space with {protocol.__name__} "
                              f"({protocol.__doc__.splitlines()[0].rstrip('.')}); space {space_name!r} has none")
    for protocol in getattr(searcher, "requires_predictor", ()):
        if not _enabled(predictor, protocol):
            raise ConfigError(f"searcher {searcher_name!r} needs a predictor with {protocol.__name__} "
                              f"({protocol.__doc__.splitlines()[0].rstrip('.')}); add e.g. `predictor: {{name: nar}}`")


def _enabled(predictor: Any, protocol: type) -> bool:
    if predictor is None or not _has(predictor, protocol):
        return False
    if protocol is PredictsTiers and not isinstance(predictor, type):
        return predictor.requirements().predict_tiers
    return True
