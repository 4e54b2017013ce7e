"""Top-k ranking metrics and scikit-learn scorers.

Every metric takes held-out items ``y_true`` and rankings ``y_pred`` and is computed for all users
at once (no Python loop over users), using only numpy and scipy.

Conventions shared by all metrics
---------------------------------
* ``y_true`` is either a sparse (or dense 2-D) user x item matrix, where any stored value > 0
  marks a relevant item (binary relevance: the value itself is ignored), or a 1-D integer array
  with one target item per user (a negative index means "no target").
* ``y_pred`` is a 2-D integer array of shape ``(n_users, n_ranked)`` of item indices, best first,
  padded with ``-1``. If it has more than ``k`` columns only the first ``k`` are used; if it has
  fewer, the missing positions count as misses. ``-1`` entries are misses.
* An item repeated within a ranked row counts once, at its first (best) position; later copies
  are misses.
* Users with no relevant item are excluded from the mean. With ``average=False`` the per-user
  array holds ``nan`` for them. If no user has a relevant item, the mean is ``nan`` and a
  :class:`UserWarning` is issued.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from ._validation import check_k, check_targets, reject_tables

__all__ = [
    "ndcg_at_k",
    "recall_at_k",
    "precision_at_k",
    "hit_rate_at_k",
    "mrr_at_k",
    "coverage",
    "RecScorer",
    "make_rec_scorer",
    "get_rec_scorer",
    "make_scorers",
    "ndcg_scorer",
    "recall_scorer",
    "hit_rate_scorer",
    "mrr_scorer",
]


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _check_rankings(y_pred, name: str = "y_pred") -> np.ndarray:
    """Return ``y_pred`` as a 2-D int64 array, or raise a ``ValueError`` naming the problem."""
    if y_pred is None:
        raise ValueError(f"{name} is None; expected a 2-D array of ranked item indices.")
    reject_tables(y_pred, name, what="rankings")
    if sp.issparse(y_pred):
        raise ValueError(
            f"{name} must be a dense 2-D array of item indices (n_users, k), not a sparse matrix."
        )
    try:
        arr = np.asarray(y_pred)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be read as a 2-D integer array: {exc}") from None
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_users, k) item indices, best first; got {arr.ndim}-D "
            f"with shape {arr.shape}."
        )
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer item indices; got dtype {arr.dtype}.")
    arr = arr.astype(np.int64, copy=False)
    if (arr < -1).any():
        raise ValueError(
            f"{name} holds negative item index {int(arr.min())}; only -1 (padding) is allowed."
        )
    return arr


def _prepare(y_true, y_pred, k) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate the inputs of a metric.

    Returns
    -------
    hits : ndarray of bool, shape (n_users, min(k, n_ranked))
        Whether the item at each ranked position is relevant (first occurrences only).
    n_rel : ndarray of int64, shape (n_users,)
        Number of relevant items per user.
    k : int
        The validated cut-off.
    """
    k = check_k(k)
    pred = _check_rankings(y_pred)
    n_users = pred.shape[0]
    if sp.issparse(y_true):
        n_items = y_true.shape[1]
    else:
        y_arr = np.asarray(y_true)
        if y_arr.ndim == 2 and y_arr.shape[1] != 1:
            n_items = y_arr.shape[1]
        else:
            if y_arr.ndim == 2:  # a column of target indices
                y_true = y_arr.reshape(-1)
            top_pred = int(pred.max()) if pred.size else -1
            top_true = -1
            if y_arr.size and np.issubdtype(y_arr.dtype, np.number):
                with np.errstate(invalid="ignore"):
                    finite = y_arr[np.isfinite(y_arr)]
                top_true = int(finite.max()) if finite.size else -1
            n_items = max(top_pred, top_true, 0) + 1
    y = check_targets(y_true, n_rows=n_users, n_items=n_items, name="y_true")
    if not y.has_sorted_indices:
        y.sort_indices()
    pred = pred[:, :k]
    if pred.size and int(pred.max()) >= n_items:
        raise ValueError(
            f"y_pred holds item index {int(pred.max())}, outside the catalogue of {n_items} items "
            f"(y_true has {n_items} columns)."
        )
    n_rel = np.diff(y.indptr).astype(np.int64)
    if pred.shape[1] == 0 or y.nnz == 0:
        return np.zeros(pred.shape, dtype=bool), n_rel, k

    # (user, item) pairs as one sorted int64 key: rows are in order, columns sorted per row.
    row_of_nnz = np.repeat(np.arange(n_users, dtype=np.int64), n_rel)
    true_keys = row_of_nnz * n_items + y.indices.astype(np.int64)
    valid = pred >= 0
    query = np.where(valid, np.arange(n_users, dtype=np.int64)[:, None] * n_items + pred, -1)
    pos = np.searchsorted(true_keys, query)
    np.minimum(pos, true_keys.size - 1, out=pos)
    hits = valid & (true_keys[pos] == query)

    # An item repeated in a row counts once, at its first position (stable sort keeps it first).
    if pred.shape[1] > 1:
        order = np.argsort(pred, axis=1, kind="stable")
        sorted_pred = np.take_along_axis(pred, order, axis=1)
        dup_sorted = np.zeros(pred.shape, dtype=bool)
        dup_sorted[:, 1:] = sorted_pred[:, 1:] == sorted_pred[:, :-1]
        dup = np.empty_like(dup_sorted)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        hits &= ~dup
    return hits, n_rel, k


