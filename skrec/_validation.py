"""Input validation shared by every estimator, metric and splitter.

This is the one place where user input becomes a canonical CSR matrix. Everything else in
skrec calls :func:`check_interactions` or :func:`check_targets` and may then assume:

* ``scipy.sparse.csr_matrix`` with ``float64`` data (float64 keeps Unix timestamps exact),
* sorted column indices, no duplicates and no explicitly stored zeros,
* every stored value finite and strictly positive,
* a fresh object: the caller's input is never modified.

A (user, item) pair stored twice (possible in COO matrices and non-canonical CSR/CSC ones) keeps
its **largest** value, i.e. its latest occurrence when the values are orders or timestamps:
the same rule as :class:`~skrec.preprocessing.InteractionEncoder`, where the last event of a
repeated pair wins. Summing them, scipy's default, would turn two timestamps into a fake, much
later one.

Tables (pandas or polars DataFrames and Series) and lists of tuples are refused with a
``TypeError`` that points to :class:`~skrec.preprocessing.InteractionEncoder`: read as arrays,
an event log would silently become a matrix of n_events "users" x n_columns "items".
"""

from __future__ import annotations

import numbers
import os
import sys
import warnings

import numpy as np
import scipy.sparse as sp

__all__ = [
    "check_batch_size",
    "check_interactions",
    "check_k",
    "check_targets",
    "event_log_hint",
    "reject_tables",
    "warn_if_not_ordered",
]

_TABLE_MODULES = ("pandas", "polars", "pyarrow")  # and anything with `columns`
#: A table or array with at most this many columns (and many more rows) may be an event log.
_LOG_MAX_COLUMNS = 4
#: ... an array with at least this many rows.
_LOG_MIN_ROWS = 20


def _fail(name: str, problem: str) -> ValueError:
    return ValueError(f"{name} {problem}")


def _negative(name: str) -> ValueError:
    return ValueError(
        f"Negative values in data: {name} contains negative values; interactions must be >= 0."
    )


#: The end of the messages about values that are ids, text or dates rather than a matrix.
_LOG_HINT = ("An event log of ids (one row per event: user, item, time) is not a matrix: build "
             "one from the log with skrec.preprocessing.InteractionEncoder.")


def _fail_dtype(name: str, dtype) -> ValueError:
    if np.issubdtype(dtype, np.complexfloating):
        return _fail(name, f"must hold real numbers: Complex data not supported (dtype {dtype}).")
    hint = f" {_LOG_HINT}" if np.dtype(dtype).kind in "USOMm" else ""
    return _fail(name, f"must hold real numbers; got dtype {dtype}.{hint}")


def _table_kind(obj) -> str | None:
    """``"a pandas DataFrame"`` etc. when ``obj`` is a table or a list of records, else None."""
    if obj is None or isinstance(obj, np.ndarray) or sp.issparse(obj):
        return None
    cls = type(obj)
    root = cls.__module__.partition(".")[0]
    if root in _TABLE_MODULES or hasattr(obj, "columns"):
        return f"a {root} {cls.__name__}" if root in _TABLE_MODULES else f"a {cls.__name__}"
    if isinstance(obj, list | tuple) and len(obj) and isinstance(obj[0], tuple):
        return f"a {cls.__name__} of tuples"
    return None


def _numeric_dtype(dtype) -> bool:
    """Whether a column dtype (numpy, pandas or polars) holds numbers."""
    kind = getattr(dtype, "kind", None)
    if isinstance(kind, str) and len(kind) == 1:
        return kind in "biuf"
    return str(dtype).lower().startswith(("int", "uint", "float"))


def _looks_like_log(obj) -> bool:
    """Whether a table reads as an event log (one row per event) rather than as a wide user x
    item matrix: a Series or records, at most 4 columns, or a column that is not numeric
    (ids as text, dates). A wide all-numeric frame (a pivot table) is matrix-like."""
    columns = getattr(obj, "columns", None)
    if columns is None:
        return True
    if len(columns) <= _LOG_MAX_COLUMNS:
        return True
    dtypes = getattr(obj, "dtypes", None)
    try:
        return not all(_numeric_dtype(d) for d in list(dtypes))
    except TypeError:
        return True


