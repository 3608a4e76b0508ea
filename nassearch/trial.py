"""One evaluated architecture: :class:`Trial` and its :class:`TrialStatus`."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class TrialStatus(StrEnum):
    """How an evaluation ended: ``ok`` (its metrics count) or ``failed`` (``Trial.error`` says why)."""

    OK = "ok"
    FAILED = "failed"


@dataclass(frozen=True)
class Trial:
    """One evaluated architecture as the store records it, searchers learn from it and results report it.

    ``index`` is its position in ask order; ``arch`` the space's architecture object and ``arch_str`` its
    canonical string; ``cost_s`` the seconds of training the evaluation stands for, ``wall_s`` the seconds
    it really took; ``started`` / ``finished`` are Unix times."""

    index: int
    arch: Any
    arch_str: str
    metrics: dict[str, float] = field(default_factory=dict)
    cost_s: float = 0.0
    wall_s: float = 0.0
    status: TrialStatus = TrialStatus.OK
    started: float = 0.0
    finished: float = 0.0
    error: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", TrialStatus(self.status))

    @property
    def ok(self) -> bool:
        """True when the evaluation succeeded."""
        return self.status is TrialStatus.OK
