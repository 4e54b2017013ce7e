"""Click prediction for ads: impressions (rows of features) -> click probability.

- :class:`FieldEncoder` turns a DataFrame, an array of category codes, or a sparse one-hot
  matrix with its field layout into the integer ids, numeric values and bags that the torch
  click model (:class:`skrec.nn.CTRModel`) reads; it is fitted once and stored with the model.
- :func:`negative_sampling_correction` maps the logits of a model trained on subsampled
  negatives back to true click rates; :func:`reliability_curve` measures calibration.

Importing this package does not import torch.
"""

from ._calibration import negative_sampling_correction, reliability_curve
from ._fields import FieldBatch, FieldEncoder, hash_values

__all__ = ["FieldBatch", "FieldEncoder", "hash_values", "negative_sampling_correction",
           "reliability_curve"]
