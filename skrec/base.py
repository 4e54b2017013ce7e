"""The contract every skrec estimator shares.

:class:`BaseRecommender` holds the one fit-time validation, the one fold-in ranking path
(batched scoring, seen-item filtering, popularity for cold users, ``torch.topk``), the default
score (NDCG@k), scikit-learn tags and CPU-safe pickling. An estimator implements only

* ``_fit(X, y, user_features=None)`` -- learn from validated CSR matrices (``y`` is ``None``
  or held-out items);
* ``_user_scores(X, user_features=None)`` -- return a ``(n_rows, n_items)`` float tensor of
  scores for a CSR batch of users (any device); higher is better.

Estimators that read side features of the users set ``_reads_user_features``: the public
methods validate ``user_features`` (one row per row of ``X``) and pass the rows of each batch
along with ``X``'s (``user_features`` is ``None`` when there are none, and always for the
other estimators).

and, for :meth:`~BaseRecommender.similar_items`, ``_item_similarity(query)`` -- a
``(len(query), n_items)`` float tensor: how similar each item is to each query item (higher =
more similar); the neural recommenders define it as the cosine of their item vectors.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ._feature_validation import check_user_features
from ._parallel import limit_torch_threads
from ._validation import (
    check_batch_size,
    check_interactions,
    check_k,
    check_targets,
    warn_if_not_ordered,
)

__all__ = ["BaseRecommender", "mask_scores", "popularity_scores", "rank_top_k"]

#: Upper bound on the number of score cells materialised at once by the ranking path.
_MAX_SCORE_CELLS = 1 << 24


def _default_batch_size(n_items: int) -> int:
    return max(1, _MAX_SCORE_CELLS // max(n_items, 1))


def mask_scores(
    scores: torch.Tensor,
    X: sp.csr_matrix,
    *,
    filter_seen: bool = True,
    candidates: torch.Tensor | None = None,
    cold_scores: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply cold-user scores, the candidate restriction and seen-item filtering in place.

    Parameters
    ----------
    scores : torch.Tensor of shape (n_rows, n_items)
        Scores of one batch of users; modified in place and returned.
    X : scipy.sparse.csr_matrix of shape (n_rows, n_items)
        The same users' interactions.
    filter_seen : bool, default=True
        Set the scores of the items in each row to ``-inf`` (one vectorised scatter).
    candidates : torch.Tensor of shape (n_items,), dtype bool, default=None
        Items allowed; the others get ``-inf``.
    cold_scores : torch.Tensor of shape (n_items,), default=None
        Scores given to users with an empty row.

    Returns
    -------
    scores : torch.Tensor
        The same tensor.
    """
    device = scores.device
    counts = np.diff(X.indptr)
    if cold_scores is not None:
        cold = np.flatnonzero(counts == 0)
        if cold.size:
            scores[torch.as_tensor(cold, device=device)] = cold_scores.to(device, scores.dtype)
    neg_inf = torch.tensor(float("-inf"), dtype=scores.dtype, device=device)
    if candidates is not None:
        scores.masked_fill_(~candidates.to(device), neg_inf)
    if filter_seen and X.nnz:
        rows = np.repeat(np.arange(X.shape[0]), counts)
        scores.index_put_(
            (torch.as_tensor(rows, device=device), torch.as_tensor(X.indices, device=device)),
            neg_inf,
        )
    return scores


