"""Click prediction for ads: impressions (rows of features) -> click probability.

- :class:`FieldEncoder` turns a DataFrame, an array of category codes, or a sparse one-hot
  matrix with its field layout into the integer ids, numeric values and bags that the torch
  click model (:class:`skrec.nn.CTRModel`) reads; it is fitted once and stored with the model.

Importing this package does not import torch.
"""

from ._fields import FieldBatch, FieldEncoder, hash_values

__all__ = ["FieldBatch", "FieldEncoder", "hash_values"]
