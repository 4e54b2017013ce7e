"""The input layer of click prediction: fields -> integer ids, numeric values and bags.

:class:`FieldEncoder` is fitted once, like a ``OneHotEncoder``, and turns each input form a
practitioner has into the arrays the torch model reads (:class:`FieldBatch`):

- a pandas DataFrame: each column is a field; object, string, category, bool and integer
  columns are embedded (categorical), float columns are numeric, list-valued columns (tags)
  are multi-valued;
- a 2-D array of category codes ``(n_samples, n_fields)`` (an ``OrdinalEncoder``'s output),
  optionally with some columns marked numeric (columns of non-integral values are numeric);
- a ``scipy.sparse`` one-hot / multi-hot matrix with its field layout (a fitted
  ``OneHotEncoder`` or ``ColumnTransformer``, field widths, or column ranges as in libFM files).

Every categorical or multi-valued field owns a block of rows of one embedding table: row 0 of
the block is the field's **unknown** id (categories not seen at fit time, and those seen fewer
than ``min_frequency`` times), row 1 its **missing** id (NaN / None, or no entry of the field
in a sparse row), then one row per kept category, or per hash bucket for hashed fields.

Everything is vectorised (hash-table or sorted look-ups, one pass per field): there is no
Python loop over rows. pandas is optional (used when installed, for its hash tables).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._layouts import _check_ranges, _column_kind, _explode, _frame_column, _layout_ranges
from ._requests import request_reader, sparse_request
from ._values import (
    _NUMERIC_NAN,
    _SCALINGS,
    MISSING,
    N_RESERVED,
    UNKNOWN,
    FieldBatch,
    _count,
    _is_frame,
    _Lookup,
    _missing_mask,
    _normalise_values,
    _value_class,
    hash_values,
)

__all__ = ["FieldBatch", "FieldEncoder"]


# ---------------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------------


def _check_int(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
    return int(value)


class FieldEncoder(TransformerMixin, BaseEstimator):
    """Encode impressions (rows) into the integer ids, numeric values and bags of a click model.

    Each input column (or column range of a sparse matrix) is a **field**. Categorical fields
    become one integer id per row, multi-valued fields (lists such as tags, or several entries
    of a multi-hot range) a bag of ids with weights, numeric fields one scaled value. All ids
    index one embedding table: field ``f`` owns the rows ``offsets_[f] ..
    offsets_[f] + sizes_[f] - 1``, of which the first is its **unknown** id (categories not
    seen at fit time and those seen fewer than ``min_frequency`` times: they share one learned
    vector, so a model trained with rare categories has a trained vector for new ones), the
    second its **missing** id (NaN or None; an empty field of a sparse row), then one id per
    kept category (or per hash bucket).

    Parameters
    ----------
    categorical, numeric, multi_valued : list of column names (or indices), default=None
        Force the kind of these columns. The others get one by their dtype: float columns are
        numeric; object, string, category, bool and integer columns categorical; object
        columns holding lists (or tuples, sets, arrays) multi-valued. Of an array, every
        column is categorical (category codes: an ``OrdinalEncoder``'s float64 output reads
        as codes) unless listed in ``numeric`` or holding non-integral values, which make it
        numeric. Ignored for sparse input, whose fields are described by ``field_layout``.
    field_layout : OneHotEncoder, ColumnTransformer, list of int or list of (int, int), \
