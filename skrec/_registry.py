"""The registry of skrec's estimators: one list of names, read by ``skrec``'s lazy imports,
by :mod:`skrec.persistence` (the classes a file may hold) and by messages that name them."""

from __future__ import annotations

import importlib

__all__ = ["ESTIMATORS", "SAVEABLE", "estimator_class", "estimators_with"]

#: skrec's estimators: class name -> the module that defines it.
ESTIMATORS: dict[str, str] = {
    "PopularityRecommender": "skrec.baselines",
    "EASERecommender": "skrec.baselines",
    "MarkovChainRecommender": "skrec.baselines",
    "SeqRecommender": "skrec.sequential",
    "AERecommender": "skrec.autoencoder",
    "CTRClassifier": "skrec.ctr",
}

#: Everything :func:`skrec.save` writes and :func:`skrec.load` builds without registration:
#: the estimators and the fitted transformers that go with them.
SAVEABLE: dict[str, str] = {
    **ESTIMATORS,
    "InteractionEncoder": "skrec.preprocessing",
    "FieldEncoder": "skrec.ctr",
}


def estimator_class(name: str) -> type:
    """The class registered as ``name`` (in :data:`SAVEABLE`), imported on demand."""
    return getattr(importlib.import_module(SAVEABLE[name]), name)


def estimators_with(method: str, base: type) -> list[str]:
    """Names of the estimators that override ``base``'s ``method`` (for messages)."""
    default = getattr(base, method)
    return [name for name in ESTIMATORS
            if getattr(estimator_class(name), method, default) is not default]