def _finish(per_user: np.ndarray, n_rel: np.ndarray, average: bool, name: str):
    """Set users without relevant items to NaN and average over the others if asked."""
    has_rel = n_rel > 0
    per_user = np.where(has_rel, per_user, np.nan)
    if not average:
        return per_user
    if not has_rel.any():
        warnings.warn(
            f"{name}: no user has a relevant item in y_true; the score is undefined (nan).",
            UserWarning,
            stacklevel=3,
        )
        return float("nan")
    return float(per_user[has_rel].mean())


_DOC_PARAMS = """
    Parameters
    ----------
    y_true : {sparse matrix, array-like} of shape (n_users, n_items) or array-like of (n_users,)
        Held-out items. A matrix whose stored values > 0 mark relevant items (binary relevance),
        or a 1-D array with one target item index per user (negative = no target).
    y_pred : array-like of int, shape (n_users, n_ranked)
        Ranked item indices, best first, padded with -1. Only the first ``k`` columns are used;
        missing positions and -1 count as misses; a repeated item counts once (first occurrence).
    k : int, default=10
        Cut-off. Any positive integer: nothing of size ``k`` is allocated, so a cut-off beyond
        the catalogue (``k=10**9``) costs no more than the catalogue size.
    average : bool, default=True
        If True, return the mean over users that have at least one relevant item. If False,
        return the per-user values, with NaN for users without relevant items.

    Returns
    -------
    score : float or ndarray of shape (n_users,)
        The mean score, or the per-user scores when ``average=False``. The mean is NaN (with a
        ``UserWarning``) when no user has a relevant item.

    Raises
    ------
    ValueError
        If ``y_pred`` is not a 2-D integer array, its number of rows differs from ``y_true``'s,
        it holds item indices outside the catalogue or below -1, or ``k`` is not a positive
        integer.
"""


def _add_doc(func: Callable) -> Callable:
    func.__doc__ = func.__doc__.rstrip() + "\n" + _DOC_PARAMS
    return func


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


@_add_doc
def ndcg_at_k(y_true, y_pred, k: int = 10, *, average: bool = True) -> float | np.ndarray:
    """Normalised discounted cumulative gain at ``k`` (binary relevance).

    ``DCG@k = sum_{r=1..k} rel_r / log2(r + 1)``, divided by the DCG of an ideal ranking that puts
    ``min(k, |relevant|)`` relevant items first.
    """
    hits, n_rel, k = _prepare(y_true, y_pred, k)
    # Discounts of the positions that can matter: the ranked ones and, for the ideal DCG,
    # min(k, |relevant|) ones; never k of them (k may be huge: "ndcg@99999999999").
    depth = min(k, max(hits.shape[1], int(n_rel.max(initial=0))))
    discount = 1.0 / np.log2(np.arange(2, depth + 2, dtype=np.float64))
    dcg = hits @ discount[: hits.shape[1]] if hits.shape[1] else np.zeros(hits.shape[0])
    ideal = np.concatenate(([0.0], np.cumsum(discount)))[np.minimum(n_rel, depth)]
    with np.errstate(divide="ignore", invalid="ignore"):
        per_user = dcg / ideal
    return _finish(per_user, n_rel, average, "ndcg_at_k")


@_add_doc
def recall_at_k(y_true, y_pred, k: int = 10, *, average: bool = True) -> float | np.ndarray:
    """Recall at ``k``: hits in the top ``k`` divided by ``min(k, |relevant|)``.

    The denominator follows Liang et al. (2018), "Variational Autoencoders for Collaborative
    Filtering", so that a perfect ranking scores 1 even when a user has more than ``k``
    relevant items. (Classic recall divides by ``|relevant|``.)
    """
    hits, n_rel, k = _prepare(y_true, y_pred, k)
    k = min(k, max(int(n_rel.max(initial=0)), 1))  # a k beyond int64 (2**63) stays exact
    with np.errstate(divide="ignore", invalid="ignore"):
        per_user = hits.sum(axis=1) / np.minimum(n_rel, k)
    return _finish(per_user, n_rel, average, "recall_at_k")