def _one_numeric_column(obj) -> bool:
    """A Series or a one-column frame of numbers: possibly one target index per row."""
    if getattr(obj, "columns", None) is None:  # a Series (its dtypes is one dtype)
        dtype = getattr(obj, "dtype", None)
        return dtype is not None and _numeric_dtype(dtype)
    dtypes = getattr(obj, "dtypes", None)
    try:
        dtypes = list(dtypes)
    except TypeError:
        return False
    return len(dtypes) == 1 and _numeric_dtype(dtypes[0])


def reject_tables(obj, name: str = "X", *, what: str = "matrix") -> None:
    """Raise a ``TypeError`` pointing to ``InteractionEncoder`` if ``obj`` is a table.

    pandas/polars DataFrames and Series (anything with ``columns``, or from a data-frame
    library) and lists of tuples look like event logs (one row per event). Read as an array,
    such a log would silently become a matrix with one "user" per event and one "item" per
    column. The message advises ``.to_numpy()`` only where that gives a meaningful matrix: a
    wide all-numeric frame (a pivot table, columns = items), or for targets a single numeric
    column; never for a table that looks like a log.

    Parameters
    ----------
    obj : object
        The user's input.
    name : str, default="X"
        Name used in the message.
    what : {"matrix", "targets", "rankings"}, default="matrix"
        What ``obj`` should have been, for the hint at the end of the message.

    Raises
    ------
    TypeError
        If ``obj`` is a DataFrame, a Series or a list of tuples.
    """
    kind = _table_kind(obj)
    if kind is None:
        return
    encoder = (
        "build the matrix from the log with skrec.preprocessing.InteractionEncoder, e.g. "
        "`enc = InteractionEncoder(user_col='user', item_col='item', time_col='time'); "
        "X = enc.fit_transform(log)`"
    )
    columns = getattr(obj, "columns", None)
    shown = ""
    if columns is not None:
        names = [str(c) for c in list(columns)[:6]]
        shown = f" with columns {names}" + (" ..." if len(columns) > 6 else "")
    if what == "rankings":
        hint = (
            "pass the (n_users, k) array of item indices returned by predict/recommend (a "
            "DataFrame of recommendations holds original ids, not column indices)."
        )
    elif what == "targets" and _one_numeric_column(obj):
        hint = (
            "if it holds one item (column) index per row of X, pass .to_numpy(); if it is an "
            f"event log, build y like X, with the same encoder: {encoder}."
        )
    elif _looks_like_log(obj):
        hint = (
            f"it looks like an event log (one row per event), so {encoder}. Do not pass "
            ".to_numpy() of it: that makes every event a user and every column an item."
        )
    else:
        hint = (
            f"if it already is a user x item matrix (rows = users, columns = items) in the "
            "order of the estimator's rows and columns, pass .to_numpy() or a scipy.sparse "
            f"matrix; if it is an event log: {encoder}."
        )
    raise TypeError(
        f"{name} is {kind}{shown}; skrec reads a user x item matrix (rows = users, columns = "
        f"items; a stored value > 0 is an interaction and its order), not a table: {hint}"
    )


def _is_canonical(indptr: np.ndarray, indices: np.ndarray) -> bool:
    """Whether the indices of every row (column) of a CSR (CSC) matrix strictly increase.

    Computed from the arrays (O(nnz), vectorised), never read from scipy's
    ``has_canonical_format`` flag, which a matrix built from raw arrays or edited in place
    may carry wrongly: a duplicate hidden behind the flag would otherwise survive as two
    stored entries, which scipy sums.
    """
    if indices.size < 2:
        return True
    increasing = np.diff(indices) > 0
    starts = np.asarray(indptr[1:-1])
    starts = starts[(starts > 0) & (starts < indices.size)]
    increasing[starts - 1] = True  # a row starts there: no order with the previous row
    return bool(increasing.all())


