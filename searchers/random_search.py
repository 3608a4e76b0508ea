"""Random search: uniform samples from the space, never proposing the same architecture twice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nassearch.searchers.base import Searcher
from nassearch.trial import Trial
from nassearch.spaces.base import Arch

#: Draws per proposal before accepting a repeat (only reachable when the space is nearly exhausted).
MAX_DRAWS = 1000


class RandomSearch(Searcher):
    """Uniform random sampling without repeats (by ``space.key``)."""

    name = "random_search"

    def __init__(self, space, objectives, seed: int) -> None:
        super().__init__(space, objectives, seed)
        self.seen: set[str] = set()

    def ask(self, n: int) -> list[Arch]:
        proposals = []
        for _ in range(n):
            for _ in range(MAX_DRAWS):
                arch = self.space.sample(self.rng)
                key = self.space.key(arch)
                if key not in self.seen:
                    break
            self.seen.add(key)
            proposals.append(arch)
        return proposals

    def tell(self, trials: Sequence[Trial]) -> None:
        self.seen.update(self.space.key(t.arch) for t in trials)

    def load_state_dict(self, state: dict[str, Any], history: Sequence[Trial]) -> None:
        super().load_state_dict(state, history)
        self.seen = {self.space.key(t.arch) for t in history}