default=None
        Field layout of a sparse one-hot / multi-hot ``X`` (required for sparse input): a
        fitted ``OneHotEncoder`` or ``ColumnTransformer`` (optionally the last step of a
        ``Pipeline``) that produced ``X``, the width of each field in column order, or the
        ``[start, stop)`` column range of each field (as libFM files group features). Each
        column of a range is a category of its field. A field whose training rows each hold at
        most one entry of value 1 is categorical (a row with no entry reads as missing);
        otherwise it is multi-valued, with the stored values as the entries' weights (a range of
        one column with real values is thus a numeric feature).
    min_frequency : int, default=1
        Categories seen fewer times than this at fit time share the field's unknown id.
    hash_buckets : int, default=None
        Number of buckets of hashed fields. A hashed field maps each value to
        ``hash(value) % hash_buckets`` (deterministic across runs and machines; see Notes), so
        its table rows are bounded whatever the number of distinct values, and no vocabulary is
        stored. ``None``: no field is hashed.
    hashed : "auto", "all" or list of column names, default="auto"
        Which fields are hashed when ``hash_buckets`` is set: with ``"auto"``, the categorical
        and multi-valued fields with more distinct training values than ``hash_buckets``; with
        ``"all"``, every categorical and multi-valued field (what a stream needs: categories
        first seen in a later chunk still get their own bucket, instead of the unknown id); or
        the listed columns. Fields of sparse input are never hashed.
    numeric_scaling : {"standard", "log", "none"}, default="standard"
        Numeric values are standardised with the training mean and standard deviation
        (``"standard"``), after ``sign(x) * log1p(|x|)`` for heavy-tailed counts (``"log"``),
        or kept as they are (``"none"``).
    numeric_nan : {"mean", "indicator", "error"}, default="mean"
        NaN in a numeric field: replaced by the training mean (0 after scaling) with
        ``"mean"``; the same plus, for every numeric column holding NaN at fit time, a
        categorical field ``"<column>_missing"`` (0/1: is the value missing) with
        ``"indicator"``, so that the model can tell a missing value from an average one
        (use it when missingness carries signal, as in ads logs); or a ValueError with
        ``"error"``. Infinite values are always an error.

    Attributes
    ----------
    input_kind_ : {"frame", "array", "sparse"}
        The input form seen at fit time (a transform input must have the same form).
    n_features_in_ : int
        Number of input columns.
    feature_names_in_ : ndarray of str
        Column names of a DataFrame input (absent otherwise).
    fields_ : list of dict
        One entry per field, in the model's order (categorical fields, then multi-valued, then
        numeric): ``name``, ``kind`` (``"categorical"``, ``"multi"`` or ``"numeric"``),
        ``column`` (the input column, or the ``[start, stop)`` range of sparse input),
        ``offset`` and ``size`` (its table rows; 0 for numeric fields), ``hashed`` and
        ``dtype`` (the column's dtype at fit time, for frames).
    categories_ : list of ndarray or None
        Kept categories of each field, in id order (id ``offset + 2 + i`` is
        ``categories_[f][i]``); ``None`` for numeric, hashed and sparse fields.
    column_ids_ : ndarray of int64 or None
        For sparse input, the global id of every column (the field's unknown id for rare
        columns).
    n_ids_ : int
        Rows of the embedding table (all fields).
    numeric_mean_, numeric_scale_ : ndarray of shape (n_numeric,)
        Scaling of the numeric fields (after the log for ``numeric_scaling="log"``).
    category_counts_ : list of ndarray or None
        Training count of each kept category (same layout as ``categories_``).

    See Also
    --------
    FieldBatch : what :meth:`transform` returns.

    Notes
    -----
    **Hashing trade-off.** Two values in the same bucket share one vector, so the model cannot
    tell them apart: with ``V`` distinct values spread over ``B`` buckets, a value shares its
    bucket with about ``V / B`` others, and the most frequent values (which dominate the loss)
    pull the shared vector their way. More buckets mean fewer collisions and more memory
    (``B * embed_dim`` floats per hashed field). The hash is SplitMix64's mixer for integers
    and FNV-1a over the characters of ``str(value)`` for the others.

    **Column matching.** DataFrame columns are matched by name: a frame whose columns come in
    another order is read correctly. A missing column, an extra column, or a column whose
    values changed class (numbers vs text, or a numeric field that is no longer numeric) is a
    ValueError naming it; an integer categorical column read as float (because NaN appeared)
    is accepted when its values are integral.

    Nothing passed in is modified. An input with no row transforms into an empty batch.

    Examples
    --------
    >>> import pandas as pd
    >>> from skrec.ctr import FieldEncoder
    >>> X = pd.DataFrame({"app": ["a", "b", "a"], "hour": [3, 14, 3],
    ...                   "price": [0.0, 1.5, 2.0], "tags": [["x", "y"], ["y"], []]})
    >>> enc = FieldEncoder().fit(X)
    >>> [(f["name"], f["kind"]) for f in enc.fields_]
    [('app', 'categorical'), ('hour', 'categorical'), ('tags', 'multi'), ('price', 'numeric')]
    >>> enc.transform(X).ids
    array([[2, 6],
           [3, 7],
           [2, 6]])
    """

    def __init__(self, *, categorical=None, numeric=None, multi_valued=None, field_layout=None,
                 min_frequency: int = 1, hash_buckets: int | None = None, hashed="auto",
                 numeric_scaling: str = "standard", numeric_nan: str = "mean"):
        self.categorical = categorical
        self.numeric = numeric
        self.multi_valued = multi_valued
        self.field_layout = field_layout
        self.min_frequency = min_frequency
        self.hash_buckets = hash_buckets
        self.hashed = hashed
        self.numeric_scaling = numeric_scaling
        self.numeric_nan = numeric_nan

    # ------------------------------------------------------------------ parameters and input
    def _check_params(self) -> None:
        _check_int(self.min_frequency, "min_frequency", 1)
        if self.hash_buckets is not None:
            _check_int(self.hash_buckets, "hash_buckets", 1)
        if self.numeric_scaling not in _SCALINGS:
            raise ValueError(f"numeric_scaling must be one of {_SCALINGS}; "
                             f"got {self.numeric_scaling!r}.")
        if self.numeric_nan not in _NUMERIC_NAN:
            raise ValueError(f"numeric_nan must be one of {_NUMERIC_NAN}; "
                             f"got {self.numeric_nan!r}.")
        if not (self.hashed in ("auto", "all") or isinstance(self.hashed, list | tuple)):
            raise ValueError(f'hashed must be "auto", "all" or a list of columns; '
                             f"got {self.hashed!r}.")

    @staticmethod
    def _input_kind(X) -> str:
        if X is None:
            raise ValueError("X is None; expected a DataFrame, an array of category codes or "
                             "a sparse one-hot matrix.")
        if sp.issparse(X):
            return "sparse"
        if _is_frame(X):
            return "frame"
        return "array"

    def _columns(self, X, kind: str) -> list:
        if kind == "frame":
            return list(X.columns)
        return list(range(X.shape[1]))

    @staticmethod
    def _as_array(X) -> np.ndarray:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_fields); got shape {arr.shape}.")
        if arr.dtype.kind not in "biufO" and arr.dtype.kind != "U":
            raise ValueError(f"X has dtype {arr.dtype}; expected category codes (integers), "
                             "strings or objects.")
        return arr

    def _read(self, X, kind: str, name) -> tuple[np.ndarray, np.ndarray, str]:
        if kind == "frame":
            return _frame_column(X, name)
        col = X[:, name]
        return col, _missing_mask(col), str(col.dtype)

    def _kinds(self, X, kind: str, columns: list) -> dict:
        forced: dict = {}
        for key, what in (("categorical", "categorical"), ("numeric", "numeric"),
                          ("multi_valued", "multi")):
            names = getattr(self, key)
            if names is None:
                continue
            if isinstance(names, str) or not isinstance(names, Sequence):
                raise ValueError(f"{key} must be a list of columns; got {names!r}.")
            for n in names:
                if n not in columns:
                    raise ValueError(f"{key} names column {n!r}, which X does not have.")
                if n in forced and forced[n] != what:
                    raise ValueError(f"column {n!r} is listed as both {forced[n]} and {what}.")
                forced[n] = what
        return forced

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None) -> FieldEncoder:
        """Learn the fields, their vocabularies and the numeric scaling from ``X``.

        Parameters
        ----------
        X : DataFrame, array-like of shape (n_samples, n_fields) or sparse matrix
            Training impressions (see the class description for the forms).
        y : None
            Ignored.

        Returns
        -------
        self : FieldEncoder
            Fitted.
        """
        self._check_params()
        kind = self._input_kind(X)
        if kind == "array":
            X = self._as_array(X)
        if X.shape[0] == 0:
            raise ValueError("X has no row; FieldEncoder needs at least one to fit.")
        self._cache = {}
        self.input_kind_ = kind
        self.n_features_in_ = int(X.shape[1])
        if kind == "sparse":
            self._fit_sparse(X)
            return self
        columns = self._columns(X, kind)
        if kind == "frame":
            if len(set(columns)) != len(columns):
                raise ValueError("X has duplicated column names.")
            if all(isinstance(c, str) for c in columns):
                self.feature_names_in_ = np.asarray(columns, dtype=object)
        forced = self._kinds(X, kind, columns)
        hashed_names = self.hashed if isinstance(self.hashed, list | tuple) else []
        for n in hashed_names:
            if n not in columns:
                raise ValueError(f"hashed names column {n!r}, which X does not have.")
        specs = {"categorical": [], "multi": [], "numeric": []}
        for name in columns:
            arr, missing, dtype_text = self._read(X, kind, name)
            what = forced.get(name) or _column_kind(arr, missing, dtype_text)
            if kind == "array" and what == "numeric" and name not in forced:
                # an array's columns are codes (an OrdinalEncoder's output is float64) unless
                # listed numeric or holding non-integral values (measurements)
                present = arr[~missing]
                if np.array_equal(present, np.round(present)):
                    what = "categorical"
            specs[what].append((name, arr, missing, dtype_text))
            if what == "numeric" and self.numeric_nan == "indicator" and missing.any():
                specs["categorical"].append((name, missing.astype(np.int64), None, "bool"))
        self.fields_, self.categories_, self.category_counts_ = [], [], []
        offset = 0
        for what in ("categorical", "multi"):
            for name, arr, missing, dtype_text in specs[what]:
                indicator = missing is None  # a numeric column's missing indicator
                if indicator:
                    missing = np.zeros(arr.shape, dtype=bool)
                if what == "multi":
                    values, _ = _explode(arr, missing, name)
                else:
                    values = arr[~missing]
                    if arr.dtype.kind == "f" and values.size and not np.array_equal(
                            values, np.round(values)):
                        raise ValueError(
                            f"column {name!r} holds non-integer values and cannot be read as "
                            "category codes; list it in numeric=[...] to use it as a number.")
                values = _normalise_values(values)
                uniq, counts = _categories(values, name)
                hash_it = self.hash_buckets is not None and (
                    self.hashed == "all" or name in hashed_names
                    or (self.hashed == "auto" and uniq.size > self.hash_buckets))
                if hash_it:
                    cats = cnt = None
                    size = N_RESERVED + int(self.hash_buckets)
                else:
                    keep = counts >= self.min_frequency
                    cats, cnt = uniq[keep], counts[keep]
                    size = N_RESERVED + int(cats.size)
                self.fields_.append({
                    "name": f"{name}_missing" if indicator else str(name), "kind": what,
                    "column": name, "offset": offset, "size": size, "hashed": bool(hash_it),
                    "dtype": dtype_text, "missing_of": indicator,
                    "values": _value_class(values) if values.size else "number",
                })
                self.categories_.append(cats)
                self.category_counts_.append(cnt)
                offset += size
        means, scales = [], []
        for name, arr, _missing, dtype_text in specs["numeric"]:
            v = self._numeric_values(arr, name)
            ok = ~np.isnan(v)
            mean = float(v[ok].mean()) if ok.any() else 0.0
            std = float(v[ok].std()) if ok.any() else 0.0
            if self.numeric_scaling == "none":
                mean, std = 0.0, 1.0
            means.append(mean)
            scales.append(std if std > 0 else 1.0)
            self.fields_.append({"name": str(name), "kind": "numeric", "column": name,
                                 "offset": 0, "size": 0, "hashed": False,
                                 "dtype": dtype_text, "values": "number"})
            self.categories_.append(None)
            self.category_counts_.append(None)
        self.numeric_mean_ = np.asarray(means, dtype=np.float64)
        self.numeric_scale_ = np.asarray(scales, dtype=np.float64)
        self.n_ids_ = int(offset)
        self.column_ids_ = None
        if not self.fields_:
            raise ValueError("X has no column to encode.")
        return self

    def _numeric_values(self, arr: np.ndarray, name) -> np.ndarray:
        if arr.dtype.kind not in "biuf":
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"numeric column {name!r} holds non-numeric values "
                                 f"(dtype {arr.dtype}).") from None
        v = arr.astype(np.float64)
        if np.isinf(v).any():
            raise ValueError(f"numeric column {name!r} holds infinite values.")
        if self.numeric_nan == "error" and np.isnan(v).any():
            raise ValueError(f"numeric column {name!r} holds {int(np.isnan(v).sum())} NaN "
                             'value(s); fill them, or use numeric_nan="mean".')
        if self.numeric_scaling == "log":
            v = np.sign(v) * np.log1p(np.abs(v))
        return v

    def _fit_sparse(self, X) -> None:
        if self.field_layout is None:
            raise ValueError("sparse X needs field_layout: the fitted OneHotEncoder or "
                             "ColumnTransformer that made it, field widths, or column ranges.")
        ranges, names = _layout_ranges(self.field_layout, X.shape[1])
        field_of = _check_ranges(ranges, X.shape[1])
        X = sp.csr_matrix(X)  # a copy when the input is not CSR; never modified
        data = np.asarray(X.data)
        if not np.isfinite(data).all():
            raise ValueError("sparse X holds NaN or infinite values.")
        rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        cols = X.indices
        nz = data != 0
        rows, cols, data = rows[nz], cols[nz], data[nz]
        fld = field_of[cols]
        n_f = len(ranges)
        per_row = np.bincount(rows * n_f + fld, minlength=X.shape[0] * n_f).reshape(-1, n_f)
        multi = (per_row > 1).any(axis=0)
        not_one = np.bincount(fld[data != 1], minlength=len(ranges)) > 0
        multi |= not_one
        col_counts = np.bincount(cols, minlength=X.shape[1])
        order = [f for f in range(len(ranges)) if not multi[f]] + [
            f for f in range(len(ranges)) if multi[f]]
        self.fields_, self.categories_, self.category_counts_ = [], [], []
        column_ids = np.zeros(X.shape[1], dtype=np.int64)
        offset = 0
        for f in order:
            a, b = ranges[f]
            keep = col_counts[a:b] >= self.min_frequency
            ids = np.where(keep, offset + N_RESERVED + np.cumsum(keep) - 1, offset + UNKNOWN)
            column_ids[a:b] = ids
            size = N_RESERVED + int(keep.sum())
            self.fields_.append({"name": names[f], "kind": "multi" if multi[f] else
                                 "categorical", "column": [a, b], "offset": offset,
                                 "size": size, "hashed": False, "dtype": str(X.dtype),
                                 "values": "number"})
            self.categories_.append(None)
            self.category_counts_.append(None)
            offset += size
        self.column_ids_ = column_ids
        self.numeric_mean_ = np.zeros(0)
        self.numeric_scale_ = np.zeros(0)
        self.n_ids_ = int(offset)

    def _check_fitted_state(self) -> None:
        """The fitted layout fits together (checked by :func:`skrec.load`)."""
        from ._state import check_encoder_state

        check_encoder_state(self)

    # ------------------------------------------------------------------ layout accessors
    def _fields_of(self, kind: str) -> list[dict]:
        return [f for f in self.fields_ if f["kind"] == kind]

    @property
    def n_categorical_(self) -> int:
        """Number of single-valued categorical fields."""
        return len(self._fields_of("categorical"))

    @property
    def n_multi_(self) -> int:
        """Number of multi-valued fields."""
        return len(self._fields_of("multi"))

    @property
    def n_numeric_(self) -> int:
        """Number of numeric fields."""
        return len(self._fields_of("numeric"))

    @property
    def offsets_(self) -> np.ndarray:
        """First table row of every embedded field (categorical, then multi-valued)."""
        return np.asarray([f["offset"] for f in self.fields_ if f["kind"] != "numeric"],
                          dtype=np.int64)

    @property
    def sizes_(self) -> np.ndarray:
        """Table rows of every embedded field (categorical, then multi-valued)."""
        return np.asarray([f["size"] for f in self.fields_ if f["kind"] != "numeric"],
                          dtype=np.int64)

    def largest_fields(self, k: int) -> list[int]:
        """Positions (among the categorical fields, in order) of the ``k`` fields with the most
        table rows: the most specific ids (user, item, ad, site), which Wide & Deep's crosses
        memorise best.

        Parameters
        ----------
        k : int
            How many (fewer when there are fewer categorical fields).

        Returns
        -------
        fields : list of int
            Sorted positions in ``ids`` of :meth:`transform`'s output.
        """
        check_is_fitted(self, "fields_")
        sizes = np.asarray([f["size"] for f in self._fields_of("categorical")])
        order = np.argsort(-sizes, kind="stable")[: max(int(k), 0)]
        return sorted(int(i) for i in order)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the fields, in the model's order.

        Parameters
        ----------
        input_features : None
            Ignored.

        Returns
        -------
        names : ndarray of str
        """
        check_is_fitted(self, "fields_")
        return np.asarray([f["name"] for f in self.fields_], dtype=object)

    # ------------------------------------------------------------------ transform
    def _lookup(self, i: int) -> _Lookup:
        cache = self.__dict__.setdefault("_cache", {})
        if i not in cache:
            cache[i] = _Lookup(self.categories_[i])
        return cache[i]

    def _codes(self, i: int, field: dict, values: np.ndarray) -> np.ndarray:
        """Global ids of ``values`` (no missing among them) in field ``i``."""
        values = _normalise_values(values)
        if field["hashed"]:
            return field["offset"] + N_RESERVED + hash_values(values, self.hash_buckets)
        if values.size and field["values"] != _value_class(values) and (
                self.categories_[i].size):
            raise ValueError(
                f"column {field['column']!r} holds {_value_class(values)} values, but held "
                f"{field['values']} values at fit time (dtype {field['dtype']}).")
        try:
            pos = self._lookup(i)(values)
        except TypeError:
            _refuse(values, field["column"])
            raise
        return np.where(pos >= 0, field["offset"] + N_RESERVED + pos,
                        field["offset"] + UNKNOWN).astype(np.int64)

    def transform(self, X) -> FieldBatch:
        """Encode ``X`` into ids, numeric values and bags.

        Parameters
        ----------
        X : DataFrame, array-like or sparse matrix
            Of the form seen at fit time (same columns, matched by name for frames; same
            number of columns otherwise).

        Returns
        -------
        batch : FieldBatch
            Unknown and rare categories read as their field's unknown id, missing values as
            its missing id; NaN in numeric fields as the training mean (see ``numeric_nan``).
        """
        check_is_fitted(self, "fields_")
        kind = self._input_kind(X)
        if kind != self.input_kind_:
            raise ValueError(f"X is a {kind} input but the encoder was fitted on a "
                             f"{self.input_kind_} input.")
        if kind == "sparse":
            return self._transform_sparse(X)
        if kind == "array":
            X = self._as_array(X)
            if X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} columns; the encoder was fitted with "
                                 f"{self.n_features_in_}.")
        else:
            self._check_frame_columns(X)
        return self._encode(lambda name: self._read(X, kind, name), X.shape[0])

    def _encode(self, read, n: int) -> FieldBatch:
        """The batch of ``n`` rows whose columns ``read(name)`` gives as ``(values, missing
        mask, dtype text)``; a column of one value is that value for every row."""
        cat_fields = [(i, f) for i, f in enumerate(self.fields_) if f["kind"] == "categorical"]
        ids = np.empty((n, len(cat_fields)), dtype=np.int64)
        for j, (i, f) in enumerate(cat_fields):
            arr, missing, dtype_text = read(f["column"])
            if f.get("missing_of"):  # the 0/1 indicator of a numeric column's NaN
                arr, missing = missing.astype(np.int64), np.zeros(missing.shape, dtype=bool)
            self._check_dtype(f, arr, dtype_text)
            col = np.full(arr.shape[0], f["offset"] + MISSING, dtype=np.int64)
            present = ~missing
            values = arr[present] if missing.any() else arr
            if values.dtype.kind == "f" and values.size and not np.array_equal(
                    values, np.round(values)):
                raise ValueError(f"column {f['column']!r} holds non-integer values; it was "
                                 "read as category codes at fit time.")
            col[present] = self._codes(i, f, values)
            ids[:, j] = col
        bags = self._frame_bags(read, n)
        numeric = self._frame_numeric(read, n)
        return FieldBatch(ids, numeric, bags, self.n_multi_)

    def transform_request(self, request, candidates) -> FieldBatch:
        """Encode the candidate rows of one request: the request's fields are shared.

        Scoring ``N`` candidate ads for one impression opportunity reads the same user and
        context fields with each ad's own fields. The request's values are encoded once (not
        ``N`` times) and repeated, so encoding costs about the candidates' fields only.

        Parameters
        ----------
        request : dict or one-row DataFrame or sparse matrix
            The request's fields (user, context). For a model fitted on a DataFrame: a dict
            ``{column: value}`` (a list for a multi-valued column) or a one-row DataFrame; on
            an array: a dict ``{column index: value}``; on a sparse matrix: one sparse row of
            the full width, holding the request's fields only.
        candidates : DataFrame, array-like or sparse matrix
            One row per candidate with the other fields: a DataFrame of the other columns; an
            array of the other columns in increasing index order; a sparse matrix of the full
            width, holding the candidates' fields only (the request's row is added to each).

        Returns
        -------
        batch : FieldBatch
            ``N`` rows, as :meth:`transform` gives for the full rows.

        Raises
        ------
        ValueError
            When a column is in both, or in neither, or the forms differ from fit.
        """
        check_is_fitted(self, "fields_")
        if self.input_kind_ == "sparse":
            return self.transform(sparse_request(request, candidates, self.n_features_in_))
        read, n = request_reader(self, request, candidates)
        return self._encode(read, n)

    def _check_frame_columns(self, X) -> None:
        columns = list(X.columns)
        fitted = [f["column"] for f in self.fields_]
        missing = [c for c in fitted if c not in columns]
        if missing:
            raise ValueError(f"X lacks the column(s) {missing} seen at fit time.")
        extra = [c for c in columns if c not in fitted]
        if extra:
            raise ValueError(f"X has column(s) {extra} not seen at fit time; drop them or "
                             "refit the encoder.")

    @staticmethod
    def _check_dtype(field: dict, arr: np.ndarray, dtype_text: str) -> None:
        if field["kind"] == "numeric":
            if arr.dtype.kind not in "biuf":
                raise ValueError(f"numeric column {field['column']!r} has dtype {dtype_text} "
                                 f"(it was {field['dtype']} at fit time).")

    def _frame_bags(self, read, n: int) -> sp.csr_matrix | None:
        multi = [(i, f) for i, f in enumerate(self.fields_) if f["kind"] == "multi"]
        if not multi:
            return None
        m = len(multi)
        lengths = np.zeros((n, m), dtype=np.int64)
        per_field = []
        for j, (i, f) in enumerate(multi):
            arr, missing, _ = read(f["column"])
            if arr.dtype.kind != "O" and arr.size:
                raise ValueError(f"multi-valued column {f['column']!r} must hold lists; got "
                                 f"dtype {arr.dtype}.")
            flat, lens = _explode(arr, missing, f["column"])
            codes = self._codes(i, f, flat)
            if lens.size == 1 and n != 1:  # one request's bag, repeated for every row
                codes, lens = np.tile(codes, n), np.repeat(lens, n)
            lengths[:, j] = lens
            per_field.append(codes)
        return _pack_bags(lengths, per_field, [np.ones(p.size, dtype=np.float32)
                                               for p in per_field], self.n_ids_)

    def _frame_numeric(self, read, n: int) -> np.ndarray:
        num = [f for f in self.fields_ if f["kind"] == "numeric"]
        out = np.empty((n, len(num)), dtype=np.float32)
        for j, f in enumerate(num):
            arr, _, dtype_text = read(f["column"])
            self._check_dtype(f, arr, dtype_text)
            v = (self._numeric_values(arr, f["column"]) - self.numeric_mean_[j]) / (
                self.numeric_scale_[j])
            out[:, j] = np.nan_to_num(v, nan=0.0)
        return out

    def _transform_sparse(self, X) -> FieldBatch:
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} columns; the encoder was fitted with "
                             f"{self.n_features_in_}.")
        X = sp.csr_matrix(X)
        n = X.shape[0]
        data = np.asarray(X.data)
        if not np.isfinite(data).all():
            raise ValueError("sparse X holds NaN or infinite values.")
        rows = np.repeat(np.arange(n), np.diff(X.indptr))
        cols = X.indices.astype(np.int64)
        nz = data != 0
        rows, cols, data = rows[nz], cols[nz], data[nz]
        n_fields = len(self.fields_)
        field_of = np.empty(self.n_features_in_, dtype=np.int64)
        for k, f in enumerate(self.fields_):
            a, b = f["column"]
            field_of[a:b] = k
        fld = field_of[cols]
        gid = self.column_ids_[cols]
        n_cat = self.n_categorical_
        single = fld < n_cat
        ids = np.empty((n, n_cat), dtype=np.int64)
        ids[:] = np.asarray([f["offset"] + MISSING for f in self.fields_[:n_cat]],
                            dtype=np.int64)
        if single.any():
            r, c = rows[single], fld[single]
            count = np.bincount(r * n_cat + c, minlength=n * n_cat).reshape(n, n_cat)
            bad = (count > 1).any(axis=0) | (np.bincount(c[data[single] != 1],
                                                         minlength=n_cat) > 0)
            if bad.any():
                name = self.fields_[int(np.flatnonzero(bad)[0])]["name"]
                raise ValueError(f"field {name!r} was one-hot at fit time but a row of X holds "
                                 "several entries, or a value other than 1, in it.")
            ids[r, c] = gid[single]
        bags = None
        m = n_fields - n_cat
        if m:
            sel = ~single
            r, c = rows[sel], fld[sel] - n_cat
            order = np.lexsort((c, r))  # row-major, then field (stable within a field)
            r, c, g, w = r[order], c[order], gid[sel][order], data[sel][order]
            lengths = np.bincount(r * m + c, minlength=n * m)
            indptr = np.r_[0, np.cumsum(lengths)]
            bags = sp.csr_matrix((w.astype(np.float32), g, indptr), shape=(n * m, self.n_ids_))
        return FieldBatch(ids, np.empty((n, 0), dtype=np.float32), bags, m)