def _sparse_keep_latest(X, name: str) -> sp.csr_matrix:
    """CSR float64 copy of a sparse matrix; a repeated (row, column) keeps its largest value.

    The one place where the data contract's rule for duplicates is applied (every entry point
    validates through :func:`check_interactions`). Negative, NaN and infinite values are
    reported before duplicates are merged, so a bad entry cannot hide behind a good duplicate.
    """
    fmt = X.format
    if fmt in ("lil", "dok") or (
        fmt in ("csr", "csc") and _is_canonical(X.indptr, X.indices)
    ):
        return sp.csr_matrix(X, dtype=np.float64, copy=True)  # no duplicates to merge
    coo = X.tocoo()
    data = np.asarray(coo.data, dtype=np.float64)
    if not np.isfinite(data).all():
        raise _fail(name, "contains NaN or infinite values.")
    if (data < 0).any():
        raise _negative(name)
    row = np.asarray(coo.row, dtype=np.int64)
    col = np.asarray(coo.col, dtype=np.int64)
    order = np.lexsort((data, col, row))  # within a (row, column), the largest value last
    row, col, data = row[order], col[order], data[order]
    last = np.ones(row.size, dtype=bool)
    last[:-1] = (row[1:] != row[:-1]) | (col[1:] != col[:-1])
    return sp.csr_matrix((data[last], (row[last], col[last])), shape=coo.shape)


#: Share of distinct values above which a column of integers is not ids (each id of a log
#: appears in several events) but, say, timestamps.
_LOG_MAX_DISTINCT = 0.9


def _id_like_columns(csr: sp.csr_matrix) -> list[tuple[int, int]]:
    """``(column, n_distinct)`` of the columns that look like ids: integer values, more
    distinct ones than a rating scale or the positions of a row could give, and at least 10 %
    of them repeats (ids recur across events; timestamps mostly do not)."""
    csc = csr.tocsc()
    out = []
    for j in range(csc.shape[1]):
        values = csc.data[csc.indptr[j]:csc.indptr[j + 1]]
        if values.size < 2 or not np.array_equal(values, np.round(values)):
            continue
        n_distinct = np.unique(values).size
        if max(csc.shape[1], 10) < n_distinct <= _LOG_MAX_DISTINCT * values.size:
            out.append((j, n_distinct))
    return out


def event_log_hint(csr: sp.csr_matrix, name: str = "X") -> str | None:
    """A message when a matrix has the shape of an event log read as a matrix, else None.

    ``log[["user", "item", "time"]].to_numpy()`` (or a sparse matrix of it) is a valid
    matrix of n_events "users" and 3 "items": training on it runs without an error and means
    nothing. Its signature: at most 4 columns, many more rows (at least 20, and 5 per
    column), and at least two columns of integer ids (more distinct values than a rating
    scale or the positions of a row, with at least 10 % repeats: the same user or item in
    several events). A real catalogue of 2-4 items with ratings, orders, ones or timestamps
    has no such columns.

    Parameters
    ----------
    csr : scipy.sparse.csr_matrix
        Validated interactions (as :func:`check_interactions` returns them).
    name : str, default="X"
        Name used in the message.

    Returns
    -------
    message : str or None
    """
    n_rows, n_cols = csr.shape
    if n_cols > _LOG_MAX_COLUMNS or n_rows < max(_LOG_MIN_ROWS, 5 * n_cols):
        return None
    ids = _id_like_columns(csr)
    if len(ids) < 2:
        return None
    described = " and ".join(f"column {j} ({n} distinct integers)" for j, n in ids[:2])
    return (
        f"{name} looks like an event log read as a matrix: {n_rows} rows but only {n_cols} "
        f"columns, and {described} look like repeated user or item ids. skrec reads rows as "
        f"users and columns as items, so this is {n_rows} users and a catalogue of {n_cols} "
        "items. Build the user x item matrix from the log with skrec.preprocessing."
        "InteractionEncoder(user_col=..., item_col=..., time_col=...).fit_transform(log) "
        "(from the DataFrame, not its .to_numpy()). If it really is a matrix of "
        f"{n_cols} items, ignore this warning."
    )


