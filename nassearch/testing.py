"""Conformance suites for plug-ins: the checks every search space, searcher and predictor must pass.

As Optuna ships tests for its samplers and storages, nassearch ships base test classes. Subclass one in
your own test module under a name starting with ``Test``, implement its factory methods, and pytest
collects and runs every inherited ``test_*`` check on your component::

    from nassearch.objectives import Objective
    from nassearch.testing import PredictorConformance, SearcherConformance, SpaceConformance

    class TestMySpace(SpaceConformance):
        def make_space(self):
            return MySpace()

    class TestMySearcher(SearcherConformance):
        objectives = [Objective("val_acc"), Objective("params", "min")]  # optional; default: val_acc

        def make_space(self):
            return MySpace()

        def make_searcher(self, space, seed):
            return MySearcher(space, self.objectives, seed, population_size=6)

    class TestMyPredictor(PredictorConformance):
        def make_space(self):  # the training architectures are drawn from it and encoded
            return MySpace()

        def make_predictor(self, seed):
            return MyPredictor(seed=seed, epochs=3)

Give small settings (few epochs, small populations and widths): each suite should run in seconds on a
CPU. Class attributes (``samples``; ``rounds``, ``batch_size``; ``train_size``, ``test_size``) change
how much each check draws. A failed check names the component and what it broke.

* :class:`SpaceConformance`: string round trip and stable string keys for sampled, mutated and (when the
  space has :class:`~nassearch.protocols.SupportsCrossover`) crossed-over architectures; ``mutate``
  changes the key and leaves its parent alone; ``sample``/``mutate`` are deterministic for a seed;
  ``encode`` gives consistent ArchGraphs; malformed strings raise
  :class:`~nassearch.errors.InvalidArchitecture` and nothing else. Identity of isomorphic architectures
  cannot be checked generically: a space whose ``key`` merges them tests that itself.
* :class:`SearcherConformance`: the searcher is driven as the runner drives it (ask, evaluate, tell,
  checkpoint ``state_dict()`` through JSON after every tell) against :func:`synthetic_trials`. Batches
  hold 1 to ``batch_size`` valid architectures; the state round-trips through plain ``json``; a searcher
  restored from the checkpoint of any round proposes exactly what the original proposed after it, also
  when some trials failed; equal seeds propose equal sequences; the state does not grow with the trials.
* :class:`PredictorConformance`: ``fit`` on encoded architectures with deterministic targets, then
  ``predict`` gives finite floats of shape (n,) independent of batching; equal seeds predict alike, also
  after refitting; ``requirements()`` declares the predictor's Capabilities, and declared tier
  predictions are probabilities.

Importing this module does not import pytest (a check that does not apply calls ``pytest.skip``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import string
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from nassearch.errors import InvalidArchitecture
from nassearch.graph import ArchGraph
from nassearch.objectives import Objective
from nassearch.predictors.base import Capabilities, Predictor
from nassearch.protocols import PredictsTiers, SupportsCrossover
from nassearch.searchers.base import Searcher
from nassearch.spaces.base import MAX_ARCH_CHARS, Arch, SearchSpace
from nassearch.trial import Trial, TrialStatus

__all__ = ["PredictorConformance", "SearcherConformance", "SpaceConformance", "synthetic_metrics",
           "synthetic_trials"]

#: Relative and absolute tolerance for predictions that must agree (batching, equal seeds).
RTOL, ATOL = 1e-5, 1e-6
#: Most a searcher's JSON state may grow from the second round to the last (a constant-size state).
STATE_GROWTH = 2.0
#: Strings no space may accept.
GARBAGE = ("", "   ", "\n", "not an architecture", "\x00", "{}", "[]", "null", "x" * (MAX_ARCH_CHARS + 1))
#: Characters the fuzzing of a valid string inserts: printable ASCII, a non-ASCII digit and letter, NUL.
FUZZ_CHARS = string.printable + "\u0663\u00e9\x00"
#: Share of trials that fail in the check of resuming after failures, and the pseudo-metric choosing them.
FAILURE_RATE = 0.25
_FAILURE = "(failure)"


def synthetic_metrics(space: SearchSpace, arch: Arch, metrics: Iterable[str]) -> dict[str, float]:
    """Deterministic stand-in values in [0, 1) of ``metrics`` for ``arch``: read from the sha256 of
    ``space.key(arch)`` and the metric's name, so equal keys get equal values and metrics are unrelated."""
    key = space.key(arch)
    return {name: int.from_bytes(hashlib.sha256(f"{key}\n{name}".encode()).digest()[:8], "big") / 2.0 ** 64
            for name in metrics}


