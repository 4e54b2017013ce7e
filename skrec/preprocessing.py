"""Turn an event log (user, item, time) into a user x item interaction matrix and back.

The matrix follows skrec's data contract: a ``scipy.sparse.csr_matrix`` of shape
``(n_users, n_items)`` with ``float64`` values, rows are users, columns are items, and a stored
value > 0 is an interaction whose value is also its **order** (larger = later).

pandas is optional: a ``pandas.DataFrame`` is accepted (duck-typed, never imported at module
import time), and so is any mapping of column name -> 1-D array, such as a dict of numpy arrays.
"""

from __future__ import annotations

import math
import numbers
import re
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._validation import check_interactions, check_item_features, check_k

__all__ = ["InteractionEncoder"]

_VALUES = ("order", "timestamp", "weight", "ones")


# ---------------------------------------------------------------------------------------------
# Reading columns from a DataFrame or a mapping (no pandas import).
# ---------------------------------------------------------------------------------------------


def _column_names(log: Any) -> list:
    """Names of the columns of ``log``, or a ValueError for an unsupported container."""
    if log is None:
        raise ValueError("log is None; expected a DataFrame or a mapping of column -> 1-D array.")
    if hasattr(log, "columns") and hasattr(log, "__getitem__"):  # pandas / polars DataFrame
        return list(log.columns)
    if isinstance(log, np.ndarray) and log.dtype.names is not None:  # structured array
        return list(log.dtype.names)
    if isinstance(log, Mapping):
        return list(log.keys())
    raise ValueError(
        "log must be a pandas DataFrame or a mapping of column name -> 1-D array "
        f"(such as a dict of numpy arrays); got {type(log).__name__}."
    )


