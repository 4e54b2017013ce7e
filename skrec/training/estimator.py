"""The estimator base of the neural recommenders: training parameters, hooks and the run."""

from __future__ import annotations

import copy
import dataclasses
import numbers
import weakref
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._distributed import _Distributed, data_fingerprint, process_rank
from .._parallel import limit_torch_threads
from .._validation import check_item_features, check_targets
from ..base import BaseRecommender, interaction_counts, mask_scores, rank_top_k
from ..callbacks import Callback, History, ProgressBar
from ..nn.features import FeatureProjection
from .params import (
    _DATACLASS,
    TRAINING_PARAM_DOCS,
    _render_docstring,
    check_float,
    check_int,
)
from .precision import (
    DTYPES,
    INFERENCE_PRECISIONS,
    PRECISIONS,
    autocast,
    cast_floats,
    fp32_parts,
    quantize_int8,
    resolve_device,
    resolve_precision,
    warn_if_emulated,
)
from .trainer import EarlyStopping, Trainer

__all__ = ["NeuralRecommender"]

def _stores_sparse(feats) -> bool:
    """Whether a validated feature matrix is kept sparse in the model.

    Sparse matrices denser than 1/16 (one-hot and multi-hot attributes with few columns) are
    stored dense when that takes at most 2**24 values: their dense products cost less than
    the sparse kernels' per-call overhead, and their backward is many times faster.
    """
    if not sp.issparse(feats):
        return False
    size = feats.shape[0] * feats.shape[1]
    return feats.nnz * 16 < size or size > 2**24


def _feature_parts(feats, sparse: bool) -> Any:
    """What :meth:`FeatureProjection.set_features` takes: CSR parts (``sparse``), or the
    dense array."""
    if sparse:
        feats = sp.csr_matrix(feats)
        return feats.indptr.astype(np.int64), feats.indices.astype(np.int64), feats.data
    return feats.toarray() if sp.issparse(feats) else feats


def _val_key(scorer) -> str:
    """History key of a validation metric, e.g. ``"val_recall@20"``."""
    return f"val_{scorer.metric}@{scorer.k}"