@_add_doc
def precision_at_k(y_true, y_pred, k: int = 10, *, average: bool = True) -> float | np.ndarray:
    """Precision at ``k``: hits in the top ``k`` divided by ``k``.

    The denominator is always ``k``, also when ``y_pred`` has fewer columns or -1 padding.
    """
    hits, n_rel, k = _prepare(y_true, y_pred, k)
    per_user = hits.sum(axis=1) / float(k)
    return _finish(per_user, n_rel, average, "precision_at_k")


@_add_doc
def hit_rate_at_k(y_true, y_pred, k: int = 10, *, average: bool = True) -> float | np.ndarray:
    """Hit rate at ``k``: 1 if any relevant item is in the top ``k``, else 0."""
    hits, n_rel, k = _prepare(y_true, y_pred, k)
    per_user = hits.any(axis=1).astype(np.float64)
    return _finish(per_user, n_rel, average, "hit_rate_at_k")


@_add_doc
def mrr_at_k(y_true, y_pred, k: int = 10, *, average: bool = True) -> float | np.ndarray:
    """Mean reciprocal rank at ``k``: ``1 / rank`` of the first relevant item in the top ``k``.

    A user whose top ``k`` holds no relevant item scores 0.
    """
    hits, n_rel, k = _prepare(y_true, y_pred, k)
    if hits.shape[1]:
        first = hits.argmax(axis=1)
        per_user = np.where(hits.any(axis=1), 1.0 / (first + 1.0), 0.0)
    else:
        per_user = np.zeros(hits.shape[0])
    return _finish(per_user, n_rel, average, "mrr_at_k")


def coverage(y_pred, n_items: int, k: int | None = None) -> float:
    """Catalogue coverage: the fraction of items that appear in at least one top-``k`` list.

    Parameters
    ----------
    y_pred : array-like of int, shape (n_users, n_ranked)
        Ranked item indices, best first, padded with -1 (ignored).
    n_items : int
        Number of items in the catalogue.
    k : int, default=None
        Cut-off; None uses every column of ``y_pred``.

    Returns
    -------
    coverage : float
        Number of distinct recommended items divided by ``n_items``, in [0, 1].

    Raises
    ------
    ValueError
        If ``y_pred`` is not a 2-D integer array or holds items outside ``[-1, n_items)``, or
        ``n_items`` or ``k`` is not a positive integer.
    """
    n_items = check_k(n_items, name="n_items")
    pred = _check_rankings(y_pred)
    if k is not None:
        pred = pred[:, : check_k(k)]
    items = pred[pred >= 0]
    if items.size and int(items.max()) >= n_items:
        raise ValueError(
            f"y_pred holds item index {int(items.max())}, outside the catalogue of {n_items} items."
        )
    seen = np.zeros(n_items, dtype=bool)
    seen[items] = True
    return float(seen.sum()) / n_items


# --------------------------------------------------------------------------------------------
# Scorers
# --------------------------------------------------------------------------------------------


def _coverage_metric(y_true, y_pred, k: int = 10, *, average: bool = True) -> float:
    """Coverage at ``k`` with the catalogue size read from ``y_true``'s columns (for scorers)."""
    if sp.issparse(y_true) or (np.ndim(y_true) == 2 and np.shape(y_true)[1] > 1):
        return coverage(y_pred, n_items=int(np.shape(y_true)[1]), k=k)
    raise ValueError(
        "coverage needs the catalogue size: pass y_true as a (n_users, n_items) matrix, or "
        "score through a RecScorer, which reads it from the estimator."
    )


_METRICS: dict[str, Callable] = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "hit_rate": hit_rate_at_k,
    "mrr": mrr_at_k,
    "coverage": _coverage_metric,
}
_ALIASES = {
    "hr": "hit_rate",
    "hitrate": "hit_rate",
    "hit": "hit_rate",
    "ndcg_at_k": "ndcg",
    "catalog_coverage": "coverage",
    "catalogue_coverage": "coverage",
}