def _warn_outside_skrec(message: str, category=UserWarning) -> None:
    """Warn, attributing the warning to the first caller outside skrec (the user's line)."""
    package = os.path.dirname(os.path.abspath(__file__))
    level, frame = 2, sys._getframe(1)  # stacklevel 2 is the frame that called this function
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        level += 1
        frame = frame.f_back
    warnings.warn(message, category, stacklevel=level)


def check_interactions(
    X,
    *,
    n_items: int | None = None,
    name: str = "X",
    allow_empty: bool = False,
    estimator: str | None = None,
) -> sp.csr_matrix:
    """Validate a user x item interaction matrix and return a canonical CSR copy.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        Interactions. Rows are users, columns are items; a stored value > 0 is an interaction
        and, for sequence models, its order (larger = later).
    n_items : int, default=None
        Number of items the matrix must have (the number seen at fit time).
    name : str, default="X"
        Name used in error messages.
    allow_empty : bool, default=False
        Whether a matrix with zero rows is accepted.
    estimator : str, default=None
        Name of the estimator, used in the message about a wrong number of items.

    Returns
    -------
    X_csr : scipy.sparse.csr_matrix of shape (n_users, n_items), dtype float64
        A new matrix with sorted indices and explicit zeros removed. A (user, item) pair
        stored more than once keeps its largest value (the latest, for orders and
        timestamps), like the last event of a repeated pair in
        :class:`~skrec.preprocessing.InteractionEncoder`.

    Raises
    ------
    ValueError
        If ``X`` is not 2-D, has no rows or columns, is not numeric, has negative, NaN or
        infinite values, or has a number of items other than ``n_items``.
    TypeError
        If ``X`` holds Python objects that are neither numbers nor strings (as scikit-learn),
        or is a table (pandas/polars DataFrame or Series) or a list of tuples: an event log,
        to be encoded with :class:`~skrec.preprocessing.InteractionEncoder` first.

    Warns
    -----
    UserWarning
        When ``n_items`` is ``None`` (a new catalogue: ``fit``, the splitters) and ``X`` has
        the shape of an event log read as a matrix (see :func:`event_log_hint`): at most 4
        columns, many more rows, and columns of repeated integer ids.

    Notes
    -----
    The messages contain scikit-learn's standard phrases ("Negative values in data",
    "Complex data not supported", "Reshape your data", "X has 3 features, but ... is
    expecting 4 features as input", ...) so that tools matching them keep working.
    """
    if X is None:
        raise _fail(name, "is None; expected a user x item matrix of shape (n_users, n_items).")
    if isinstance(X, str | bytes):
        raise _fail(name, f"is a string ({X!r:.40}); expected a user x item matrix.")
    reject_tables(X, name)
    if sp.issparse(X):
        if X.ndim != 2:
            raise _fail(name, f"must be 2-D (n_users, n_items); got {X.ndim}-D.")
        dtype = X.dtype
        if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or np.issubdtype(
            dtype, np.complexfloating
        ):
            raise _fail_dtype(name, dtype)
        csr = _sparse_keep_latest(X, name)
    else:
        try:
            arr = np.asarray(X)
        except Exception as exc:  # ragged lists and the like
            raise _fail(name, f"could not be read as a 2-D numeric array: {exc}") from None
        if arr.dtype == object:
            try:
                arr = arr.astype(np.float64)
            except TypeError as exc:  # dicts, None, ...: a TypeError, as in scikit-learn
                raise TypeError(
                    f"{name} must be numeric; it holds non-numeric objects ({exc})."
                ) from None
            except ValueError:  # strings that are not numbers
                raise _fail(name, f"must be numeric; it holds non-numeric values. {_LOG_HINT}"
                            ) from None
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.issubdtype(
            arr.dtype, np.complexfloating
        ):
            raise _fail_dtype(name, arr.dtype)
        if arr.ndim != 2:
            hint = (
                " Reshape your data: a single user is X.reshape(1, -1)." if arr.ndim == 1 else ""
            )
            raise _fail(name, f"must be 2-D (n_users, n_items); got {arr.ndim}-D.{hint}")
        arr = arr.astype(np.float64, copy=False)
        if not np.isfinite(arr).all():
            raise _fail(name, "contains NaN or infinite values.")
        if (arr < 0).any():
            raise _negative(name)
        csr = sp.csr_matrix(arr, dtype=np.float64)
    n_rows, n_cols = csr.shape
    if n_rows == 0 and not allow_empty:
        raise _fail(name, f"has 0 users (shape {csr.shape}); at least one row is required.")
    if n_cols == 0:
        raise _fail(
            name,
            f"has 0 items: 0 feature(s) (shape=({n_rows}, 0)) while a minimum of 1 is required.",
        )
    if n_items is not None and n_cols != n_items:
        raise _fail(
            name,
            f"has {n_cols} features, but {estimator or 'the estimator'} is expecting "
            f"{n_items} features as input: the number of items (columns) must match fit.",
        )
    data = csr.data
    if not np.isfinite(data).all():
        raise _fail(name, "contains NaN or infinite values.")
    if (data < 0).any():
        raise _negative(name)
    csr.sum_duplicates()  # a no-op: duplicates were merged (largest value kept) above
    csr.eliminate_zeros()
    csr.sort_indices()
    if n_items is None and n_cols <= _LOG_MAX_COLUMNS:  # a new catalogue: fit, splitters
        hint = event_log_hint(csr, name)
        if hint is not None:
            _warn_outside_skrec(hint)
    # Index arrays of int32 where they fit keep memory low; scipy may give int64.
    return csr


