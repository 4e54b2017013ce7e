"""Exact id matching, whatever the dtypes (int64, uint64, floats, strings, mixed objects)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------------
# Exact id matching, whatever the dtypes (int64, uint64, floats, strings, mixed objects).
# ---------------------------------------------------------------------------------------------


def _py(value: Any) -> Any:
    """A numpy scalar as the Python scalar it holds (other values unchanged)."""
    return value.item() if isinstance(value, np.generic) else value


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _as_id_array(values: Any) -> np.ndarray:
    """``values`` as a numpy array, without rounding integer ids through float64.

    ``np.asarray([2**63 + 1, 5])`` is float64 (2**63 + 1 becomes 2**63): a list of integers
    becomes int64, else uint64, else (when neither holds them all) an object array of Python
    ints. Arrays are returned as they are.
    """
    if _table_like(values):
        values = values.to_numpy()
    if isinstance(values, np.ndarray):
        return values
    arr = np.asarray(values)
    if arr.dtype.kind in "fOUS" and arr.size:
        obj = np.asarray(values, dtype=object)
        if obj.shape != arr.shape:
            return arr
        flat = obj.reshape(-1).tolist()
        if arr.dtype.kind in "US":  # numpy turns [1, "a"] into ["1", "a"]: keep the 1
            return arr if all(isinstance(v, str | bytes) for v in flat) else obj
        if all(_is_int(v) for v in flat):
            for dtype in (np.int64, np.uint64):
                try:
                    return np.array(obj.tolist(), dtype=dtype)
                except OverflowError:
                    pass
            return obj
    return arr


def _id_kind(dtype: np.dtype) -> str:
    if dtype.kind in "biuf":
        return "number"
    if dtype.kind in "US":
        return "string"
    return dtype.kind


def _fits(value: Any, dtype: np.dtype) -> bool:
    """Whether the Python scalar ``value`` is exactly representable in ``dtype``."""
    kind = dtype.kind
    if kind in "US":
        return isinstance(value, str if kind == "U" else bytes)
    if kind in "iub":
        if isinstance(value, float):
            if not (math.isfinite(value) and value.is_integer()):
                return False
            value = int(value)
        if not isinstance(value, int):
            return False
        if kind == "b":
            return value in (0, 1)
        info = np.iinfo(dtype)
        return info.min <= value <= info.max
    if kind == "f":
        if not isinstance(value, int | float):
            return False
        try:
            return math.isfinite(float(value)) and float(dtype.type(value)) == value
        except OverflowError:
            return False
    return False


def _cast_exact(ids: np.ndarray, dtype: np.dtype, names: tuple[str, str]) -> tuple[np.ndarray,
                                                                                    np.ndarray]:
    """``ids`` converted to ``dtype`` and the mask of the ids that this converts **exactly**.

    The others (an int64 id -1 against uint64 ids, 2**63 against int64 ids, 2.5 against
    integers, a number in a mixed object array against strings...) cannot equal any id of
    that dtype. ``names`` name ``ids`` and the vocabulary in the error for numbers vs strings.
    """
    q, k = ids.dtype.kind, dtype.kind
    ones = np.ones(ids.shape, dtype=bool)
    if q == "O":  # Python objects: one by one (object arrays are Python-speed anyway)
        flat = [_py(v) for v in ids.reshape(-1).tolist()]
        ok = np.fromiter((_fits(v, dtype) for v in flat), dtype=bool, count=len(flat))
        if k in "US":  # as wide as the longest id: never cut to the vocabulary's width
            empty = "" if k == "U" else b""
            out = np.array([v if good else empty for v, good in zip(flat, ok)],
                           dtype=np.str_ if k == "U" else np.bytes_)
        else:
            out = np.zeros(len(flat), dtype=dtype)
            if ok.any():
                out[ok] = [v for v, good in zip(flat, ok) if good]
        return out.reshape(ids.shape), ok.reshape(ids.shape)
    if {_id_kind(ids.dtype), _id_kind(dtype)} == {"number", "string"}:
        raise ValueError(
            f"{names[0]} (dtype {ids.dtype}) cannot be compared with {names[1]} (dtype {dtype}): "
            "numbers vs strings."
        )
    if q == "b":
        ids, q = ids.astype(np.uint8), "u"
    if k in "iu" and q in "iu":
        info = np.iinfo(dtype)
        ok = ids <= info.max if q == "u" else (ids >= info.min) & (ids <= info.max)
        return np.where(ok, ids, 0).astype(dtype), ok
    if k in "iu" and q == "f":
        bits = np.iinfo(dtype).bits
        lo, hi = (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1)) if k == "i" else (0.0, 2.0 ** bits)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(ids) & (ids == np.floor(ids)) & (ids >= lo) & (ids < hi)
        return np.where(ok, ids, 0).astype(dtype), ok
    if k == "f" and q in "iuf":
        with np.errstate(over="ignore", invalid="ignore"):
            out = ids.astype(dtype)
            if q == "f":
                return out, out.astype(ids.dtype) == ids
            bits = ids.dtype.itemsize * 8
            lim = 2.0 ** (bits - 1) if q == "i" else 2.0 ** bits
            ok = (out < lim) & (out >= -lim)
            ok &= np.where(ok, out, 0).astype(ids.dtype) == ids
        return out, ok
    if k == q and k in "US":
        return ids, ones  # searchsorted compares strings of any widths
    if k == q:
        try:
            out = ids.astype(dtype)
            return out, np.asarray(out.astype(ids.dtype) == ids, dtype=bool)
        except (TypeError, ValueError):
            pass
    raise ValueError(
        f"{names[0]} (dtype {ids.dtype}) cannot be compared with {names[1]} (dtype {dtype})."
    )


class _IdIndex:
    """Exact lookup of ids in a vocabulary of ids in any order, whatever the dtypes.

    Native vocabularies are searched with ``np.searchsorted`` after an exact conversion of
    the queries to their dtype (never through float64); object vocabularies (mixed types,
    integers beyond 64 bits) through a dict of Python scalars.
    """

    def __init__(self, vocab: np.ndarray) -> None:
        self.vocab = vocab
        self.table: dict | None = None
        self.sorter: np.ndarray | None = None
        if vocab.dtype == object:
            self.table = {}
            try:
                for i, v in enumerate(vocab.tolist()):
                    self.table.setdefault(_py(v), i)
            except TypeError:
                raise ValueError(f"ids must be numbers or strings; got an unhashable "
                                 f"{type(v).__name__}.") from None
            self.sorted = vocab
        else:
            if vocab.size > 1 and not np.all(vocab[1:] > vocab[:-1]):
                self.sorter = np.argsort(vocab, kind="stable")
            self.sorted = vocab if self.sorter is None else vocab[self.sorter]

    def duplicates(self) -> np.ndarray:
        """The ids that the vocabulary holds more than once."""
        if self.table is not None:
            seen: set = set()
            return np.array([v for v in map(_py, self.vocab.tolist())
                             if v in seen or seen.add(v)], dtype=object)
        s = self.sorted
        return s[1:][s[1:] == s[:-1]] if s.size > 1 else s[:0]

    def find(self, ids: np.ndarray, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
        """Positions of ``ids`` in the vocabulary and the mask of the ids found there.

        ``names`` name ``ids`` and the vocabulary in errors (for numbers vs strings).
        """
        if self.vocab.size == 0 or ids.size == 0:
            return np.zeros(ids.shape, dtype=np.intp), np.zeros(ids.shape, dtype=bool)
        if self.table is not None:
            get = self.table.get
            pos = np.fromiter((_get_hashable(get, _py(v)) for v in ids.reshape(-1).tolist()),
                              dtype=np.intp, count=ids.size).reshape(ids.shape)
            return np.maximum(pos, 0), pos >= 0
        values, ok = _cast_exact(ids, self.vocab.dtype, names)
        pos = np.minimum(np.searchsorted(self.sorted, values), self.sorted.size - 1)
        found = ok & np.asarray(self.sorted[pos] == values, dtype=bool)
        if self.sorter is not None:
            pos = self.sorter[pos]
        return pos, found


def _get_hashable(get, value: Any) -> int:
    try:
        return get(value, -1)
    except TypeError:  # an unhashable id (a list...) is no id of the vocabulary
        return -1


def _order_key(value: Any) -> tuple:
    """Sort key of ids of mixed types: numbers, then strings, then bytes, each in order."""
    if isinstance(value, numbers.Real):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    if isinstance(value, bytes):
        return (2, value)
    return (3, type(value).__qualname__, value)


def _unique_sorted(arr: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct ids of ``arr`` and the code of each element (ids of mixed types sort
    numbers first, then strings)."""
    try:
        uniq, codes = np.unique(arr, return_inverse=True)
        return uniq, codes.reshape(-1)
    except TypeError:
        pass
    values = [_py(v) for v in arr.tolist()]
    try:
        ordered = sorted(set(values), key=_order_key)
    except TypeError as exc:
        raise ValueError(
            f"{what} ids must be numbers, strings or other hashable values of one type; they "
            f"could not be sorted: {exc}"
        ) from None
    uniq = np.empty(len(ordered), dtype=object)
    uniq[:] = ordered
    table = {v: i for i, v in enumerate(ordered)}
    return uniq, np.fromiter((table[v] for v in values), dtype=np.intp, count=len(values))


