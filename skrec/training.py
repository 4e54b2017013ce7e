"""The one training loop shared by every neural skrec estimator.

The loop is built from named parts, so that new capabilities reuse them instead of writing
their own loop:

* :class:`Trainer` runs one module: :meth:`Trainer.micro_step` (forward, summed loss,
  backward of one micro-batch), :meth:`Trainer.window_step` (one accumulation window: the
  gradient divided by the window's true number of targets, clipping, one optimizer step),
  :meth:`Trainer.run_epoch` and :meth:`Trainer.fit` (epochs, validation, early stopping,
  callbacks). Pruning's Taylor pass calls :meth:`Trainer.micro_step` too.
* :class:`EarlyStopping` owns the monitored value, its smoothing, the patience and the best
  weights.
* :class:`~skrec.callbacks.Callback` objects see the training from outside (see
  :mod:`skrec.callbacks`): the progress bars and the estimator's ``history_`` are callbacks.
* :class:`NeuralRecommender` adds to :class:`~skrec.base.BaseRecommender` the training
  hyper-parameters, **declared once** here as dataclass fields: every subclass is turned into
  a keyword-only dataclass, lists its own hyper-parameters as annotated class attributes, may
  override a training default by re-declaring the field, and gets the documentation of the
  training parameters (with its own defaults) inserted into its docstring where it says
  ``{training_parameters}``.

A model plugs in by implementing a few small hooks (see :class:`NeuralRecommender`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import numbers
import resource
import signal
import sys
import textwrap
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._distributed import _Distributed, data_fingerprint, process_rank
from ._parallel import limit_torch_threads
from ._validation import check_item_features, check_targets
from .base import BaseRecommender, interaction_counts, mask_scores, rank_top_k
from .callbacks import Callback, History, ProgressBar
from .nn.features import FeatureProjection
from .nn.optim import SparseAdamW, clip_grad_norm_

__all__ = [
    "EarlyStopping",
    "NeuralRecommender",
    "Trainer",
    "WeightAverage",
    "resolve_device",
    "resolve_precision",
]

_PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_INFERENCE_PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
_DEVICE_TYPES = ("cpu", "cuda", "mps")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


# --------------------------------------------------------------------------------------------
# Device and precision
# --------------------------------------------------------------------------------------------


def resolve_device(device) -> torch.device:
    """Turn ``"auto"`` (CUDA when available, else CPU) or a device name into a device.

    Parameters
    ----------
    device : str, torch.device or None
        ``"auto"`` (or ``None``), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...

    Returns
    -------
    device : torch.device
        The device to use.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, torch.device):
        dev = device
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(
                f"device must be 'auto', 'cpu', 'cuda' (or 'cuda:N') or 'mps'; got {device!r}."
            ) from None
    if dev.type not in _DEVICE_TYPES:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' (or 'cuda:N') or 'mps'; got {device!r} "
            f"(skrec does not train on {dev.type!r} devices)."
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was requested but CUDA is not available here.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s).")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} was requested but MPS is not available here.")
    return dev


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 matrix kernels (AVX-512 BF16 or AMX).

    Without them, bf16 matmuls on CPU are emulated and much slower than fp32.

    Returns
    -------
    supported : bool
        True when oneDNN reports native bf16 support.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - old or unusual builds
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """Resolve ``precision`` for ``device``; ``"auto"`` picks the fastest safe choice.

    ``"auto"`` means bf16 on GPUs that support it (fp16 on older GPUs), bf16 on CPUs with native
    bf16 kernels, and fp32 elsewhere.

    Parameters
    ----------
    precision : {"fp32", "bf16", "fp16", "auto"}
        The requested precision.
    device : torch.device
        The training or inference device.

    Returns
    -------
    precision : {"fp32", "bf16", "fp16"}
        The precision to use.
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


def _warn_if_emulated(precision: str, device: torch.device) -> None:
    """Warn when a low precision is requested on a CPU that only emulates it."""
    if device.type != "cpu" or precision == "fp32":
        return
    if precision == "bf16":
        native, isa = cpu_supports_bf16(), "AVX-512 BF16 or AMX"
    else:
        native, isa = _cpu_supports_fp16(), "AVX-512 FP16 or AMX-FP16"
    if not native:
        warnings.warn(
            f"precision={precision!r} is emulated on this CPU (no {isa} instructions) and "
            "typically 5-10x slower than fp32. Use precision='auto' to pick the fastest "
            "precision this machine supports.",
            UserWarning,
            stacklevel=3,
        )


def _cpu_supports_fp16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - old or unusual builds
        return False


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` on ``device`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def _cast_floats(value: Any, dtype: torch.dtype) -> Any:
    """``value`` (a tensor, or a tuple or list of them and ``None``) with floats in ``dtype``."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, tuple | list):
        items = [_cast_floats(v, dtype) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


def _fp32_parts(module: torch.nn.Module) -> list[torch.nn.Module]:
    """Sub-modules that declare ``inference_fp32``: reduced-precision copies leave them be."""
    return [m for m in module.modules() if getattr(m, "inference_fp32", False)]


def _quantize_int8(module: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of the (non-empty) linear layers of a CPU module, in place.

    Uses ``torch.ao.quantization.quantize_dynamic`` (weights quantized per tensor once,
    activations per batch at run time), whose deprecation notice (it moves to torchao) is
    silenced here.
    """
    quantize_dynamic = getattr(getattr(torch.ao, "quantization", None), "quantize_dynamic", None)
    if quantize_dynamic is None:  # pragma: no cover - a torch without it
        raise ValueError("inference_precision='int8' needs torch.ao.quantization.quantize_dynamic,"
                         " which this torch build lacks; use 'bf16' or 'fp32'.")
    kept = {id(m) for part in _fp32_parts(module) for m in part.modules()}
    names = {name for name, m in module.named_modules()
             if isinstance(m, torch.nn.Linear) and m.weight.numel() > 0 and id(m) not in kept}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(module.to("cpu"), names, dtype=torch.qint8, inplace=True)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


# --------------------------------------------------------------------------------------------
# Parameter checks
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


def _make_optimizer(module, lr: float, weight_decay: float, device: torch.device):
    """AdamW, fused into one kernel per step where the device supports it, that also takes
    sparse gradients (:class:`~skrec.nn.SparseAdamW`).

    Dense gradients get exactly AdamW's update. The fused kernel is several times faster on
    large embedding tables (measured 8x on a 1M x 64 table on CPU). Sampled losses give the
    item table sparse gradients, and only the rows a step touches are updated (lazy AdamW).
    """
    params = [p for p in module.parameters() if p.requires_grad]
    try:
        return SparseAdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # pragma: no cover - device without it
        return SparseAdamW(params, lr=lr, weight_decay=weight_decay)


def _parameters_finite(module: torch.nn.Module) -> bool:
    """Whether every parameter of ``module`` is finite (one reduction per tensor)."""
    with torch.no_grad():
        return all(bool(torch.isfinite(p).all()) for p in module.parameters()
                   if p.is_floating_point() and not p.is_sparse)


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


# --------------------------------------------------------------------------------------------
# Early stopping
# --------------------------------------------------------------------------------------------


class EarlyStopping:
    """Track a monitored validation value, stop after a patience, keep the best weights.

    Parameters
    ----------
    monitor : str
        The ``history_`` key monitored, e.g. ``"val_loss"`` or ``"val_ndcg@10"``.
    higher_is_better : bool
        Whether larger monitored values are better (ranking metrics) or smaller (losses).
    patience : int
        Epochs without an improvement of the smoothed value by more than ``tol`` before
        :attr:`should_stop` becomes true.
    tol : float, default=0.0
        Minimum improvement.
    smoothing : float, default=1.0
        Weight of the newest epoch in an exponential moving average of the monitored value
        (1.0: no smoothing). Small validation sets give noisy values; smoothing keeps training
        from stopping on one lucky or unlucky epoch.

    Attributes
    ----------
    best_epoch : int or None
        Epoch (as counted by the caller) of the best smoothed value so far.
    best_value : float or None
        The raw monitored value of that epoch.
    best_state : dict or None
        A copy of the module's ``state_dict`` at that epoch.
    should_stop : bool
        True once the patience is exhausted.
    """

    def __init__(
        self,
        monitor: str,
        *,
        higher_is_better: bool,
        patience: int,
        tol: float = 0.0,
        smoothing: float = 1.0,
    ):
        self.monitor = monitor
        self.higher_is_better = higher_is_better
        self.patience = patience
        self.tol = tol
        self.smoothing = smoothing
        self.best_epoch: int | None = None
        self.best_value: float | None = None
        self.best_state: dict | None = None
        self._best = -np.inf  # best smoothed value, in "higher is better" units
        self._smoothed: float | None = None
        self._no_improve = 0

    @property
    def should_stop(self) -> bool:
        """Whether the patience is exhausted."""
        return self._no_improve >= self.patience

    def update(self, epoch: int, record: dict[str, Any], module: torch.nn.Module) -> bool:
        """Account for one epoch's ``record``; keep ``module``'s weights if it is the best.

        Parameters
        ----------
        epoch : int
            The epoch's number.
        record : dict
            Its ``history_`` record, holding ``monitor``.
        module : torch.nn.Module
            The model, whose state is copied when the epoch is the best so far.

        Returns
        -------
        improved : bool
            Whether this epoch became the best one.
        """
        raw = float(record[self.monitor])
        value = raw if self.higher_is_better else -raw
        if np.isfinite(value):
            s = self.smoothing
            self._smoothed = value if self._smoothed is None else (
                s * value + (1 - s) * self._smoothed
            )
        if self._smoothed is not None and self._smoothed > self._best + self.tol:
            self._best, self._no_improve = self._smoothed, 0
            self.best_epoch, self.best_value = epoch, raw
            self.best_state = copy.deepcopy(module.state_dict())
            return True
        self._no_improve += 1
        return False

    def restore(self, module: torch.nn.Module) -> bool:
        """Load the best weights into ``module``; returns whether there were any."""
        if self.best_state is None:
            return False
        module.load_state_dict(self.best_state)
        return True


class WeightAverage:
    """Exponential moving average of a module's weights, taken after every epoch.

    Parameters
    ----------
    weight : float
        Weight of the newest epoch's weights in the average, in (0, 1] (1.0: the latest
        weights, no averaging).

    Attributes
    ----------
    average : dict or None
        The averaged ``state_dict`` (``None`` before the first :meth:`update`).
    """

    def __init__(self, weight: float):
        self.weight = weight
        self.average: dict | None = None

    def update(self, module: torch.nn.Module) -> None:
        """Fold ``module``'s current weights into the average."""
        state = module.state_dict()
        if self.average is None:
            self.average = {k: v.detach().clone() for k, v in state.items()}
            return
        for key, value in state.items():
            avg = self.average[key]
            if avg.is_floating_point():
                avg.lerp_(value.detach().to(avg.dtype), self.weight)
            else:
                avg.copy_(value)

    @contextlib.contextmanager
    def applied(self, module: torch.nn.Module):
        """Within the block ``module`` holds the averaged weights; its own come back after."""
        if self.average is None:
            yield
            return
        own = {k: v.detach().clone() for k, v in module.state_dict().items()}
        module.load_state_dict(self.average)
        try:
            yield
        finally:
            module.load_state_dict(own)


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------


class _StopOnInterrupt:
    """Turn the first Ctrl-C (SIGINT) during training into a request to stop after the step.

    A second Ctrl-C interrupts at once, as usual. Only the main thread can handle signals;
    elsewhere (worker threads) this does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.signal(signal.SIGINT, self._handle)
            except ValueError:  # pragma: no cover - e.g. embedded interpreters
                self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # the second Ctrl-C: give up waiting for the step to end
            self.__exit__(None, None, None)
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class Trainer:
    """Runs the training of one estimator's torch module: the one loop of skrec.

    The estimator supplies the data and the loss through its hooks (``_batch`` and
    ``_batch_loss``, see :class:`NeuralRecommender`); the trainer owns the device,
    precision, optimizer, accumulation, clipping, weight averaging, validation, early
    stopping and callbacks.

    Parameters
    ----------
    estimator : NeuralRecommender
        The estimator being fitted; its counters ``n_iter_`` and ``n_steps_`` advance.
    module : torch.nn.Module
        The model (already on ``device``).
    device : torch.device
        Where the model lives.
    precision : {"fp32", "bf16", "fp16"}
        Resolved autocast precision; fp16 uses a gradient scaler.
    callbacks : iterable of Callback, default=()
        Called in order at each hook.
    early_stopping : EarlyStopping or None, default=None
        Monitors the validation records; ``None`` trains every epoch.
    loss_scaling : bool, default=True
        Scale the fp16 loss with a ``GradScaler`` (no effect in other precisions). Passes that
        read raw gradients (pruning's Taylor importance) turn it off.
    distributed : object, default=None
        The data-parallel helper of the run (``skrec._distributed._Distributed``): sharding,
        gradient synchronisation and the collectives. ``None``: one process.

    Attributes
    ----------
    rank : int
        This process's data-parallel rank (0 in a single process).
    world_size : int
        Number of data-parallel processes (1 in a single process).
    """

    def __init__(
        self,
        estimator: NeuralRecommender,
        module: torch.nn.Module,
        *,
        device: torch.device,
        precision: str,
        callbacks: Iterable[Callback] = (),
        early_stopping: EarlyStopping | None = None,
        loss_scaling: bool = True,
        distributed: _Distributed | None = None,
    ):
        self.estimator = estimator
        self.module = module
        self.device = device
        self.precision = precision
        self.callbacks = list(callbacks)
        self.early_stopping = early_stopping
        self.autocast = autocast(device, precision)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scaler = torch.amp.GradScaler(device.type,
                                           enabled=loss_scaling and precision == "fp16")
        self.epochs = 0  # epochs requested by the current fit
        self.n_windows = 0  # optimizer steps planned in the current epoch
        self.dist = distributed if distributed is not None else _Distributed(device=device)
        self._interrupt = _StopOnInterrupt()
        self._interrupt_agreed = False  # data parallel: any rank asked to stop

    @property
    def rank(self) -> int:
        """This process's data-parallel rank (0 in a single process)."""
        return self.dist.rank

    @property
    def world_size(self) -> int:
        """Number of data-parallel processes (1 in a single process)."""
        return self.dist.world_size

    @property
    def interrupted(self) -> bool:
        """Whether the user asked to stop (Ctrl-C) during the current run.

        In data-parallel training: whether any rank did (as of the last window), so that
        every rank stops after the same step.
        """
        if self.dist.enabled:
            return self._interrupt_agreed
        return self._interrupt.requested

    def _call(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    # ------------------------------------------------------------------ one micro-batch
    def micro_step(self, batch: Any, denominator: float) -> float:
        """Forward one micro-batch, and backpropagate its summed loss divided by ``denominator``.

        Parameters
        ----------
        batch : object
            A batch made by the estimator's ``_batch``.
        denominator : float
            What the summed loss is divided by before the backward pass: the number of targets
            of the whole accumulation window, so that the window's gradient is the mean over
            its targets.

        Returns
        -------
        loss_sum : float
            The micro-batch's summed loss.

        Raises
        ------
        FloatingPointError
            When the loss is not finite (except in fp16, where the gradient scaler skips the
            step instead).
        """
        with self.autocast:
            loss_sum = self._forward_loss(batch)
        value = float(loss_sum.detach())
        if not np.isfinite(value) and self.precision != "fp16":
            raise FloatingPointError(
                f"The training loss became {value} at epoch {self.estimator.n_iter_ + 1} "
                f"(precision={self.precision!r}). Lower learning_rate_init, set "
                "clip_grad_norm, or use precision='fp32'."
            )
        self.scaler.scale(loss_sum / denominator).backward()
        return value

    def _forward_loss(self, batch: Any) -> torch.Tensor:
        """The summed loss of ``batch`` (through the data-parallel wrapper when there is one)."""
        if self.dist.ddp is not None:
            return self.dist.loss(batch)
        return self.estimator._batch_loss(self.module, batch)

    # ------------------------------------------------------------------ one window
    def window_step(self, window: Sequence[tuple[Any, int]]) -> tuple[float, int]:
        """One optimizer step over an accumulation window of ``(batch, n_targets)`` pairs.

        The gradients of the micro-batches are summed, each divided by the window's total
        number of targets, so ``k`` micro-batches of ``b`` users give the gradient of one
        batch of ``k * b`` users. Windows without targets are skipped.

        Parameters
        ----------
        window : sequence of (batch, int)
            The micro-batches and their numbers of targets.

        Returns
        -------
        loss_sum, n_targets : float, int
            Summed loss and number of targets of the window (0, 0 when skipped). In
            data-parallel training the window spans all ranks: ``n_targets`` counts the
            targets of every rank, ``loss_sum`` is this rank's share.
        """
        # data parallel: the targets of every rank, and whether any rank was asked to stop
        n_window, self._interrupt_agreed = self.dist.sum_count(
            sum(n for _, n in window), self._interrupt.requested
        )
        if n_window == 0:
            return 0.0, 0
        est = self.estimator
        self.optimizer.zero_grad(set_to_none=True)
        total = self._accumulate(window, n_window)
        if est.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            clip_grad_norm_(self.module.parameters(), est.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        est.n_steps_ += 1
        return total, n_window

    def _accumulate(self, window: Sequence[tuple[Any, int]], n_window: int) -> float:
        """Forward and backward the micro-batches of a window; returns their summed loss.

        In one process every micro-batch with targets takes a :meth:`micro_step`. In
        data-parallel training the micro-batches but the last run under ``no_sync`` (local
        accumulation), the last one all-reduces the gradients, and a rank without targets in
        the window joins that all-reduce with a zero gradient. DDP averages the ranks'
        gradients, so each rank divides by ``n_window / world_size``: the average is then the
        sum over every rank's targets divided by ``n_window``, exactly as in one process.
        """
        steps = [batch for batch, n_targets in window if n_targets]
        total = 0.0
        if self.dist.ddp is None:
            for batch in steps:
                total += self.micro_step(batch, n_window)
            return total
        denominator = n_window / self.world_size
        with self.dist.no_sync():
            for batch in steps[:-1]:
                total += self.micro_step(batch, denominator)
        with self.dist.collective("the all-reduce of the gradients"):
            if steps:
                total += self.micro_step(steps[-1], denominator)
            else:
                self.micro_step(self.dist.probe_batch, math.inf)
        return total

    # ------------------------------------------------------------------ one epoch
    def run_epoch(self, data: Any, generator: np.random.RandomState) -> dict[str, Any]:
        """Train one pass over ``data``; returns the epoch's record (without validation)."""
        est = self.estimator
        self.module.train()
        t0 = time.perf_counter()
        # every rank draws the same batches of world_size x batch_size rows and keeps its share
        batches = self.dist.shard(
            _make_batches(data, est.batch_size_ * self.world_size, generator)
        )
        acc = est.accumulation_steps
        starts = range(0, len(batches), acc)
        self.n_windows = len(starts)
        self._call("on_epoch_begin", est.n_iter_ + 1)
        total_loss, total_targets, n_steps, n_finite = 0.0, 0, 0, 0
        for w in starts:
            window = [est._batch(data, rows, self.device) for rows in batches[w : w + acc]]
            loss, n = self.window_step(window)
            if n:
                n_steps += 1
                if np.isfinite(loss):  # fp16: the scaler skipped a non-finite step
                    n_finite += 1
                    total_loss += loss
                    total_targets += n
                self._call("on_step_end", loss, n)
            if self.interrupted:
                break
        # data parallel: the loss and finite steps of every rank (n_window counts them already)
        total_loss, n_finite = self.dist.sum_floats(total_loss, n_finite)
        flush = getattr(self.optimizer, "flush", None)
        if flush is not None:  # rows of sparse-gradient tables catch up (SparseAdamW)
            flush()
        if n_steps and not n_finite:
            raise FloatingPointError(
                f"Every training step of epoch {est.n_iter_ + 1} had a non-finite loss "
                f"(precision={self.precision!r}): the model learned nothing. Lower "
                "learning_rate_init, set clip_grad_norm, or use precision='fp32' (or 'bf16')."
            )
        if n_steps and not _parameters_finite(self.module):
            # the loss of a step was finite but its update was not (a huge learning rate or
            # weight decay): the next step, or predict, would read NaN weights
            raise FloatingPointError(
                f"The weights became non-finite during epoch {est.n_iter_ + 1} (the losses "
                "were finite, the updates were not). Lower learning_rate_init or "
                "weight_decay, or set clip_grad_norm."
            )
        seconds = time.perf_counter() - t0
        est.n_iter_ += 1
        record = {
            "epoch": est.n_iter_,
            "loss": total_loss / max(total_targets, 1),
            "seconds": seconds,
            "targets_per_s": total_targets / seconds if seconds > 0 else float("nan"),
            "steps": n_steps,
            "peak_memory_mb": _peak_memory_mb(self.device),
            **est._epoch_info(),
        }
        if self.interrupted:
            record["interrupted"] = True
        return record

    # ------------------------------------------------------------------ the run
    def fit(
        self,
        data: Any,
        epochs: int,
        generator: np.random.RandomState,
        validate: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        """Train up to ``epochs`` epochs, validating after each when ``validate`` is given.

        Parameters
        ----------
        data : object
            The estimator's prepared training data (``_prepare``).
        epochs : int
            Maximum number of epochs.
        generator : numpy.random.RandomState
            Draws the batches.
        validate : callable, default=None
            Returns the validation values to add to each epoch's record; early stopping
            (if any) monitors them.
        """
        est = self.estimator
        self.optimizer = _make_optimizer(self.module, est.learning_rate_init,
                                         est.weight_decay, self.device)
        self._wrap_for_data_parallel(data)
        stopper = self.early_stopping if validate is not None else None
        weight = est.weight_averaging
        averager = WeightAverage(weight) if weight is not None and weight < 1 else None
        self.epochs = epochs
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._call("on_train_begin")
        try:
            with self._interrupt:
                for _ in range(epochs):
                    record = self.run_epoch(data, generator)
                    if self.interrupted:  # a partial epoch: recorded, not validated
                        self._call("on_epoch_end", record)
                        break
                    averaged = contextlib.nullcontext()
                    if averager is not None:
                        averager.update(self.module)
                        averaged = averager.applied(self.module)
                    with averaged:  # validation and the best state see the average
                        if validate is not None:
                            record.update(validate())
                        if stopper is not None and stopper.update(est.n_iter_, record,
                                                                  self.module):
                            est.best_score_ = stopper.best_value
                            est.best_epoch_ = stopper.best_epoch
                    self._call("on_epoch_end", record)
                    if self.interrupted or (stopper is not None and stopper.should_stop):
                        break
        finally:
            restored = stopper is not None and stopper.restore(self.module)
            if not restored and averager is not None and averager.average is not None:
                self.module.load_state_dict(averager.average)
            self.module.eval()
            self._call("on_train_end")
        if self.interrupted:
            kept = (f"the weights of its best epoch ({est.best_epoch_})" if restored
                    else "the weights averaged up to its last complete epoch"
                    if averager is not None and averager.average is not None
                    else "the current weights")
            warnings.warn(
                f"Training was interrupted (Ctrl-C) during epoch {est.n_iter_}; the estimator "
                f"keeps {kept} and can be used (or trained further with warm_start or "
                "partial_fit).",
                UserWarning,
                stacklevel=2,
            )
        self._unwrap_data_parallel()

    # ------------------------------------------------------------------ data parallel
    def _wrap_for_data_parallel(self, data: Any) -> None:
        """Wrap the loss in DistributedDataParallel (a no-op in one process)."""
        if not self.dist.enabled:
            return
        est = self.estimator
        probe = None
        if data.n_rows:
            probe, _ = est._batch(data, np.arange(min(data.n_rows, est.batch_size_)),
                                  self.device)
        self.dist.wrap(self.module, est._batch_loss, probe)

    def _unwrap_data_parallel(self) -> None:
        """After a run: every rank takes rank 0's weights; the module is left unwrapped."""
        if not self.dist.enabled:
            return
        self.dist.unwrap(self.module)
        self.dist.broadcast_module_(self.module)


# --------------------------------------------------------------------------------------------
# Training parameters: declared and documented once
# --------------------------------------------------------------------------------------------

#: Documentation of every training parameter: name -> (type, description). Each estimator's
#: docstring gets these, with its own defaults, where it says ``{training_parameters}``; an
#: estimator may replace a description through ``_param_docs``.
TRAINING_PARAM_DOCS: dict[str, tuple[str, str]] = {
    "max_iter": ("int", "Maximum number of epochs."),
    "batch_size": (
        "int or \"auto\"",
        "Users per micro-batch. ``\"auto\"``: about one micro-batch per 50 training users, "
        "rounded to a power of two and clipped to [32, 128] (32 up to about 2,200 users, 128 "
        "from about 4,500): small user bases need many optimizer steps per epoch, large ones "
        "train as well with larger, faster batches. The value used is ``batch_size_``.",
    ),
    "learning_rate_init": ("float", "AdamW learning rate."),
    "weight_decay": ("float", "AdamW decoupled weight decay."),
    "precision": (
        '{"auto", "fp32", "bf16", "fp16"}',
        "Autocast precision for training and inference; ``\"auto\"`` uses bf16 where the "
        "hardware runs it natively (recent GPUs, CPUs with AVX-512 BF16/AMX), fp16 on older "
        "GPUs and fp32 elsewhere. fp16 uses a gradient scaler. Logits are upcast to fp32 "
        "before every softmax.",
    ),
    "inference_precision": (
        '{"auto", "fp32", "bf16", "fp16", "int8"}',
        "Precision of ``predict``, ``recommend``, ``score`` and validation: ``\"auto\"`` uses "
        "the training precision (``precision_``, by autocast of the fp32 weights); "
        "``\"fp32\"``; ``\"bf16\"`` or ``\"fp16\"`` serve from a copy of the model cast to "
        "that type, under autocast (no weight casts at each call: the fastest choice on CPUs "
        "with native bf16); ``\"int8\"`` serves from a copy whose linear layers are "
        "dynamically quantized to int8 (weights int8, activations quantized per batch; CPU "
        "only). Only inference changes, so it can be set after ``fit`` with ``set_params`` "
        "without refitting. The copy is made at the first call and kept until the weights "
        "change. See the Serving guide for the measured speed and quality of each.",
    ),
    "accumulation_steps": (
        "int",
        "Micro-batches per optimizer step: ``k`` steps of ``batch_size`` give the same "
        "gradient as one batch ``k`` times larger (the gradient is divided by the true number "
        "of targets in each window; the last partial window still steps).",
    ),
    "clip_grad_norm": ("float or None", "Maximum gradient norm (``None``: no clipping)."),
    "early_stopping": (
        "bool",
        "Hold out ``validation_fraction`` of the users, evaluate them after every epoch, stop "
        "after ``n_iter_no_change`` epochs without an improvement of ``validation_metric`` "
        "by more than ``tol``, and restore the weights of the best epoch.",
    ),
    "validation_fraction": ("float", "Fraction of users used for validation."),
    "validation_metric": (
        "str",
        "What early stopping monitors: ``\"loss\"`` (the cross-entropy of the held-out items "
        "under the softmax of the model's scores over each user's unseen items; lower is "
        "better), a ranking metric ``\"name@k\"`` such as ``\"ndcg@10\"`` or "
        "``\"recall@20\"`` (see :func:`~skrec.metrics.get_rec_scorer`; higher is better), "
        "or ``\"auto\"``: ``\"ndcg@10\"`` from 1,000 validation users on, ``\"loss\"`` "
        "below (where one epoch's NDCG@10 is too noisy to select on). The metric used is "
        "``validation_metric_``.",
    ),
    "n_iter_no_change": ("int", "Patience of early stopping, in epochs."),
    "tol": ("float", "Minimum improvement of the monitored validation value."),
    "device": ("str", "``\"auto\"`` (CUDA when available), ``\"cpu\"``, ``\"cuda\"``, ..."),
    "random_state": (
        "int, RandomState instance or None",
        "Seed for initialisation, batching, dropout and the validation users: reproducible "
        "training on CPU.",
    ),
    "verbose": ("int", "1: a progress bar over epochs (renders in Jupyter); 2: also over "
                       "optimizer steps."),
    "warm_start": ("bool", "Continue from the current weights on the next ``fit``."),
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
        "``W1 x + b1``. On MovieLens-100K (``benchmarks/cold_start.py``, 3 seeds) 64 units "
        "ranked the autoencoder's cold items as the linear map did and gained less on its warm "
        "items.",
    ),
    "id_dropout": (
        "float",
        "With ``item_features``, the fraction of items whose id embedding and id bias are "
        "hidden on the output side at each training step (histories keep every id), so that "
        "the features learn to score items on their own, as they must for new items. On "
        "MovieLens-100K (3 seeds; ``benchmarks/cold_start.py``) 0.1 ranked cold items as well "
        "as 0.5 or better (genres and release year: NDCG@20 0.240 vs 0.229 for the sequence "
        "model, 0.346 vs 0.345 for the autoencoder; with MiniLM title vectors added, 0.326 vs "
        "0.299 for the autoencoder) and cost the items the models know less: leave-last-out "
        "NDCG@10 over the id-only model +5.2 % vs +4.4 % for the sequence model (genres and "
        "title TF-IDF); for the autoencoder +2.5 % vs -10.4 % (genres and year), +4.4 % vs "
        "-1.4 % (MiniLM titles), +3.5 % vs +4.4 % (genres and title TF-IDF).",
    ),
    "weight_averaging": (
        "float or None",
        "Average the weights over epochs: after every epoch the running average takes this "
        "weight of the new weights (an exponential moving average, as in Polyak averaging "
        "and SWA); validation, early stopping and the fitted model use the average, while "
        "training continues from the latest weights. Smaller values average over more "
        "epochs (0.5: about the last three). ``None`` (or 1.0): the latest weights.",
    ),
    "callbacks": (
        "list of Callback or None",
        "Extra :class:`~skrec.callbacks.Callback` objects called at every hook of every "
        "training run (``fit``, ``partial_fit``, pruning's fine-tuning), after the built-in "
        "history and progress bars, for example :class:`~skrec.callbacks.TensorBoard`. "
        "``clone`` gives the clone copies of them.",
    ),
}


def _format_default(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def render_param_docs(cls: type, names: Iterable[str], docs: dict[str, tuple[str, str]],
                      indent: int = 4) -> str:
    """numpydoc ``Parameters`` entries of ``names`` with ``cls``'s defaults.

    Parameters
    ----------
    cls : type
        A dataclass estimator (its field defaults are shown).
    names : iterable of str
        The parameters to document, in order.
    docs : dict
        name -> (type, description); ``cls._param_docs`` overrides descriptions.
    indent : int, default=4
        Indentation of the entries.

    Returns
    -------
    text : str
        The entries, without a trailing newline.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    overrides = getattr(cls, "_param_docs", {})
    pad = " " * indent
    lines = []
    for name in names:
        type_, desc = docs[name]
        desc = overrides.get(name, desc)
        lines.append(f"{pad}{name} : {type_}, default={_format_default(fields[name].default)}")
        lines += textwrap.wrap(desc, width=95 - indent, initial_indent=pad + "    ",
                               subsequent_indent=pad + "    ")
    return "\n".join(lines)


_DATACLASS = {"kw_only": True, "eq": False, "repr": False}


def _render_docstring(cls: type) -> None:
    """Replace ``{training_parameters}`` in ``cls``'s docstring by the shared parameters."""
    marker = "    {training_parameters}"
    if cls.__doc__ and marker in cls.__doc__:
        fields = {f.name for f in dataclasses.fields(cls)}
        docs = cls._shared_param_docs
        names = [name for name in docs if name in fields]
        cls.__doc__ = cls.__doc__.replace(marker, render_param_docs(cls, names, docs))


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
        _check_int("max_iter", self.max_iter, 1)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _check_int("batch_size", self.batch_size, 1)
        _check_int("accumulation_steps", self.accumulation_steps, 1)
        _check_int("n_iter_no_change", self.n_iter_no_change, 1)
        _check_float("learning_rate_init", self.learning_rate_init, 0, low_inclusive=False)
        _check_float("weight_decay", self.weight_decay, 0)
        _check_float("tol", self.tol, 0)
        _check_float("clip_grad_norm", self.clip_grad_norm, 0, low_inclusive=False,
                     allow_none=True)
        _check_float("weight_averaging", self.weight_averaging, 0, 1, low_inclusive=False,
                     allow_none=True)
        _check_float("validation_fraction", self.validation_fraction, 0, 1, low_inclusive=False)
        if self.validation_fraction >= 1:
            raise ValueError("validation_fraction must be < 1.")
        if self.precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {_PRECISIONS}; got {self.precision!r}.")
        self._check_inference_precision()
        if not isinstance(self.verbose, numbers.Integral) or self.verbose < 0:
            raise ValueError(f"verbose must be an integer >= 0 (or a bool); got "
                             f"{self.verbose!r}.")
        resolve_device(self.device)
        for name in ("id_dropout", "feature_dropout"):
            value = getattr(self, name)
            _check_float(name, value, 0, 1)
            if value >= 1:
                raise ValueError(f"{name} must be in [0, 1); got {value!r}.")
        _check_int("feature_hidden", self.feature_hidden, 1, allow_none=True)
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
        if value not in _INFERENCE_PRECISIONS:
            raise ValueError(f"inference_precision must be one of {_INFERENCE_PRECISIONS}; "
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
        from .metrics import get_rec_scorer

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
        _warn_if_emulated(resolve_precision(self.precision, device), device)
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
        _warn_if_emulated(resolve_precision(self.precision, device), device)
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
        from .metrics import ndcg_at_k

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
            served = _quantize_int8(served.float())
        else:
            dtype = _DTYPES[precision]
            served = served.to(dtype)
            for part in _fp32_parts(served):
                part.float()  # computes in fp32, hands its outputs back in the copy's dtype
                part.register_forward_hook(lambda m, i, out, dtype=dtype: _cast_floats(out,
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
