"""Reading fields from a DataFrame column, and the field layout of a sparse one-hot matrix
(a fitted ``OneHotEncoder`` or ``ColumnTransformer``, widths, or libFM-style ranges)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._values import _pandas

# ---------------------------------------------------------------------------------------------
# Reading columns
# ---------------------------------------------------------------------------------------------


def _frame_column(X, name) -> tuple[np.ndarray, np.ndarray, str]:
    """(values, missing mask, dtype text) of one DataFrame column, as numpy."""
    col = X[name]
    dtype = col.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biu":  # no missing value possible
        arr = col.to_numpy()
        return arr, np.zeros(arr.shape, dtype=bool), str(dtype)
    missing = np.asarray(col.isna(), dtype=bool)
    numpy_dtype = getattr(dtype, "numpy_dtype", None)  # nullable Int64, Float64, boolean
    if numpy_dtype is not None and np.dtype(numpy_dtype).kind in "biuf":
        kind = np.dtype(numpy_dtype).kind
        arr = col.to_numpy(dtype=np.float64 if kind == "f" else numpy_dtype,
                           na_value=np.nan if kind == "f" else 0)
    else:
        arr = np.asarray(col.to_numpy())
        if arr.dtype.kind in "mM":
            raise ValueError(f"column {name!r} holds dates/times (dtype {dtype}); turn them "
                             "into fields first (hour, weekday, ...).")
        if arr.dtype.kind not in "biufO":  # e.g. fixed-width strings
            arr = arr.astype(object)
    return np.asarray(arr), missing, str(dtype)


def _column_kind(arr: np.ndarray, missing: np.ndarray, dtype_text: str) -> str:
    """Default kind of a column: float -> numeric, list-like objects -> multi, else categorical."""
    if dtype_text == "category":
        return "categorical"
    if arr.dtype.kind == "f":
        return "numeric"
    if arr.dtype.kind == "O":
        present = arr[~missing]
        if present.size and isinstance(present[0], list | tuple | np.ndarray | set | frozenset):
            return "multi"
    return "categorical"


def _explode(cells: np.ndarray, missing: np.ndarray, name) -> tuple[np.ndarray, np.ndarray]:
    """(flat element values, lengths) of a column of lists; missing cells are empty bags and
    missing elements inside a list are dropped."""
    cells = np.where(missing, None, cells)
    pd = _pandas()
    if pd is not None:
        exploded = pd.Series(cells, dtype=object).explode()  # keeps each element's row
        present = exploded.notna().to_numpy()
        rows = np.asarray(exploded.index.to_numpy()[present], dtype=np.int64)
        flat = exploded.to_numpy()[present]
        lengths = np.bincount(rows, minlength=cells.size).astype(np.int64)
    else:  # pragma: no cover - without pandas
        lists = [[v for v in c if v is not None] if c is not None else [] for c in cells]
        lengths = np.asarray([len(c) for c in lists], dtype=np.int64)
        flat = np.array([v for c in lists for v in c], dtype=object)
    if flat.size and flat.dtype == object:
        try:
            typed = np.asarray(flat.tolist())
        except (TypeError, ValueError):  # pragma: no cover - ragged nested objects
            typed = flat
        if typed.dtype.kind in "biufU" and typed.shape == flat.shape:
            flat = typed
    return flat, lengths


# ---------------------------------------------------------------------------------------------
# Field layouts of sparse one-hot matrices
# ---------------------------------------------------------------------------------------------


def _onehot_widths(enc) -> list[int]:
    """Output columns per input feature of a fitted OneHotEncoder."""
    widths = []
    drop_idx = getattr(enc, "drop_idx_", None)
    infrequent = getattr(enc, "infrequent_categories_", None)
    for i, cats in enumerate(enc.categories_):
        n = len(cats)
        if infrequent is not None and infrequent[i] is not None:
            n = n - len(infrequent[i]) + 1
        if drop_idx is not None and drop_idx[i] is not None:
            n -= 1
        widths.append(int(n))
    return widths


def _layout_ranges(layout, n_columns: int) -> tuple[list[tuple[int, int]], list[str]]:
    """Column ranges ``[start, stop)`` and names of the fields of a sparse matrix."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    def last_step(est):
        return est.steps[-1][1] if isinstance(est, Pipeline) else est

    if isinstance(last_step(layout), OneHotEncoder):
        enc = last_step(layout)
        check_is_fitted(enc)
        names = [str(n) for n in getattr(enc, "feature_names_in_",
                                          [f"x{i}" for i in range(len(enc.categories_))])]
        stops = np.cumsum(_onehot_widths(enc))
        ranges = [(int(a), int(b)) for a, b in zip(np.r_[0, stops[:-1]], stops)]
        return ranges, names
    if isinstance(layout, ColumnTransformer):
        check_is_fitted(layout)
        ranges, names = [], []
        for name, trans, cols in layout.transformers_:
            sl = layout.output_indices_[name]
            if sl.stop == sl.start:
                continue
            inner = last_step(trans)
            if isinstance(inner, OneHotEncoder):
                stops = sl.start + np.cumsum(_onehot_widths(inner))
                starts = np.r_[sl.start, stops[:-1]]
                feats = getattr(inner, "feature_names_in_", None)
                if feats is None:
                    feats = cols if isinstance(cols, list | tuple) else range(len(stops))
                for a, b, f in zip(starts, stops, feats):
                    ranges.append((int(a), int(b)))
                    names.append(f"{name}__{f}")
            else:  # any other transformer: each output column is a field of its own
                for j in range(sl.start, sl.stop):
                    ranges.append((j, j + 1))
                    names.append(f"{name}__{j - sl.start}")
        return ranges, names
    if isinstance(layout, Sequence) and not isinstance(layout, str):
        items = list(layout)
        if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items):
            widths = [int(v) for v in items]
            if any(w < 1 for w in widths):
                raise ValueError(f"field_layout widths must be >= 1; got {widths}.")
            stops = np.cumsum(widths)
            ranges = [(int(a), int(b)) for a, b in zip(np.r_[0, stops[:-1]], stops)]
        else:
            try:
                ranges = [(int(a), int(b)) for a, b in items]
            except (TypeError, ValueError):
                raise ValueError(
                    "field_layout must be a fitted OneHotEncoder or ColumnTransformer, a list "
                    "of field widths, or a list of (start, stop) column ranges.") from None
        return ranges, [f"field{i}" for i in range(len(ranges))]
    raise ValueError(
        "field_layout must be a fitted OneHotEncoder or ColumnTransformer, a list of field "
        f"widths, or a list of (start, stop) column ranges; got {type(layout).__name__}.")


def _check_ranges(ranges: list[tuple[int, int]], n_columns: int) -> np.ndarray:
    """Field of every column; a ValueError for overlaps, gaps or out-of-range columns."""
    field_of = np.full(n_columns, -1, dtype=np.int64)
    for f, (a, b) in enumerate(ranges):
        if not 0 <= a < b <= n_columns:
            raise ValueError(f"field_layout range {f} = [{a}, {b}) is not inside the "
                             f"{n_columns} columns of X.")
        if (field_of[a:b] >= 0).any():
            raise ValueError(f"field_layout range {f} = [{a}, {b}) overlaps another field.")
        field_of[a:b] = f
    if (field_of < 0).any():
        cols = np.flatnonzero(field_of < 0)
        raise ValueError(f"{cols.size} column(s) of X belong to no field of field_layout, "
                         f"e.g. {cols[:5].tolist()}.")
    return field_of