def _categories(values: np.ndarray, name) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and counts of a categorical column; a TypeError naming the column when
    a value cannot be a category (a dict, a list in a single-valued field)."""
    try:
        uniq, counts = _count(values)
    except TypeError:
        _refuse(values, name)
        raise
    if uniq.dtype == object:
        _refuse(uniq, name)
    return uniq, counts


def _refuse(values: np.ndarray, name) -> None:
    """Raise a TypeError naming the column if a value cannot be a category (unhashable)."""
    for v in values.tolist():
        try:
            hash(v)
        except TypeError:
            raise TypeError(f"column {name!r} holds a {type(v).__name__}, which cannot be a "
                            "category: argument must be a string or a number.") from None


def _pack_bags(lengths: np.ndarray, ids: list[np.ndarray], weights: list[np.ndarray],
               n_ids: int) -> sp.csr_matrix:
    """One CSR row per (sample, field), row-major, from each field's flat ids in row order."""
    n, m = lengths.shape
    indptr = np.r_[0, np.cumsum(lengths.reshape(-1))].astype(np.int64)
    nnz = int(indptr[-1])
    out_ids = np.empty(nnz, dtype=np.int64)
    out_w = np.empty(nnz, dtype=np.float32)
    starts = indptr[:-1].reshape(n, m)
    for j in range(m):  # over fields, not rows
        lens = lengths[:, j]
        if not lens.sum():
            continue
        # position of each element: its bag's start + its rank within the bag
        bag_start = np.repeat(starts[:, j], lens)
        within = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
        out_ids[bag_start + within] = ids[j]
        out_w[bag_start + within] = weights[j]
    return sp.csr_matrix((out_w, out_ids, indptr), shape=(n * m, n_ids))
