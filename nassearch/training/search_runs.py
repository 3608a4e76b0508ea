"""What final training reads from a search run directory: its config and the best architecture over its seeds."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nassearch import config as cfg
from nassearch.errors import RunDirError
from nassearch.training.run_files import short_reason

log = logging.getLogger(__name__)

INSTEAD = "retrain an architecture given by name or string instead"


@dataclass(frozen=True)
class SearchBest:
    """The best architecture of a search run over its finished seeds, by its first objective (parsed)."""

    arch: Any
    metric: str
    value: float
    seed_dir: str
    seeds: int

    def describe(self, run_dir: Path) -> str:
        return f"{run_dir} ({self.seed_dir}, best {self.metric} {self.value:.4g})"


def read_search_config(run_dir: Path) -> tuple[Any, Path]:
    """(the run's config.yaml, its path); RunDirError when ``run_dir`` has none."""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise RunDirError(f"{run_dir} is not a nassearch run directory (no config.yaml)")
    return cfg.read_yaml(config_path, "run config"), config_path


def search_setting(config: Any, config_path: Path, *keys: str | int) -> Any:
    """``config[key0][key1]...`` of a search run's config.yaml; RunDirError naming the setting it lacks."""
    value = config
    for key in keys:
        try:
            value = value[key]
        except (TypeError, KeyError, IndexError):
            raise RunDirError(f"{config_path} lacks {'.'.join(map(str, keys))}: it is not the config.yaml of a "
                              f"nassearch search; {INSTEAD}") from None
    return value


def best_of_search(run_dir: Path, config: Any, config_path: Path, parse: Callable[[str], Any]) -> SearchBest:
    """The best architecture over the finished seeds (``seed-*/summary.json``) of the search in ``run_dir``,
    parsed by ``parse`` (whose error is the one message when the recorded string is not an architecture)."""
    metric = search_setting(config, config_path, "objectives", 0, "metric")
    mode = search_setting(config, config_path, "objectives", 0, "mode")
    if mode not in ("max", "min"):
        raise RunDirError(f"{config_path}: objectives[0].mode is {mode!r}, not max or min")
    bests = [(*_seed_best(path, metric), path) for path in sorted(run_dir.glob("seed-*/summary.json"))]
    if not bests:
        raise RunDirError(f"{run_dir} has no finished seed (seed-*/summary.json): finish the search first "
                          f"with nassearch run CONFIG --resume {run_dir}")
    value, arch, where = max(bests, key=lambda item: item[0] if mode == "max" else -item[0])
    arch = parse(arch)
    log.info("best %s %.4g of %d seed(s): %s", metric, value, len(bests), where.parent.name)
    return SearchBest(arch, metric, value, where.parent.name, len(bests))


def _seed_best(summary_path: Path, metric: str) -> tuple[float, str]:
    """``metric`` of the best architecture a seed's summary.json records, and the architecture."""
    try:
        best = json.loads(summary_path.read_text())["best"]
        value, arch = best["metrics"][metric], best["arch"]
    except OSError as exc:
        raise RunDirError(f"cannot read {summary_path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise RunDirError(f"{summary_path} records no best architecture with its {metric} (the objective): "
                          f"{short_reason(exc)}; finish or repair the search with nassearch run CONFIG --resume, "
                          f"or {INSTEAD}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not isinstance(arch, str):
        raise RunDirError(f"{summary_path}: the best architecture's {metric} is {value!r} and its arch {arch!r}; "
                          "expected a finite number and an architecture string")
    return float(value), arch
