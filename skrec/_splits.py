"""The splitters of interaction matrices (see :mod:`skrec.model_selection`, which exports
them): below the metrics and the estimators, which use them too."""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_random_state

from ._validation import check_interactions, check_k

__all__ = ["leave_last_out_split", "random_holdout_split", "temporal_split", "user_holdout_split"]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _row_of_nnz(X: sp.csr_matrix) -> np.ndarray:
    """Row index of every stored entry of a CSR matrix."""
    return np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr))


def _masked(X: sp.csr_matrix, mask: np.ndarray, rows: np.ndarray | None = None) -> sp.csr_matrix:
    """Return the canonical CSR matrix holding the stored entries of ``X`` where ``mask``."""
    if rows is None:
        rows = _row_of_nnz(X)
    counts = np.bincount(rows[mask], minlength=X.shape[0])
    indptr = np.zeros(X.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    out = sp.csr_matrix(
        (X.data[mask].astype(np.float64), X.indices[mask].copy(), indptr), shape=X.shape
    )
    out.has_sorted_indices = True  # a subset of sorted rows stays sorted
    return out


def _take_rows(X: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """Canonical CSR copy of the given rows of ``X``."""
    out = sp.csr_matrix(X[rows], dtype=np.float64, copy=True)
    out.sort_indices()
    return out


def _positions(rows: np.ndarray, order: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Turn an ordering grouped by row into each entry's 0-based position within its row."""
    rank = np.empty(rows.size, dtype=np.int64)
    rank[order] = np.arange(rows.size, dtype=np.int64) - indptr[rows[order]]
    return rank


def _rank_by_value(X: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """Position of each stored entry in its row, ascending by value, ties by item index."""
    nnz = X.nnz
    # Global rank by value; the stable sort keeps CSR order (item index) among equal values.
    global_rank = np.empty(nnz, dtype=np.int64)
    global_rank[np.argsort(X.data, kind="stable")] = np.arange(nnz, dtype=np.int64)
    if X.shape[0] * max(nnz, 1) < 2**62:
        order = np.argsort(rows * nnz + global_rank)  # unique keys: row first, then value
    else:  # pragma: no cover - astronomically large matrices
        order = np.lexsort((global_rank, rows))
    return _positions(rows, order, X.indptr)


def _rank_at_random(X: sp.csr_matrix, rows: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Position of each stored entry in its row under a random order within each row."""
    # row + U[0, 1) sorts by row, then at random within the row.
    order = np.argsort(rows + rng.random_sample(X.nnz))
    return _positions(rows, order, X.indptr)


def _round_half_up(x: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, halves up (``np.round`` rounds halves to even)."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5 + 1e-9).astype(np.int64)


def _check_fraction(value, name: str, *, allow_int_up_to: int | None = None):
    """Validate a fraction in (0, 1), or, if ``allow_int_up_to`` is given, an int count."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a float in (0, 1); got {value!r}.")
    if isinstance(value, numbers.Integral) and allow_int_up_to is not None:
        if not 1 <= value <= allow_int_up_to:
            raise ValueError(f"{name}={value} as a count must be between 1 and {allow_int_up_to}.")
        return int(value)
    if not np.isfinite(value) or not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be a float strictly between 0 and 1; got {value!r}.")
    return float(value)


# --------------------------------------------------------------------------------------------
# Splitters
# --------------------------------------------------------------------------------------------


def leave_last_out_split(X, n_last: int = 1) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Hold out each user's ``n_last`` latest interactions.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        Interactions; the stored values give the order (larger = later).
    n_last : int, default=1
        Number of latest interactions per user to hold out.

    Returns
    -------
    X_train : scipy.sparse.csr_matrix of shape (n_users, n_items)
        Every user's history without the held-out interactions.
    y_test : scipy.sparse.csr_matrix of shape (n_users, n_items)
        The held-out interactions, with their original values.

    Notes
    -----
    Ties in value are broken by item index: of two items with the same value, the one with the
    larger item index counts as later. Users with ``n_last`` interactions or fewer keep all of
    them in ``X_train`` and have an empty row in ``y_test``. A (user, item) pair stored twice
    counts once, at its larger value (see the module documentation).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from skrec.model_selection import leave_last_out_split
    >>> X = sp.csr_matrix([[1.0, 3.0, 2.0], [0.0, 1.0, 0.0]])
    >>> X_train, y_test = leave_last_out_split(X)
    >>> y_test.toarray()
    array([[0., 3., 0.],
           [0., 0., 0.]])
    """
    n_last = check_k(n_last, name="n_last")
    X = check_interactions(X)
    rows = _row_of_nnz(X)
    counts = np.diff(X.indptr)
    rank = _rank_by_value(X, rows)
    from_end = counts[rows] - 1 - rank  # 0 for the latest interaction
    test = (from_end < n_last) & (counts[rows] > n_last)
    return _masked(X, ~test, rows), _masked(X, test, rows)


def user_holdout_split(
    X,
    test_size: float | int = 0.2,
    fold_in_size: float = 0.8,
    *,
    random_state=None,
    return_users: bool = False,
    ordered: bool = False,
):
    """Strong generalization split: hold out whole users (Liang et al., 2018).

    A random ``test_size`` share of users is held out. The training users keep all their
    interactions. Each held-out user's interactions are split into a fold-in part (the input
    to ``predict``) and a target part.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        Interactions; the stored values give the order (larger = later).
    test_size : float or int, default=0.2
        Share of users to hold out (float in (0, 1); the count is rounded up, as in
        :func:`sklearn.model_selection.train_test_split`), or their number (int in
        ``[1, n_users - 1]``). At least one user stays in each part.
    fold_in_size : float, default=0.8
        Share of each held-out user's interactions in the fold-in part, in (0, 1). A user with
        ``n`` interactions gets ``round(fold_in_size * n)`` (halves up) of them in the fold-in,
        but at least 1 and at most ``n - 1`` when ``n >= 2``; a user with a single interaction
        keeps it in the fold-in and has no target.
    random_state : int, RandomState instance or None, default=None
        Controls the choice of users and of the fold-in items.
    return_users : bool, default=False
        Also return the indices of the training and the held-out users.
    ordered : bool, default=False
        If True, the fold-in holds each user's earliest interactions and the target the latest
        ones (by value, ties broken by item index as in :func:`leave_last_out_split`) instead of
        a random share.

    Returns
    -------
    X_train : scipy.sparse.csr_matrix of shape (n_train_users, n_items)
        Rows of the training users, all interactions.
    X_test_fold_in : scipy.sparse.csr_matrix of shape (n_test_users, n_items)
        Fold-in interactions of the held-out users.
    y_test : scipy.sparse.csr_matrix of shape (n_test_users, n_items)
        Target interactions of the held-out users (same rows as ``X_test_fold_in``).
    train_users, test_users : ndarray of int64
        Sorted row indices in ``X`` of the training and held-out users; returned only when
        ``return_users=True``. Row ``i`` of ``X_train`` is user ``train_users[i]``.

    Raises
    ------
    ValueError
        If ``test_size`` or ``fold_in_size`` is out of range, or ``X`` has fewer than 2 users.
    """
    X = check_interactions(X)
    n_users = X.shape[0]
    if n_users < 2:
        raise ValueError(f"X has {n_users} user; user_holdout_split needs at least 2 users.")
    test_size = _check_fraction(test_size, "test_size", allow_int_up_to=n_users - 1)
    fold_in_size = _check_fraction(fold_in_size, "fold_in_size")
    if isinstance(test_size, int):
        n_test = test_size
    else:
        n_test = int(np.ceil(test_size * n_users - 1e-9))
        if not 1 <= n_test <= n_users - 1:
            raise ValueError(
                f"test_size={test_size} with {n_users} users gives {n_test} held-out users; "
                "at least one user is needed in both the training and the test part."
            )
    rng = check_random_state(random_state)
    perm = rng.permutation(n_users)
    test_users = np.sort(perm[:n_test]).astype(np.int64)
    train_users = np.sort(perm[n_test:]).astype(np.int64)

    X_train = _take_rows(X, train_users)
    X_test = _take_rows(X, test_users)
    rows = _row_of_nnz(X_test)
    counts = np.diff(X_test.indptr)
    n_fold = np.where(
        counts >= 2, np.clip(_round_half_up(fold_in_size * counts), 1, counts - 1), counts
    )
    if ordered:
        rank = _rank_by_value(X_test, rows)
    else:
        rank = _rank_at_random(X_test, rows, rng)
    fold_in = rank < n_fold[rows]
    X_fold_in = _masked(X_test, fold_in, rows)
    y_test = _masked(X_test, ~fold_in, rows)
    if return_users:
        return X_train, X_fold_in, y_test, train_users, test_users
    return X_train, X_fold_in, y_test


def random_holdout_split(
    X, test_size: float = 0.2, *, random_state=None
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Hold out a random share of each user's interactions.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        Interactions.
    test_size : float, default=0.2
        Share of each user's interactions to hold out, in (0, 1). A user with ``n``
        interactions has ``round(test_size * n)`` (halves up) held out, but at least 1 and at
        most ``n - 1`` when ``n >= 2``; a user with a single interaction keeps it in
        ``X_train``.
    random_state : int, RandomState instance or None, default=None
        Controls which interactions are held out.

    Returns
    -------
    X_train : scipy.sparse.csr_matrix of shape (n_users, n_items)
        The interactions kept for training, with their original values.
    y_test : scipy.sparse.csr_matrix of shape (n_users, n_items)
        The held-out interactions, with their original values.

    Raises
    ------
    ValueError
        If ``test_size`` is not a float in (0, 1).
    """
    test_size = _check_fraction(test_size, "test_size")
    X = check_interactions(X)
    rng = check_random_state(random_state)
    rows = _row_of_nnz(X)
    counts = np.diff(X.indptr)
    n_test = np.where(counts >= 2, np.clip(_round_half_up(test_size * counts), 1, counts - 1), 0)
    rank = _rank_at_random(X, rows, rng)
    test = rank < n_test[rows]
    return _masked(X, ~test, rows), _masked(X, test, rows)


def temporal_split(
    X, *, cut: float | None = None, test_size: float | None = None
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split at a global point in time: everything after the cut is held out.

    The stored values are timestamps. Every interaction with value ``> cut`` goes to
    ``y_test``; all others stay in ``X_train``, so no interaction after the cut remains in the
    training data. A user may end up with an empty row in either part.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        Interactions; the stored values are timestamps.
    cut : float, default=None
        The cut time. Exactly one of ``cut`` and ``test_size`` must be given.
    test_size : float, default=None
        Share of interactions to place after the cut, in (0, 1). With ``N`` interactions and
        ``n = round(test_size * N)`` (halves up, clipped to ``[1, N - 1]``), the cut is the
        ``(N - n)``-th smallest value, so ``n`` interactions are held out when no timestamps are
        tied at the cut, fewer when some are (tied interactions stay together in ``X_train``;
        a ``UserWarning`` is issued if that leaves ``y_test`` empty).

    Returns
    -------
    X_train : scipy.sparse.csr_matrix of shape (n_users, n_items)
        Interactions with value ``<= cut``.
    y_test : scipy.sparse.csr_matrix of shape (n_users, n_items)
        Interactions with value ``> cut``.

    Raises
    ------
    ValueError
        If not exactly one of ``cut`` and ``test_size`` is given, ``cut`` is not a finite
        number, or ``test_size`` is not a float in (0, 1).
    """
    if (cut is None) == (test_size is None):
        raise ValueError("Give exactly one of cut (a time) and test_size (a fraction).")
    if test_size is not None:
        test_size = _check_fraction(test_size, "test_size")
    elif isinstance(cut, bool) or not isinstance(cut, numbers.Real) or not np.isfinite(cut):
        raise ValueError(f"cut must be a finite number (a timestamp); got {cut!r}.")
    X = check_interactions(X)
    if test_size is not None:
        n_total = X.nnz
        if n_total < 2:
            cut = float(X.data.max()) if n_total else 0.0
        else:
            n_test = int(np.clip(_round_half_up(test_size * n_total), 1, n_total - 1))
            cut = float(np.partition(X.data, n_total - n_test - 1)[n_total - n_test - 1])
    test = X.data > cut
    if test_size is not None and X.nnz >= 2 and not test.any():
        warnings.warn(
            f"temporal_split: all interactions share the cut value {cut!r} or come before it, "
            "so y_test is empty; tied timestamps stay together in X_train.",
            UserWarning,
            stacklevel=2,
        )
    rows = _row_of_nnz(X)
    return _masked(X, ~test, rows), _masked(X, test, rows)


# --------------------------------------------------------------------------------------------
# Evaluation of several estimators
# --------------------------------------------------------------------------------------------
