"""The arrays the click model reads (:class:`FieldBatch`), value normalisation, look-ups
and hashing: the vectorised pieces under :class:`~skrec.ctr.FieldEncoder`."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

#: Ids every embedded field reserves before its categories.
UNKNOWN, MISSING, N_RESERVED = 0, 1, 2
_KINDS = ("categorical", "multi", "numeric")
_SCALINGS = ("standard", "log", "none")
_NUMERIC_NAN = ("mean", "indicator", "error")
_INPUT_KINDS = ("frame", "array", "sparse")



# ---------------------------------------------------------------------------------------------
# The encoded batch
# ---------------------------------------------------------------------------------------------


@dataclass
class FieldBatch:
    """Encoded rows: what the click model reads (see :class:`FieldEncoder`).

    Parameters
    ----------
    ids : ndarray of shape (n_samples, n_categorical), dtype int64
        Global embedding-table ids of the single-valued categorical fields.
    numeric : ndarray of shape (n_samples, n_numeric), dtype float32
        Scaled values of the numeric fields (NaN already handled).
    bags : scipy.sparse.csr_matrix of shape (n_samples * n_multi, n_ids)
        The multi-valued fields, one CSR row per (sample, field) pair in row-major order (row
        ``i * n_multi + j`` is field ``j`` of sample ``i``): column indices are global ids,
        values the entries' weights (1 for list-valued columns, the stored values for sparse
        input). ``None`` when there is no multi-valued field.
    n_multi : int
        Number of multi-valued fields.
    """

    ids: np.ndarray
    numeric: np.ndarray
    bags: sp.csr_matrix | None
    n_multi: int

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def take(self, rows: np.ndarray) -> FieldBatch:
        """The batch of the samples ``rows`` (an index array or a boolean mask), in order."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        bags = None
        if self.bags is not None:
            bag_rows = (rows[:, None] * self.n_multi + np.arange(self.n_multi)).reshape(-1)
            bags = self.bags[bag_rows]
        return FieldBatch(self.ids[rows], self.numeric[rows], bags, self.n_multi)

    def to_torch(self, device: Any = None) -> dict[str, Any]:
        """The batch as torch tensors: the keyword arguments of :class:`skrec.nn.CTRModel`.

        ``bag_offsets`` has ``n_samples * n_multi + 1`` entries (``include_last_offset``
        layout of ``torch.nn.functional.embedding_bag``).
        """
        import torch

        out = {
            "ids": torch.as_tensor(self.ids, device=device),
            "numeric": torch.as_tensor(self.numeric, device=device),
        }
        if self.bags is not None:
            out["bag_ids"] = torch.as_tensor(self.bags.indices.astype(np.int64), device=device)
            out["bag_offsets"] = torch.as_tensor(self.bags.indptr.astype(np.int64),
                                                 device=device)
            out["bag_weights"] = torch.as_tensor(self.bags.data.astype(np.float32),
                                                 device=device)
        return out


# ---------------------------------------------------------------------------------------------
# Look-ups and hashing (pandas hash tables when installed, sorted arrays otherwise)
# ---------------------------------------------------------------------------------------------


def _pandas():
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is optional
        return None
    return pd


def _is_frame(X) -> bool:
    return hasattr(X, "columns") and hasattr(X, "iloc") and hasattr(X, "dtypes")


def _missing_mask(arr: np.ndarray) -> np.ndarray:
    """NaN / None / NaT mask of a 1-D array."""
    kind = arr.dtype.kind
    if kind in "fc":
        return np.isnan(arr)
    if kind in "mM":
        return np.isnat(arr)
    if kind == "O":
        pd = _pandas()
        if pd is not None:
            return np.asarray(pd.isna(arr), dtype=bool)
        with np.errstate(invalid="ignore"):  # pragma: no cover - without pandas
            return np.asarray(np.equal(arr, None), dtype=bool) | np.asarray(arr != arr,
                                                                             dtype=bool)
    return np.zeros(arr.shape, dtype=bool)


def _value_class(arr: np.ndarray) -> str:
    """"number" or "string" (objects count as strings unless they are all numbers)."""
    if arr.dtype.kind in "biuf":
        return "number"
    if arr.dtype.kind == "O" and arr.size:
        sample = arr[: min(arr.size, 1000)]
        if all(isinstance(v, numbers.Number) and not isinstance(v, bool) for v in sample):
            return "number"
    return "string"


