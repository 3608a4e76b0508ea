"""nassearch: predictor-guided neural architecture search.

The public Python API::

    import nassearch
    result = nassearch.search("nasbench201", {"name": "nb201_tabular", "dataset": "cifar10"},
                              "regularized_evolution", objectives=["val_acc"], budget=150, seed=0)
    result.best.arch_str, result.best.metrics, result.trials, result.summary

Components by name, config section or object; ``register`` adds your own; ``nassearch.testing`` holds the
conformance suites a new component should pass.
"""

__version__ = "0.1.0"

from nassearch.api import SearchResult, search
from nassearch.config import Budget
from nassearch.errors import ConfigError, NassearchError
from nassearch.objectives import Objective
from nassearch.registry import register
from nassearch.trial import Trial, TrialStatus

__all__ = ["Budget", "ConfigError", "NassearchError", "Objective", "SearchResult", "Trial", "TrialStatus",
           "__version__", "register", "search"]
