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

import time
from collections.abc import Mapping

from sklearn.utils.validation import check_is_fitted

from ._splits import leave_last_out_split, random_holdout_split, temporal_split, user_holdout_split
from ._validation import check_interactions, check_targets

__all__ = [
    "leave_last_out_split",
    "user_holdout_split",
    "random_holdout_split",
    "temporal_split",
    "evaluate",
]


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