def _metric_name(metric) -> str | None:
    """Return the registered name of ``metric`` (a name or one of the metric functions)."""
    if isinstance(metric, str):
        key = metric.strip().lower().replace("-", "_")
        key = _ALIASES.get(key, key)
        if key.endswith("_at_k"):
            key = key[: -len("_at_k")]
        if key not in _METRICS:
            raise ValueError(
                f"Unknown metric {metric!r}; expected one of {sorted(_METRICS)} or a callable "
                "metric(y_true, y_pred, k=k)."
            )
        return key
    for name, func in _METRICS.items():
        if metric is func:
            return name
    return None


class RecScorer:
    """A scorer for ``scoring=`` in :class:`~sklearn.model_selection.GridSearchCV` and friends.

    Calling ``scorer(estimator, X, y)`` returns ``metric(y, estimator.predict(X, k=k), k=k)``.
    Greater is better for every built-in metric. Build one with :func:`make_rec_scorer` or
    :func:`get_rec_scorer`, or several at once with :func:`make_scorers`.

    Parameters
    ----------
    metric : str or callable
        A metric name (``"ndcg"``, ``"recall"``, ``"precision"``, ``"hit_rate"``, ``"mrr"``,
        ``"coverage"``) or a function ``metric(y_true, y_pred, k=k) -> float``. A custom
        function must be defined at module level for the scorer to be picklable. Coverage is
        the share of the estimator's catalogue (``n_features_in_``) in the top-``k`` lists of
        the scored users, whatever ``y`` holds.
    k : int, default=10
        Cut-off passed both to ``estimator.predict`` and to the metric.
    """

    def __init__(self, metric: str | Callable = "ndcg", k: int = 10) -> None:
        name = _metric_name(metric)
        if name is None and not callable(metric):
            raise ValueError(f"metric must be a metric name or a callable; got {metric!r}.")
        self.metric = name if name is not None else metric
        self.k = check_k(k)

    @property
    def metric_func(self) -> Callable:
        """The metric function this scorer calls."""
        return _METRICS[self.metric] if isinstance(self.metric, str) else self.metric

    def __call__(self, estimator, X, y=None, **kwargs) -> float:
        """Score ``estimator``'s top-``k`` predictions for ``X`` against the held-out ``y``.

        Parameters
        ----------
        estimator : object
            A fitted recommender with a ``predict(X, k=...)`` method.
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            The users' known interactions (input to ``predict``).
        y : {sparse matrix, array-like}, default=None
            The users' held-out items. ``None`` (``GridSearchCV(...).fit(X)`` without ``y``):
            each user's latest interaction is held out of ``X`` and predicted from the rest,
            as :meth:`skrec.base.BaseRecommender.score` does.
        **kwargs : dict
            ``user_features`` (when given) goes to ``predict``; the rest is ignored
            (accepted for compatibility with scikit-learn's scorer calls).

        Returns
        -------
        score : float
            The metric averaged over users with at least one held-out item.
        """
        users = kwargs.get("user_features")
        if y is None and self.metric != "coverage":
            from ._splits import leave_last_out_split

            X, y = leave_last_out_split(X)  # predict then checks its number of items
        y_pred = estimator.predict(X, k=self.k,
                                   **({} if users is None else {"user_features": users}))
        if self.metric == "coverage":
            return coverage(y_pred, n_items=estimator.n_features_in_, k=self.k)
        return float(self.metric_func(y, y_pred, k=self.k))

    def __repr__(self) -> str:
        metric = (
            repr(self.metric)
            if isinstance(self.metric, str)
            else getattr(self.metric, "__name__", repr(self.metric))
        )
        return f"make_rec_scorer({metric}, k={self.k})"

    def __eq__(self, other) -> bool:
        return isinstance(other, RecScorer) and self.metric == other.metric and self.k == other.k

    def __hash__(self) -> int:
        return hash((RecScorer, self.metric, self.k))


def make_rec_scorer(metric: str | Callable, k: int = 10) -> RecScorer:
    """Make a picklable scorer ``scorer(estimator, X, y) -> float`` from a ranking metric.

    Parameters
    ----------
    metric : str or callable
        ``"ndcg"``, ``"recall"``, ``"precision"``, ``"hit_rate"``, ``"mrr"`` or ``"coverage"``,
        one of this module's ``*_at_k`` functions, or any
        ``metric(y_true, y_pred, k=k) -> float``.
    k : int, default=10
        Cut-off, passed to ``estimator.predict(X, k=k)`` and to the metric.

    Returns
    -------
    scorer : RecScorer
        Callable as ``scorer(estimator, X, y)``; usable as ``scoring=`` in scikit-learn.

    Examples
    --------
    >>> from skrec.metrics import make_rec_scorer
    >>> make_rec_scorer("recall", k=20)
    make_rec_scorer('recall', k=20)
    """
    return RecScorer(metric, k=k)


