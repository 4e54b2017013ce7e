"""Pruning of fitted neural recommenders: structured (really smaller) and unstructured.

Two methods, both applied in place to a fitted estimator's ``module_`` through
:meth:`PrunableMixin.prune_` (or at the end of ``fit`` through the ``prune`` parameter):

* ``"structured"`` removes whole units and **slices the dense matrices**, so the pruned model
  has fewer parameters and fewer FLOPs and runs faster with ordinary dense kernels:

  one adapter per architecture says which units exist (:mod:`skrec.pruning.adapters`; one
  file per architecture in this package): attention heads, feed-forward units and embedding
  dimensions of a :class:`~skrec.nn.SequenceModel` with a transformer encoder; hidden units
  (of every GRU layer) and embedding dimensions of one with a GRU encoder; hidden units and
  latent dimensions of a :class:`~skrec.nn.MultVAE` (see the adapters for the exact slices).

  Removing a unit is exact when the unit contributes nothing, except for embedding
  dimensions: a LayerNorm over fewer dimensions computes different mean and variance, so
  every row changes a little. That, and the loss of useful units, is why pruning is
  normally followed by a few epochs of fine-tuning.

* ``"magnitude"`` zeroes the smallest weights of all ``Linear`` and ``Embedding`` layers
  (one global threshold; LayerNorm parameters and biases are kept). The zeros are written
  into the weights (no masks or hooks remain), and stay zero during the fine-tuning that
  follows. **It saves no time or memory by itself**: the matrices keep their shapes and the
  dense kernels multiply the zeros. It is useful to study sparsity, or before exporting to a
  sparse runtime.

Units are ranked by an importance score: ``"weight"`` (the share of each weight tensor's
squared norm that a unit holds, summed over the tensors it touches) or ``"taylor"`` (the
first-order Taylor estimate ``|w * dL/dw|`` of the loss change, summed over the unit's
parameters and accumulated over batches of the training data, through the estimator's own
loss).
"""

from __future__ import annotations

# Adapters register themselves on import: one file per architecture.
from . import autoencoder as _autoencoder  # noqa: F401
from . import ctr as _ctr  # noqa: F401
from . import gru as _gru  # noqa: F401
from . import sequence_model as _sequence_model  # noqa: F401
from . import transformer as _transformer  # noqa: F401
from ._core import (
    PrunableMixin,
    magnitude_prune,
    model_summary,
    pruning_groups,
    structured_prune,
)
from .adapters import PruningAdapter, PruningGroup, get_adapter, register_adapter

__all__ = [
    "PrunableMixin",
    "PruningAdapter",
    "PruningGroup",
    "get_adapter",
    "magnitude_prune",
    "model_summary",
    "pruning_groups",
    "register_adapter",
    "structured_prune",
]
