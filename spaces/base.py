"""The SearchSpace interface: what every space knows about its architectures.

An architecture is whatever hashable value a space chooses (NB201: a tuple of op indices); the rest of
the engine only moves it around and turns it into strings with ``to_str``/``from_str``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
from torch import nn

from nassearch.graph import ArchGraph
from nassearch.model_cost import ModelCost

Arch = Hashable
#: Longest architecture string a space parses (a DARTS genotype has about 500 characters); longer text is
#: refused before it is parsed.
MAX_ARCH_CHARS = 10_000


def clip(text: str) -> str:
    """``text`` shortened to 80 characters by an ellipsis in its middle (``nassearch.config.shown`` without
    the quotes)."""
    return text if len(text) <= 80 else f"{text[:38]}...{text[-39:]}"


def arch_text(text: Any, error: Callable[[str], Exception]) -> str:
    """``text`` without surrounding whitespace, checked to be a non-empty string of at most MAX_ARCH_CHARS
    characters; otherwise ``error(problem)`` is raised (each space words its own InvalidArchitecture)."""
    if not isinstance(text, str):
        raise error(f"expected a string, got {type(text).__name__}")
    if len(text) > MAX_ARCH_CHARS:
        raise error(f"{len(text):,} characters, more than the {MAX_ARCH_CHARS:,} an architecture string may have")
    text = text.strip()
    if not text:
        raise error("the string is empty")
    return text


class SearchSpace(ABC):
    """A space of architectures: sampling, variation, encoding, strings, networks and costs.

    Optional capabilities are declared by implementing them (``nassearch.protocols``): ``crossover(a, b, rng)``
    (:class:`~nassearch.protocols.SupportsCrossover`) and ``enumerate()`` of a finite space
    (:class:`~nassearch.protocols.Enumerable`)."""

    #: Registry name of the space (the ``space.name`` config value).
    name: str = ""

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Arch:
        """One architecture drawn uniformly (or by the space's documented sampling rule)."""

    @abstractmethod
    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """A neighbour of ``arch`` that differs from it, by the space's mutation rule."""

    @abstractmethod
    def encode(self, arch: Arch) -> ArchGraph:
        """The architecture as an ArchGraph for predictors."""

    @abstractmethod
    def to_str(self, arch: Arch) -> str:
        """Canonical, human-readable string in the space's own notation."""

    @abstractmethod
    def from_str(self, text: str) -> Arch:
        """Parse ``to_str`` output; raise InvalidArchitecture naming what is wrong."""

    def parse(self, text: str) -> Arch:
        """An architecture as a user writes one on the command line: ``from_str``'s notation, or a name the space
        publishes (the darts space: DARTS_V2, ...)."""
        return self.from_str(text)

    def key(self, arch: Arch) -> str:
        """Identity of the architecture (equal for isomorphic cells); defaults to ``to_str``."""
        return self.to_str(arch)

    @abstractmethod
    def build_model(self, arch: Arch, **kwargs: Any) -> nn.Module:
        """The trainable network of ``arch`` as a torch module."""

    @abstractmethod
    def cost(self, arch: Arch) -> ModelCost:
        """Parameters and FLOPs (millions) of the network ``build_model(arch)`` builds."""

    def cost_batch(self, archs: Sequence[Arch]) -> tuple[np.ndarray, np.ndarray]:
        """Params and FLOPs (millions) for many architectures; spaces override with a vectorised form."""
        costs = [self.cost(a) for a in archs]
        return np.array([c.params_m for c in costs]), np.array([c.flops_m for c in costs])

    def size(self) -> int | None:
        """Number of architectures, when known."""
        return None