def _get_column(log: Any, name: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Return ``(values, missing_mask_or_None)`` of one column as numpy arrays."""
    col = log[name]
    missing = None
    if hasattr(col, "isna") and hasattr(col, "to_numpy"):  # pandas Series
        missing = np.asarray(col.isna(), dtype=bool)
        tz = getattr(col.dtype, "tz", None)
        numpy_dtype = getattr(col.dtype, "numpy_dtype", None)  # nullable Int64, Float64, ...
        if tz is not None and hasattr(col, "dt"):  # tz-aware datetimes -> naive UTC
            arr = col.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
        elif numpy_dtype is not None and np.dtype(numpy_dtype).kind != "O" and not missing.any():
            arr = col.to_numpy(dtype=numpy_dtype)
        else:
            arr = col.to_numpy()
    else:
        arr = _as_id_array(col)
    if arr.ndim != 1:
        raise ValueError(f"log column {name!r} must be 1-D; got shape {arr.shape}.")
    return arr, missing


def _missing_mask(arr: np.ndarray) -> np.ndarray:
    """Vectorised mask of missing values (NaN, None, NaT) in a 1-D array."""
    kind = arr.dtype.kind
    if kind == "f" or kind == "c":
        return np.isnan(arr)
    if kind in "mM":
        return np.isnat(arr)
    if kind == "O":
        with np.errstate(invalid="ignore"):
            return np.asarray(np.equal(arr, None), dtype=bool) | np.asarray(arr != arr, dtype=bool)
    return np.zeros(arr.shape, dtype=bool)


def _ids(arr: np.ndarray, missing: np.ndarray | None, what: str) -> np.ndarray:
    """Validate a 1-D array of ids (no missing values) and give it a native dtype if it can.

    Object arrays whose elements are all ``str`` (pandas string and categorical columns) become
    numpy unicode arrays, and those of integers int64 (or uint64) arrays: sorting and searching
    them is then done in C, an order of magnitude faster than comparing Python objects. Other
    object arrays (mixed types, integers beyond 64 bits) hold Python scalars, which compare
    exactly.
    """
    mask = _missing_mask(arr) if missing is None else missing
    if mask.any():
        raise ValueError(
            f"{what} ids contain {int(mask.sum())} missing value(s) (NaN/None); drop or fill "
            "them before encoding."
        )
    if arr.dtype == object and arr.size:
        try:
            native = arr.astype(np.str_)
        except (TypeError, ValueError):  # pragma: no cover - str() of an object failed
            native = None
        same = native == arr if native is not None else None  # False where not a str
        if isinstance(same, np.ndarray) and same.all():
            return native
        values = [_py(v) for v in arr.tolist()]
        if all(_is_int(v) for v in values):  # integers: a native dtype if one holds them all
            for dtype in (np.int64, np.uint64):
                try:
                    return np.array(values, dtype=dtype)
                except OverflowError:
                    pass
        out = np.empty(arr.shape, dtype=object)  # Python scalars: they compare exactly
        out[:] = values
        return out
    return arr


def _numeric(arr: np.ndarray, missing: np.ndarray | None, name: str, *, allow_time: bool):
    """Convert a time or weight column to float64 (datetimes to Unix seconds)."""
    if missing is not None and missing.any():
        raise ValueError(f"column {name!r} contains {int(missing.sum())} missing value(s).")
    kind = arr.dtype.kind
    if allow_time and kind == "M":
        if np.isnat(arr).any():
            raise ValueError(f"column {name!r} contains missing times (NaT).")
        return (arr - np.datetime64(0, "s")) / np.timedelta64(1, "s")
    if allow_time and kind == "m":
        if np.isnat(arr).any():
            raise ValueError(f"column {name!r} contains missing times (NaT).")
        return arr / np.timedelta64(1, "s")
    if kind in "iuf":
        out = arr.astype(np.float64)
    elif kind == "O":
        try:
            out = arr.astype(np.float64)
        except (TypeError, ValueError):
            what = "numeric or datetime64" if allow_time else "numeric"
            raise ValueError(
                f"column {name!r} must be {what}; it holds non-numeric values (dtype object). "
                "Convert it first (e.g. pandas.to_datetime)."
            ) from None
    else:
        what = "numeric or datetime64" if allow_time else "numeric"
        raise ValueError(f"column {name!r} must be {what}; got dtype {arr.dtype}.")
    bad = ~np.isfinite(out)
    if missing is not None:
        bad |= missing
    if bad.any():
        raise ValueError(f"column {name!r} contains {int(bad.sum())} missing or infinite value(s).")
    return out


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


#: Column-name words that mean "the time of the event".
_TIME_WORDS = frozenset({"time", "timestamp", "ts", "date", "datetime", "dt", "tstamp", "epoch",
                         "when", "unixtime", "eventtime"})


def _looks_like_time(log: Any, name: Any) -> str | None:
    """Why column ``name`` of ``log`` looks like event times (its dtype or name), or None."""
    dtype = getattr(log[name], "dtype", None)
    if getattr(dtype, "tz", None) is not None or getattr(dtype, "kind", None) in ("M", "m"):
        return f"dtype {dtype}"
    if not isinstance(name, str):
        return None
    words = re.split(r"[^a-z0-9]+", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower())
    words = [w for w in words if w]
    if any(w in _TIME_WORDS or w.endswith(("time", "timestamp")) for w in words) or (
            len(words) > 1 and words[-1] in ("at", "on")):  # created_at, updated_on
        return "by its name"
    return None


def _users_out_of_order(log: Any, name: Any, user_codes: np.ndarray) -> int | None:
    """Number of users whose rows are not in the order of column ``name`` (None: the column
    is not numbers or datetimes)."""
    try:
        t = _numeric(*_get_column(log, name), name, allow_time=True)
    except (ValueError, TypeError):
        return None
    if t.shape != user_codes.shape:
        return None
    perm = np.argsort(user_codes, kind="stable")
    u, t = user_codes[perm], t[perm]
    bad = (u[1:] == u[:-1]) & (t[1:] < t[:-1])
    return int(np.unique(u[1:][bad]).size)


def _table_like(obj: Any) -> bool:
    """A pandas/polars Series or Index (anything with ``to_numpy``), not a numpy array."""
    return hasattr(obj, "to_numpy") and not isinstance(obj, np.ndarray)


def _as_frame(out: dict, as_frame: bool | None):
    """``out`` as a pandas DataFrame (when asked, or by default when pandas is available)."""
    if as_frame is None or as_frame:
        try:
            import pandas as pd
        except ImportError:
            if as_frame:
                raise ImportError(
                    'as_frame=True needs pandas: pip install pandas (or pip install '
                    '"skrec[pandas]").'
                ) from None
            return out
        return pd.DataFrame(out)
    return out


class InteractionEncoder(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Encode an event log (one row per event) as a user x item CSR interaction matrix.

    Rows of the output are users and columns are items, as in the rest of skrec. Each stored
    value is > 0 and, by default, gives the **order** of the interaction in the user's history
    (1 = first, n = last), which is what sequence models read.

    Parameters
    ----------
    user_col : hashable, default="user"
        Column holding the user ids.
    item_col : hashable, default="item"
        Column holding the item ids.
    time_col : hashable, default=None
        Column holding the event times: numbers (such as Unix seconds) or ``datetime64``
        (converted to float Unix seconds; tz-aware pandas columns are converted to UTC). When
        ``None``, events are ordered by their row position in the log.
    weight_col : hashable, default=None
        Column holding non-negative event weights, used when ``values="weight"``.
    values : {"order", "timestamp", "weight", "ones"}, default="order"
        What the stored values are:

        - ``"order"``: positions 1..n within each user, ordered by ``time_col`` and then by the
          event's row position in the log (a stable sort: ties keep the log's order); without
          ``time_col``, by row position alone.
        - ``"timestamp"``: the raw ``time_col`` value (must be > 0, since a stored value of 0
          is not an interaction).
        - ``"weight"``: ``weight_col``, summed over repeated (user, item) events.
        - ``"ones"``: 1.0 for every (user, item) pair.

    Attributes
    ----------
    users_ : ndarray of shape (n_users_,)
        Sorted unique user ids seen in :meth:`fit` (``np.unique``); row ``i`` of
        :meth:`transform`'s default output is user ``users_[i]``.
    items_ : ndarray of shape (n_items_,)
        Item ids in column order: column ``j`` is item ``items_[j]``. The distinct items seen
        in :meth:`fit`, sorted, then those added by :meth:`add_items`, in the order added.
    n_users_ : int
        Number of users seen in :meth:`fit`.
    n_items_ : int
        Number of items (the number of columns of every output): those seen in :meth:`fit`
        and those added by :meth:`add_items`.
    n_events_ : int
        Number of events (rows of the log) seen in :meth:`fit`.

    See Also
    --------
    skrec.datasets.load_movielens : builds MovieLens matrices through this encoder.

    Notes
    -----
    A CSR matrix cannot hold the same (user, item) pair twice. With ``values="order"`` or
    ``"timestamp"``, a repeated consumption keeps only its **last** occurrence (latest time,
    then latest row), and the orders 1..n count the distinct items kept, so each row's values
    are a permutation of ``1..nnz``. With ``"weight"`` the weights of repeats are summed; with
    ``"ones"`` the pair is stored once.

    Everything is vectorised (``np.lexsort``, ``np.searchsorted``): there is no Python loop over
    events or users.

    Examples
    --------
    >>> import numpy as np
    >>> from skrec.preprocessing import InteractionEncoder
    >>> log = {"user": np.array(["a", "a", "b", "a"]),
    ...        "item": np.array([10, 20, 10, 30]),
    ...        "time": np.array([5, 1, 3, 9])}
    >>> enc = InteractionEncoder(time_col="time")
    >>> X = enc.fit_transform(log)
    >>> X.toarray()
    array([[2., 1., 3.],
           [1., 0., 0.]])
    >>> enc.inverse_transform_items(np.array([[2, -1]]), fill_value=0)
    array([[30,  0]])
    """

    def __init__(
        self,
        user_col: Any = "user",
        item_col: Any = "item",
        time_col: Any = None,
        weight_col: Any = None,
        values: str = "order",
    ) -> None:
        self.user_col = user_col
        self.item_col = item_col
        self.time_col = time_col
        self.weight_col = weight_col
        self.values = values

    # -- sklearn plumbing ----------------------------------------------------------------------

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.dict = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        tags.target_tags.required = False
        return tags

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_id_index", None)  # a cache, rebuilt on first use
        return state

    def _index(self, attr: str) -> _IdIndex:
        """The exact lookup of ``users_`` or ``items_``, built once per array."""
        vocab = getattr(self, attr)
        cache = self.__dict__.setdefault("_id_index", {})
        index = cache.get(attr)
        if index is None or index.vocab is not vocab:
            index = cache[attr] = _IdIndex(vocab)
        return index

    # -- reading the log -----------------------------------------------------------------------

    def _check_params(self) -> None:
        if self.values not in _VALUES:
            raise ValueError(f"values must be one of {_VALUES}; got {self.values!r}.")
        if self.values == "timestamp" and self.time_col is None:
            raise ValueError('values="timestamp" needs time_col (the column of event times).')
        if self.values == "weight" and self.weight_col is None:
            raise ValueError('values="weight" needs weight_col (the column of event weights).')

    def _needed_columns(self) -> list:
        cols = [self.user_col, self.item_col]
        roles = ["user_col", "item_col"]
        if self.values in ("order", "timestamp") and self.time_col is not None:
            cols.append(self.time_col)
            roles.append("time_col")
        if self.values == "weight":
            cols.append(self.weight_col)
            roles.append("weight_col")
        for i in range(len(cols)):
            for j in range(i):
                if cols[i] == cols[j]:
                    raise ValueError(
                        f"{roles[j]} and {roles[i]} are both {cols[i]!r}; each role needs its "
                        "own column."
                    )
        return cols

    def _read(self, log: Any, *, allow_empty: bool) -> dict[str, np.ndarray | None]:
        """Validate ``log`` and return its needed columns as numpy arrays."""
        self._check_params()
        available = _column_names(log)
        needed = self._needed_columns()
        missing = [c for c in needed if c not in available]
        if missing:
            raise ValueError(
                f"log is missing column(s) {missing}; it has {available}. Set user_col, "
                "item_col, time_col or weight_col to the names used in the log."
            )
        repeated = [c for c in needed if sum(1 for a in available if a == c) > 1]
        if repeated:
            raise ValueError(
                f"log has duplicate column name(s) {repeated}: which one to read is ambiguous. "
                "Rename or drop the duplicates first (e.g. log.loc[:, "
                "~log.columns.duplicated()])."
            )
        users, users_na = _get_column(log, self.user_col)
        items, items_na = _get_column(log, self.item_col)
        n = users.shape[0]
        out: dict[str, np.ndarray | None] = {"time": None, "weight": None}
        if self.values in ("order", "timestamp") and self.time_col is not None:
            t, t_na = _get_column(log, self.time_col)
            out["time"] = (t, t_na)
        if self.values == "weight":
            w, w_na = _get_column(log, self.weight_col)
            out["weight"] = (w, w_na)
        lengths = {self.user_col: n, self.item_col: items.shape[0]}
        for key, col in (("time", self.time_col), ("weight", self.weight_col)):
            if out[key] is not None:
                lengths[col] = out[key][0].shape[0]
        if len(set(lengths.values())) > 1:
            raise ValueError(f"log columns have different lengths: {lengths}.")
        if n == 0 and not allow_empty:
            raise ValueError("log is empty (0 events); at least one event is required.")
        out["user"] = _ids(users, users_na, "user")
        out["item"] = _ids(items, items_na, "item")
        if out["time"] is not None:
            t = _numeric(*out["time"], self.time_col, allow_time=True)
            if self.values == "timestamp" and (t <= 0).any():
                raise ValueError(
                    f'values="timestamp" needs times > 0 (a stored 0 is not an interaction); '
                    f"column {self.time_col!r} has {int((t <= 0).sum())} value(s) <= 0. "
                    'Use values="order" instead.'
                )
            out["time"] = t
        if out["weight"] is not None:
            w = _numeric(*out["weight"], self.weight_col, allow_time=False)
            if (w < 0).any():
                raise ValueError(f"column {self.weight_col!r} contains negative weights.")
            out["weight"] = w
        return out

    # -- public API ----------------------------------------------------------------------------

    def fit(self, log: Any, y: None = None) -> InteractionEncoder:
        """Learn the user and item vocabularies of an event log.

        Parameters
        ----------
        log : pandas.DataFrame or mapping of str to array-like of shape (n_events,)
            The event log, one row per event, with at least ``user_col`` and ``item_col``
            (and ``time_col``/``weight_col`` when ``values`` needs them).
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : InteractionEncoder
            The fitted encoder.

        Raises
        ------
        ValueError
            If a column is missing, ids are missing (NaN/None), the time or weight column is
            not numeric, or the log is empty.
        """
        cols = self._read(log, allow_empty=False)
        user_codes, _ = self._fit(cols)
        self._warn_unnamed_time(log, user_codes)
        return self

    def _warn_unnamed_time(self, log: Any, user_codes: np.ndarray) -> None:
        """Warn when events are ordered by row position although the log has a column that
        looks like event times (``values="order"`` without ``time_col``)."""
        if self.values != "order" or self.time_col is not None:
            return
        roles = [self.user_col, self.item_col, self.weight_col]
        for name in _column_names(log):
            if any(name is r or (type(name) is type(r) and name == r) for r in roles):
                continue
            why = _looks_like_time(log, name)
            if why is None:
                continue
            n_bad = _users_out_of_order(log, name, user_codes)
            if n_bad is None:
                order = "its values are not numbers or datetimes, so the row order was kept"
            elif n_bad:
                order = (f"for {n_bad} of {self.n_users_} user(s) the rows are not in "
                         f"{name!r} order, so their sequences are not in time order")
            else:
                order = (f"the rows are in {name!r} order here, but a log that is not sorted "
                         "would silently give sequences out of time order")
            warnings.warn(
                f"The log has a column {name!r} that looks like event times ({why}), but "
                f"time_col was not given: each user's events are ordered by their row position "
                f"in the log, and {order}. Pass time_col={name!r} to order them by it (or drop "
                "the column if it is not the time of the events).",
                UserWarning,
                stacklevel=3,
            )
            return

    def _fit(self, cols) -> tuple[np.ndarray, np.ndarray]:
        """Learn the vocabularies; return the codes of the log's users and items."""
        self.users_, user_codes = _unique_sorted(cols["user"], "user")
        self.items_, item_codes = _unique_sorted(cols["item"], "item")
        self.n_users_ = int(self.users_.shape[0])
        self.n_items_ = int(self.items_.shape[0])
        self.n_events_ = int(cols["user"].shape[0])
        return user_codes, item_codes

    def _check_fitted_state(self) -> None:
        """Raise a ValueError naming the attribute when the fitted vocabularies are not what
        :meth:`fit` and :meth:`add_items` make (1-D, distinct ids, counted); :func:`skrec.load`
        calls it. (``items_`` is in column order: sorted at fit, then the added items.)"""
        from ._fitted_state import check_array, check_int

        if not hasattr(self, "items_"):
            return
        self._check_params()
        for name in ("users", "items"):
            ids = check_array(self, f"{name}_", kinds="biufUSOMm", finite=True)
            if ids.ndim != 1:
                raise ValueError(f"{name}_ must be 1-D; got shape {ids.shape}.")
            try:
                twice = _IdIndex(ids).duplicates()
            except ValueError as exc:  # an unhashable object
                raise ValueError(f"{name}_: {exc}") from None
            if twice.size:
                raise ValueError(f"{name}_ must hold distinct ids; {twice[:3].tolist()} "
                                 "appear more than once.")
            check_int(self, f"n_{name}_", low=ids.shape[0], high=ids.shape[0])
        check_int(self, "n_events_", low=0)

    def transform(self, log: Any, users: Any = None) -> sp.csr_matrix:
        """Build the user x item interaction matrix of an event log.

        Parameters
        ----------
        log : pandas.DataFrame or mapping of str to array-like of shape (n_events,)
            The event log, one row per event. It may be empty.
        users : array-like of shape (n_rows,), default=None
            Ids of the users to build rows for, in this order. They need not have been seen in
            :meth:`fit` (fold-in: a new user's row is built from its events, and a user with no
            events gets an empty row). Ids must be unique. When ``None``, the rows are
            :attr:`users_`.

        Returns
        -------
        X : scipy.sparse.csr_matrix of shape (n_rows, n_items_), dtype float64
            The interactions; see the class docstring for what the values are.

        Warns
        -----
        UserWarning
            When events are dropped because their item was not seen in :meth:`fit` (the
            message gives their count), or, when ``users`` is ``None``, because their user was
            not seen in :meth:`fit`.
        """
        return self._transform(log, users, stacklevel=3)

    def _transform(self, log: Any, users: Any, *, stacklevel: int) -> sp.csr_matrix:
        """:meth:`transform`; its warnings point ``stacklevel`` frames up."""
        check_is_fitted(self, ("users_", "items_"))
        cols = self._read(log, allow_empty=True)
        user_ids, item_ids = cols["user"], cols["item"]
        n_events = user_ids.shape[0]

        if users is None:
            n_rows = self.n_users_
            row_idx, row_known = self._index("users_").find(
                user_ids, (f"the log's user ids (column {self.user_col!r})",
                           "the user ids seen at fit time"))
            n_unknown = int(n_events - row_known.sum())
            if n_unknown:
                n_users = _unique_sorted(user_ids[~row_known], "user")[0].size
                warnings.warn(
                    f"{n_unknown} event(s) of {n_users} user(s) "
                    "not seen at fit time were dropped; pass users=[...] to build rows for "
                    "new users.",
                    UserWarning,
                    stacklevel=stacklevel,
                )
        else:
            rows = _ids(_as_1d_ids(users, "users"), None, "users")
            n_rows = rows.shape[0]
            index = _IdIndex(rows)
            twice = index.duplicates()
            if twice.size:
                raise ValueError(f"users contains duplicate ids (e.g. {twice[:5].tolist()}); "
                                 "each row must be a distinct user.")
            row_idx, row_known = index.find(
                user_ids, (f"the log's user ids (column {self.user_col!r})",
                           "the ids given in users="))

        item_idx, item_known = self._index("items_").find(
            item_ids, (f"the log's item ids (column {self.item_col!r})",
                       "the item ids seen at fit time"))
        unknown_items = row_known & ~item_known
        n_unknown_items = int(unknown_items.sum())
        if n_unknown_items:
            n_items = _unique_sorted(item_ids[unknown_items], "item")[0].size
            warnings.warn(
                f"{n_unknown_items} event(s) with {n_items} "
                "item(s) not seen at fit time were dropped.",
                UserWarning,
                stacklevel=stacklevel,
            )
        keep = np.flatnonzero(row_known & item_known)
        return self._assemble(cols, keep, row_idx[keep], item_idx[keep], n_rows)

    def _assemble(self, cols, keep, r, c, n_rows: int) -> sp.csr_matrix:
        """Build the CSR matrix from the kept events ``keep`` (log positions, increasing)."""
        r = np.asarray(r, dtype=np.int64)
        c = np.asarray(c, dtype=np.int64)
        shape = (n_rows, self.n_items_)
        if self.values == "weight":
            X = sp.csr_matrix((cols["weight"][keep], (r, c)), shape=shape)  # sums repeats
            return check_interactions(X, name="X", allow_empty=True)
        # Sort events by (row, time, log position): stable sorts keep the log order on ties.
        t = cols["time"][keep] if cols["time"] is not None else None
        if t is not None:
            perm = np.argsort(t, kind="stable")
            perm = perm[np.argsort(r[perm], kind="stable")]
        else:
            perm = np.argsort(r, kind="stable")
        r, c = r[perm], c[perm]
        t = t[perm] if t is not None else None
        # Keep the last occurrence of each (row, item): a stable sort on the pair keeps the
        # sequence order inside each group, so the group's last element is the latest event.
        if r.size:
            grp = np.argsort(r * self.n_items_ + c, kind="stable")
            key = r[grp] * self.n_items_ + c[grp]
            is_last = np.ones(r.size, dtype=bool)
            is_last[:-1] = key[1:] != key[:-1]
            kept = np.zeros(r.size, dtype=bool)
            kept[grp[is_last]] = True
            r, c = r[kept], c[kept]
            t = t[kept] if t is not None else None
        if self.values == "order":
            starts = np.zeros(n_rows + 1, dtype=np.int64)
            np.cumsum(np.bincount(r, minlength=n_rows), out=starts[1:])
            data = (np.arange(r.shape[0]) - starts[r] + 1).astype(np.float64)
        elif self.values == "timestamp":
            data = t
        else:  # "ones"
            data = np.ones(r.shape[0], dtype=np.float64)
        X = sp.csr_matrix((data, (r, c)), shape=shape)
        return check_interactions(X, name="X", allow_empty=True)

    def fit_transform(self, log: Any, y: None = None, users: Any = None) -> sp.csr_matrix:
        """Fit the encoder on ``log`` and return its interaction matrix.

        Parameters
        ----------
        log : pandas.DataFrame or mapping of str to array-like of shape (n_events,)
            The event log, one row per event.
        y : None
            Ignored; present for API consistency.
        users : array-like of shape (n_rows,), default=None
            Rows to build, as in :meth:`transform`; default: the users of ``log``, sorted.

        Returns
        -------
        X : scipy.sparse.csr_matrix of shape (n_rows, n_items_), dtype float64
            The interactions.
        """
        if users is not None:
            return self.fit(log).transform(log, users=users)
        cols = self._read(log, allow_empty=False)
        user_codes, item_codes = self._fit(cols)
        self._warn_unnamed_time(log, user_codes)
        keep = np.arange(self.n_events_)
        return self._assemble(cols, keep, user_codes, item_codes, self.n_users_)

    def transform_items(self, ids: Any, *, handle_unknown: str = "error") -> np.ndarray:
        """Map original item ids to column indices.

        Parameters
        ----------
        ids : array-like of any shape
            Original item ids.
        handle_unknown : {"error", "ignore"}, default="error"
            What to do with ids not seen in :meth:`fit`: raise a ``ValueError``, or map them to
            ``-1``.

        Returns
        -------
        indices : ndarray of int64, same shape as ``ids``
            Column indices into :attr:`items_` (``-1`` for unknown ids when ignored).
        """
        check_is_fitted(self, "items_")
        return _encode_ids(self._index("items_"), ids, "item", handle_unknown)

    def transform_users(self, ids: Any, *, handle_unknown: str = "error") -> np.ndarray:
        """Map original user ids to row indices of :meth:`transform`'s default output.

        Row ``i`` of ``transform(log)`` (and of ``fit_transform``) is user ``users_[i]``. Use
        this to pick the rows of known users, e.g. ``X[enc.transform_users(["u1", "u7"])]``.
        A plain ``np.searchsorted(enc.users_, ids)`` would silently map an unknown id to a
        neighbour.

        Parameters
        ----------
        ids : array-like of any shape
            Original user ids.
        handle_unknown : {"error", "ignore"}, default="error"
            What to do with ids not seen in :meth:`fit`: raise a ``ValueError``, or map them to
            ``-1``. (To build rows for new users from their events, use
            ``transform(log, users=[...])``.)

        Returns
        -------
        indices : ndarray of int64, same shape as ``ids``
            Row indices into :attr:`users_` (``-1`` for unknown ids when ignored).

        Examples
        --------
        >>> from skrec.preprocessing import InteractionEncoder
        >>> enc = InteractionEncoder().fit({"user": ["b", "a", "c"], "item": [1, 2, 1]})
        >>> enc.transform_users(["c", "a"])
        array([2, 0])
        >>> enc.transform_users(["a", "zz"], handle_unknown="ignore")
        array([ 0, -1])
        """
        check_is_fitted(self, "users_")
        return _encode_ids(self._index("users_"), ids, "user", handle_unknown)

    def inverse_transform_items(self, indices: Any, fill_value: Any = None) -> np.ndarray:
        """Map column indices (such as ``predict``'s output) back to original item ids.

        Parameters
        ----------
        indices : array-like of int, any shape
            Column indices in ``[0, n_items_)``; ``-1`` marks padding (no item).
        fill_value : object, default=None
            Id to put where ``indices == -1``. When it does not fit the dtype of
            :attr:`items_` (``None`` never does), the result is an object array.

        Returns
        -------
        ids : ndarray, same shape as ``indices``
            Original item ids.
        """
        check_is_fitted(self, "items_")
        return _decode_ids(self.items_, indices, fill_value, "indices")

    def inverse_transform_users(self, indices: Any, fill_value: Any = None) -> np.ndarray:
        """Map row indices of :meth:`transform`'s default output back to original user ids.

        Parameters
        ----------
        indices : array-like of int, any shape
            Row indices in ``[0, n_users_)``; ``-1`` marks "no user".
        fill_value : object, default=None
            Id to put where ``indices == -1`` (an object array when it does not fit the dtype
            of :attr:`users_`).

        Returns
        -------
        ids : ndarray, same shape as ``indices``
            Original user ids.
        """
        check_is_fitted(self, "users_")
        return _decode_ids(self.users_, indices, fill_value, "indices")

    # -- serving in original ids --------------------------------------------------------------

    def _check_model(self, model: Any) -> None:
        check_is_fitted(self, ("users_", "items_"))
        if not hasattr(model, "recommend"):
            raise TypeError(
                f"model must be a skrec recommender (with recommend); got {type(model).__name__}."
            )
        check_is_fitted(model)
        n_model = getattr(model, "n_features_in_", None)
        if isinstance(n_model, int) and n_model > self.n_items_:
            raise ValueError(
                f"The model has {n_model} items but this encoder has {self.n_items_}: the "
                f"model's last {n_model - self.n_items_} items have no id here (added with "
                "model.add_items?). Add new items with encoder.add_items(model, item_ids, "
                "item_features), which adds them to both; start again from the model as it was "
                "before model.add_items (saved or refitted)."
            )
        if n_model != self.n_items_:
            raise ValueError(
                f"The model was fitted on {n_model} items but this encoder has {self.n_items_}: "
                "fit the model on this encoder's matrix (model.fit(enc.fit_transform(log)))."
            )

    def add_items(self, model: Any, item_ids: Any, item_features: Any) -> InteractionEncoder:
        """Add new items, in your ids, to this encoder and to its model together.

        The new items get the next column indices, in the order of ``item_ids``: ``items_``
        and ``n_items_`` grow here, and ``model.add_items(item_features)`` grows the model
        (see :meth:`skrec.SeqRecommender.add_items`), so :meth:`recommend`,
        :meth:`similar_items`, :meth:`transform` and a service built on the pair know them at
        once, without retraining. The model scores them from their feature rows until it is
        trained on interactions with them. Save the pair together
        (``skrec.save({"encoder": encoder, "model": model}, path)``).

        Everything is checked before either object changes: when this raises, the encoder
        and the model are both left as they were.

        Parameters
        ----------
        model : SeqRecommender or AERecommender
            Fitted on this encoder's matrix, with ``item_features``. It is modified in place.
        item_ids : array-like of shape (n_new_items,)
            Ids of the new items: distinct, none already known, comparable with
            :attr:`items_` (numbers with numbers, strings with strings; ids that the dtype of
            :attr:`items_` cannot hold exactly, such as uint64 ids beyond an int64
            vocabulary, make :attr:`items_` an object array of Python scalars).
        item_features : {array-like, sparse matrix} of shape (n_new_items, n_item_features)
            Their feature rows, in the order of ``item_ids``, built exactly as the
            ``item_features`` the model was fitted with (the same fitted transformers).

        Returns
        -------
        self : InteractionEncoder
            This encoder, with the new items as its last columns.

        Raises
        ------
        TypeError
            If ``model`` cannot add items (a model without ``add_items``, such as EASE).
        ValueError
            If the model and this encoder do not have the same items, the model was fitted
            without item features, an id is missing, repeated or already known, ids are
            strings for a vocabulary of numbers (or the reverse), or ``item_features`` does
            not have one valid row per id and the model's feature columns.

        Examples
        --------
        >>> import numpy as np
        >>> from skrec import AERecommender
        >>> from skrec.preprocessing import InteractionEncoder
        >>> log = {"user": np.array(["ann", "ann", "bob", "bob"]),
        ...        "item": np.array(["tea", "cake", "tea", "jam"])}
        >>> enc = InteractionEncoder()
        >>> X = enc.fit_transform(log)  # columns: cake, jam, tea
        >>> F = np.eye(3)  # one feature row per column (here: one-hot kinds)
        >>> model = AERecommender(max_iter=2, item_features=F, random_state=0).fit(X)
        >>> _ = enc.add_items(model, ["scone"], np.array([[1.0, 0.0, 0.0]]))
        >>> enc.items_.tolist(), model.n_features_in_
        (['cake', 'jam', 'tea', 'scone'], 4)
        >>> "scone" in enc.recommend(model, log, users=["bob"], k=3)["item"].tolist()
        True
        """
        self._check_model(model)
        if not callable(getattr(model, "add_items", None)):
            raise TypeError(
                f"{type(model).__name__} cannot add items without retraining; a SeqRecommender "
                "or AERecommender fitted with item_features=... can (it scores new items from "
                "their features)."
            )
        if getattr(getattr(model, "module_", None), "features", None) is None:
            raise ValueError(
                f"This {type(model).__name__} was fitted without item_features: a new item "
                "cannot be represented. Fit it with item_features=... to add items later."
            )
        new = _ids(_as_1d_ids(item_ids, "item_ids"), None, "new item")
        items = self._grown_items(new)
        feats = check_item_features(item_features, n_features=model.n_item_features_)
        if feats.shape[0] != new.shape[0]:
            raise ValueError(
                f"item_features has {feats.shape[0]} rows but item_ids has {new.shape[0]} ids: "
                "give one feature row per new item, in the order of item_ids."
            )
        if new.size:
            model.add_items(feats)  # checks the rows again, then grows: nothing here can fail
            self.items_ = items
            self.n_items_ = int(items.shape[0])
        return self

    def _grown_items(self, new: np.ndarray) -> np.ndarray:
        """:attr:`items_` followed by the ``new`` ids (checked: distinct and unknown)."""
        if new.size == 0:  # (an empty list is float64 for numpy: no dtype to check)
            return self.items_
        twice = _IdIndex(new).duplicates()
        if twice.size:
            raise ValueError(
                f"item_ids holds some ids more than once, e.g. {twice[:5].tolist()}."
            )
        names = ("the new item ids", "the item ids of this encoder")
        _, known = self._index("items_").find(new, names)
        if known.any():
            raise ValueError(
                f"{int(known.sum())} of the new item ids are already known to this encoder, e.g. "
                f"{new[known][:5].tolist()}: each new id must be new."
            )
        vocab = self.items_
        if vocab.dtype != object and new.dtype != object:
            values, exact = _cast_exact(new, vocab.dtype, names)
            if exact.all():
                if vocab.dtype.kind in "US":
                    return np.concatenate([vocab, new])  # the wider of the two string widths
                return np.concatenate([vocab, values])
        out = np.empty(vocab.size + new.size, dtype=object)  # Python scalars: exact
        out[:] = [_py(v) for v in vocab.tolist()] + [_py(v) for v in new.tolist()]
        return out

    def _candidate_indices(self, items: Any) -> np.ndarray | None:
        """Column indices of the candidate item ids; unknown ids are dropped with a warning."""
        if items is None:
            return None
        idx = _encode_ids(self._index("items_"), _as_1d_ids(items, "items"), "item", "ignore")
        n_unknown = int((idx < 0).sum())
        if n_unknown:
            warnings.warn(
                f"{n_unknown} candidate item id(s) in items were not seen at fit time and "
                "cannot be recommended; they are ignored.",
                UserWarning,
                stacklevel=3,
            )
        return idx[idx >= 0]

    def recommend(
        self,
        model: Any,
        log: Any,
        users: Any = None,
        k: int = 10,
        *,
        filter_seen: bool = True,
        items: Any = None,
        batch_size: int | None = None,
        as_frame: bool | None = None,
    ):
        """Recommend items to users of an event log, in original ids: one row per (user, rank).

        Each user's row is built from their events in ``log`` (fold-in, as
        ``transform(log, users=users)``), so the same call serves

        - **known users**: pass their history (the training log, plus any newer events);
        - **new users**, not seen at fit time, from whatever events ``log`` holds for them;
        - **unknown users** with no event at all: they get the most popular items.

        Parameters
        ----------
        model : fitted skrec recommender
            Fitted on this encoder's matrix (same items, same column order).
        log : pandas.DataFrame or mapping of str to array-like of shape (n_events,)
            Events of the users to serve (may hold other users too, and may be empty). Events
            of items not seen at fit time are dropped with a ``UserWarning``.
        users : array-like of shape (n_users,), default=None
            User ids to serve, in this order, known or not. Default: the distinct users of
            ``log``, sorted.
        k : int, default=10
            Recommendations per user.
        filter_seen : bool, default=True
            Leave out the items of each user's events in ``log``.
        items : array-like of item ids, default=None
            Recommend only among these (original) item ids; ids not seen at fit time are
            ignored with a ``UserWarning``.
        batch_size : int, default=None
            Users scored at once (see the model's ``recommend``).
        as_frame : bool, default=None
            Return a ``pandas.DataFrame`` (``True``) or a dict of numpy arrays (``False``).
            ``None``: a DataFrame when pandas is importable, else a dict.

        Returns
        -------
        recommendations : pandas.DataFrame or dict of str to ndarray
            Columns ``user_col``, ``"rank"`` (1 = best), ``item_col`` and ``"score"``; users
            in the order of ``users``, ranks increasing. A user gets fewer than ``k`` rows
            when fewer candidates remain.

        See Also
        --------
        similar_items : Item-to-item recommendations in original ids.
        skrec.base.BaseRecommender.recommend : The same on matrices and indices.

        Examples
        --------
        >>> import pandas as pd
        >>> from skrec import EASERecommender
        >>> from skrec.preprocessing import InteractionEncoder
        >>> log = pd.DataFrame({"user": ["ann", "ann", "bob", "bob", "cy"],
        ...                     "item": ["tea", "cake", "tea", "jam", "cake"],
        ...                     "time": [1, 2, 1, 3, 5]})
        >>> enc = InteractionEncoder(time_col="time")
        >>> model = EASERecommender(l2=1.0).fit(enc.fit_transform(log))
        >>> recs = enc.recommend(model, log, users=["ann", "newcomer"], k=2)
        >>> recs.columns.tolist()
        ['user', 'rank', 'item', 'score']
        >>> recs[["user", "rank", "item"]].to_numpy().tolist()
        [['ann', 1, 'jam'], ['newcomer', 1, 'cake'], ['newcomer', 2, 'tea']]
        """
        self._check_model(model)
        if users is None:
            cols = self._read(log, allow_empty=True)
            users = _unique_sorted(cols["user"], "user")[0]
        X = self._transform(log, users, stacklevel=3)
        row_ids = _ids(_as_1d_ids(users, "users"), None, "users")
        if row_ids.size == 0:  # nobody to serve: an empty table with the usual columns
            empty = np.zeros((0, check_k(k, limit=model.n_features_in_)), dtype=np.int64)
            return self._ranked_frame(row_ids, empty, empty.astype(np.float32), self.user_col,
                                      self.item_col, as_frame)
        ids, scores = model.recommend(
            X, k, filter_seen=filter_seen, items=self._candidate_indices(items),
            batch_size=batch_size,
        )
        return self._ranked_frame(row_ids, ids, scores, self.user_col, self.item_col, as_frame)

    def similar_items(
        self,
        model: Any,
        item_ids: Any,
        k: int = 10,
        *,
        filter_self: bool = True,
        items: Any = None,
        batch_size: int | None = None,
        as_frame: bool | None = None,
    ):
        """Items most similar to each of ``item_ids``, in original ids.

        Maps the ids to columns, calls ``model.similar_items`` (see
        :meth:`skrec.base.BaseRecommender.similar_items` for what "similar" means for each
        model) and maps the results back.

        Parameters
        ----------
        model : fitted skrec recommender
            Fitted on this encoder's matrix; one with ``similar_items`` (not
            ``PopularityRecommender``).
        item_ids : array-like of item ids, or one id
            Original ids of the query items; each must have been seen at fit time.
        k : int, default=10
            Similar items per query item.
        filter_self : bool, default=True
            Leave each query item out of its own list.
        items : array-like of item ids, default=None
            Return only these (original) item ids; ids not seen at fit time are ignored with
            a ``UserWarning``.
        batch_size : int, default=None
            Query items scored at once.
        as_frame : bool, default=None
            Return a ``pandas.DataFrame`` (``True``) or a dict of numpy arrays (``False``).
            ``None``: a DataFrame when pandas is importable, else a dict.

        Returns
        -------
        similar : pandas.DataFrame or dict of str to ndarray
            Columns ``item_col`` (the query), ``"rank"`` (1 = most similar),
            ``"similar_" + item_col`` (``"similar_item"`` when ``item_col`` is not a string)
            and ``"score"``.

        Raises
        ------
        ValueError
            If an id in ``item_ids`` was not seen at fit time.
        AttributeError
            If ``model`` has no item-item similarity (``PopularityRecommender``).
        """
        self._check_model(model)
        query_ids = _as_1d_ids(item_ids, "item_ids")
        query = self.transform_items(query_ids)
        ids, scores = model.similar_items(
            query, k, filter_self=filter_self, items=self._candidate_indices(items),
            batch_size=batch_size,
        )
        name = self.item_col
        other = f"similar_{name}" if isinstance(name, str) else "similar_item"
        return self._ranked_frame(self.items_[query], ids, scores, name, other, as_frame)

    def _ranked_frame(self, row_ids, ids, scores, row_col, item_col, as_frame):
        """Long format of top-k results: one row per (row, rank), padding left out."""
        n_rows, k = ids.shape
        keep = ids >= 0
        r, c = np.nonzero(keep)
        out = {
            row_col: row_ids[r],
            "rank": (c + 1).astype(np.int64),
            item_col: self.items_[ids[keep]],
            "score": scores[keep],
        }
        return _as_frame(out, as_frame)

    def inverse_transform(self, X: Any, users: Any = None, as_frame: bool | None = None):
        """Turn an interaction matrix back into an event log.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_rows, n_items_)
            Interactions, as returned by :meth:`transform`.
        users : array-like of shape (n_rows,), default=None
            Ids of the rows of ``X``; default :attr:`users_` (then ``X`` must have
            ``n_users_`` rows).
        as_frame : bool, default=None
            Return a ``pandas.DataFrame`` (``True``) or a dict of numpy arrays (``False``).
            ``None``: a DataFrame when pandas is importable, else a dict.

        Returns
        -------
        log : pandas.DataFrame or dict of str to ndarray
            One row per stored entry, with columns ``user_col``, ``item_col`` and a value
            column named ``time_col`` (for ``values="order"``/``"timestamp"`` with a
            ``time_col``), ``weight_col`` (for ``values="weight"``), or ``"value"``. Rows are
            sorted by user row, then by value (for order/timestamp) or item, so that
            :meth:`transform` of the result gives ``X`` back.
        """
        check_is_fitted(self, ("users_", "items_"))
        X = check_interactions(X, n_items=self.n_items_, name="X", allow_empty=True)
        if users is None:
            if X.shape[0] != self.n_users_:
                raise ValueError(
                    f"X has {X.shape[0]} rows but the encoder was fitted with {self.n_users_} "
                    "users; pass users=[...] to name the rows."
                )
            row_ids = self.users_
        else:
            row_ids = _as_1d_ids(users, "users")
            if row_ids.shape[0] != X.shape[0]:
                raise ValueError(f"users has {row_ids.shape[0]} ids but X has {X.shape[0]} rows.")
        r = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        c = X.indices.astype(np.int64)
        v = X.data
        if self.values in ("order", "timestamp"):
            perm = np.lexsort((c, v, r))
            r, c, v = r[perm], c[perm], v[perm]
        if self.values in ("order", "timestamp") and self.time_col is not None:
            value_name = self.time_col
        elif self.values == "weight":
            value_name = self.weight_col
        else:
            value_name = "value"
        out = {self.user_col: row_ids[r], self.item_col: self.items_[c], value_name: v}
        return _as_frame(out, as_frame)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns: the item ids as strings.

        Parameters
        ----------
        input_features : None
            Ignored; present for API consistency.

        Returns
        -------
        names : ndarray of str objects of shape (n_items_,)
            ``str(item_id)`` for each column.
        """
        check_is_fitted(self, "items_")
        return np.asarray([str(i) for i in self.items_.tolist()], dtype=object)
