"""The base of the neural recommenders: the generic estimator base plus ranking.

:class:`NeuralRecommender` is :class:`~skrec.training.estimator.NeuralEstimator` (training,
precision, continuation, inference set-up) joined with :class:`~skrec.base.BaseRecommender`
(the one validation and ranking path of every recommender), and adds what neural recommenders
share: ``fit`` / ``partial_fit`` on interaction matrices (and user features), early stopping on
the held-out items of validation users (a ranking metric or their loss), and item side
features (``item_features``, :meth:`NeuralRecommender.add_items`). It is the only module of
:mod:`skrec.training` that knows about recommendation.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.validation import check_is_fitted

from .._distributed import Distributed, data_fingerprint
from .._feature_validation import (
    check_item_features,
    feature_parts,
    feature_scale_hint,
    stores_sparse,
)
from .._validation import check_k, check_targets
from ..base import BaseRecommender, interaction_counts, mask_scores, rank_top_k
from ..nn.features import FeatureProjection
from .estimator import NeuralEstimator
from .params import check_float, check_int, render_docstring

__all__ = ["FEATURE_PARAM_DOCS", "NeuralRecommender"]

#: Documentation of the item-feature parameters of the neural recommenders.
FEATURE_PARAM_DOCS: dict[str, tuple[str, str]] = {
    "item_features": (
        "{array-like, sparse matrix} of shape (n_items, n_item_features) or None",
        "Side features of the items, one row per column of ``X`` (one-hot or multi-hot "
        "attributes, TF-IDF rows, dense text vectors; build them with scikit-learn's "
        "transformers or :class:`skrec.text.TextEmbedder`). Each item's representation "
        "becomes its id embedding plus ``f(x) = W1 x + b1`` of its features, on the input "
        "and the output side, and its output bias gets a term learned from the features. "
        "Items with no interaction in the training data are scored from their features "
        "alone, so they can be recommended (cold start), and :meth:`add_items` adds new ones "
        "to a fitted model. Passed to the constructor (like ``KMeans(init=array)``), so "
        "cross-validation, which splits users, never slices it.",
    ),
    "feature_dropout": (
        "float",
        "With ``item_features``, the probability of dropping each stored feature value at each "
        "training step, so that no single feature (a rare title word, which identifies one "
        "item as well as an id does) carries an item alone.",
    ),
    "feature_hidden": (
        "int or None",
        "With ``item_features``: the width of a hidden layer (GELU) in the map from features "
        "to item vectors, ``f(x) = W2 gelu(W1 x + b1) + b2``; ``None`` for the linear map "
        "``W1 x + b1``. Try it when the features relate to the items non-linearly; the "
        "linear map is the measured default (see :ref:`features`).",
    ),
    "id_dropout": (
        "float",
        "With ``item_features``, the fraction of items whose id embedding and id bias are "
        "hidden on the output side at each training step (histories keep every id), so that "
        "the features learn to score items on their own, as they must for new items. Raise it "
        "when new items matter more than the items the model knows (cold start), lower it "
        "for the opposite (see :ref:`features` for the measured trade-off).",
    ),
}


def _val_key(scorer) -> str:
    """History key of a validation metric, e.g. ``"val_recall@20"``."""
    return f"val_{scorer.metric}@{scorer.k}"


class NeuralRecommender(NeuralEstimator, BaseRecommender):
    """Base class of the neural recommenders: the training parameters and the model hooks.

    A subclass declares its hyper-parameters (see
    :class:`~skrec.training.estimator.NeuralEstimator`) and implements:

    * ``_build_module()`` -- a fresh ``torch.nn.Module`` (``n_features_in_`` is set);
    * ``_training_matrix(X, y)`` -- the CSR matrix to train on (``y`` merged in);
    * ``_validation_split(X, rng)`` -- ``(X_history, y_target)`` for validation users;
    * the training hooks of the generic base, whose training inputs are ``(X, user_features)``
      (``user_features``: ``None``, or the rows of ``X``'s users when the estimator reads
      them): ``_prepare(inputs)``, ``_make_batch(data, rows, device)``,
      ``_batch_loss(module, batch, state)`` -- or its own ``_training_task()``;
    * ``_module_scores(module, X, device, user_features)`` -- scores ``(n_rows, n_items)``
      for a CSR batch (and its users' feature rows, or ``None``), run inside the inference
      set-up.

    Parameters
    ----------
    {training_parameters}
    """

    item_features: Any = None
    id_dropout: float = 0.1
    feature_dropout: float = 0.0
    feature_hidden: int | None = None

    _declared_param_docs: ClassVar[dict[str, tuple[str, str]]] = FEATURE_PARAM_DOCS
    _module_attributes: ClassVar[tuple[str, ...]] = ("n_item_features_",)

    #: validation_metric="auto": NDCG@10 from this many validation users on, else the loss.
    _auto_metric_min_users: ClassVar[int] = 1000

    # -------------------------------------------------------------- hooks (subclasses)
    def _training_matrix(self, X: sp.csr_matrix, y: sp.csr_matrix | None) -> sp.csr_matrix:
        return X if y is None else X + y

    def _validation_split(self, X: sp.csr_matrix, rng: np.random.RandomState):
        raise NotImplementedError  # pragma: no cover

    def _module_scores(self, module, X: sp.csr_matrix, device,
                       user_features=None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _history_scores(self, module, seq: torch.Tensor) -> torch.Tensor:
        """Scores ``(B, n_items)`` of left-padded histories ``seq`` (B, L) of item indices
        shifted by one (0 is padding), in pure tensor code: the graph that
        :mod:`skrec.serving` exports. Models that read at most ``n`` items of a history
        return ``n`` from :meth:`_history_limit`."""
        raise NotImplementedError(f"{type(self).__name__} has no exportable scoring graph.")

    def _history_limit(self) -> int | None:
        """Longest history :meth:`_history_scores` reads (``None``: no limit)."""
        return None

    # -------------------------------------------------------------- parameter checks
    def _check_params(self) -> None:
        super()._check_params()
        for name in ("id_dropout", "feature_dropout"):
            value = getattr(self, name)
            check_float(name, value, 0, 1)
            if value >= 1:
                raise ValueError(f"{name} must be in [0, 1); got {value!r}.")
        check_int("feature_hidden", self.feature_hidden, 1, allow_none=True)

    def _check_validation_metric(self) -> None:
        self._validation_scorer()

    def _resolve_validation_metric(self, validation) -> str:
        """``validation_metric``, or the ``"auto"`` rule for the validation users:
        ``"ndcg@10"`` when they are at least :attr:`_auto_metric_min_users`, else
        ``"loss"``."""
        if self.validation_metric != "auto":
            return self.validation_metric
        n_users = validation[0].shape[0]
        return "ndcg@10" if n_users >= self._auto_metric_min_users else "loss"

    def _validation_scorer(self, metric: str | None = None):
        """The parsed ``metric`` (default: ``validation_metric``): ``None`` for ``"loss"``
        (and, before it is resolved, ``"auto"``), else a RecScorer."""
        from ..metrics import get_rec_scorer

        metric = self.validation_metric if metric is None else metric
        if metric in ("loss", "auto"):
            return None
        try:
            return get_rec_scorer(metric)
        except ValueError as exc:
            raise ValueError(
                "validation_metric must be 'loss', 'auto' or a ranking metric such as "
                f"'ndcg@10'; got {metric!r} ({exc})"
            ) from None

    def _monitored(self, metric: str) -> tuple[str, bool]:
        scorer = self._validation_scorer(metric)
        return ("val_loss", False) if scorer is None else (_val_key(scorer), True)

    # -------------------------------------------------------------- side features
    def _feature_projection(self, out_dim: int) -> FeatureProjection | None:
        """A projection of the validated ``item_features`` to ``out_dim`` (linear, or with
        ``feature_hidden`` units), or ``None`` without features."""
        if self.item_features is None:
            return None
        feats = check_item_features(self.item_features, n_items=self.n_features_in_)
        sparse = stores_sparse(feats)
        proj = FeatureProjection(feats.shape[0], feats.shape[1], out_dim,
                                 hidden=self.feature_hidden,
                                 scalar=True, sparse=sparse, nnz=feats.nnz if sparse else 0,
                                 dropout=self.feature_dropout)
        proj.set_features(feature_parts(feats, sparse))
        self.n_item_features_ = feats.shape[1]
        return proj

    def _on_module_ready(self, continued: bool) -> None:
        """Give ids to the items seen in training; the others are scored by their features.

        A continued model (``warm_start``, ``partial_fit``, fine-tuning) keeps the feature
        rows it was fitted with (and those added by :meth:`add_items`).
        """
        if getattr(self.module_, "features", None) is not None:
            self.module_.set_id_mask(torch.as_tensor(self.item_popularity_ > 0))

    def add_items(self, item_features):
        """Add new items to the fitted catalogue from their feature rows, without retraining.

        The new items get the next column indices (``n_features_in_`` grows by their
        number, and ``X`` with the new column count is accepted from then on). They are
        scored from their features alone until training (``partial_fit`` or a
        ``warm_start`` fit) sees interactions with them.

        Parameters
        ----------
        item_features : {array-like, sparse matrix} of shape (n_new_items, n_item_features)
            Feature rows of the new items, built exactly as the ``item_features`` the model
            was fitted with.

        Returns
        -------
        self : object
            The recommender, with a larger catalogue.

        See Also
        --------
        skrec.preprocessing.InteractionEncoder.add_items : When you work in your own ids, add
            items through the encoder, so that the encoder and the model grow together.
        """
        check_is_fitted(self)
        features = getattr(self.module_, "features", None)
        if features is None:
            raise ValueError("add_items needs a model fitted with item_features=...: without "
                             "features a new item cannot be represented.")
        feats = check_item_features(item_features, n_features=self.n_item_features_)
        if feats.shape[0]:
            self.module_.add_items(feature_parts(feats, features.sparse))
            self.n_features_in_ += feats.shape[0]
            self.item_popularity_ = np.concatenate(
                [self.item_popularity_, np.zeros(feats.shape[0])]
            )
        return self

    # -------------------------------------------------------------- public training API
    def _set_fit_state(self, X: sp.csr_matrix, y: sp.csr_matrix | None,
                       user_features=None) -> None:
        if self._continues():
            self._check_continued_data(X, user_features)
        super()._set_fit_state(X, y, user_features)

    def _check_continued_data(self, X: sp.csr_matrix, user_features) -> None:
        """Refuse data that the continued model cannot train on (another catalogue, other
        user features)."""
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"warm_start=True continues training the fitted model of "
                f"{self.n_features_in_} items, but X has {X.shape[1]} columns. Fit with "
                "warm_start=False to train a new model for this catalogue."
            )
        width = 0 if user_features is None else user_features.shape[1]
        if self._reads_user_features and width != getattr(self, "n_user_features_", 0):
            raise ValueError(
                f"warm_start=True continues training a model fitted with "
                f"{getattr(self, 'n_user_features_', 0)} user feature columns, but "
                f"user_features has {width}. Fit with warm_start=False to change them."
            )

    def _fit(self, X: sp.csr_matrix, y: sp.csr_matrix | None, user_features=None) -> None:
        continued = self._continues()
        self._warn_if_emulated(continued)
        inputs = (self._training_matrix(X, y), user_features)
        self._run(inputs, epochs=self.max_iter, continued=continued)
        self._after_fit(inputs)

    def partial_fit(self, X, y=None, *, user_features=None):
        """Train one more epoch on ``X`` (and ``y``), starting from the current weights.

        The item catalogue is fixed at the first fit: ``X`` must have the same number of
        columns. Continue training on new interactions, or call repeatedly to train
        epoch by epoch (early stopping is not applied).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Interactions, as for :meth:`fit`.
        y : {sparse matrix, array-like}, default=None
            Held-out items of the same users, as for :meth:`fit`.
        user_features : {array-like, sparse matrix} of shape (n_users, n_user_features), \
default=None
            Side features of the users of ``X``, as for :meth:`fit` (the width is fixed at
            the first fit too).

        Returns
        -------
        self : object
            The updated recommender.
        """
        self._check_params()
        continued = self._continues(partial=True)
        self._warn_if_emulated(continued)
        if continued:
            X = self._validate_X(X)
            if y is not None:
                y = check_targets(y, n_rows=X.shape[0], n_items=self.n_features_in_)
            U = self._check_user_features(user_features, X.shape[0])
            self.item_popularity_ = self.item_popularity_ + interaction_counts(X, y)
        else:
            X, y = self._validate_fit_data(X, y)
            U = self._check_user_features(user_features, X.shape[0], fitting=True)
            self._set_fit_state(X, y, U)
        return self._run((self._training_matrix(X, y), U), epochs=1, continued=continued,
                         validate=False)

    def _training_inputs(self, X, y=None, user_features=None):
        """The training inputs of a fitted model from ``X`` (and ``y``, ``user_features``)
        validated against it (pruning's importance pass and fine-tuning)."""
        X = self._validate_X(X)
        if y is not None:
            y = check_targets(y, n_rows=X.shape[0], n_items=self.n_features_in_)
        U = self._check_user_features(user_features, X.shape[0])
        return self._training_matrix(X, y), U

    # -------------------------------------------------------------- the run's hooks
    def _n_rows(self, inputs) -> int:
        return inputs[0].shape[0]

    def _data_fingerprints(self, inputs) -> dict[str, Any]:
        features = getattr(self, "item_features", None)
        return {"data": data_fingerprint(inputs[0]),
                "item_features": None if features is None else data_fingerprint(features)}

    def _divergence_hint(self, inputs) -> str:
        features = (None if self.item_features is None
                    else check_item_features(self.item_features))
        hints = [feature_scale_hint(features, "item_features"),
                 feature_scale_hint(inputs[1], "user_features")]
        return " ".join(h for h in hints if h)

    def _hold_out_validation(self, inputs, rng: np.random.RandomState):
        """Split off the validation targets of ``validation_fraction`` of the users.

        Returns the training inputs (the validation users keep their history, only their
        targets are hidden; their feature rows follow them) and ``(X_history, y_target,
        user_features)`` of the validation users, or ``None`` when there is nothing to
        validate on.
        """
        X, U = inputs
        n_val = int(round(self.validation_fraction * X.shape[0]))
        n_val = min(max(n_val, 1), X.shape[0] - 1) if X.shape[0] > 1 else 0
        if not n_val:
            return inputs, None
        perm = rng.permutation(X.shape[0])
        val_rows = np.sort(perm[:n_val])
        X_hist, y_val = self._validation_split(X[val_rows], rng)
        keep = np.ones(X.shape[0], dtype=bool)
        keep[val_rows] = False
        X = sp.vstack([X[keep], X_hist], format="csr")
        U_val = None
        if U is not None:  # the same rows, in the same order
            U_val = U[val_rows]
            U = (sp.vstack([U[keep], U_val], format="csr") if sp.issparse(U)
                 else np.concatenate([U[keep], U_val]))
        return (X, U), ((X_hist, y_val, U_val) if y_val.nnz else None)

    def _validation_scores(self, validation, dist: Distributed) -> dict[str, float]:
        """``val_loss``, ``val_ndcg@10`` (and the monitored metric) of the validation users.

        ``val_loss`` is the mean cross-entropy of the held-out items under the softmax of the
        model's scores over each user's unseen items (users with an empty history, who get
        popularity scores, are left out of it). Rankings exclude seen items, as ``predict``.
        In data-parallel training each rank ranks its share of the users and the rankings
        and loss sums are gathered, so that every rank gets the same values (and takes the
        same early-stopping decision).
        """
        from ..metrics import ndcg_at_k

        X_hist, y_val, U = validation
        scorer = self._validation_scorer(self.validation_metric_)
        k = check_k(10 if scorer is None else max(10, scorer.k), limit=self.n_features_in_)
        if dist.enabled:
            part = dist.shard_rows(X_hist.shape[0])
            parts = dist.all_gather_object(
                self._validation_ranking(X_hist[part], y_val[part], k,
                                         None if U is None else U[part]),
                "the gathering of the validation rankings",
            )
            ids = np.concatenate([p[0] for p in parts])
            nll_sum = sum(p[1] for p in parts)
            n_targets = sum(p[2] for p in parts)
        else:
            ids, nll_sum, n_targets = self._validation_ranking(X_hist, y_val, k, U)
        out = {
            "val_loss": nll_sum / n_targets if n_targets else float("nan"),
            "val_ndcg@10": float(ndcg_at_k(y_val, ids[:, :10], k=10)),
        }
        if scorer is not None:
            out[_val_key(scorer)] = float(scorer.metric_func(y_val, ids[:, : scorer.k],
                                                             k=scorer.k))
        return out

    def _validation_ranking(self, X_hist: sp.csr_matrix, y_val: sp.csr_matrix, k: int,
                            user_features=None) -> tuple[np.ndarray, float, int]:
        """Top-``k`` ids of the validation users, and the summed NLL and count of their
        held-out items (see :meth:`_validation_scores`)."""
        ids = np.empty((X_hist.shape[0], k), dtype=np.int64)
        if X_hist.shape[0] == 0:  # a rank's share of very few validation users
            return ids, 0.0, 0
        cold = self._cold_scores(user_features)
        nll_sum, n_targets = 0.0, 0
        with torch.inference_mode():
            for rows, Xb, Ub in self._iter_batches(X_hist, None, user_features):
                yb = y_val if isinstance(rows, slice) else y_val[rows]
                scores = mask_scores(self._user_scores(Xb, Ub).float(), Xb, filter_seen=True)
                # Held-out items, one (row, item) pair each, of users with a history.
                target_rows = np.repeat(np.arange(yb.shape[0]), np.diff(yb.indptr))
                keep = (np.diff(Xb.indptr) > 0)[target_rows]
                if keep.any():
                    r = torch.as_tensor(target_rows[keep], device=scores.device)
                    c = torch.as_tensor(yb.indices[keep], device=scores.device)
                    log_p = scores[r, c] - torch.logsumexp(scores, dim=1)[r]
                    log_p = log_p[torch.isfinite(log_p)]  # a held-out item also in the history
                    nll_sum -= float(log_p.sum())
                    n_targets += int(log_p.numel())
                ids[rows] = rank_top_k(scores, Xb, k, filter_seen=False, cold_scores=cold)[0]
        return ids, nll_sum, n_targets

    # -------------------------------------------------------------- persistence
    def _check_fitted_state(self) -> None:
        from .._fitted_state import check_item_features_state

        super()._check_fitted_state()
        if not self.__sklearn_is_fitted__():
            return
        n_items = int(self.module_.n_items)
        if self.n_features_in_ != n_items:
            raise ValueError(f"n_features_in_ is {self.n_features_in_}, but module_ scores "
                             f"{n_items} items.")
        check_item_features_state(self)

    # -------------------------------------------------------------- inference
    def _user_scores(self, X: sp.csr_matrix, user_features=None) -> torch.Tensor:
        with self._serving() as setup:
            return self._module_scores(setup.module, X, setup.device, user_features).float()

    def _item_embeddings(self, module: torch.nn.Module) -> torch.Tensor:  # pragma: no cover
        """The item vectors ``(n_items, d)`` of ``module`` (the serving module): what
        :meth:`similar_items` compares."""
        raise NotImplementedError

    def _item_similarity(self, query: np.ndarray) -> torch.Tensor:
        """The cosine similarity of the item vectors of the serving module."""
        with self._serving() as setup:
            emb = self._item_embeddings(setup.module).detach().float()
        emb = emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)
        rows = emb[torch.as_tensor(query, device=emb.device)]
        return rows @ emb.t()


render_docstring(NeuralRecommender)