def synthetic_trials(space: SearchSpace, archs: Sequence[Arch], objectives: Sequence[Objective], start: int = 0,
                     failure_rate: float = 0.0) -> list[Trial]:
    """The trials the runner records for ``archs`` asked in this order as trials ``start, start + 1, ...``:
    successful, with the :func:`synthetic_metrics` of every objective's metric, except that a
    ``failure_rate`` share of the architectures (chosen by key) fail as evaluator errors do: status
    ``failed``, no metrics."""
    names = [o.metric for o in objectives]
    trials = []
    for i, arch in enumerate(archs):
        metrics = synthetic_metrics(space, arch, [*names, _FAILURE])
        failed = metrics.pop(_FAILURE) < failure_rate
        trials.append(Trial(index=start + i, arch=arch, arch_str=space.to_str(arch), metrics={} if failed else metrics,
                            status=TrialStatus.FAILED if failed else TrialStatus.OK,
                            error="synthetic evaluation failure" if failed else ""))
    return trials


def _label(component: Any) -> str:
    """``ClassName ('registry-name')`` of a component, for assertion messages."""
    name = getattr(component, "name", "")
    return f"{type(component).__name__} ({name!r})" if name else type(component).__name__


# --------------------------------------------------------------------------------------------- spaces


class SpaceConformance:
    """Checks for a :class:`~nassearch.spaces.base.SearchSpace`; implement :meth:`make_space`."""

    #: Architectures each check samples (and as many it mutates from them).
    samples: int = 10

    def make_space(self) -> SearchSpace:
        """The space under test."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_space()")

    def _archs(self, space: SearchSpace, seed: int = 0) -> list[Arch]:
        """``samples`` sampled architectures followed by one mutation of each."""
        rng = np.random.default_rng(seed)
        sampled = [space.sample(rng) for _ in range(self.samples)]
        return sampled + [space.mutate(arch, rng) for arch in sampled]

    def _assert_round_trips(self, space: SearchSpace, arch: Arch, what: str) -> None:
        text = space.to_str(arch)
        assert isinstance(text, str), f"{_label(space)}: to_str returned {type(text).__name__}, not str"
        parsed = space.from_str(text)
        assert space.to_str(parsed) == text, \
            f"{_label(space)}: to_str(from_str(s)) differs from s for a {what} architecture: {text!r} became " \
            f"{space.to_str(parsed)!r}"
        assert space.key(parsed) == space.key(arch), \
            f"{_label(space)}: the key of a {what} architecture changed through from_str(to_str(arch)): {text!r}"

    def test_string_round_trip(self) -> None:
        space = self.make_space()
        archs = self._archs(space)
        for i, arch in enumerate(archs):
            self._assert_round_trips(space, arch, "sampled" if i < self.samples else "mutated")

    def test_key_is_a_stable_string(self) -> None:
        space = self.make_space()
        for arch in self._archs(space):
            key = space.key(arch)
            assert isinstance(key, str), f"{_label(space)}: key returned {type(key).__name__}, not str"
            text = space.to_str(arch)
            first, second = space.from_str(text), space.from_str(text)
            assert first == second and hash(first) == hash(second), \
                f"{_label(space)}: two parses of {text!r} are not equal, hashable values"
            for other in (first, space.from_str(space.to_str(second)), copy.deepcopy(arch)):
                assert space.key(other) == key, f"{_label(space)}: equal architectures {text!r} got different keys"
            assert space.key(arch) == key, f"{_label(space)}: key({text!r}) changed between calls"

    def test_mutate_changes_the_key_and_not_the_parent(self) -> None:
        space = self.make_space()
        rng = np.random.default_rng(2)

        def mutated(parent: Arch) -> Arch:
            before = space.to_str(parent)
            child = space.mutate(parent, rng)
            assert space.to_str(parent) == before, f"{_label(space)}: mutate changed its parent {before!r}"
            assert space.key(child) != space.key(parent), \
                f"{_label(space)}: mutate returned an architecture with its parent's key: {before!r} -> " \
                f"{space.to_str(child)!r}"
            return child

        for parent in self._archs(space):
            mutated(parent)
        arch = space.sample(rng)
        for _ in range(self.samples):  # a chain of mutations
            arch = mutated(arch)

    def test_sample_and_mutate_are_deterministic_per_seed(self) -> None:
        space = self.make_space()
        first = [space.to_str(a) for a in self._archs(space, seed=7)]
        second = [space.to_str(a) for a in self._archs(self.make_space(), seed=7)]
        assert first == second, f"{_label(space)}: sample/mutate with equal seeds gave different architectures"

    def test_encode_gives_consistent_arch_graphs(self) -> None:
        space = self.make_space()
        vocab = None
        for arch in self._archs(space):
            graph = space.encode(arch)
            text = space.to_str(arch)
            assert isinstance(graph, ArchGraph), f"{_label(space)}: encode returned {type(graph).__name__}"
            n = graph.num_nodes
            assert n >= 1 and graph.adjacency.shape == (n, n), \
                f"{_label(space)}: encode({text!r}) has {n} ops but an adjacency of shape {graph.adjacency.shape}"
            for name, values in graph.node_attrs.items():
                values = np.asarray(values)
                assert values.shape[:1] == (n,) and np.issubdtype(values.dtype, np.number), \
                    f"{_label(space)}: node attribute {name!r} of encode({text!r}) is not numeric with {n} rows"
            assert graph.cells is None or graph.cells.shape == (n,), \
                f"{_label(space)}: encode({text!r}).cells has shape {graph.cells.shape}, not ({n},)"
            for name, value in graph.graph_attrs.items():
                assert isinstance(value, (int, float, np.number)) and not isinstance(value, bool), \
                    f"{_label(space)}: graph attribute {name!r} of encode({text!r}) is {value!r}, not a number"
            assert all(isinstance(op, str) for op in graph.op_vocab) and (vocab is None or graph.op_vocab == vocab), \
                f"{_label(space)}: encode must give every graph of the space the same op_vocab of names"
            vocab = graph.op_vocab
            again = space.encode(space.from_str(text))
            assert np.array_equal(again.ops, graph.ops) and np.array_equal(again.adjacency, graph.adjacency), \
                f"{_label(space)}: encode({text!r}) differs between an architecture and its string's parse"

    def test_malformed_strings_raise_invalid_architecture(self) -> None:
        space = self.make_space()
        rng = np.random.default_rng(3)
        for text in GARBAGE:
            parsed = self._parse_or_none(space, text)
            assert parsed is None, f"{_label(space)}: from_str accepted {text[:40]!r} as {parsed!r}"
        valid = space.to_str(space.sample(rng))
        for text in [valid[: len(valid) // 2], valid[:-1], valid[1:], valid * 2, valid + "\x00", valid.upper(),
                     *(self._edit(valid, rng) for _ in range(30))]:
            self._assert_invalid_or_valid(space, text)

    @staticmethod
    def _edit(text: str, rng: np.random.Generator) -> str:
        """``text`` with one character deleted, replaced or inserted at a random position."""
        i, char = int(rng.integers(len(text))), FUZZ_CHARS[int(rng.integers(len(FUZZ_CHARS)))]
        return [text[:i] + text[i + 1:], text[:i] + char + text[i + 1:], text[:i] + char + text[i:]][i % 3]

    @staticmethod
    def _parse_or_none(space: SearchSpace, text: str) -> Any:
        """``space.from_str(text)``, or None when it raises InvalidArchitecture; any other exception fails."""
        try:
            return space.from_str(text)
        except InvalidArchitecture:
            return None
        except Exception as exc:
            raise AssertionError(f"{_label(space)}: from_str({text[:40]!r}) raised {type(exc).__name__}: {exc} "
                                 "instead of InvalidArchitecture") from exc

    @staticmethod
    def _assert_invalid_or_valid(space: SearchSpace, text: str) -> None:
        """``text`` (a corrupted valid string) raises InvalidArchitecture or parses to an architecture that
        round-trips; anything else is a bug of the space."""
        parsed = SpaceConformance._parse_or_none(space, text)
        if parsed is None:
            return
        try:
            canonical = space.to_str(parsed)
            assert space.to_str(space.from_str(canonical)) == canonical
        except Exception as exc:
            raise AssertionError(f"{_label(space)}: from_str accepted {text!r}, but the result does not round-trip "
                                 f"({type(exc).__name__}: {exc})") from exc

    def test_crossover_children_round_trip(self) -> None:
        space = self.make_space()
        if not isinstance(space, SupportsCrossover):
            import pytest

            pytest.skip(f"{_label(space)} has no crossover")
        parents = self._archs(space)

        def children(seed: int) -> list[Arch]:
            rng = np.random.default_rng(seed)
            return [space.crossover(a, b, rng) for a, b in zip(parents, parents[::-1])]

        first = children(4)
        assert [space.to_str(c) for c in first] == [space.to_str(c) for c in children(4)], \
            f"{_label(space)}: crossover with equal seeds gave different children"
        for child in first:
            self._assert_round_trips(space, child, "crossed-over")


# ------------------------------------------------------------------------------------------ searchers


def _checkpoint(searcher: Searcher) -> str:
    """``searcher.state_dict()`` as the runner stores it: plain ``json.dumps``."""
    state = searcher.state_dict()
    assert isinstance(state, dict), f"{_label(searcher)}: state_dict returned {type(state).__name__}, not a dict"
    try:
        return json.dumps(state)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{_label(searcher)}: state_dict() is not JSON-serialisable with plain json.dumps "
                             f"({exc}); convert numpy values and objects to lists, numbers and strings") from None


def _as_stored(space: SearchSpace, trials: Sequence[Trial]) -> list[Trial]:
    """The trials as a resumed run reads them back from its store: architectures parsed from their strings."""
    return [Trial(index=t.index, arch=space.from_str(t.arch_str), arch_str=t.arch_str, metrics=dict(t.metrics),
                  status=t.status, error=t.error) for t in trials]


class SearcherConformance:
    """Checks for a :class:`~nassearch.searchers.base.Searcher`; implement :meth:`make_space` and
    :meth:`make_searcher`."""

    #: The objectives the searcher is built for and the synthetic trials carry.
    objectives: list[Objective] = [Objective("val_acc")]
    #: Ask/tell rounds each check drives, and how many architectures each round asks for.
    rounds: int = 8
    batch_size: int = 4

    def make_space(self) -> SearchSpace:
        """The space the searcher searches."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_space()")

    def make_searcher(self, space: SearchSpace, seed: int) -> Searcher:
        """A fresh searcher of ``space`` for ``self.objectives`` and ``seed``."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_searcher(space, seed)")

    def _drive(self, searcher: Searcher, space: SearchSpace, rounds: int, history: list[Trial],
               failure_rate: float = 0.0) -> tuple[list[list[str]], list[str]]:
        """``rounds`` rounds as the runner runs them (ask, evaluate, tell, extend ``history``, checkpoint);
        the proposals' strings of each round and the JSON checkpoint after it."""
        proposed, checkpoints = [], []
        for _ in range(rounds):
            archs = searcher.ask(self.batch_size)
            assert 1 <= len(archs) <= self.batch_size, \
                f"{_label(searcher)}: ask({self.batch_size}) returned {len(archs)} architectures after " \
                f"{len(history)} trials; it must return 1 to {self.batch_size}"
            trials = synthetic_trials(space, archs, self.objectives, len(history), failure_rate)
            searcher.tell(trials)
            history.extend(trials)
            proposed.append([t.arch_str for t in trials])
            checkpoints.append(_checkpoint(searcher))
        return proposed, checkpoints

    def _assert_resumes_exactly(self, after_rounds: Iterable[int], failure_rate: float = 0.0) -> None:
        """A searcher restored from the checkpoint after each of ``after_rounds`` proposes the original's
        remaining rounds."""
        space = self.make_space()
        original, history = self.make_searcher(space, 0), []
        proposed, checkpoints = self._drive(original, space, self.rounds, history, failure_rate)
        for k in after_rounds:
            told = sum(len(batch) for batch in proposed[:k])
            resumed, resumed_history = self.make_searcher(space, 0), _as_stored(space, history[:told])
            resumed.load_state_dict(json.loads(checkpoints[k - 1]), resumed_history)
            again, _ = self._drive(resumed, space, self.rounds - k, resumed_history, failure_rate)
            failed = f", {sum(not t.ok for t in history[:told])} of them failed" if failure_rate else ""
            assert again == proposed[k:], \
                f"{_label(original)}: restored from the checkpoint after round {k} ({told} trials{failed}), it " \
                f"proposed {again[0]} where the original proposed {proposed[k]} (rounds of {self.batch_size})"

    def test_ask_returns_batches_of_valid_architectures(self) -> None:
        space = self.make_space()
        proposed, _ = self._drive(self.make_searcher(space, 0), space, self.rounds, [])
        for text in (text for batch in proposed for text in batch):
            assert space.to_str(space.from_str(text)) == text, \
                f"{_label(space)}: a proposal of the searcher does not round-trip: {text!r}"

    def test_state_round_trips_through_json(self) -> None:
        space = self.make_space()
        searcher, history = self.make_searcher(space, 0), []
        _, checkpoints = self._drive(searcher, space, max(1, self.rounds // 2), history)
        state = json.loads(checkpoints[-1])
        restored = self.make_searcher(space, 0)
        restored.load_state_dict(state, _as_stored(space, history))
        assert json.loads(_checkpoint(restored)) == state, \
            f"{_label(searcher)}: state_dict() after load_state_dict(state, history) differs from state"

    def test_resume_from_any_round_proposes_what_the_original_did(self) -> None:
        self._assert_resumes_exactly(range(1, self.rounds))

    def test_resume_after_failed_trials_proposes_what_the_original_did(self) -> None:
        self._assert_resumes_exactly([self.rounds // 2], FAILURE_RATE)

    def test_proposals_are_deterministic_per_seed(self) -> None:
        space = self.make_space()
        runs = [self._drive(self.make_searcher(space, seed), space, self.rounds, [])[0] for seed in (0, 0, 1)]
        assert runs[0] == runs[1], f"{_label(space)}: two searchers of seed 0 proposed different architectures"
        if runs[0] == runs[2]:
            warnings.warn(f"{type(self).__name__}: searchers of seeds 0 and 1 proposed the same "
                          f"{self.rounds} rounds; is the seed used?", stacklevel=1)

    def test_state_size_does_not_grow_with_trials(self) -> None:
        space = self.make_space()
        searcher = self.make_searcher(space, 0)
        _, checkpoints = self._drive(searcher, space, self.rounds, [])
        early, late = len(checkpoints[1]), len(checkpoints[-1])
        assert late <= STATE_GROWTH * early, \
            f"{_label(searcher)}: the JSON state grew from {early} characters after round 2 to {late} after round " \
            f"{self.rounds}; keep it constant-size and rebuild what follows from the trials in load_state_dict"


# ----------------------------------------------------------------------------------------- predictors


class PredictorConformance:
    """Checks for a :class:`~nassearch.predictors.base.Predictor`; implement :meth:`make_predictor` and
    :meth:`make_space` (the predictor is fitted on encoded architectures of that space)."""

    #: Architectures the predictor is fitted on, and others it predicts.
    train_size: int = 24
    test_size: int = 8

    def make_space(self) -> SearchSpace:
        """The space whose encoded architectures the predictor reads."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_space()")

    def make_predictor(self, seed: int) -> Predictor:
        """A fresh, unfitted predictor of ``seed``."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_predictor(seed)")

    def _data(self, seed: int = 0) -> tuple[list[ArchGraph], np.ndarray, list[ArchGraph]]:
        """Training graphs, their synthetic targets, and test graphs, drawn from the space with ``seed``."""
        space = self.make_space()
        rng = np.random.default_rng(seed)
        archs = [space.sample(rng) for _ in range(self.train_size + self.test_size)]
        graphs = [space.encode(arch) for arch in archs]
        y = np.array([synthetic_metrics(space, arch, ["target"])["target"] for arch in archs])
        return graphs[: self.train_size], y[: self.train_size], graphs[self.train_size:]

    def _fit(self, predictor: Predictor, graphs: list[ArchGraph], y: np.ndarray) -> Predictor:
        """``predictor.fit`` as the searchers call it (a validation quarter when the predictor needs one)."""
        val = None
        if predictor.requirements().needs_validation:
            cut = len(graphs) - len(graphs) // 4
            graphs, y, val = graphs[:cut], y[:cut], (graphs[cut:], y[cut:])
        fitted = predictor.fit(graphs, y, val)
        assert fitted is predictor, f"{_label(predictor)}: fit must return the predictor itself"
        return predictor

    def _assert_predictions(self, predictor: Predictor, predictions: Any, n: int) -> None:
        assert isinstance(predictions, np.ndarray) and np.issubdtype(predictions.dtype, np.floating), \
            f"{_label(predictor)}: predict returned {type(predictions).__name__} " \
            f"{getattr(predictions, 'dtype', '')}, not a float numpy array"
        assert predictions.shape == (n,), \
            f"{_label(predictor)}: predict of {n} graphs returned shape {predictions.shape}, not ({n},)"
        assert np.all(np.isfinite(predictions)), f"{_label(predictor)}: predict returned non-finite values"

    def test_fit_then_predict_gives_finite_floats(self) -> None:
        train, y, test = self._data()
        predictor = self._fit(self.make_predictor(0), train, y)
        for graphs in (test, train, test[:1]):
            self._assert_predictions(predictor, predictor.predict(graphs), len(graphs))

    def test_predictions_do_not_depend_on_batching(self) -> None:
        train, y, test = self._data()
        predictor = self._fit(self.make_predictor(0), train, y)
        graphs = test + train
        whole = predictor.predict(graphs)
        half = len(graphs) // 2
        parts = np.concatenate([predictor.predict(graphs[:half]), predictor.predict(graphs[half:])])
        single = np.array([predictor.predict([g])[0] for g in test])
        for other, how in ((parts, "in two halves"), (predictor.predict(graphs[::-1])[::-1], "in reverse order"),
                           (predictor.predict(graphs), "a second time")):
            np.testing.assert_allclose(other, whole, rtol=RTOL, atol=ATOL,
                                       err_msg=f"{_label(predictor)}: predicting {how} changed the predictions")
        np.testing.assert_allclose(single, whole[: len(test)], rtol=RTOL, atol=ATOL,
                                   err_msg=f"{_label(predictor)}: predicting graphs one by one changed the predictions")

    def test_equal_seeds_predict_alike_also_after_refitting(self) -> None:
        train, y, test = self._data()
        first = self._fit(self.make_predictor(3), train, y).predict(test)
        second = self._fit(self.make_predictor(3), train, y).predict(test)
        label = _label(self.make_predictor(3))
        np.testing.assert_allclose(second, first, rtol=RTOL, atol=ATOL,
                                   err_msg=f"{label}: two predictors of seed 3 fitted on the same data predict "
                                           "differently")
        other_train, other_y, _ = self._data(seed=1)
        refitted = self._fit(self._fit(self.make_predictor(3), other_train, other_y), train, y).predict(test)
        np.testing.assert_allclose(refitted, first, rtol=RTOL, atol=ATOL,
                                   err_msg=f"{label}: fitting again must start afresh from the seed (a refitted "
                                           "predictor predicts unlike a fresh one)")

    def test_requirements_declare_capabilities(self) -> None:
        predictor = self.make_predictor(0)
        capabilities = predictor.requirements()
        assert isinstance(capabilities, Capabilities), \
            f"{_label(predictor)}: requirements() returned {type(capabilities).__name__}, not Capabilities"
        assert isinstance(predictor, PredictsTiers) or not capabilities.predict_tiers, \
            f"{_label(predictor)}: requirements() declares predict_tiers, but the predictor has no predict_tiers()"
        if not capabilities.predict_tiers:
            return
        train, y, test = self._data()
        tiers = self._fit(predictor, train, y).predict_tiers(test)
        assert isinstance(tiers, np.ndarray) and tiers.ndim == 2 and tiers.shape[0] == len(test) \
            and tiers.shape[1] >= 2, f"{_label(predictor)}: predict_tiers must return (n, tiers) probabilities, " \
                                     f"got {getattr(tiers, 'shape', type(tiers).__name__)}"
        assert np.all(tiers >= 0) and np.allclose(tiers.sum(axis=1), 1.0, atol=1e-6), \
            f"{_label(predictor)}: predict_tiers rows must be probabilities summing to 1"
