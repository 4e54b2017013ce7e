"""Input validation shared by every estimator, metric and splitter.

This is the one place where user input becomes a canonical CSR matrix. Everything else in
skrec calls :func:`check_interactions` or :func:`check_targets` and may then assume:

* ``scipy.sparse.csr_matrix`` with ``float64`` data (float64 keeps Unix timestamps exact),
* sorted column indices, no duplicates and no explicitly stored zeros,
* every stored value finite and strictly positive,
* a fresh object: the caller's input is never modified.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

__all__ = ["check_interactions", "check_item_features", "check_targets"]


def _fail(name: str, problem: str) -> ValueError:
    return ValueError(f"{name} {problem}")


def _negative(name: str) -> ValueError:
    return ValueError(
        f"Negative values in data: {name} contains negative values; interactions must be >= 0."
    )


def _fail_dtype(name: str, dtype) -> ValueError:
    if np.issubdtype(dtype, np.complexfloating):
        return _fail(name, f"must hold real numbers: Complex data not supported (dtype {dtype}).")
    return _fail(name, f"must hold real numbers; got dtype {dtype}.")


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
        A new matrix with sorted indices, summed duplicates and explicit zeros removed.

    Raises
    ------
    ValueError
        If ``X`` is not 2-D, has no rows or columns, is not numeric, has negative, NaN or
        infinite values, or has a number of items other than ``n_items``.
    TypeError
        If ``X`` holds Python objects that are neither numbers nor strings (as scikit-learn).

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
    if sp.issparse(X):
        if X.ndim != 2:
            raise _fail(name, f"must be 2-D (n_users, n_items); got {X.ndim}-D.")
        dtype = X.dtype
        if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or np.issubdtype(
            dtype, np.complexfloating
        ):
            raise _fail_dtype(name, dtype)
        csr = sp.csr_matrix(X, dtype=np.float64, copy=True)
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
                raise _fail(name, "must be numeric; it holds non-numeric values.") from None
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
    csr.sum_duplicates()
    csr.eliminate_zeros()
    csr.sort_indices()
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


def check_k(k, name: str = "k") -> int:
    """Validate a cut-off ``k`` (a positive integer) and return it as ``int``."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"{name} must be a positive integer; got {k!r}.")
    return int(k)


def check_item_features(features, *, n_items: int | None = None,
                        n_features: int | None = None, name: str = "item_features"):
    """Validate a side-feature matrix (one row per item) and return a float32 copy.

    Parameters
    ----------
    features : {array-like, sparse matrix} of shape (n_items, n_features)
        One-hot or multi-hot attributes, TF-IDF rows, dense text vectors... Any real values.
    n_items : int, default=None
        Number of rows it must have (the catalogue).
    n_features : int, default=None
        Number of columns it must have (the features seen at fit time).
    name : str, default="item_features"
        Name used in error messages.

    Returns
    -------
    features : scipy.sparse.csr_matrix or ndarray, dtype float32
        Sparse input stays sparse (canonical CSR: sorted indices, no duplicates, no stored
        zeros); anything else becomes a dense C-contiguous array.
    """
    if hasattr(features, "columns") and hasattr(features, "dtypes"):  # a pandas DataFrame
        try:
            features = features.to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"{name} must hold numbers; encode text and categories first (e.g. with "
                "sklearn's ColumnTransformer, or skrec.text.TextEmbedder)."
            ) from None
    if sp.issparse(features):
        if not (np.issubdtype(features.dtype, np.floating)
                or np.issubdtype(features.dtype, np.integer)
                or features.dtype == bool):
            raise _fail_dtype(name, features.dtype)
        out = sp.csr_matrix(features, dtype=np.float32, copy=True)
        out.sum_duplicates()
        out.eliminate_zeros()
        values = out.data
    else:
        try:
            arr = np.asarray(features)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a 2-D array or sparse matrix of numbers.") from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                       or arr.dtype == bool):
            raise TypeError(
                f"{name} must hold numbers (got dtype {arr.dtype}); encode text and categories "
                "first (e.g. with sklearn's ColumnTransformer, or skrec.text.TextEmbedder)."
            )
        if np.issubdtype(arr.dtype, np.complexfloating):
            raise _fail_dtype(name, arr.dtype)
        if arr.ndim != 2:
            raise _fail(name, f"must be 2-D (n_items, n_features); got shape {arr.shape}.")
        out = np.array(arr, dtype=np.float32, order="C", copy=True)
        values = out
    if not np.isfinite(values).all():
        raise _fail(name, "contains NaN or infinite values.")
    rows, cols = out.shape
    if cols == 0:
        raise _fail(name, "has no columns.")
    if n_items is not None and rows != n_items:
        raise _fail(name, f"has {rows} rows, but the catalogue has {n_items} items (columns "
                          "of X): give one feature row per item, in the columns' order.")
    if n_features is not None and cols != n_features:
        raise _fail(name, f"has {cols} columns; the model was fitted with {n_features}.")
    return out