def check_targets(y, *, n_rows: int, n_items: int, name: str = "y") -> sp.csr_matrix:
    """Validate held-out targets and return them as a CSR matrix.

    Parameters
    ----------
    y : {sparse matrix, array-like of shape (n_users, n_items)} or array-like of shape (n_users,)
        Held-out items. Either a matrix like ``X`` (stored values > 0 are relevant, their values
        give the order for sequence models) or a 1-D array with one item index per user
        (a negative index means "no target" for that user).
    n_rows : int
        Number of users (rows of ``X``) that ``y`` must match.
    n_items : int
        Number of items in the catalogue.
    name : str, default="y"
        Name used in error messages.

    Returns
    -------
    y_csr : scipy.sparse.csr_matrix of shape (n_rows, n_items), dtype float64
    """
    if y is None:
        raise _fail(name, "is None; expected held-out items.")
    reject_tables(y, name, what="targets")
    if not sp.issparse(y):
        arr = np.asarray(y)
        if arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1 and n_items != 1):
            arr = arr.reshape(-1)
            if arr.shape[0] != n_rows:
                raise _fail(name, f"has {arr.shape[0]} entries but X has {n_rows} rows (users).")
            if arr.dtype == object:  # numbers stored as objects are read as numbers, like X
                try:
                    arr = arr.astype(np.float64)
                except (TypeError, ValueError):
                    raise _fail(
                        name, "must hold integer item indices; it holds non-numeric values."
                    ) from None
            if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(
                arr.dtype, np.complexfloating
            ):
                raise _fail(name, f"must hold integer item indices; got dtype {arr.dtype}.")
            if not np.isfinite(arr).all():
                raise _fail(name, "contains NaN or infinite values.")
            if (np.asarray(arr) != np.round(arr)).any():
                raise _fail(name, "must hold integer item indices; got fractional values.")
            items = arr.astype(np.int64)
            if (items >= n_items).any():
                raise _fail(
                    name,
                    f"holds item index {int(items.max())}, outside the catalogue of "
                    f"{n_items} items.",
                )
            rows = np.flatnonzero(items >= 0)
            return sp.csr_matrix(
                (np.ones(rows.size), (rows, items[rows])), shape=(n_rows, n_items)
            )
    out = check_interactions(y, n_items=n_items, name=name, allow_empty=n_rows == 0)
    if out.shape[0] != n_rows:
        raise _fail(name, f"has {out.shape[0]} rows but X has {n_rows} rows (users).")
    return out


