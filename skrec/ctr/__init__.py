"""Click prediction for ads: impressions (rows of features) -> click probability.

- :class:`CTRClassifier`: the scikit-learn classifier (fit, predict_proba, partial_fit over a
  stream, candidates of one request scored in one call), on the shared trainer;
- :class:`FieldEncoder` turns a DataFrame, an array of category codes, or a sparse one-hot
  matrix with its field layout into the integer ids, numeric values and bags that the torch
  click model (:class:`skrec.nn.CTRModel`) reads; it is fitted once and stored with the model;
- :func:`negative_sampling_correction` maps the logits of a model trained on subsampled
  negatives back to true click rates; :func:`reliability_curve` measures calibration.

Importing this package does not import torch (:class:`CTRClassifier` and :class:`ClickGraph`,
the exported scoring graph, are imported on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._calibration import negative_sampling_correction, reliability_curve
from ._fields import FieldBatch, FieldEncoder, hash_values

__all__ = ["CTRClassifier", "ClickGraph", "FieldBatch", "FieldEncoder", "hash_values",
           "negative_sampling_correction", "reliability_curve"]

if TYPE_CHECKING:  # for type checkers and IDEs
    from ._classifier import CTRClassifier
    from ._export import ClickGraph


def __getattr__(name: str) -> Any:
    if name == "CTRClassifier":
        from ._classifier import CTRClassifier as value
    elif name == "ClickGraph":
        from ._export import ClickGraph as value
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
