"""Executors: how the evaluations of one ``ask`` batch are run. Results come back in ask order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from evaluators.base import Evaluator, Result
from spaces.base import Arch


class SerialExecutor:
    """Evaluates one architecture after the other in this process."""

    name = "serial"

    def run(self, evaluator: Evaluator, archs: Sequence[Arch]) -> Iterator[Result]:
        """Yield each architecture's Result as soon as it is ready, in order."""
        for arch in archs:
            yield evaluator.evaluate(arch)
