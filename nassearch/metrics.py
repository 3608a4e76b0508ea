"""Multi-objective metrics: non-dominated sets, Pareto fronts of trials, hypervolume (pymoo).

Points handed in and returned are in the objectives' own units (accuracy in %, latency in ms); the
functions turn them into pymoo's minimisation form (``max`` objectives negated) where they compute.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import find_non_dominated

from nassearch.objectives import Objective
from nassearch.trial import Trial


def to_minimisation(points: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    """``points`` (n, k) in the objectives' units as values to minimise (``max`` columns negated)."""
    signs = np.array([-1.0 if o.mode == "max" else 1.0 for o in objectives])
    return np.asarray(points, dtype=float).reshape(-1, len(objectives)) * signs


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the points (n, k) that no other point dominates, all objectives minimised
    (equal points do not dominate each other, so duplicates on the front are all kept)."""
    points = np.asarray(points, dtype=float)
    mask = np.zeros(len(points), dtype=bool)
    mask[find_non_dominated(points)] = True
    return mask


def feasible(points: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    """Mask of the points (n, k) in the objectives' units with finite values that satisfy every bound."""
    points = np.asarray(points, dtype=float).reshape(-1, len(objectives))
    keep = np.all(np.isfinite(points), axis=1)
    for j, o in enumerate(objectives):
        if o.bound is not None:
            keep &= points[:, j] >= o.bound if o.mode == "max" else points[:, j] <= o.bound
    return keep


def pareto_mask(points: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    """Mask of the feasible points (n, k) in the objectives' units that no other feasible point dominates."""
    mask = feasible(points, objectives)
    mask[mask] = non_dominated(to_minimisation(np.asarray(points, dtype=float)[mask], objectives))
    return mask


def pareto_front(trials: Sequence[Trial], objectives: Sequence[Objective]) -> tuple[np.ndarray, np.ndarray]:
    """(indices into ``trials``, points in the objectives' units) of the non-dominated feasible ok trials."""
    points = np.array([[t.metrics.get(o.metric, np.nan) if t.ok else np.nan for o in objectives] for t in trials],
                      dtype=float).reshape(-1, len(objectives))
    mask = pareto_mask(points, objectives)
    return np.flatnonzero(mask), points[mask]


def worst_point(points: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    """Per objective the worst value among ``points`` (the minimum of ``max`` objectives, else the maximum):
    the default hypervolume reference point."""
    points = np.asarray(points, dtype=float).reshape(-1, len(objectives))
    return np.array([points[:, j].min() if o.mode == "max" else points[:, j].max() for j, o in enumerate(objectives)])


def normalised_reference(columns: Sequence[np.ndarray], objectives: Sequence[Objective],
                         margin: float = 0.1) -> np.ndarray:
    """The reference point, in the objectives' units, of hypervolumes over objectives min-max normalised on the
    whole space's values (``columns``, one array per objective) with the reference at ``1 + margin`` in each:
    the worst value of each column moved ``margin`` of its range further out. Hypervolume ratios are the same
    in either scale."""
    reference = []
    for values, objective in zip(columns, objectives):
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        reference.append(low - margin * (high - low) if objective.mode == "max" else high + margin * (high - low))
    return np.array(reference)


def hypervolume(points: np.ndarray, reference: Sequence[float], objectives: Sequence[Objective]) -> float:
    """Hypervolume dominated by ``points`` up to ``reference`` (both in the objectives' units), by pymoo's
    ``HV`` on the minimisation form; points not strictly better than the reference add nothing."""
    if len(reference) != len(objectives):
        raise ValueError(f"the reference point has {len(reference)} values for {len(objectives)} objectives")
    points = to_minimisation(points, objectives)
    if len(points) == 0:
        return 0.0
    return float(HV(ref_point=to_minimisation(np.asarray(reference), objectives)[0])(points))


def hypervolume_ratio(found: np.ndarray, true_front: np.ndarray, reference: Sequence[float],
                      objectives: Sequence[Objective]) -> float:
    """Hypervolume of ``found`` over that of ``true_front`` (1.0: the true front was found)."""
    best = hypervolume(true_front, reference, objectives)
    if best <= 0:
        raise ValueError("the true front dominates no volume up to the reference point; choose another reference")
    return hypervolume(found, reference, objectives) / best
