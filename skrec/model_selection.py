"""Splitting interaction matrices into training input and held-out targets, and evaluating.

Every splitter validates its input with :func:`skrec._validation.check_interactions` (so the
caller's matrix is never modified) and returns canonical CSR matrices
(``scipy.sparse.csr_matrix``, ``float64``, sorted indices) that keep the **original stored
values**: a sequence model can still order a user's items by them, and ``X_train + y_test``
rebuilds the validated input exactly. A (user, item) pair stored more than once (a COO
matrix, a non-canonical CSR one) is **one** interaction at its latest (largest) value, as
everywhere in skrec; scipy would sum the copies (two timestamps into a fake, much later
one), so ``X_train + y_test`` equals that deduplicated matrix, not ``X.toarray()``.
Randomised splitters are deterministic given ``random_state``.

:func:`evaluate` fits and scores several recommenders on one split and returns one table.
"""

from __future__ import annotations

import numbers
import time
import warnings
from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._validation import check_interactions, check_k, check_targets

__all__ = [
    "leave_last_out_split",
    "user_holdout_split",
    "random_holdout_split",
    "temporal_split",
    "evaluate",
]


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


def _named_estimators(estimators) -> list[tuple[str, object]]:
    if isinstance(estimators, Mapping):
        named = [(str(name), est) for name, est in estimators.items()]
    elif hasattr(estimators, "fit") and hasattr(estimators, "predict"):
        named = [(type(estimators).__name__, estimators)]
    else:
        try:
            items = list(estimators)
        except TypeError:
            raise TypeError(
                "estimators must be a dict of name -> recommender or a list of recommenders; "
                f"got {type(estimators).__name__}."
            ) from None
        named, seen = [], {}
        for est in items:
            base = type(est).__name__
            seen[base] = seen.get(base, 0) + 1
            named.append((base if seen[base] == 1 else f"{base} ({seen[base]})", est))
    if not named:
        raise ValueError("estimators is empty; give at least one recommender.")
    for name, est in named:
        if not (hasattr(est, "fit") and hasattr(est, "predict")):
            raise TypeError(
                f"estimators[{name!r}] is a {type(est).__name__}, not a recommender (it needs "
                "fit and predict)."
            )
    return named


def evaluate(
    estimators,
    X,
    y,
    *,
    metrics=("ndcg@10", "recall@20", "coverage@10"),
    X_fit=None,
    fit: bool = True,
    filter_seen: bool = True,
    as_frame: bool | None = None,
):
    """Fit and score several recommenders on one split: one row per estimator, one table.

    Each estimator is fitted on ``X_fit`` (by default ``X``), asked for its top-``k`` items
    for the users of ``X`` once (``k`` the largest cut-off in ``metrics``), and every metric
    is computed from that one ranking against ``y``. Fit and predict times are measured
    around those two calls (wall clock, in seconds).

    Parameters
    ----------
    estimators : dict of str to recommender, or list of recommenders
        The models; names are the dict's keys, or the class names (a repeated class name
        gets a suffix: ``"EASERecommender (2)"``). They are fitted **in place** when
        ``fit=True`` (use them afterwards, e.g. for ``similar_items``).
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        Users' known interactions: the input to ``predict`` (and to ``fit`` unless
        ``X_fit`` is given).
    y : {sparse matrix, array-like} of shape (n_users, n_items) or (n_users,)
        Held-out items of the same users.
    metrics : str or sequence of str, default=("ndcg@10", "recall@20", "coverage@10")
        Metric names ``"name@k"``: ``ndcg``, ``recall``, ``precision``, ``hit_rate``,
        ``mrr`` or ``coverage`` (see :func:`skrec.metrics.get_rec_scorer`), or
        :class:`~skrec.metrics.RecScorer` objects.
    X_fit : {array-like, sparse matrix} of shape (n_fit_users, n_items), default=None
        What to fit on, when not ``X``: the training users of
        :func:`user_holdout_split` (then ``X`` is the held-out users' fold-in part).
    fit : bool, default=True
        Fit each estimator first. With ``False`` the estimators must be fitted already and
        ``fit_time`` is NaN.
    filter_seen : bool, default=True
        Leave each user's items in ``X`` out of the rankings (the usual protocol).
    as_frame : bool, default=None
        Return a ``pandas.DataFrame`` (``True``) or a dict of lists (``False``); ``None``:
        a DataFrame when pandas is importable.

    Returns
    -------
    results : pandas.DataFrame or dict of str to list
        Indexed by estimator name (index name ``"estimator"``), with one column per metric
        (named as given) and ``fit_time`` and ``predict_time`` in seconds. As a dict, the
        names are under ``"estimator"``.

    Raises
    ------
    ValueError
        If a metric name is unknown, or ``X`` and ``y`` do not match.
    sklearn.exceptions.NotFittedError
        With ``fit=False``, if an estimator is not fitted.

    See Also
    --------
    skrec.metrics.make_scorers : The same metric names as ``scoring=`` for ``GridSearchCV``.

    Examples
    --------
    >>> from skrec import EASERecommender, PopularityRecommender
    >>> from skrec.datasets import make_interactions
    >>> from skrec.model_selection import evaluate, leave_last_out_split
    >>> X, y = leave_last_out_split(make_interactions(n_users=300, n_items=50, random_state=0))
    >>> table = evaluate([PopularityRecommender(), EASERecommender(l2=50.0)], X, y,
    ...                  metrics=["ndcg@10", "recall@20", "coverage@10"])
    >>> table.columns.tolist()
    ['ndcg@10', 'recall@20', 'coverage@10', 'fit_time', 'predict_time']
    >>> table.index.tolist()
    ['PopularityRecommender', 'EASERecommender']
    """
    from .metrics import coverage, make_scorers

    named = _named_estimators(estimators)
    scorers = make_scorers(metrics)
    k_max = max(scorer.k for scorer in scorers.values())
    X = check_interactions(X)
    y = check_targets(y, n_rows=X.shape[0], n_items=X.shape[1])
    columns: dict[str, list] = {"estimator": [], **{key: [] for key in scorers}}
    columns.update(fit_time=[], predict_time=[])
    for name, est in named:
        if fit:
            start = time.perf_counter()
            est.fit(X if X_fit is None else X_fit)
            fit_time = time.perf_counter() - start
        else:
            check_is_fitted(est)
            fit_time = float("nan")
        start = time.perf_counter()
        ids = est.predict(X, k=k_max, filter_seen=filter_seen)
        predict_time = time.perf_counter() - start
        columns["estimator"].append(name)
        for key, scorer in scorers.items():
            if scorer.metric == "coverage":
                value = coverage(ids, n_items=est.n_features_in_, k=scorer.k)
            else:
                value = scorer.metric_func(y, ids[:, : scorer.k], k=scorer.k)
            columns[key].append(float(value))
        columns["fit_time"].append(fit_time)
        columns["predict_time"].append(predict_time)
    if as_frame is None or as_frame:
        try:
            import pandas as pd
        except ImportError:
            if as_frame:
                raise ImportError(
                    'evaluate(as_frame=True) needs pandas: pip install "skrec[pandas]".'
                ) from None
            return columns
        return pd.DataFrame(columns).set_index("estimator")
    return columns
