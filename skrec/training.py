"""The one training loop shared by every neural skrec estimator.

:class:`NeuralRecommender` adds to :class:`~skrec.base.BaseRecommender` the training
hyper-parameters (``max_iter``, ``batch_size``, ``learning_rate_init``, ``weight_decay``,
``precision``, ``accumulation_steps``, ``device``, early stopping, ``random_state``, ``verbose``,
``warm_start``) and the loop itself: device placement, autocast with bf16/fp16 (a
``GradScaler`` for fp16), gradient accumulation weighted by the true number of targets in each
window, gradient clipping, AdamW, validation with early stopping and best-weight restore, the
per-epoch ``history_``, progress bars and ``partial_fit``.

A model plugs in by implementing five small hooks (see :class:`NeuralRecommender`).
"""

from __future__ import annotations

import contextlib
import copy
import numbers
import resource
import sys
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils import check_random_state

from ._validation import check_targets
from .base import BaseRecommender, interaction_counts, mask_scores, rank_top_k

__all__ = ["NeuralRecommender", "resolve_device", "resolve_precision"]

_PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device) -> torch.device:
    """Turn ``"auto"`` (CUDA when available, else CPU) or a device name into a device."""
    if isinstance(device, torch.device):
        return device
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or a torch device; got {device!r}."
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available here.")
    return dev


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 matrix kernels (AVX-512 BF16 or AMX).

    Without them, bf16 matmuls on CPU are emulated and much slower than fp32.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - old or unusual builds
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """Resolve ``precision`` for ``device``; ``"auto"`` picks the fastest safe choice.

    ``"auto"`` means bf16 on GPUs that support it (fp16 on older GPUs), bf16 on CPUs with native
    bf16 kernels, and fp32 elsewhere.
    """
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {_PRECISIONS}; got {precision!r}.")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        return "bf16" if cpu_supports_bf16() else "fp32"
    return "fp32"


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def _check_int(name, value, low, allow_none=False):
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")


def _check_float(name, value, low, high=None, low_inclusive=True, allow_none=False):
    if allow_none and value is None:
        return
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok:
        ok = value >= low if low_inclusive else value > low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        rng = f"{'[' if low_inclusive else '('}{low}, {high if high is not None else 'inf'}]"
        raise ValueError(f"{name} must be a number in {rng}; got {value!r}.")