def rank_top_k(
    scores: torch.Tensor,
    X: sp.csr_matrix,
    k: int,
    *,
    filter_seen: bool = True,
    candidates: torch.Tensor | None = None,
    cold_scores: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items of a batch of score rows: the one ranking path of skrec.

    Parameters
    ----------
    scores : torch.Tensor of shape (n_rows, n_items)
        Scores of one batch of users; modified in place.
    X : scipy.sparse.csr_matrix of shape (n_rows, n_items)
        The same users' interactions (seen items, and which rows are cold).
    k : int
        Number of items to return per user: clamp it first with
        ``check_k(k, limit=n_items)`` (the caller allocates its ``(n_rows, k)`` output;
        columns beyond the catalogue would only ever hold padding).
    filter_seen : bool, default=True
        Exclude items the user already interacted with.
    candidates : torch.Tensor of shape (n_items,), dtype bool, default=None
        Items allowed in the result; ``None`` allows all.
    cold_scores : torch.Tensor of shape (n_items,), default=None
        Scores used for users with an empty row (popularity), if given.

    Returns
    -------
    ids : ndarray of shape (n_rows, k), dtype int64
        Item indices, best first, ``-1`` where fewer than ``k`` candidates remain.
    item_scores : ndarray of shape (n_rows, k), dtype float32
        Their scores, ``-inf`` for padding.
    """
    mask_scores(scores, X, filter_seen=filter_seen, candidates=candidates,
                cold_scores=cold_scores)
    n_items = scores.shape[1]
    k_eff = min(k, n_items)
    top_scores, top_ids = torch.topk(scores, k_eff, dim=1, largest=True, sorted=True)
    top_ids = torch.where(torch.isneginf(top_scores), torch.full_like(top_ids, -1), top_ids)
    ids = top_ids.cpu().numpy().astype(np.int64, copy=False)
    vals = top_scores.float().cpu().numpy()
    if k_eff < k:
        pad = k - k_eff
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, pad)), constant_values=-np.inf)
    return ids, vals


def interaction_counts(X: sp.csr_matrix, y: sp.csr_matrix | None = None) -> np.ndarray:
    """Number of interactions of each item in ``X`` (plus ``y``), as float64."""
    counts = np.bincount(X.indices, minlength=X.shape[1]).astype(np.float64)
    if y is not None:
        counts += np.bincount(y.indices, minlength=X.shape[1])
    return counts


def popularity_scores(counts: np.ndarray) -> np.ndarray:
    """Each item's share of the interactions, made strictly decreasing in popularity order.

    The scores of users with an empty row (see :meth:`BaseRecommender._cold_scores`) and of
    :class:`~skrec.baselines.PopularityRecommender`: ``counts / counts.sum()`` in float32,
    with ties broken towards the **lower item index** by lowering each later tied item by one
    float32 step (one unit in the last place) below the item before it. Every ranking path
    (``torch.topk`` in :func:`rank_top_k`, the exported scoring graph, sessions) then ranks
    popular items in one deterministic order, the order of a stable sort by decreasing count,
    without a tie-break of its own; each score differs from the exact share by at most as
    many float32 steps as there are items tied with it or just above it.

    Parameters
    ----------
    counts : ndarray of shape (n_items,)
        Interactions per item (``item_popularity_``).

    Returns
    -------
    scores : ndarray of shape (n_items,), dtype float32
        Strictly decreasing along ``np.argsort(-counts, kind="stable")``; they sum to about 1
        (all about 0 when ``counts`` holds no interaction). Items without interactions score
        0 or just below it (-1e-45, -3e-45, ...: tiny negative numbers that keep the order).
    """
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.size
    total = counts.sum()
    share = counts / total if total > 0 else np.zeros(n)
    order = np.argsort(-counts, kind="stable")
    # float32 bit patterns as integers order non-negative floats; a running minimum of
    # (key + position) makes them strictly decreasing by one step where tied.
    key = share[order].astype(np.float32).view(np.int32).astype(np.int64)
    position = np.arange(n, dtype=np.int64)
    key = np.minimum.accumulate(key + position) - position
    magnitude = np.abs(key).astype(np.int32).view(np.float32)
    scores = np.empty(n, dtype=np.float32)
    scores[order] = np.where(key < 0, -magnitude, magnitude)
    return scores


def holdout_targets(X: sp.csr_matrix, y, *, n_items: int):
    """``(X, y)`` to score: ``y`` validated, or, when it is ``None``, each user's latest
    interaction held out of ``X`` (leave-last-out), as :meth:`BaseRecommender.score` and
    :class:`~skrec.metrics.RecScorer` do without targets (``GridSearchCV(...).fit(X)``).

    Parameters
    ----------
    X : scipy.sparse.csr_matrix of shape (n_users, n_items)
        Validated interactions.
    y : {sparse matrix, array-like} or None
        Held-out items of the same users, or ``None``.
    n_items : int
        The catalogue size.

    Returns
    -------
    X : scipy.sparse.csr_matrix
        The input of ``predict`` (without the held-out items when ``y`` was ``None``).
    y : scipy.sparse.csr_matrix
        The held-out items.
    """
    if y is None:
        from ._splits import leave_last_out_split

        return leave_last_out_split(X)
    return X, check_targets(y, n_rows=X.shape[0], n_items=n_items)


def _has_item_similarity(est) -> bool:
    """Whether ``est`` defines an item-item similarity (the condition of ``similar_items``)."""
    cls = type(est)
    if cls._item_similarity is BaseRecommender._item_similarity:
        from ._registry import estimators_with

        raise AttributeError(
            f"{cls.__name__} has no item-item similarity (it does not relate items to each "
            "other); similar_items is available on "
            f"{', '.join(estimators_with('_item_similarity', BaseRecommender))}."
        )
    return True


class BaseRecommender(BaseEstimator):
    """Base class for skrec recommenders (not meant to be used directly).

    Rows of ``X`` are users (samples), columns are items (features). A stored value > 0 is an
    interaction; sequence models also read the order from the values (larger = later).
    Every method reads a user's state from its row of ``X`` (fold-in), so users unseen at fit
    time are served without retraining.
    """

    #: Whether the estimator reads the stored values as the order of each user's interactions
    #: (sequence models). Fit then warns when the values look like ratings or 0/1 flags.
    _values_are_order: bool = False

    #: Whether the estimator reads side features of the users (``user_features``).
    _reads_user_features: bool = False

    # ------------------------------------------------------------------ sklearn plumbing
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = True
        tags.target_tags.required = False
        tags.requires_fit = True
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "n_features_in_")

    # ------------------------------------------------------------------ validation
    def _validate_fit_data(self, X, y=None) -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
        X = check_interactions(X)
        if self._values_are_order:
            warn_if_not_ordered(X, type(self).__name__)
        if y is not None:
            y = check_targets(y, n_rows=X.shape[0], n_items=X.shape[1])
        return X, y

    def _validate_X(self, X) -> sp.csr_matrix:
        check_is_fitted(self)
        return check_interactions(X, n_items=self.n_features_in_, estimator=type(self).__name__)

    def _check_user_features(self, user_features, n_rows: int, *, fitting: bool = False):
        """``user_features`` validated against ``n_rows`` rows of ``X`` (``None`` if absent).

        At fit any width is accepted (and recorded in ``n_user_features_`` by the caller);
        afterwards a model fitted with user features needs them, of the same width, and one
        fitted without them refuses them.
        """
        name = type(self).__name__
        if not self._reads_user_features:
            if user_features is not None:
                raise ValueError(f"{name} does not read user_features (AERecommender does).")
            return None
        n_fitted = None if fitting else getattr(self, "n_user_features_", 0)
        if user_features is None:
            if n_fitted:
                raise ValueError(
                    f"This {name} was fitted with user_features ({n_fitted} columns): pass "
                    "user_features= with one row per row of X (under GridSearchCV, route "
                    "them to score with set_score_request(user_features=True); see the "
                    "Side features guide)."
                )
            return None
        if n_fitted == 0:
            raise ValueError(f"This {name} was fitted without user_features; refit it with "
                             "them to use them.")
        return check_user_features(user_features, n_users=n_rows, n_features=n_fitted)

    def _check_params(self) -> None:
        """Validate hyper-parameters; called first in :meth:`fit` (never in ``__init__``)."""

    def _set_fit_state(self, X: sp.csr_matrix, y: sp.csr_matrix | None,
                       user_features=None) -> None:
        """Record what every recommender learns: the catalogue size and item popularity (and
        the width of the user features, in estimators that read them)."""
        self.n_features_in_ = X.shape[1]
        self.item_popularity_ = interaction_counts(X, y)
        if self._reads_user_features:
            self.n_user_features_ = 0 if user_features is None else user_features.shape[1]

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, *, user_features=None):
        """Fit the recommender on user x item interactions.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Interactions; a stored value > 0 is an interaction (and its order for sequence
            models: larger = later). Never modified.
        y : {sparse matrix, array-like} of shape (n_users, n_items) or (n_users,), default=None
            Held-out items of the same users (for example from
            :func:`skrec.model_selection.leave_last_out_split`); when given, training uses the
            union, i.e. each training user's whole history, with ``y``'s items after ``X``'s.
        user_features : {array-like, sparse matrix} of shape (n_users, n_user_features), \
default=None
            Side features of the users, row ``i`` for row ``i`` of ``X`` (per-sample, so
            scikit-learn's splitters slice them with ``X``); estimators that read them
            (AERecommender) then need them, of the same width, in every ranking method.

        Returns
        -------
        self : object
            The fitted recommender.
        """
        self._check_params()
        X, y = self._validate_fit_data(X, y)
        U = self._check_user_features(user_features, X.shape[0], fitting=True)
        self._set_fit_state(X, y, U)
        with limit_torch_threads():  # a parallel worker's task uses the threads it was given
            self._fit(X, y, U)
        return self

    def _fit(self, X: sp.csr_matrix, y: sp.csr_matrix | None,
             user_features=None) -> None:  # pragma: no cover
        raise NotImplementedError

    def _user_scores(self, X: sp.csr_matrix,
                     user_features=None) -> torch.Tensor:  # pragma: no cover
        """Scores ``(n_rows, n_items)`` of a batch of users (their rows of ``X``, and their
        feature rows or ``None``); higher is better."""
        raise NotImplementedError

    # ------------------------------------------------------------------ ranking
    def _cold_scores(self, user_features=None) -> torch.Tensor | None:
        """Scores for users with an empty row: each item's share of the training interactions.

        ``item_popularity_ / item_popularity_.sum()`` (0.05: 5 % of the interactions), ties
        broken towards the lower item index by a float32 step (see
        :func:`popularity_scores`), so that every ranking path orders them the same way.
        ``None`` when ``user_features`` are given: the model scores such users from them.
        """
        if user_features is not None:
            return None
        return torch.from_numpy(popularity_scores(self.item_popularity_))

    #: Cap on users scored at once (models with per-user activations set it).
    _max_inference_batch: int | None = None

    def _iter_batches(self, X: sp.csr_matrix, batch_size: int | None, user_features=None):
        """Yield ``(rows, X[rows], user_features[rows])``: batches of users with similar
        numbers of interactions (the last item is ``None`` without user features).

        Sorting by row length keeps the padding of sequence models small; results are written
        back at ``rows``, so the caller's order is unchanged.
        """
        n_rows = X.shape[0]
        U = user_features
        bs = batch_size or min(
            _default_batch_size(self.n_features_in_), self._max_inference_batch or n_rows
        )
        if n_rows <= bs:
            yield slice(None), X, U
            return
        order = np.argsort(np.diff(X.indptr), kind="stable")
        for start in range(0, n_rows, bs):
            rows = order[start : start + bs]
            yield rows, X[rows], None if U is None else U[rows]

    def recommend(
        self,
        X,
        k: int = 10,
        *,
        filter_seen: bool = True,
        items=None,
        batch_size: int | None = None,
        user_features=None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Recommend the top ``k`` items for each user (row) of ``X``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            The users' interactions (fold-in: any users, seen at fit time or not).
            Users with an empty row get the most popular items.
        k : int, default=10
            Number of items per user; more than the catalogue holds gives the whole
            catalogue (the width is ``min(k, n_items)``).
        filter_seen : bool, default=True
            Exclude the items in each user's row.
        items : array-like of int or bool mask, default=None
            Restrict the recommendations to these item indices (or a boolean mask of length
            n_items).
        batch_size : int, default=None
            Users scored at once (a positive integer); by default chosen so that a batch of
            scores stays small.
        user_features : {array-like, sparse matrix} of shape (n_users, n_user_features), \
default=None
            The users' side features, one row per row of ``X``: required by a model fitted
            with them (which then also scores users with an empty row from them instead of
            popularity).

        Returns
        -------
        ids : ndarray of shape (n_users, min(k, n_items)), dtype int64
            Item indices, best first, padded with ``-1`` when fewer candidates remain (seen
            items filtered, ``items`` restricted).
        scores : ndarray of shape (n_users, min(k, n_items)), dtype float32
            Their scores (``-inf`` for padding). Users with an empty row (and no user
            features) get each item's share of the training interactions (see
            :meth:`_cold_scores`).

        Raises
        ------
        FloatingPointError
            If the model produces NaN scores (weights that are not finite): a NaN is never
            ranked as if it were a score.

        See Also
        --------
        skrec.preprocessing.InteractionEncoder.recommend : The same from an event log, as a
            DataFrame of original user and item ids.
        """
        check_is_fitted(self)
        k = check_k(k, limit=self.n_features_in_)  # clamp before allocating (n_users, k)
        batch_size = check_batch_size(batch_size)
        X = self._validate_X(X)
        U = self._check_user_features(user_features, X.shape[0])
        candidates = self._candidate_mask(items)
        cold = self._cold_scores(U)
        ids = np.empty((X.shape[0], k), dtype=np.int64)
        scores = np.empty((X.shape[0], k), dtype=np.float32)
        with limit_torch_threads(), torch.inference_mode():
            for rows, Xb, Ub in self._iter_batches(X, batch_size, U):
                s = self._finite(self._user_scores(Xb, Ub).float())
                ids[rows], scores[rows] = rank_top_k(
                    s, Xb, k, filter_seen=filter_seen, candidates=candidates, cold_scores=cold
                )
        return ids, scores

    def _finite(self, scores: torch.Tensor) -> torch.Tensor:
        """``scores``, or a FloatingPointError when the model produced NaN (never ranked)."""
        if torch.isnan(scores).any():
            raise FloatingPointError(
                f"{type(self).__name__} produced NaN scores: its learned weights are not finite "
                "(did training diverge?). Refit it, e.g. with a lower learning_rate_init or "
                "precision='fp32'."
            )
        return scores

    def _candidate_mask(self, items) -> torch.Tensor | None:
        if items is None:
            return None
        arr = np.asarray(items)
        n_items = self.n_features_in_
        if arr.ndim == 1 and arr.size == 0:  # no candidate at all: every row is padding
            return torch.zeros(n_items, dtype=torch.bool)
        if arr.dtype == bool:
            if arr.shape != (n_items,):
                raise ValueError(f"items as a boolean mask must have shape ({n_items},).")
            return torch.as_tensor(arr)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError("items must be a 1-D array of item indices or a boolean mask.")
        if arr.size and (arr.min() < 0 or arr.max() >= n_items):
            raise ValueError(f"items holds indices outside [0, {n_items}).")
        mask = np.zeros(n_items, dtype=bool)
        mask[arr] = True
        return torch.as_tensor(mask)

    def _item_indices(self, item_ids, name: str = "item_ids") -> tuple[np.ndarray, bool]:
        """Validate item (column) indices: an int or a 1-D array; return it and whether scalar."""
        arr = np.asarray(item_ids)
        scalar = arr.ndim == 0
        arr = arr.reshape(-1) if scalar else arr
        n_items = self.n_features_in_
        if arr.ndim != 1:
            raise ValueError(f"{name} must be an item index or a 1-D array of them; got shape "
                             f"{arr.shape}.")
        if arr.size == 0:
            return np.zeros(0, dtype=np.int64), scalar
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(
                f"{name} must hold integer item (column) indices; got dtype {arr.dtype}. Map "
                "original ids with InteractionEncoder.transform_items, or use "
                "InteractionEncoder.similar_items."
            )
        if arr.min() < 0 or arr.max() >= n_items:
            raise ValueError(
                f"{name} holds indices outside [0, {n_items}): "
                f"{arr[(arr < 0) | (arr >= n_items)][:5].tolist()}."
            )
        return arr.astype(np.int64), scalar

    def _item_similarity(self, query: np.ndarray) -> torch.Tensor:  # pragma: no cover
        """Similarity ``(len(query), n_items)`` of each query item to every item (higher =
        more similar): what :meth:`similar_items` ranks, in the estimators that relate items
        to each other (item-item weights, transitions, the cosine of item vectors)."""
        raise NotImplementedError

    @available_if(_has_item_similarity)
    def similar_items(
        self,
        item_ids,
        k: int = 10,
        *,
        filter_self: bool = True,
        items=None,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most similar to each of ``item_ids`` (item-to-item recommendations).

        "Similar" is what the model learned to relate: for :class:`~skrec.EASERecommender` the
        item-item weights ``B[i, j]`` (how much having ``i`` raises ``j``'s score), for
        :class:`~skrec.MarkovChainRecommender` the probability that ``j`` follows ``i``, and
        for the neural models (:class:`~skrec.SeqRecommender`, :class:`~skrec.AERecommender`)
        the cosine similarity of their item output embeddings. Not available on
        :class:`~skrec.PopularityRecommender`, which does not relate items to each other.

        Parameters
        ----------
        item_ids : int or array-like of int of shape (n_queries,)
            Item (column) indices. For original ids, use
            :meth:`skrec.preprocessing.InteractionEncoder.similar_items`, or map them first
            with :meth:`~skrec.preprocessing.InteractionEncoder.transform_items`.
        k : int, default=10
            Number of similar items per query item (the width is ``min(k, n_items)``).
        filter_self : bool, default=True
            Leave each query item out of its own list.
        items : array-like of int or bool mask, default=None
            Restrict the results to these item indices (or a boolean mask of length n_items),
            as in :meth:`recommend`.
        batch_size : int, default=None
            Query items scored at once (a positive integer); automatic by default.

        Returns
        -------
        ids : ndarray of shape (n_queries, min(k, n_items)), dtype int64
            Item indices, most similar first, padded with ``-1`` when fewer candidates
            remain. 1-D when ``item_ids`` is a single index.
        scores : ndarray of shape (n_queries, min(k, n_items)), dtype float32
            Their similarities (``-inf`` for padding); same shape as ``ids``.

        Raises
        ------
        AttributeError
            On estimators without an item-item similarity (``PopularityRecommender``).

        Examples
        --------
        >>> from skrec import EASERecommender
        >>> from skrec.datasets import make_interactions
        >>> X = make_interactions(n_users=200, n_items=50, random_state=0)
        >>> ease = EASERecommender(l2=100.0).fit(X)
        >>> ids, scores = ease.similar_items([0, 7], k=5)
        >>> ids.shape, bool((ids[:, 0] != [0, 7]).all())
        ((2, 5), True)
        """
        check_is_fitted(self)
        k = check_k(k, limit=self.n_features_in_)  # clamp before allocating (n_queries, k)
        batch_size = check_batch_size(batch_size)
        query, scalar = self._item_indices(item_ids)
        candidates = self._candidate_mask(items)
        n = query.size
        # One row per query holding its item: the ranking path then leaves the item itself out
        # (filter_seen) and batches the queries like users.
        Q = sp.csr_matrix(
            (np.ones(n), query, np.arange(n + 1)), shape=(n, self.n_features_in_)
        )
        ids = np.full((n, k), -1, dtype=np.int64)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        with torch.inference_mode():
            for rows, Qb, _ in self._iter_batches(Q, batch_size) if n else ():
                s = self._finite(self._item_similarity(Qb.indices).float())
                ids[rows], scores[rows] = rank_top_k(
                    s, Qb, k, filter_seen=filter_self, candidates=candidates
                )
        if scalar:
            return ids[0], scores[0]
        return ids, scores

    def predict(self, X, k: int = 10, *, filter_seen: bool = True,
                user_features=None) -> np.ndarray:
        """Top-``k`` item indices for each user (row) of ``X``, best first.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            The users' interactions (fold-in).
        k : int, default=10
            Number of items per user (the width is ``min(k, n_items)``).
        filter_seen : bool, default=True
            Exclude the items in each user's row.
        user_features : {array-like, sparse matrix} of shape (n_users, n_user_features), \
default=None
            The users' side features, one row per row of ``X`` (models fitted with them).

        Returns
        -------
        ids : ndarray of shape (n_users, min(k, n_items)), dtype int64
            Item indices, padded with ``-1`` when fewer candidates remain.
        """
        return self.recommend(X, k, filter_seen=filter_seen, user_features=user_features)[0]

    def predict_scores(self, X, *, filter_seen: bool = False, batch_size: int | None = None,
                       user_features=None):
        """Full score matrix: one score per user and item (for advanced use).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            The users' interactions (fold-in).
        filter_seen : bool, default=False
            Set the scores of already-seen items to ``-inf``.
        batch_size : int, default=None
            Users scored at once (a positive integer); automatic by default.
        user_features : {array-like, sparse matrix} of shape (n_users, n_user_features), \
default=None
            The users' side features, one row per row of ``X`` (models fitted with them).

        Returns
        -------
        scores : ndarray of shape (n_users, n_items), dtype float32
            Higher is better. Cold users (empty rows) get popularity scores (or, with user
            features, the model's scores from them).
        """
        batch_size = check_batch_size(batch_size)
        X = self._validate_X(X)
        U = self._check_user_features(user_features, X.shape[0])
        out = np.empty(X.shape, dtype=np.float32)
        cold_scores = self._cold_scores(U)
        with limit_torch_threads(), torch.inference_mode():
            for rows, Xb, Ub in self._iter_batches(X, batch_size, U):
                s = self._finite(self._user_scores(Xb, Ub).float())
                mask_scores(s, Xb, filter_seen=filter_seen, cold_scores=cold_scores)
                out[rows] = s.cpu().numpy()
        return out

    def score(self, X, y=None, k: int = 10, *, user_features=None) -> float:
        """NDCG@k of the recommendations from ``X`` against the held-out items ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            The users' known interactions (already-seen items are not recommended).
        y : {sparse matrix, array-like} of shape (n_users, n_items) or (n_users,), \
default=None
            Held-out items: a matrix (values > 0 are relevant) or one item index per user.
            ``None``: each user's latest interaction (largest value) is held out of their row
            and predicted from the rest (:func:`~skrec.model_selection.leave_last_out_split`
            inside), so ``GridSearchCV(rec, grid).fit(X)`` scores its held-out users without
            a ``y``. On users the model was trained on, that item was seen in training: the
            score is then optimistic; split first and pass ``y`` (see :ref:`evaluation`).
        k : int, default=10
            Cut-off.
        user_features : {array-like, sparse matrix} of shape (n_users, n_user_features), \
default=None
            The users' side features, one row per row of ``X`` (models fitted with them).

        Returns
        -------
        ndcg : float
            Mean NDCG@k over users with at least one held-out item (NaN, with a warning, when
            none has one: with ``y=None``, when no user has two interactions).
        """
        from .metrics import ndcg_at_k

        X = self._validate_X(X)
        X, y = holdout_targets(X, y, n_items=self.n_features_in_)
        return float(ndcg_at_k(y, self.predict(X, k, user_features=user_features), k=k))

    # ------------------------------------------------------------------ persistence
    def _check_fitted_state(self) -> None:
        """Raise a ValueError (or TypeError) naming the attribute when the fitted attributes
        do not fit together; :func:`skrec.load` calls it before returning an estimator.
        Subclasses extend it with their own attributes."""
        from ._fitted_state import check_array, check_int

        if not self.__sklearn_is_fitted__():
            return
        n_items = check_int(self, "n_features_in_", low=1)
        check_array(self, "item_popularity_", shape=(n_items,), kinds="f", finite=True,
                    nonnegative=True, shape_from="n_features_in_")
        if self._reads_user_features:
            check_int(self, "n_user_features_", low=0, optional=True)
