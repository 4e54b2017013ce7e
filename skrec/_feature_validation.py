"""Validation of side features (item and user feature matrices), how a model stores them,
and hints about their scale: the feature half of skrec's input validation."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._validation import _fail, _fail_dtype

__all__ = [
    "check_item_features",
    "check_user_features",
    "feature_parts",
    "feature_scale_hint",
    "stores_sparse",
]


def check_user_features(features, *, n_users: int, n_features: int | None = None,
                        name: str = "user_features"):
    """Validate the side features of the users of ``X`` (row ``i`` describes row ``i``).

    Parameters
    ----------
    features : {array-like, sparse matrix} of shape (n_users, n_features)
        One row per row of ``X``, in the same order (per-sample data, like ``X``).
    n_users : int
        Number of rows it must have (the rows of ``X``).
    n_features : int, default=None
        Number of columns it must have (the features seen at fit time).
    name : str, default="user_features"
        Name used in error messages.

    Returns
    -------
    features : scipy.sparse.csr_matrix or ndarray, dtype float32
        A float32 copy, as :func:`check_item_features` makes.
    """
    return check_item_features(features, n_items=n_users, n_features=n_features, name=name,
                               _rows_of="users")


def check_item_features(features, *, n_items: int | None = None,
                        n_features: int | None = None, name: str = "item_features",
                        _rows_of: str = "items"):
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

    Raises
    ------
    ValueError
        If the values are NaN or infinite, beyond float32's range (``|x| > 3.4e38``: they
        would become infinite), or so large that training overflows (``|x| > 1.8e19``, whose
        squares exceed float32's range), with the advice to scale them; or if the shape does
        not match ``n_items``/``n_features``.
    TypeError
        If they hold text, categories or other objects, not numbers.
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
        _check_feature_range(features.data if features.format in ("csr", "csc", "coo", "bsr")
                             else features.tocoo().data, name)
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
            raise _fail(name, f"must be 2-D (n_{_rows_of}, n_features); got shape {arr.shape}.")
        _check_feature_range(arr, name)
        out = np.array(arr, dtype=np.float32, order="C", copy=True)
        values = out
    if not np.isfinite(values).all():
        raise _fail(name, "contains NaN or infinite values.")
    rows, cols = out.shape
    if cols == 0:
        raise _fail(name, "has no columns.")
    if n_items is not None and rows != n_items:
        if _rows_of == "users":
            raise _fail(name, f"has {rows} rows, but X has {n_items} rows (users): give one "
                              "feature row per row of X, in the same order.")
        raise _fail(name, f"has {rows} rows, but the catalogue has {n_items} items (columns "
                          "of X): give one feature row per item, in the columns' order.")
    if n_features is not None and cols != n_features:
        raise _fail(name, f"has {cols} columns; the model was fitted with {n_features}.")
    return out


#: Largest float32 value; a feature beyond it becomes inf.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Largest magnitude whose square stays a float32: features above it overflow in training
#: (norms, variances, the optimizer's second moments square them).
_FEATURE_MAX = float(np.sqrt(_FLOAT32_MAX))


def _check_feature_range(values, name: str) -> None:
    """NaN/inf, values beyond float32, and values whose squares overflow it: ValueErrors that
    say which, on the values as given (before the float32 copy turns 1e39 into inf)."""
    if values is None or np.size(values) == 0:
        return
    values = np.asarray(values)
    if values.dtype == bool or np.issubdtype(values.dtype, np.integer):
        largest = float(max(abs(int(values.max())), abs(int(values.min()))))
    else:
        if not np.isfinite(values).all():
            raise _fail(name, "contains NaN or infinite values.")
        largest = float(max(abs(float(values.max())), abs(float(values.min()))))
    scale = ("Scale the features to about unit size, e.g. with sklearn.preprocessing."
             "StandardScaler (dense) or MaxAbsScaler (sparse), or a log transform for counts.")
    if largest > _FLOAT32_MAX:
        raise _fail(name, f"holds values up to {largest:.3g}, beyond float32's range "
                          f"(+-{_FLOAT32_MAX:.3g}), in which skrec's models compute: they would "
                          f"become infinite. {scale}")
    if largest > _FEATURE_MAX:
        raise _fail(name, f"holds values up to {largest:.3g}: so large that training "
                          f"overflows float32 (their squares exceed {_FLOAT32_MAX:.3g}), in "
                          f"any precision. {scale}")


def feature_scale_hint(features, name: str) -> str:
    """A sentence about badly scaled side features, for the message of a diverging fit.

    Side features of magnitude 100 and more (raw counts, prices, timestamps) make the
    models' first layer produce huge activations: the autoencoders' training loss becomes
    inf or NaN with features of a few hundred. The trainer appends this hint to its
    ``FloatingPointError`` instead of blaming the precision.

    Parameters
    ----------
    features : {ndarray, sparse matrix} or None
        Validated features (as :func:`check_item_features` returns them).
    name : str
        Their name in the message (``"item_features"``, ``"user_features"``).

    Returns
    -------
    hint : str
        ``""`` when ``features`` is ``None`` or its largest magnitude is below 100, else a
        sentence naming the largest value and how to scale them.
    """
    if features is None:
        return ""
    values = features.data if sp.issparse(features) else np.asarray(features)
    if values.size == 0:
        return ""
    largest = float(np.abs(values).max())
    if not largest >= 100.0:
        return ""
    return (f" {name} holds values up to {largest:.3g}, the likely cause: features that "
            "large make the first layer's activations overflow. Scale them to about unit size "
            "(e.g. sklearn's StandardScaler, or MaxAbsScaler for sparse ones).")


def stores_sparse(feats) -> bool:
    """Whether a validated feature matrix is kept sparse in the model.

    Sparse matrices denser than 1/16 (one-hot and multi-hot attributes with few columns) are
    stored dense when that takes at most 2**24 values: their dense products cost less than
    the sparse kernels' per-call overhead, and their backward is many times faster.
    """
    if not sp.issparse(feats):
        return False
    size = feats.shape[0] * feats.shape[1]
    return feats.nnz * 16 < size or size > 2**24


def feature_parts(feats, sparse: bool) -> tuple | np.ndarray:
    """What :meth:`FeatureProjection.set_features` takes: CSR parts (``sparse``), or the
    dense array."""
    if sparse:
        feats = sp.csr_matrix(feats)
        return feats.indptr.astype(np.int64), feats.indices.astype(np.int64), feats.data
    return feats.toarray() if sp.issparse(feats) else feats