def _make_optimizer(module, lr: float, weight_decay: float, device: torch.device):
    """AdamW, fused into one kernel per step where the device supports it.

    The fused kernel is several times faster on large embedding tables (measured 8x on a
    1M x 64 table on CPU), which dominate the step time of big catalogues.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # pragma: no cover - device without it
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _make_batches(data: Any, batch_size: int, rng: np.random.RandomState) -> list[np.ndarray]:
    """Shuffled row batches; rows of similar length are grouped when the data has lengths.

    Length bucketing (sort within pools of 50 batches, then shuffle the batches) cuts the
    padding of variable-length sequences several-fold while keeping batches random.
    """
    order = rng.permutation(data.n_rows)
    lengths = getattr(data, "lengths", None)
    if lengths is not None:
        pool = batch_size * 50
        for start in range(0, order.size, pool):
            part = order[start : start + pool]
            order[start : start + pool] = part[np.argsort(-lengths[part], kind="stable")]
    batches = [order[i : i + batch_size] for i in range(0, order.size, batch_size)]
    if lengths is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _val_key(scorer) -> str:
    """History key of a validation metric, e.g. ``"val_recall@20"``."""
    return f"val_{scorer.metric}@{scorer.k}"


class NeuralRecommender(BaseRecommender):
    """Base class of the neural recommenders: the shared training loop.

    Subclasses store their hyper-parameters in ``__init__`` (all training parameters below
    included) and implement:

    * ``_build_module()`` -- a fresh ``torch.nn.Module`` (``n_features_in_`` is set);
    * ``_training_matrix(X, y)`` -- the CSR matrix to train on (``y`` merged in);
    * ``_validation_split(X, rng)`` -- ``(X_history, y_target)`` for validation users;
    * ``_prepare(X)`` -- a data object with ``n_rows``; ``_batch(data, rows, device)`` ->
      ``(batch, n_targets)``;
    * ``_batch_loss(module, batch)`` -- the **sum** of the per-target losses (fp32 scalar);
    * ``_module_scores(module, X, device)`` -- scores ``(n_rows, n_items)`` for a CSR batch.

    The trainer counts optimizer steps in ``n_steps_`` (reset with the weights, kept by
    ``warm_start`` and ``partial_fit``); ``_batch_loss`` may read it for schedules such as KL
    annealing. It is incremented once per accumulation window, after the optimizer step, so
    every micro-batch of a window sees the same value.

    Training parameters (shared by all neural estimators)
    ------------------------------------------------------
    max_iter : int
        Maximum number of epochs.
    batch_size : int
        Users per micro-batch.
    learning_rate_init : float
        AdamW learning rate.
    weight_decay : float
        AdamW decoupled weight decay.
    precision : {"fp32", "bf16", "fp16", "auto"}
        Autocast precision. ``fp16`` uses a gradient scaler. ``"auto"`` picks bf16 where the
        hardware runs it natively, else fp16 on old GPUs, else fp32.
    accumulation_steps : int
        Micro-batches per optimizer step. ``k`` steps of ``batch_size`` give the same gradient
        as one step of ``k * batch_size``.
    clip_grad_norm : float or None
        Maximum gradient norm.
    early_stopping : bool
        Hold out ``validation_fraction`` of the users, stop when their ``validation_metric``
        has not improved by ``tol`` for ``n_iter_no_change`` epochs, and restore the best
        weights.
    validation_metric : str
        What early stopping monitors: ``"loss"`` (the cross-entropy of the held-out items under
        the softmax of the model's scores over the unseen items; lower is better) or a ranking
        metric ``"name@k"`` (``"ndcg@10"``, ``"recall@20"``, ... as for
        :func:`~skrec.metrics.get_rec_scorer`; higher is better). A subclass may smooth the
        monitored value over epochs (``_early_stopping_smoothing``).
    device : str
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    random_state : int, RandomState instance or None
        Seed for initialisation, batching, dropout and validation users.
    verbose : int
        0 silent; 1 a progress bar over epochs; 2 also over batches.
    warm_start : bool
        Continue from the current weights on the next ``fit``.
    """

    #: Weight of the newest epoch in the exponential moving average of the monitored
    #: validation value (1.0: no smoothing). Small validation sets give noisy values; smoothing
    #: keeps early stopping from stopping on one lucky or unlucky epoch.
    _early_stopping_smoothing: float = 1.0

    # -------------------------------------------------------------- hooks (subclasses)
    def _build_module(self) -> torch.nn.Module:  # pragma: no cover
        raise NotImplementedError

    def _training_matrix(self, X: sp.csr_matrix, y: sp.csr_matrix | None) -> sp.csr_matrix:
        return X if y is None else X + y

    def _validation_split(self, X: sp.csr_matrix, rng: np.random.RandomState):
        raise NotImplementedError  # pragma: no cover

    def _prepare(self, X: sp.csr_matrix) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _batch(self, data: Any, rows: np.ndarray, device: torch.device):  # pragma: no cover
        raise NotImplementedError

    def _batch_loss(self, module: torch.nn.Module, batch: Any) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _module_scores(self, module, X: sp.csr_matrix, device) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _epoch_info(self) -> dict[str, Any]:
        """Extra fields for this epoch's ``history_`` record (e.g. a schedule's value)."""
        return {}

    def _check_params(self) -> None:
        """Validate hyper-parameters (called at the start of fit, never in ``__init__``)."""
        _check_int("max_iter", self.max_iter, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("accumulation_steps", self.accumulation_steps, 1)
        _check_int("n_iter_no_change", self.n_iter_no_change, 1)
        _check_float("learning_rate_init", self.learning_rate_init, 0, low_inclusive=False)
        _check_float("weight_decay", self.weight_decay, 0)
        _check_float("tol", self.tol, 0)
        _check_float("clip_grad_norm", self.clip_grad_norm, 0, low_inclusive=False,
                     allow_none=True)
        _check_float("validation_fraction", self.validation_fraction, 0, 1, low_inclusive=False)
        if self.validation_fraction >= 1:
            raise ValueError("validation_fraction must be < 1.")
        if self.precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {_PRECISIONS}; got {self.precision!r}.")
        self._validation_scorer()

    def _validation_scorer(self):
        """The parsed ``validation_metric``: ``None`` for ``"loss"``, else a RecScorer."""
        from .metrics import get_rec_scorer

        metric = getattr(self, "validation_metric", "ndcg@10")
        if metric == "loss":
            return None
        try:
            return get_rec_scorer(metric)
        except ValueError as exc:
            raise ValueError(
                f"validation_metric must be 'loss' or a ranking metric such as 'ndcg@10'; "
                f"got {metric!r} ({exc})"
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
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])

    # -------------------------------------------------------------- public training API
    def _fit(self, X: sp.csr_matrix, y: sp.csr_matrix | None) -> None:
        reset = not (self.warm_start and hasattr(self, "module_"))
        self._train(self._training_matrix(X, y), epochs=self.max_iter, reset=reset)

    def partial_fit(self, X, y=None):
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

        Returns
        -------
        self : object
            The updated recommender.
        """
        if not hasattr(self, "module_"):
            X, y = self._validate_fit_data(X, y)
            self._set_fit_state(X, y)
            self._train(self._training_matrix(X, y), epochs=1, reset=True, validate=False)
            return self
        X = self._validate_X(X)
        if y is not None:
            y = check_targets(y, n_rows=X.shape[0], n_items=self.n_features_in_)
        self.item_popularity_ = self.item_popularity_ + interaction_counts(X, y)
        self._train(self._training_matrix(X, y), epochs=1, reset=False, validate=False)
        return self

    # -------------------------------------------------------------- the loop
    def _train(self, X: sp.csr_matrix, *, epochs: int, reset: bool, validate: bool = True):
        self._check_params()
        device = resolve_device(self.device) if reset else self._device()
        precision = resolve_precision(self.precision, device)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        fork_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
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
            self.module_.to(device)
            self.device_ = device
            self.precision_ = precision
            self._run_epochs(X, epochs, device, precision, rng, validate)
        return self

    def _run_epochs(self, X, epochs, device, precision, rng, validate):
        module = self.module_
        val = None
        if validate and self.early_stopping:
            n_val = int(round(self.validation_fraction * X.shape[0]))
            n_val = min(max(n_val, 1), X.shape[0] - 1) if X.shape[0] > 1 else 0
            if n_val:
                perm = rng.permutation(X.shape[0])
                val_rows = np.sort(perm[:n_val])
                X_hist, y_val = self._validation_split(X[val_rows], rng)
                keep = np.ones(X.shape[0], dtype=bool)
                keep[val_rows] = False
                # Validation users keep their history in training; only the targets are hidden.
                X = sp.vstack([X[keep], X_hist], format="csr")
                if y_val.nnz:
                    val = (X_hist, y_val)
        data = self._prepare(X)
        optimizer = _make_optimizer(module, self.learning_rate_init, self.weight_decay, device)
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        autocast = self._autocast(device, precision)
        generator = np.random.RandomState(rng.randint(np.iinfo(np.int32).max))
        # Early stopping compares a "higher is better" monitor: the ranking metric, or minus
        # the validation loss; smoothed over epochs when the subclass asks for it.
        scorer = self._validation_scorer()
        smoothing = self._early_stopping_smoothing
        best_state, no_improve, best, smoothed = None, 0, -np.inf, None

        epoch_iter = range(epochs)
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(epoch_iter, desc=type(self).__name__, unit="epoch", leave=True)
            epoch_iter = bar
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        bs, acc = self.batch_size, self.accumulation_steps
        for _ in epoch_iter:
            module.train()
            t0 = time.perf_counter()
            batches = _make_batches(data, bs, generator)
            total_loss, total_targets, n_steps = 0.0, 0, 0
            batch_iter = range(0, len(batches), acc)
            if self.verbose and self.verbose > 1:
                from tqdm.auto import tqdm

                batch_iter = tqdm(batch_iter, desc="steps", leave=False)
            for w in batch_iter:
                window = [self._batch(data, rows, device) for rows in batches[w : w + acc]]
                n_window = sum(n for _, n in window)
                if n_window == 0:
                    continue
                optimizer.zero_grad(set_to_none=True)
                for batch, n_targets in window:
                    if n_targets == 0:
                        continue
                    with autocast:
                        loss_sum = self._batch_loss(module, batch)
                    loss_value = float(loss_sum.detach())
                    if not np.isfinite(loss_value) and precision != "fp16":
                        raise FloatingPointError(
                            f"The training loss became {loss_value} at epoch {self.n_iter_ + 1} "
                            f"(precision={precision!r}). Lower learning_rate_init, set "
                            "clip_grad_norm, or use precision='fp32'."
                        )
                    scaler.scale(loss_sum / n_window).backward()
                    total_loss += loss_value
                    total_targets += n_targets
                if self.clip_grad_norm is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(module.parameters(), self.clip_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                n_steps += 1
                self.n_steps_ += 1
            seconds = time.perf_counter() - t0
            self.n_iter_ += 1
            record = {
                "epoch": self.n_iter_,
                "loss": total_loss / max(total_targets, 1),
                "seconds": seconds,
                "targets_per_s": total_targets / seconds if seconds > 0 else float("nan"),
                "steps": n_steps,
                "peak_memory_mb": _peak_memory_mb(device),
                **self._epoch_info(),
            }
            if val is not None:
                record.update(self._validation_scores(*val, scorer))
                value = -record["val_loss"] if scorer is None else record[_val_key(scorer)]
                if np.isfinite(value):
                    smoothed = value if smoothed is None else (
                        smoothing * value + (1 - smoothing) * smoothed
                    )
                if smoothed is not None and smoothed > best + self.tol:
                    best, no_improve = smoothed, 0
                    best_state = copy.deepcopy(module.state_dict())
                    self.best_score_ = record["val_ndcg@10"]
                    self.best_epoch_ = self.n_iter_
                else:
                    no_improve += 1
            self.history_.append(record)
            if bar is not None:
                bar.set_postfix({k: round(v, 4) for k, v in record.items()
                                 if k in ("loss", "val_loss", "val_ndcg@10")})
            if val is not None and no_improve >= self.n_iter_no_change:
                break
        if bar is not None:
            bar.close()
        if best_state is not None:
            module.load_state_dict(best_state)
        module.eval()

    def _validation_scores(self, X_hist: sp.csr_matrix, y_val: sp.csr_matrix, scorer) -> dict:
        """``val_loss``, ``val_ndcg@10`` (and the monitored metric) of the validation users.

        ``val_loss`` is the mean cross-entropy of the held-out items under the softmax of the
        model's scores over each user's unseen items (users with an empty history, who get
        popularity scores, are left out of it). Rankings exclude seen items, as ``predict``.
        """
        from .metrics import ndcg_at_k

        k = 10 if scorer is None else max(10, scorer.k)
        ids = np.empty((X_hist.shape[0], k), dtype=np.int64)
        cold = self._cold_scores()
        nll_sum, n_targets = 0.0, 0
        with torch.inference_mode():
            for rows, Xb in self._iter_batches(X_hist, None):
                yb = y_val if isinstance(rows, slice) else y_val[rows]
                scores = mask_scores(self._score_batch(Xb).float(), Xb, filter_seen=True)
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
        out = {
            "val_loss": nll_sum / n_targets if n_targets else float("nan"),
            "val_ndcg@10": float(ndcg_at_k(y_val, ids[:, :10], k=10)),
        }
        if scorer is not None:
            out[_val_key(scorer)] = float(scorer.metric_func(y_val, ids[:, : scorer.k],
                                                             k=scorer.k))
        return out

    # -------------------------------------------------------------- inference
    def _score_batch(self, X: sp.csr_matrix) -> torch.Tensor:
        module = self.module_
        device = self._device()
        if next(module.parameters()).device != device:
            module.to(device)
        if module.training:
            module.eval()  # the training loop switches back to train mode at each epoch
        with torch.inference_mode(), self._autocast(device, self.precision_):
            return self._module_scores(module, X, device).float()

    def __setstate__(self, state):
        super().__setstate__(state)
        dev = state.get("device_")
        if dev is not None and dev.type == "cuda" and not torch.cuda.is_available():
            self.device_ = torch.device("cpu")
            # Serve the CPU copy in fp32: its rankings match the trained model's fp32 ones,
            # where bf16 inference on a CPU would reorder near-ties.
            self.precision_ = "fp32"
