"""Click counts of crossed field pairs: memorisation as extra categorical fields.

For each pair of chosen categorical fields, the training rows' clicks and non-clicks of the
row's (hashed) pair of values are counted (:func:`count_clicks`). Each count is binned on a
log scale (:func:`bin_counts`: 0 -> 0, ``c`` -> ``1 + floor(log2 c)``, capped at
``n_bins - 1``) and the (clicks bin, non-clicks bin) combination of each pair becomes one
extra categorical field of the model (:func:`count_field_ids`): its ids follow the encoder's
in the embedding table, ``n_bins ** 2`` per pair. A training row reads its counts with its
own label removed (leave-one-out), so that the field does not leak the label it predicts;
every other row (validation, prediction) reads the full counts.

The counts are a fitted array of shape ``(n_pairs, 2, n_buckets)`` (non-clicks, clicks),
``uint16`` saturating at 65535 (exact for every bin up to ``n_bins = 16``).
"""

from __future__ import annotations

import numpy as np
import torch

from ..nn.ctr import cross_ids
from ._values import FieldBatch

__all__ = ["MAX_BINS", "bin_counts", "count_clicks", "count_field_ids", "pair_keys",
           "with_count_fields"]

#: Most bins of a count (the saturating uint16 counts stay exact below 2 ** 15).
MAX_BINS = 16
_SATURATION = np.iinfo(np.uint16).max
_CHUNK = 1 << 16


def pair_keys(ids: np.ndarray, fields: list[int], n_buckets: int) -> np.ndarray:
    """Hashed bucket ``(n_rows, n_pairs)`` of every pair of the categorical ``fields`` of the
    encoded ``ids`` (the hash of the wide part's crosses, :func:`skrec.nn.ctr.cross_ids`)."""
    n_pairs = len(fields) * (len(fields) - 1) // 2
    out = np.empty((ids.shape[0], n_pairs), dtype=np.int64)
    for start in range(0, ids.shape[0], _CHUNK):
        chunk = torch.as_tensor(ids[start:start + _CHUNK])
        out[start:start + _CHUNK] = cross_ids(chunk, n_buckets, fields).numpy()
    return out


def count_clicks(counts: np.ndarray | None, keys: np.ndarray, y: np.ndarray,
                 n_buckets: int) -> np.ndarray:
    """``counts`` (updated in place; ``None``: a new table) plus the non-clicks and clicks of
    the rows' ``keys`` (their 0/1 labels ``y``), saturating: shape ``(n_pairs, 2,
    n_buckets)``, uint16. Only the buckets the rows touch are visited (a stream's chunk
    costs its rows, not the table)."""
    n_pairs = keys.shape[1]
    if counts is None:
        counts = np.zeros((n_pairs, 2, n_buckets), dtype=np.uint16)
    elif not counts.flags.writeable:  # e.g. a memory-mapped model
        counts = counts.copy()
    clicked = np.asarray(y) > 0.5
    for p in range(n_pairs):
        for label, rows in ((0, ~clicked), (1, clicked)):
            buckets, n = np.unique(keys[rows, p], return_counts=True)
            total = counts[p, label, buckets].astype(np.int64) + n
            counts[p, label, buckets] = np.minimum(total, _SATURATION)
    return counts


def bin_counts(c: np.ndarray, n_bins: int) -> np.ndarray:
    """Log-scale bins of counts: 0 -> 0, ``c`` -> ``1 + floor(log2 c)``, capped at
    ``n_bins - 1`` (negative counts read as 0)."""
    c = np.asarray(c, dtype=np.int64)
    out = np.zeros(c.shape, dtype=np.int64)
    nz = c > 0
    out[nz] = np.frexp(c[nz].astype(np.float64))[1]  # c = m * 2**e, m in [0.5, 1): e
    return np.minimum(out, n_bins - 1)


def count_field_ids(counts: np.ndarray, keys: np.ndarray, n_bins: int, offset: int,
                    y: np.ndarray | None = None) -> np.ndarray:
    """The ids ``(n_rows, n_pairs)`` of the count fields: pair ``p`` of a row reads
    ``offset + p * n_bins ** 2 + bin(clicks) * n_bins + bin(non-clicks)``. With ``y`` (the
    rows' own 0/1 labels: rows that were counted), each row's own label is left out."""
    pairs = np.arange(keys.shape[1])
    neg = counts[pairs, 0, keys].astype(np.int64)
    pos = counts[pairs, 1, keys].astype(np.int64)
    if y is not None:
        own = (np.asarray(y) > 0.5).astype(np.int64)[:, None]
        pos, neg = pos - own, neg - (1 - own)
    return (offset + pairs * n_bins * n_bins + bin_counts(pos, n_bins) * n_bins
            + bin_counts(neg, n_bins))


def with_count_fields(batch: FieldBatch, counts: np.ndarray, fields: list[int], n_bins: int,
                      offset: int, y: np.ndarray | None = None) -> FieldBatch:
    """``batch`` with the count fields appended to its categorical ids (leave-one-out with
    the rows' labels ``y``; see :func:`count_field_ids`)."""
    keys = pair_keys(batch.ids, fields, counts.shape[2])
    extra = count_field_ids(counts, keys, n_bins, offset, y)
    return FieldBatch(np.concatenate([batch.ids, extra], axis=1), batch.numeric, batch.bags,
                      batch.n_multi)
