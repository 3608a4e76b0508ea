"""The Searcher interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from nassearch.objectives import Objective, fitness
from nassearch.spaces.base import Arch, SearchSpace
from nassearch.trial import Trial


class Searcher(ABC):
    """Proposes architectures and learns from their trials; its state round-trips through JSON.

    ``state_dict()`` must capture everything the told trials do not already say, random generator
    included, so that a searcher restored with ``load_state_dict(state, history)`` proposes exactly what
    the original would have. The checkpoint is rewritten after every ``tell``, so the state must not grow
    with the number of trials: whatever follows from the trials (an archive, a population, the keys seen)
    is rebuilt from ``history`` instead.
    """

    name: str = ""
    #: Capabilities (``nassearch.protocols``) the space / predictor must have; checked before a run starts.
    requires_space: tuple[type, ...] = ()
    requires_predictor: tuple[type, ...] = ()

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], seed: int) -> None:
        self.space = space
        self.objectives = list(objectives)
        self.rng = np.random.default_rng(seed)

    @property
    def search_start(self) -> int:
        """Index of the first trial that is a search result: earlier ones are the searcher's training data
        (NAR's ranker training set), which run summaries and curves leave out. 0 for most searchers."""
        return 0

    @classmethod
    def training_evaluations(cls, settings: dict[str, Any]) -> int:
        """The ``search_start`` of a searcher built with constructor ``settings`` (a resolved config section),
        known before the run: a budget of evaluations must exceed it. 0 for most searchers."""
        return 0

    @property
    def objective(self) -> Objective:
        """The first objective: what single-objective searchers optimise."""
        return self.objectives[0]

    def fitness(self, trial: Trial) -> float:
        """The first objective as a value to maximise; failed trials and trials outside an objective's
        bound are worst (``-inf``)."""
        return fitness(self.objectives, trial.metrics) if trial.ok else -np.inf

    @abstractmethod
    def ask(self, n: int) -> list[Arch]:
        """Propose ``n`` architectures to evaluate next."""

    @abstractmethod
    def tell(self, trials: Sequence[Trial]) -> None:
        """Learn from the trials of the architectures last asked for, in ask order."""

    def timings(self) -> dict[str, float]:
        """Seconds spent in the searcher's own named phases (NAR: ``predictor_fit_s``), for the run summary."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state of constant size; subclasses extend it with their own fields."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any], history: Sequence[Trial]) -> None:
        """Restore what ``state_dict`` returned after the trials ``history`` (in ask order) were told."""
        self.rng.bit_generator.state = state["rng"]


class HistorySearcher(Searcher):
    """A searcher that remembers every told architecture with its fitness (``evaluated``), the keys of all
    architectures evaluated or proposed (``seen``) and a ``queue`` of chosen, not yet asked proposals."""

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], seed: int) -> None:
        super().__init__(space, objectives, seed)
        self.evaluated: list[tuple[Arch, float]] = []
        self.queue: list[Arch] = []
        self.seen: set[str] = set()

    def tell(self, trials: Sequence[Trial]) -> None:
        for trial in trials:
            self.seen.add(self.space.key(trial.arch))
            self.evaluated.append((trial.arch, self.fitness(trial)))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "queue": [self.space.to_str(a) for a in self.queue]}

    def load_state_dict(self, state: dict[str, Any], history: Sequence[Trial]) -> None:
        """``evaluated`` is ``history``; ``seen`` is its keys and the queue's (the checkpoint is taken after a
        ``tell``, when every architecture asked for has been told)."""
        super().load_state_dict(state, history)
        self.queue = [self.space.from_str(s) for s in state["queue"]]
        self.evaluated = []
        self.seen = {self.space.key(a) for a in self.queue}
        HistorySearcher.tell(self, history)
