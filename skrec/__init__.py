"""skrec: scikit-learn-compatible neural recommenders that train fast and serve in real time.

The estimators take a user x item matrix (rows are users, columns are items, stored values > 0
are interactions and give their order) and follow the scikit-learn API:

- :class:`SeqRecommender`: SASRec, GRU4Rec or BERT4Rec over each user's item sequence;
- :class:`AERecommender`: Mult-VAE / Mult-DAE autoencoders;
- :class:`PopularityRecommender` and :class:`EASERecommender`: the reference baselines.

and one classifier, for ads: :class:`CTRClassifier` predicts the probability that an
impression (a row of user, ad and context features) is clicked.

:func:`save` and :func:`load` keep a fitted estimator in a file that loads without running
code (see :mod:`skrec.persistence`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._registry import ESTIMATORS

__version__ = "0.1.0"

__all__ = [
    "AERecommender",
    "CTRClassifier",
    "EASERecommender",
    "MarkovChainRecommender",
    "PopularityRecommender",
    "SeqRecommender",
    "__version__",
    "load",
    "save",
]

# The estimators are imported on first use (PEP 562): ``import skrec.metrics`` or
# ``skrec.model_selection`` does not load torch, and ``import skrec`` keeps working where one
# of the neural modules is absent.
_LAZY = {**ESTIMATORS, "save": "skrec.persistence", "load": "skrec.persistence"}

if TYPE_CHECKING:  # for type checkers and IDEs
    from .autoencoder import AERecommender
    from .baselines import EASERecommender, MarkovChainRecommender, PopularityRecommender
    from .ctr import CTRClassifier
    from .persistence import load, save
    from .sequential import SeqRecommender


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # cache: later look-ups skip this function
        return value
    raise AttributeError(f"module 'skrec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
