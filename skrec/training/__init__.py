"""The training machinery shared by every neural skrec estimator.

One job per module:

* :mod:`~skrec.training.precision` -- devices and precisions: ``"auto"`` resolution, autocast,
  and the reduced-precision (bf16, fp16, int8) copies that serve inference;
* :mod:`~skrec.training.params` -- the training parameters, declared once: their
  documentation (inserted into every estimator's docstring) and their checks;
* :mod:`~skrec.training.trainer` -- the one training loop: :class:`Trainer`,
  :class:`EarlyStopping`, :class:`WeightAverage`, batching and the optimizer;
* :mod:`~skrec.training.schedules` -- learning-rate schedules (:class:`PlateauDecay`);
* :mod:`~skrec.training.estimator` -- :class:`NeuralEstimator`, the generic base of every
  torch estimator (the run, continuation, the fitted counters, the inference set-up);
* :mod:`~skrec.training.recommender` -- :class:`NeuralRecommender`, that base plus ranking:
  the base of the neural recommenders.

The names below are imported on first use (PEP 562), so that ``skrec.training.precision``
can be used without loading the estimator base.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "EarlyStopping",
    "LRSchedule",
    "NeuralEstimator",
    "NeuralRecommender",
    "PlateauDecay",
    "Trainer",
    "TrainingConfig",
    "TrainingState",
    "TrainingTask",
    "WeightAverage",
    "autocast",
    "cpu_supports_bf16",
    "resolve_device",
    "resolve_precision",
]

_LAZY = {
    "EarlyStopping": "trainer",
    "LRSchedule": "trainer",
    "Trainer": "trainer",
    "WeightAverage": "trainer",
    "TrainingConfig": "trainer",
    "TrainingState": "trainer",
    "TrainingTask": "trainer",
    "NeuralEstimator": "estimator",
    "NeuralRecommender": "recommender",
    "PlateauDecay": "schedules",
    "autocast": "precision",
    "cpu_supports_bf16": "precision",
    "resolve_device": "precision",
    "resolve_precision": "precision",
}

if TYPE_CHECKING:  # for type checkers and IDEs
    from .estimator import NeuralEstimator
    from .precision import autocast, cpu_supports_bf16, resolve_device, resolve_precision
    from .recommender import NeuralRecommender
    from .schedules import PlateauDecay
    from .trainer import (
        EarlyStopping,
        LRSchedule,
        Trainer,
        TrainingConfig,
        TrainingState,
        TrainingTask,
        WeightAverage,
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