def _normalise_values(arr: np.ndarray) -> np.ndarray:
    """Integral floats -> int64 (codes read as floats, e.g. an OrdinalEncoder's output),
    bools -> int64, so that 3, 3.0 and True/1 are the same category."""
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if arr.size and not np.array_equal(arr, np.round(arr)):
            return arr
        return arr.astype(np.int64)
    return arr


def _count(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values (sorted when they can be) and their counts."""
    pd = _pandas()
    if values.size == 0:
        return values[:0], np.zeros(0, dtype=np.int64)
    if pd is not None:
        counts = pd.Series(values, copy=False).value_counts(sort=False, dropna=True)
        uniq = np.asarray(counts.index.to_numpy(), dtype=values.dtype
                          if values.dtype.kind != "O" else object)
        cnt = counts.to_numpy().astype(np.int64)
    else:  # pragma: no cover - without pandas
        uniq, cnt = np.unique(values, return_counts=True)
    try:
        order = np.argsort(uniq, kind="stable")
    except TypeError:  # mixed types (int and str): keep pandas' order of first appearance
        return uniq, cnt
    return uniq[order], cnt[order]


class _Lookup:
    """Positions of values in a fixed array of categories (-1 when absent), vectorised."""

    def __init__(self, categories: np.ndarray):
        self.categories = categories
        self._index = None
        self._dense = None
        cats = categories
        if cats.dtype.kind in "iu" and cats.size:
            lo, hi = int(cats.min()), int(cats.max())
            if hi - lo <= 4 * cats.size + 1024:  # a direct table: one gather per value
                table = np.full(hi - lo + 1, -1, dtype=np.int64)
                table[cats - lo] = np.arange(cats.size)
                self._dense = (lo, hi, table)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if values.size == 0 or self.categories.size == 0:
            return np.full(values.shape, -1, dtype=np.int64)
        if self._dense is not None and values.dtype.kind in "iu":
            lo, hi, table = self._dense
            v = values.astype(np.int64, copy=False)
            inside = (v >= lo) & (v <= hi)
            out = np.full(values.shape, -1, dtype=np.int64)
            out[inside] = table[v[inside] - lo]
            return out
        pd = _pandas()
        if pd is not None:
            if self._index is None:
                self._index = pd.Index(self.categories)
            return np.asarray(self._index.get_indexer(values), dtype=np.int64)
        return self._searched(values)  # without pandas: a binary search

    def _searched(self, values: np.ndarray) -> np.ndarray:
        """Positions by binary search in the sorted categories (-1 when absent)."""
        order = np.argsort(self.categories, kind="stable")
        ordered = self.categories[order]
        pos = np.clip(np.searchsorted(ordered, values), 0, ordered.size - 1)
        return np.where(ordered[pos] == values, order[pos], -1).astype(np.int64)


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix64(h: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 that spreads every input bit."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(30))
        h = h * _M1
        h = h ^ (h >> np.uint64(27))
        h = h * _M2
        return h ^ (h >> np.uint64(31))


def hash_values(values: np.ndarray, n_buckets: int) -> np.ndarray:
    """Bucket in ``[0, n_buckets)`` of every value, deterministic across runs and machines.

    Integers (and integral floats, bools) are hashed as 64-bit integers; every other value as
    the text of ``str(value)`` (FNV-1a over its code points, then mixed), so the integer ``5``
    and the string ``"5"`` fall in different buckets.
    """
    values = _normalise_values(values)
    if values.dtype.kind in "iu":
        h = _mix64(values.astype(np.int64).view(np.uint64) + np.uint64(0x9E3779B97F4A7C15))
    else:
        text = values.astype(np.str_) if values.dtype.kind != "U" else values
        width = max(text.dtype.itemsize // 4, 1)
        points = np.ascontiguousarray(text).view(np.uint32).reshape(text.size, width)
        h = np.full(text.size, 0xCBF29CE484222325, dtype=np.uint64)
        prime = np.uint64(0x100000001B3)
        with np.errstate(over="ignore"):
            for j in range(width):  # over characters, not rows
                c = points[:, j].astype(np.uint64)
                h = np.where(c != 0, (h ^ c) * prime, h)
        h = _mix64(h)
    return (h % np.uint64(n_buckets)).astype(np.int64)