@dataclasses.dataclass(**_DATACLASS)
class NeuralRecommender(BaseRecommender):
    """Base class of the neural recommenders: the training parameters and the trainer hooks.

    Subclasses are keyword-only dataclasses (made so automatically): they declare their own
    hyper-parameters as annotated class attributes, may override a training default by
    re-declaring it (``batch_size: int = 32``), and write ``{training_parameters}`` in the
    ``Parameters`` section of their docstring. Constants of a subclass must not be annotated
    (or be ``ClassVar``), or they become parameters. Subclasses implement:

    * ``_build_module()`` -- a fresh ``torch.nn.Module`` (``n_features_in_`` is set);
    * ``_training_matrix(X, y)`` -- the CSR matrix to train on (``y`` merged in);
    * ``_validation_split(X, rng)`` -- ``(X_history, y_target)`` for validation users;
    * ``_prepare(X, user_features)`` -- a data object with ``n_rows`` (``user_features``:
      ``None``, or the rows of ``X``'s users when the estimator reads them);
      ``_batch(data, rows, device)`` -> ``(batch, n_targets)``;
    * ``_batch_loss(module, batch)`` -- the **sum** of the per-target losses (fp32 scalar);
    * ``_module_scores(module, X, device, user_features)`` -- scores ``(n_rows, n_items)``
      for a CSR batch (and its users' feature rows, or ``None``).

    The trainer counts optimizer steps in ``n_steps_`` (reset with the weights, kept by
    ``warm_start`` and ``partial_fit``); ``_batch_loss`` may read it for schedules such as KL
    annealing. It is incremented once per accumulation window, after the optimizer step, so
    every micro-batch of a window sees the same value.

    Parameters
    ----------
    {training_parameters}
    """

    max_iter: int = 200
    batch_size: int | str = 128
    learning_rate_init: float = 1e-3
    weight_decay: float = 0.0
    precision: str = "auto"
    inference_precision: str = "auto"
    accumulation_steps: int = 1
    clip_grad_norm: float | None = None
    early_stopping: bool = True
    validation_fraction: float = 0.1
    validation_metric: str = "ndcg@10"
    n_iter_no_change: int = 10
    tol: float = 1e-4
    device: str = "auto"
    random_state: int | np.random.RandomState | None = None
    verbose: int = 0
    warm_start: bool = False
    item_features: Any = None
    id_dropout: float = 0.1
    feature_dropout: float = 0.0
    feature_hidden: int | None = None
    callbacks: list[Callback] | None = None
    weight_averaging: float | None = None

    #: Weight of the newest epoch in the exponential moving average of the monitored
    #: validation value (1.0: no smoothing); see :class:`EarlyStopping`.
    _early_stopping_smoothing: ClassVar[float] = 1.0
    #: Documentation of the parameters shared by several estimators (mixins extend it).
    _shared_param_docs: ClassVar[dict[str, tuple[str, str]]] = TRAINING_PARAM_DOCS
    #: Descriptions replacing those of ``_shared_param_docs`` in a subclass's docstring.
    _param_docs: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(cls, **_DATACLASS)
        _render_docstring(cls)

    # -------------------------------------------------------------- hooks (subclasses)
    def _build_module(self) -> torch.nn.Module:  # pragma: no cover
        raise NotImplementedError

    def _training_matrix(self, X: sp.csr_matrix, y: sp.csr_matrix | None) -> sp.csr_matrix:
        return X if y is None else X + y

    def _validation_split(self, X: sp.csr_matrix, rng: np.random.RandomState):
        raise NotImplementedError  # pragma: no cover

    def _prepare(self, X: sp.csr_matrix, user_features=None) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _batch(self, data: Any, rows: np.ndarray, device: torch.device):  # pragma: no cover
        raise NotImplementedError

    def _batch_loss(self, module: torch.nn.Module, batch: Any) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _module_scores(self, module, X: sp.csr_matrix, device,
                       user_features=None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _epoch_info(self) -> dict[str, Any]:
        """Extra fields for this epoch's ``history_`` record (e.g. a schedule's value)."""
        return {}

    def _history_scores(self, module, seq: torch.Tensor) -> torch.Tensor:
        """Scores ``(B, n_items)`` of left-padded histories ``seq`` (B, L) of item indices
        shifted by one (0 is padding), in pure tensor code: the graph that
        :mod:`skrec.serving` exports. Models that read at most ``n`` items of a history
        return ``n`` from :meth:`_history_limit`."""
        raise NotImplementedError(f"{type(self).__name__} has no exportable scoring graph.")

    def _history_limit(self) -> int | None:
        """Longest history :meth:`_history_scores` reads (``None``: no limit)."""
        return None

    def _check_params(self) -> None:
        """Validate hyper-parameters (called at the start of fit, never in ``__init__``)."""
        check_int("max_iter", self.max_iter, 1)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            check_int("batch_size", self.batch_size, 1)
        check_int("accumulation_steps", self.accumulation_steps, 1)
        check_int("n_iter_no_change", self.n_iter_no_change, 1)
        check_float("learning_rate_init", self.learning_rate_init, 0, low_inclusive=False)
        check_float("weight_decay", self.weight_decay, 0)
        check_float("tol", self.tol, 0)
        check_float("clip_grad_norm", self.clip_grad_norm, 0, low_inclusive=False,
                     allow_none=True)
        check_float("weight_averaging", self.weight_averaging, 0, 1, low_inclusive=False,
                     allow_none=True)
        check_float("validation_fraction", self.validation_fraction, 0, 1, low_inclusive=False)
        if self.validation_fraction >= 1:
            raise ValueError("validation_fraction must be < 1.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {self.precision!r}.")
        self._check_inference_precision()
        if not isinstance(self.verbose, numbers.Integral) or self.verbose < 0:
            raise ValueError(f"verbose must be an integer >= 0 (or a bool); got "
                             f"{self.verbose!r}.")
        resolve_device(self.device)
        for name in ("id_dropout", "feature_dropout"):
            value = getattr(self, name)
            check_float(name, value, 0, 1)
            if value >= 1:
                raise ValueError(f"{name} must be in [0, 1); got {value!r}.")
        check_int("feature_hidden", self.feature_hidden, 1, allow_none=True)
        self._validation_scorer()
        self._user_callbacks()

    def _user_callbacks(self) -> list[Callback]:
        """The validated ``callbacks`` parameter, as a list (the user's list is not changed)."""
        value = self.callbacks
        if value is None:
            return []
        if isinstance(value, Callback) or not isinstance(value, list | tuple):
            raise TypeError(
                "callbacks must be None or a list of skrec.callbacks.Callback instances; "
                f"got {value!r}."
            )
        bad = [cb for cb in value if not isinstance(cb, Callback)]
        if bad:
            raise TypeError(
                "callbacks must be None or a list of skrec.callbacks.Callback instances; "
                f"got {bad[0]!r} ({type(bad[0]).__name__}) in the list."
            )
        return list(value)

    def _check_inference_precision(self) -> str:
        value = self.inference_precision
        if value not in INFERENCE_PRECISIONS:
            raise ValueError(f"inference_precision must be one of {INFERENCE_PRECISIONS}; "
                             f"got {value!r}.")
        return value

    #: validation_metric="auto": NDCG@10 from this many validation users on, else the loss.
    _auto_metric_min_users: ClassVar[int] = 1000

    def _resolve_validation_metric(self, n_users: int) -> str:
        """``validation_metric``, or the ``"auto"`` rule for ``n_users`` validation users:
        ``"ndcg@10"`` when they are at least :attr:`_auto_metric_min_users`, else ``"loss"``."""
        if self.validation_metric != "auto":
            return self.validation_metric
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

    # -------------------------------------------------------------- device & precision
    def _device(self) -> torch.device:
        dev = getattr(self, "device_", None)
        if dev is None:
            return resolve_device(self.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            return torch.device("cpu")  # a GPU-trained model loaded on a CPU-only machine
        return dev

    def _autocast(self, device: torch.device, precision: str):
        return autocast(device, precision)

    # -------------------------------------------------------------- side features
    def _feature_projection(self, out_dim: int) -> FeatureProjection | None:
        """A projection of the validated ``item_features`` to ``out_dim`` (linear, or with
        ``feature_hidden`` units), or ``None`` without features."""
        if self.item_features is None:
            return None
        feats = check_item_features(self.item_features, n_items=self.n_features_in_)
        sparse = _stores_sparse(feats)
        proj = FeatureProjection(feats.shape[0], feats.shape[1], out_dim,
                                 hidden=self.feature_hidden,
                                 scalar=True, sparse=sparse, nnz=feats.nnz if sparse else 0,
                                 dropout=self.feature_dropout)
        proj.set_features(_feature_parts(feats, sparse))
        self.n_item_features_ = feats.shape[1]
        return proj

    def _sync_features(self, reset: bool) -> None:
        """Give ids to the items seen in training; the others are scored by their features.

        A continued model (``warm_start``, ``partial_fit``, fine-tuning) keeps the feature
        rows it was fitted with (and those added by :meth:`add_items`).
        """
        if getattr(self.module_, "features", None) is None:
            if self.item_features is not None and not reset:
                raise ValueError("warm_start=True continues a model fitted without "
                                 "item_features; fit with warm_start=False to add them.")
            return
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
        """
        check_is_fitted(self)
        features = getattr(self.module_, "features", None)
        if features is None:
            raise ValueError("add_items needs a model fitted with item_features=...: without "
                             "features a new item cannot be represented.")
        feats = check_item_features(item_features, n_features=self.n_item_features_)
        if feats.shape[0]:
            self.module_.add_items(_feature_parts(feats, features.sparse))
            self.n_features_in_ += feats.shape[0]
            self.item_popularity_ = np.concatenate(
                [self.item_popularity_, np.zeros(feats.shape[0])]
            )
        return self

    # -------------------------------------------------------------- public training API
    def _set_fit_state(self, X: sp.csr_matrix, y: sp.csr_matrix | None,
                       user_features=None) -> None:
        if self.warm_start and hasattr(self, "module_"):
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
        super()._set_fit_state(X, y, user_features)

    def _fit(self, X: sp.csr_matrix, y: sp.csr_matrix | None, user_features=None) -> None:
        reset = not (self.warm_start and hasattr(self, "module_"))
        device = resolve_device(self.device) if reset else self._device()
        warn_if_emulated(resolve_precision(self.precision, device), device)
        self._train(self._training_matrix(X, y), epochs=self.max_iter, reset=reset,
                    user_features=user_features)

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
        fitted = hasattr(self, "module_")
        device = self._device() if fitted else resolve_device(self.device)
        warn_if_emulated(resolve_precision(self.precision, device), device)
        if not fitted:
            X, y = self._validate_fit_data(X, y)
            U = self._check_user_features(user_features, X.shape[0], fitting=True)
            self._set_fit_state(X, y, U)
            self._train(self._training_matrix(X, y), epochs=1, reset=True, validate=False,
                        user_features=U)
            return self
        X = self._validate_X(X)
        if y is not None:
            y = check_targets(y, n_rows=X.shape[0], n_items=self.n_features_in_)
        U = self._check_user_features(user_features, X.shape[0])
        self.item_popularity_ = self.item_popularity_ + interaction_counts(X, y)
        self._train(self._training_matrix(X, y), epochs=1, reset=False, validate=False,
                    user_features=U)
        return self

    # -------------------------------------------------------------- the run
    def _callbacks(self, label: str | None = None) -> list[Callback]:
        """The callbacks of one training run: history, the progress bars (on rank 0 only in
        data-parallel training), then the user's ``callbacks``."""
        callbacks: list[Callback] = [History()]
        if self.verbose and process_rank() == 0:
            callbacks.append(ProgressBar(label or type(self).__name__, steps=self.verbose > 1))
        return callbacks + self._user_callbacks()

    def _early_stopper(self, metric: str) -> EarlyStopping:
        scorer = self._validation_scorer(metric)
        return EarlyStopping(
            "val_loss" if scorer is None else _val_key(scorer),
            higher_is_better=scorer is not None,
            patience=self.n_iter_no_change,
            tol=self.tol,
            smoothing=self._early_stopping_smoothing,
        )

    def _train(self, X: sp.csr_matrix, *, epochs: int, reset: bool, validate: bool = True,
               label: str | None = None, user_features=None):
        self._check_params()
        self.__dict__.pop("_inference_cache", None)  # the weights are about to change
        device = resolve_device(self.device) if reset else self._device()
        dist = self._data_parallel(X, device)
        device = dist.device
        precision = resolve_precision(self.precision, device)
        rng = check_random_state(self.random_state)
        dist.sync_random_state(rng)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        fork_devices = [device] if device.type == "cuda" else []
        # partial_fit and pruning's fine-tuning come here too: a parallel worker's task uses
        # the threads it was given
        with dist.guard(), limit_torch_threads(), torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            if reset:
                self.module_ = self._build_module()
                self.history_ = []
                self.n_iter_ = 0
                self.best_score_ = None
                self.best_epoch_ = None
                self.n_steps_ = 0
            elif not hasattr(self, "n_steps_"):  # fitted before the step counter existed
                self.n_steps_ = 0
            if reset or not hasattr(self, "batch_size_"):  # continued training keeps it
                self.batch_size_ = self._resolve_batch_size(X.shape[0])
            self._sync_features(reset)
            if dist.enabled:  # own dropout draws per rank (DDP gives every rank rank 0's weights)
                torch.manual_seed(seed + 1 + dist.rank)
            self.module_.to(device)
            self.device_ = device
            self.precision_ = precision
            U = user_features
            X, U, val = (self._hold_out_validation(X, rng, U) if validate
                         else (X, U, None))
            if val is not None:
                self.validation_metric_ = self._resolve_validation_metric(val[0].shape[0])
            data = self._prepare(X, U)
            generator = np.random.RandomState(rng.randint(np.iinfo(np.int32).max))
            trainer = Trainer(
                self, self.module_, device=device, precision=precision,
                callbacks=self._callbacks(label),
                early_stopping=(self._early_stopper(self.validation_metric_)
                                if val is not None else None),
                distributed=dist,
            )
            validate_fn = None
            if val is not None:
                scorer = self._validation_scorer(self.validation_metric_)
                validate_fn = lambda: self._validation_scores(*val, scorer, dist)  # noqa: E731
            trainer.fit(data, epochs, generator, validate_fn)
        return self

    #: batch_size="auto": training users per micro-batch, and the range of the result.
    _auto_users_per_batch = 50
    _auto_batch_range = (32, 128)

    def _resolve_batch_size(self, n_users: int) -> int:
        """``batch_size``, or the ``"auto"`` rule for ``n_users`` training users."""
        if not isinstance(self.batch_size, str):
            return int(self.batch_size)
        low, high = self._auto_batch_range
        target = max(n_users / self._auto_users_per_batch, 1.0)
        return int(min(max(2 ** round(np.log2(target)), low), high))

    def _data_parallel(self, X: sp.csr_matrix, device: torch.device) -> _Distributed:
        """The data-parallel helper of a training run (a no-op one in a single process).

        Under torchrun (or in an initialised process group of several ranks) every rank must
        train on the same data with the same hyper-parameters: they are compared first, so
        that a mismatch stops every rank with the same error instead of a hang.
        """
        dist = _Distributed.from_environment(device)
        if dist.enabled:
            skip = ("callbacks", "verbose", "random_state", "device", "item_features")
            params = sorted((k, v) for k, v in self.get_params(deep=False).items()
                            if k not in skip)
            features = getattr(self, "item_features", None)
            dist.check_consistent(
                data=data_fingerprint(X), hyper_parameters=repr(params),
                item_features=None if features is None else data_fingerprint(features),
            )
        return dist

    def _hold_out_validation(self, X: sp.csr_matrix, rng: np.random.RandomState,
                             user_features=None):
        """Split off the validation targets of ``validation_fraction`` of the users.

        Returns the training matrix (the validation users keep their history, only their
        targets are hidden), its users' feature rows (``None`` without user features), and
        ``(X_history, y_target, user_features)`` of the validation users, or ``None`` when
        early stopping is off or there is nothing to validate on.
        """
        U = user_features
        if not self.early_stopping:
            return X, U, None
        n_val = int(round(self.validation_fraction * X.shape[0]))
        n_val = min(max(n_val, 1), X.shape[0] - 1) if X.shape[0] > 1 else 0
        if not n_val:
            return X, U, None
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
        return X, U, ((X_hist, y_val, U_val) if y_val.nnz else None)

    def _validation_scores(self, X_hist: sp.csr_matrix, y_val: sp.csr_matrix,
                           user_features, scorer, dist: _Distributed | None = None) -> dict:
        """``val_loss``, ``val_ndcg@10`` (and the monitored metric) of the validation users.

        ``val_loss`` is the mean cross-entropy of the held-out items under the softmax of the
        model's scores over each user's unseen items (users with an empty history, who get
        popularity scores, are left out of it). Rankings exclude seen items, as ``predict``.
        In data-parallel training each rank ranks its share of the users and the rankings
        and loss sums are gathered, so that every rank gets the same values (and takes the
        same early-stopping decision).
        """
        from ..metrics import ndcg_at_k

        U = user_features
        k = 10 if scorer is None else max(10, scorer.k)
        if dist is not None and dist.enabled:
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
                scores = mask_scores(self._batch_scores(Xb, Ub).float(), Xb, filter_seen=True)
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

    # -------------------------------------------------------------- inference
    #: Private caches that pickling drops (see BaseRecommender.__getstate__).
    _transient_attributes = ("_inference_cache",)

    def _score_batch(self, X: sp.csr_matrix, user_features=None) -> torch.Tensor:
        module = self.module_
        device = self._device()
        precision = self._check_inference_precision()
        if precision == "int8" and device.type != "cpu":
            raise ValueError(
                f"inference_precision='int8' runs on the CPU only; this model serves on "
                f"{device}. Use 'bf16' or 'fp16' on a GPU, or device='cpu'."
            )
        if next(module.parameters()).device != device:
            module.to(device)
        if module.training:
            module.eval()  # the training loop switches back to train mode at each epoch
        if precision == "auto":
            precision = self.precision_
            self.__dict__.pop("_inference_cache", None)
        else:
            module = self._inference_module(module, device, precision)
        autocast_precision = "fp32" if precision == "int8" else precision
        with torch.inference_mode(), self._autocast(device, autocast_precision):
            return self._module_scores(module, X, device, user_features).float()

    def _inference_module(self, module: torch.nn.Module, device: torch.device,
                          precision: str) -> torch.nn.Module:
        """``module`` itself (fp32), or its copy for ``precision``, cached until the weights
        change (a new module, new parameters, or an in-place update of one)."""
        if precision == "fp32":
            self.__dict__.pop("_inference_cache", None)
            return module
        params = list(module.parameters())
        cache = self.__dict__.get("_inference_cache")
        if cache is not None:
            (cached_precision, cached_device, refs, versions), served = cache
            if (cached_precision == precision and cached_device == device
                    and len(refs) == len(params) + 1 and refs[0]() is module
                    and all(r() is p for r, p in zip(refs[1:], params))
                    and versions == [p._version for p in params]):
                return served
        self.__dict__.pop("_inference_cache", None)  # free the old copy first
        # Weak references: a module or parameter replaced since (pruning, a new fit) never
        # matches, even if a new object reuses the old one's id. In-place updates bump the
        # versions; the fused optimizer does not, so training drops the cache explicitly.
        key = (precision, device, [weakref.ref(module), *map(weakref.ref, params)],
               [p._version for p in params])
        served = copy.deepcopy(module).eval()
        for p in served.parameters():
            p.grad = None
        if precision == "int8":
            served = quantize_int8(served.float())
        else:
            dtype = DTYPES[precision]
            served = served.to(dtype)
            for part in fp32_parts(served):
                part.float()  # computes in fp32, hands its outputs back in the copy's dtype
                part.register_forward_hook(lambda m, i, out, dtype=dtype: cast_floats(out,
                                                                                     dtype))
        self._inference_cache = (key, served)
        return served

    def __setstate__(self, state):
        super().__setstate__(state)
        dev = state.get("device_")
        if dev is not None and dev.type == "cuda" and not torch.cuda.is_available():
            self.device_ = torch.device("cpu")
            # Serve the CPU copy in fp32: its rankings match the trained model's fp32 ones,
            # where bf16 inference on a CPU would reorder near-ties.
            self.precision_ = "fp32"


_render_docstring(NeuralRecommender)