def _as_1d_ids(users: Any, what: str) -> np.ndarray:
    arr = _as_id_array(users)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D list of ids; got shape {arr.shape}.")
    return arr


def _encode_ids(index: _IdIndex, ids: Any, what: str, handle_unknown: str) -> np.ndarray:
    """Positions of ``ids`` (any shape) in ``index``'s vocabulary; -1 or an error if unknown."""
    if handle_unknown not in ("error", "ignore"):
        raise ValueError(f'handle_unknown must be "error" or "ignore"; got {handle_unknown!r}.')
    arr = _as_id_array(ids)
    flat = arr.reshape(-1)
    pos, found = index.find(flat, (f"{what} ids", f"the {what} ids seen at fit time"))
    if not found.all() and handle_unknown == "error":
        bad = flat[~found]
        raise ValueError(
            f"{bad.size} {what} id(s) not seen at fit time, e.g. {bad[:5].tolist()}; use "
            'handle_unknown="ignore" to map them to -1.'
        )
    out = np.where(found, pos, -1).astype(np.int64)
    return out.reshape(arr.shape)


def _decode_ids(vocab: np.ndarray, indices: Any, fill_value: Any, name: str) -> np.ndarray:
    """``vocab[indices]`` with ``fill_value`` where ``indices == -1``."""
    idx = np.asarray(indices)
    if idx.dtype.kind == "f":
        if not np.isfinite(idx).all() or (idx != np.round(idx)).any():
            raise ValueError(f"{name} must be integers (positions in the vocabulary).")
        idx = idx.astype(np.int64)
    elif idx.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers; got dtype {idx.dtype}.")
    n = vocab.shape[0]
    if idx.size and (idx.min() < -1 or idx.max() >= n):
        raise ValueError(
            f"{name} must lie in [-1, {n}); got values in [{int(idx.min())}, {int(idx.max())}]."
        )
    pad = idx < 0
    out = vocab[np.where(pad, 0, idx)] if n else np.empty(idx.shape, dtype=vocab.dtype)
    if not pad.any():
        return out
    fill = np.asarray(fill_value)
    if fill_value is None or fill.ndim != 0 or fill.dtype.kind != out.dtype.kind:
        out = out.astype(object)
    else:
        out = out.astype(np.result_type(out.dtype, fill.dtype))
    out[pad] = fill_value
    return out


def _table_like(obj: Any) -> bool:
    """A pandas/polars Series or Index (anything with ``to_numpy``), not a numpy array."""
    return hasattr(obj, "to_numpy") and not isinstance(obj, np.ndarray)