_SCORER_RE = re.compile(r"^\s*([A-Za-z_\-]+)\s*(?:@\s*(\d+))?\s*$")


def get_rec_scorer(scoring: str | RecScorer) -> RecScorer:
    """Get a scorer from a string ``"name@k"`` such as ``"ndcg@20"`` or ``"recall@50"``.

    Parameters
    ----------
    scoring : str or RecScorer
        ``"name"`` or ``"name@k"`` where name is ``ndcg``, ``recall``, ``precision``,
        ``hit_rate``, ``mrr`` or ``coverage``; without ``@k``, k is 10. A :class:`RecScorer`
        is returned as is.

    Returns
    -------
    scorer : RecScorer

    Raises
    ------
    ValueError
        If the string cannot be parsed or names an unknown metric.
    """
    if isinstance(scoring, RecScorer):
        return scoring
    if not isinstance(scoring, str):
        raise ValueError(f"scoring must be a string like 'ndcg@10'; got {scoring!r}.")
    match = _SCORER_RE.match(scoring)
    if match is None:
        raise ValueError(f"Could not parse scoring {scoring!r}; expected 'name@k', e.g. 'ndcg@10'.")
    name, k = match.group(1), match.group(2)
    k_int = int(k) if k is not None else 10
    if k_int < 1:
        raise ValueError(f"k must be a positive integer in {scoring!r}.")
    return RecScorer(name, k=k_int)


ndcg_scorer = RecScorer("ndcg", k=10)
recall_scorer = RecScorer("recall", k=10)
hit_rate_scorer = RecScorer("hit_rate", k=10)
mrr_scorer = RecScorer("mrr", k=10)


def make_scorers(metrics) -> dict[str, RecScorer]:
    """Scorers for several metrics at once: ``scoring=`` of ``GridSearchCV`` and friends.

    scikit-learn resolves a string ``scoring`` in its own registry of scorers, which has no
    ranking metrics (``GridSearchCV(..., scoring="ndcg@10")`` fails), and offers no public way
    to add to it. It does accept a dict of name -> scorer for multi-metric evaluation: this
    function builds that dict from skrec's metric names. With several metrics, name the one
    that picks the best candidate with ``refit=``.

    Parameters
    ----------
    metrics : str or RecScorer, or sequence of them
        Metric names ``"name@k"`` such as ``"ndcg@10"``, ``"recall@20"``, ``"mrr@10"`` or
        ``"coverage@10"`` (see :func:`get_rec_scorer`).

    Returns
    -------
    scorers : dict of str to RecScorer
        One scorer per metric, keyed by the metric's name as given (a RecScorer's key is its
        ``"name@k"``). ``GridSearchCV`` reports ``mean_test_<key>`` in ``cv_results_``.

    Raises
    ------
    ValueError
        If a name cannot be parsed, names an unknown metric, or appears twice.

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from skrec import EASERecommender
    >>> from skrec.datasets import make_interactions
    >>> from skrec.metrics import make_scorers
    >>> from skrec.model_selection import leave_last_out_split
    >>> X, y = leave_last_out_split(make_interactions(n_users=300, n_items=50, random_state=0))
    >>> search = GridSearchCV(
    ...     EASERecommender(), {"l2": [10.0, 100.0]},
    ...     scoring=make_scorers(["ndcg@10", "recall@20"]), refit="ndcg@10", cv=2,
    ... ).fit(X, y)
    >>> sorted(k for k in search.cv_results_ if k.startswith("mean_test"))
    ['mean_test_ndcg@10', 'mean_test_recall@20']
    """
    if isinstance(metrics, str | RecScorer):
        metrics = [metrics]
    try:
        metrics = list(metrics)
    except TypeError:
        raise ValueError(
            f"metrics must be a metric name such as 'ndcg@10' or a list of them; got {metrics!r}."
        ) from None
    if not metrics:
        raise ValueError("metrics is empty; give at least one name, e.g. ['ndcg@10'].")
    scorers: dict[str, RecScorer] = {}
    for metric in metrics:
        scorer = get_rec_scorer(metric)
        key = metric.strip() if isinstance(metric, str) else f"{_key_name(scorer)}@{scorer.k}"
        if key in scorers:
            raise ValueError(f"metric {key!r} appears twice in metrics.")
        scorers[key] = scorer
    return scorers


def _key_name(scorer: RecScorer) -> str:
    metric = scorer.metric
    return metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")