def check_k(k, name: str = "k", *, limit: int | None = None) -> int:
    """Validate a cut-off ``k`` (a positive integer); return it, clamped to ``limit``.

    The one rule for the width of every ranked list skrec returns: a list over a catalogue of
    ``n_items`` items holds at most ``n_items`` distinct items, so the width is
    ``min(k, n_items)``. Call it with ``limit=n_items`` **before** allocating anything of
    width ``k``: ``k=10**9`` must not allocate ``n_users x 10**9`` cells to clamp afterwards.
    Within that width, lists with fewer candidates (seen items filtered, ``items=``
    restrictions) are still padded with ``-1``.

    Parameters
    ----------
    k : int
        The requested number of items.
    name : str, default="k"
        Name used in the error message.
    limit : int, default=None
        The catalogue size (``n_features_in_``, or the number of items of a session or
        graph); ``None`` returns ``k`` unclamped (metrics, whose denominators use ``k``).

    Returns
    -------
    k : int
        ``min(k, limit)``, or ``k`` when ``limit`` is ``None``.

    Raises
    ------
    ValueError
        If ``k`` is not a positive integer (``0``, ``-1``, ``2.5``, ``"3"``, ``True``, ...).
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"{name} must be a positive integer; got {k!r}.")
    k = int(k)
    return k if limit is None else min(k, int(limit))


def check_batch_size(batch_size, name: str = "batch_size") -> int | None:
    """Validate an inference batch size: ``None`` (automatic) or a positive integer.

    Parameters
    ----------
    batch_size : int or None
        Number of rows scored at once.
    name : str, default="batch_size"
        Name used in the error message.

    Returns
    -------
    batch_size : int or None

    Raises
    ------
    ValueError
        If ``batch_size`` is not ``None`` and not a positive integer (``-1``, ``0``, ``2.5``,
        ``"8"``, ``True``...).
    """
    if batch_size is None:
        return None
    if (
        isinstance(batch_size, bool | np.bool_)
        or not isinstance(batch_size, numbers.Integral)
        or batch_size < 1
    ):
        raise ValueError(
            f"{name} must be a positive integer (rows scored at once) or None to choose it "
            f"automatically; got {batch_size!r}."
        )
    return int(batch_size)


#: Largest value that "looks like a rating" (1-5 and 1-10 star scales, in halves).
_RATING_MAX = 10.0
#: Share of a matrix's interactions tied in value with another of the same user above which
#: the values cannot be an order.
_RATING_TIES = 0.25


def warn_if_not_ordered(X: sp.csr_matrix, estimator: str) -> None:
    """Warn when the values of ``X`` look like ratings or flags rather than an order.

    Sequence models (and the Markov chain) read each row's values as the order of its
    interactions (larger = later: timestamps, or positions 1..n). Ratings (1-5 stars) and
    0/1 flags are small numbers with many ties within a user, so the "order" they give is
    mostly the item index, which trains the model on a meaningless sequence.

    Parameters
    ----------
    X : scipy.sparse.csr_matrix
        Validated interactions (canonical CSR, as returned by :func:`check_interactions`).
    estimator : str
        Name of the estimator, for the message.

    Warns
    -----
    UserWarning
        If every value is a multiple of 0.5 no larger than 10 and at least a quarter of the
        interactions share their value with another interaction of the same user.
    """
    data = X.data
    if X.nnz < 2 or data.max() > _RATING_MAX:
        return
    halves = data * 2.0
    if not np.array_equal(halves, np.round(halves)):
        return
    rows = np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr))
    codes = rows * int(2 * _RATING_MAX + 1) + halves.astype(np.int64)
    tied = 1.0 - np.unique(codes).size / X.nnz
    if tied < _RATING_TIES:
        return
    warnings.warn(
        f"{estimator} reads the values of X as the order of each user's interactions "
        f"(larger = later), but they look like ratings or flags: numbers <= {data.max():g} "
        f"with {tied:.0%} of the interactions tied with another of the same user. Ties are "
        "broken by item index, which is no real order. Build X from the event log with "
        "skrec.preprocessing.InteractionEncoder(time_col=..., values=\"order\") (or "
        "values=\"timestamp\"), or pass timestamps or positions 1..n as the values.",
        UserWarning,
        stacklevel=4,  # warn_if_not_ordered <- _validate_fit_data <- fit <- the caller
    )
