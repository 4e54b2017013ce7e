"""Reading an event log's columns (a DataFrame or a mapping, without importing pandas),
recognising time columns, and returning tables."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._ids import _as_id_array, _is_int, _py

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
