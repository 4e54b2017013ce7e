"""The one training loop: Trainer, EarlyStopping, WeightAverage, batches and the optimizer."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from .._distributed import Distributed
from ..callbacks import Callback
from ..nn.optim import SparseAdamW, clip_grad_norm_
from .precision import autocast, peak_memory_mb

__all__ = [
    "EarlyStopping",
    "LRSchedule",
    "Trainer",
    "TrainingConfig",
    "TrainingState",
    "TrainingTask",
    "WeightAverage",
    "make_batches",
]

# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


def _make_optimizer(params: list, lr: float, weight_decay: float):
    """AdamW, fused into one kernel per step where the device supports it, that also takes
    sparse gradients (:class:`~skrec.nn.SparseAdamW`), over ``params`` (tensors, or parameter
    groups: dicts whose own ``lr`` and ``weight_decay`` replace the run's).

    Dense gradients get exactly AdamW's update. The fused kernel is several times faster on
    large embedding tables (measured 8x on a 1M x 64 table on CPU). Sampled losses give the
    item table sparse gradients, and only the rows a step touches are updated (lazy AdamW).
    Each group keeps its starting learning rate as ``base_lr`` (what a schedule scales).
    """
    try:
        optimizer = SparseAdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # pragma: no cover - device without it
        optimizer = SparseAdamW(params, lr=lr, weight_decay=weight_decay)
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    return optimizer


def _trainable(module: torch.nn.Module, task: Any) -> list:
    """The parameters the optimizer updates: the task's parameter groups when it has them
    (``param_groups(module)``), else every parameter that requires a gradient."""
    groups = getattr(task, "param_groups", None)
    if groups is not None:
        return list(groups(module))
    return [p for p in module.parameters() if p.requires_grad]


def _or_fp32(precision: str) -> str:
    """The end of a divergence message: the precision advice, where it can help."""
    return "" if precision == "fp32" else ", or use precision='fp32'"


def _parameters_finite(module: torch.nn.Module) -> bool:
    """Whether every parameter of ``module`` is finite (one reduction per tensor)."""
    with torch.no_grad():
        return all(bool(torch.isfinite(p).all()) for p in module.parameters()
                   if p.is_floating_point() and not p.is_sparse)


def make_batches(data: Any, batch_size: int, rng: np.random.RandomState) -> list[np.ndarray]:
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


# --------------------------------------------------------------------------------------------
# The protocol between the trainer and the model
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """The settings of one training run, resolved once per fit.

    Parameters
    ----------
    device : torch.device
        Where the model lives.
    precision : {"fp32", "bf16", "fp16"}
        The resolved autocast precision; fp16 uses a gradient scaler.
    batch_size : int
        Rows per micro-batch.
    accumulation_steps : int, default=1
        Micro-batches per optimizer step.
    learning_rate : float, default=1e-3
        AdamW learning rate.
    weight_decay : float, default=0.0
        AdamW decoupled weight decay.
    clip_grad_norm : float or None, default=None
        Maximum gradient norm (``None``: no clipping).
    weight_averaging : float or None, default=None
        Weight of the newest epoch in the moving average of the weights (see
        :class:`WeightAverage`); ``None`` or 1.0: no averaging.
    lr_schedule : LRSchedule or None, default=None
        Multiplies every parameter group's starting learning rate before each optimizer step;
        ``None``: a constant learning rate.
    loss_scaling : bool, default=True
        Scale the fp16 loss with a ``GradScaler`` (no effect in other precisions). Passes that
        read raw gradients (pruning's Taylor importance) turn it off.
    """

    device: torch.device
    precision: str
    batch_size: int
    accumulation_steps: int = 1
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    clip_grad_norm: float | None = None
    weight_averaging: float | None = None
    lr_schedule: LRSchedule | None = None
    loss_scaling: bool = True


@runtime_checkable
class LRSchedule(Protocol):
    """A learning-rate schedule: the factor applied to the starting learning rates.

    The trainer calls :meth:`factor` before every optimizer step and sets each parameter
    group's learning rate to its starting one (``base_lr``) times the factor; the epoch's
    record gets the factor of its last step as ``lr_factor``. A schedule may also have
    ``after_validation(state, improved) -> bool``, called after each validated epoch of a run
    with early stopping (``improved``: the epoch became the best): when it returns True the
    trainer restores the best weights before the next epoch (see
    :class:`~skrec.training.schedules.PlateauDecay`).
    """

    def factor(self, state: TrainingState, progress: float) -> float:
        """The factor of the coming step: ``state`` holds the counters and history so far
        (``state.n_steps`` steps taken, the validation records of the epochs run),
        ``progress`` the fraction of the run's planned steps taken (``epochs`` times the
        steps of an epoch), from 0 at its first step."""


@dataclasses.dataclass
class TrainingState:
    """What training has done to a model so far: its counters, history and best epoch.

    The :class:`Trainer` advances it in place; an estimator keeps it between runs as its
    fitted attributes (``n_iter_``, ``n_steps_``, ``history_``, ``best_score_``,
    ``best_epoch_``).

    Attributes
    ----------
    n_iter : int
        Epochs run.
    n_steps : int
        Optimizer steps run (one per accumulation window, counted after the step: every
        micro-batch of a window sees the same value; schedules such as KL annealing read it).
    history : list of dict
        One record per epoch.
    best_score : float or None
        The monitored validation value of the best epoch of the last run with early stopping.
    best_epoch : int or None
        That epoch.
    """

    n_iter: int = 0
    n_steps: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best_score: float | None = None
    best_epoch: int | None = None


@runtime_checkable
class TrainingTask(Protocol):
    """What the trainer asks of the model it trains.

    The training data is any object with an ``n_rows`` attribute (and optionally
    ``lengths``, an array of row lengths that :func:`make_batches` groups by); the trainer
    draws row indices and asks the task for the batch of those rows and for its loss. The
    validation measurement is a callable given to :meth:`Trainer.fit`.
    """

    def make_batch(self, data: Any, rows: np.ndarray, device: torch.device) -> tuple[Any, int]:
        """The micro-batch of the rows ``rows`` of ``data``, on ``device``, and its number of
        targets (what the summed loss is a sum over)."""

    def batch_loss(self, module: torch.nn.Module, batch: Any,
                   state: TrainingState) -> torch.Tensor:
        """The **sum** of the per-target losses of ``batch`` (an fp32 scalar); ``state`` gives
        the step count to schedules."""

    def epoch_info(self, state: TrainingState) -> dict[str, Any]:
        """Extra fields of the epoch's record (e.g. a schedule's value)."""

    # Optional: ``param_groups(module)`` -> the optimizer's parameter groups (dicts with
    # "params" and, optionally, their own "lr" and "weight_decay"); without it every
    # parameter that requires a gradient is one group with the run's settings.


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
    """Runs the training of one torch module: the one loop of skrec.

    The trainer knows nothing of estimators: the model it trains talks to it through a
    :class:`TrainingTask` (the batches and their loss), the settings of the run come in a
    :class:`TrainingConfig`, and what training has done so far is a :class:`TrainingState`
    that the trainer advances (the epoch and step counters, the history, the best epoch).
    The trainer owns the optimizer, precision, accumulation, clipping, weight averaging,
    validation, early stopping and the callbacks.

    Parameters
    ----------
    task : TrainingTask
        Makes the batches and computes their loss.
    module : torch.nn.Module
        The model (already on ``config.device``).
    config : TrainingConfig
        The settings of the run.
    state : TrainingState, default=None
        The counters and history to continue from (advanced in place); a fresh one when
        ``None``.
    callbacks : iterable of Callback, default=()
        Called in order at each hook.
    early_stopping : EarlyStopping or None, default=None
        Monitors the validation records; ``None`` trains every epoch.
    distributed : object, default=None
        The data-parallel helper of the run (``skrec._distributed.Distributed``): sharding,
        gradient synchronisation and the collectives. ``None``: one process.
    estimator : object, default=None
        The estimator being fitted, for the callbacks (``trainer.estimator``); the trainer
        itself never reads it.

    Attributes
    ----------
    state : TrainingState
        The counters and history, advanced by the run.
    optimizer : torch.optim.Optimizer or None
        The optimizer of the current :meth:`fit` (``None`` before).
    epochs : int
        Epochs requested by the current :meth:`fit`.
    n_windows : int
        Optimizer steps planned in the current epoch.
    rank : int
        This process's data-parallel rank (0 in a single process).
    world_size : int
        Number of data-parallel processes (1 in a single process).
    """

    def __init__(
        self,
        task: TrainingTask,
        module: torch.nn.Module,
        config: TrainingConfig,
        *,
        state: TrainingState | None = None,
        callbacks: Iterable[Callback] = (),
        early_stopping: EarlyStopping | None = None,
        distributed: Distributed | None = None,
        estimator: Any = None,
    ):
        self.task = task
        self.module = module
        self.config = config
        self.state = state if state is not None else TrainingState()
        self.estimator = estimator
        self.device = config.device
        self.precision = config.precision
        self.callbacks = list(callbacks)
        self.early_stopping = early_stopping
        self.autocast = autocast(config.device, config.precision)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scaler = torch.amp.GradScaler(
            config.device.type, enabled=config.loss_scaling and config.precision == "fp16"
        )
        self.epochs = 0
        self.n_windows = 0
        self.dist = (distributed if distributed is not None
                     else Distributed(device=config.device))
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
            A batch made by the task's :meth:`~TrainingTask.make_batch`.
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
                f"The training loss became {value} at epoch {self.state.n_iter + 1} "
                f"(precision={self.precision!r}). Lower learning_rate_init or set "
                f"clip_grad_norm{_or_fp32(self.precision)}."
            )
        self.scaler.scale(loss_sum / denominator).backward()
        return value

    def _forward_loss(self, batch: Any) -> torch.Tensor:
        """The summed loss of ``batch`` (through the data-parallel wrapper when there is one)."""
        if self.dist.ddp is not None:
            return self.dist.loss(batch)
        return self.task.batch_loss(self.module, batch, self.state)

    # ------------------------------------------------------------------ one window
    def window_step(self, window: Sequence[tuple[Any, int]]) -> tuple[float, int]:
        """One optimizer step over an accumulation window of ``(batch, n_targets)`` pairs.

        The gradients of the micro-batches are summed, each divided by the window's total
        number of targets, so ``k`` micro-batches of ``b`` rows give the gradient of one
        batch of ``k * b`` rows. Windows without targets are skipped.

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
        self.optimizer.zero_grad(set_to_none=True)
        total = self._accumulate(window, n_window)
        if self.config.lr_schedule is not None:
            self._schedule_learning_rate()
        if self.config.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            clip_grad_norm_(self.module.parameters(), self.config.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.state.n_steps += 1
        return total, n_window

    def _schedule_learning_rate(self) -> None:
        """Set every group's learning rate for the coming step (see :class:`LRSchedule`)."""
        planned = max(self.epochs * max(self.n_windows, 1), 1)
        progress = min(self._run_steps / planned, 1.0)
        self._lr_factor = float(self.config.lr_schedule.factor(self.state, progress))
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * self._lr_factor
        self._run_steps += 1

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
        state, config = self.state, self.config
        self.module.train()
        t0 = time.perf_counter()
        # every rank draws the same batches of world_size x batch_size rows and keeps its share
        batches = self.dist.shard(
            make_batches(data, config.batch_size * self.world_size, generator)
        )
        acc = config.accumulation_steps
        starts = range(0, len(batches), acc)
        self.n_windows = len(starts)
        self._call("on_epoch_begin", state.n_iter + 1)
        total_loss, total_targets, n_steps, n_finite = 0.0, 0, 0, 0
        for w in starts:
            window = [self.task.make_batch(data, rows, self.device)
                      for rows in batches[w : w + acc]]
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
                f"Every training step of epoch {state.n_iter + 1} had a non-finite loss "
                f"(precision={self.precision!r}): the model learned nothing. Lower "
                "learning_rate_init, set clip_grad_norm, or use precision='fp32' (or 'bf16')."
            )
        if n_steps and not _parameters_finite(self.module):
            # the loss of a step was finite but its update was not (a huge learning rate or
            # weight decay): the next step, or predict, would read NaN weights
            raise FloatingPointError(
                f"The weights became non-finite during epoch {state.n_iter + 1} (the losses "
                "were finite, the updates were not). Lower learning_rate_init or "
                "weight_decay, or set clip_grad_norm."
            )
        seconds = time.perf_counter() - t0
        state.n_iter += 1
        record = {
            "epoch": state.n_iter,
            "loss": total_loss / max(total_targets, 1),
            "seconds": seconds,
            "targets_per_s": total_targets / seconds if seconds > 0 else float("nan"),
            "steps": n_steps,
            "peak_memory_mb": peak_memory_mb(self.device),
            **self.task.epoch_info(state),
        }
        if self.config.lr_schedule is not None:
            record["lr_factor"] = self._lr_factor
        if self.interrupted:
            record["interrupted"] = True
        return record

    def _end_epoch(self, record: dict[str, Any]) -> None:
        """Record the epoch in the history, then tell the callbacks."""
        self.state.history.append(record)
        self._call("on_epoch_end", record)

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
            The prepared training data the task's batches are made from: anything with an
            ``n_rows`` attribute (and optionally ``lengths``, see :func:`make_batches`).
        epochs : int
            Maximum number of epochs.
        generator : numpy.random.RandomState
            Draws the batches.
        validate : callable, default=None
            The validation measurement: returns the values to add to each epoch's record;
            early stopping (if any) monitors them.
        """
        config, state = self.config, self.state
        self.optimizer = _make_optimizer(_trainable(self.module, self.task),
                                         config.learning_rate, config.weight_decay)
        self._run_steps, self._lr_factor = 0, 1.0
        self._wrap_for_data_parallel(data)
        stopper = self.early_stopping if validate is not None else None
        weight = config.weight_averaging
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
                        self._end_epoch(record)
                        break
                    averaged = contextlib.nullcontext()
                    if averager is not None:
                        averager.update(self.module)
                        averaged = averager.applied(self.module)
                    with averaged:  # validation and the best state see the average
                        if validate is not None:
                            record.update(validate())
                        improved = stopper is not None and stopper.update(
                            state.n_iter, record, self.module)
                        if improved:
                            state.best_score = stopper.best_value
                            state.best_epoch = stopper.best_epoch
                    hook = getattr(config.lr_schedule, "after_validation", None)
                    if stopper is not None and hook is not None and hook(state, improved):
                        stopper.restore(self.module)  # the next epoch starts from the best
                    self._end_epoch(record)
                    if self.interrupted or (stopper is not None and stopper.should_stop):
                        break
        finally:
            restored = stopper is not None and stopper.restore(self.module)
            if not restored and averager is not None and averager.average is not None:
                self.module.load_state_dict(averager.average)
            self.module.eval()
            self._call("on_train_end")
        if self.interrupted:
            kept = (f"the weights of its best epoch ({state.best_epoch})" if restored
                    else "the weights averaged up to its last complete epoch"
                    if averager is not None and averager.average is not None
                    else "the current weights")
            warnings.warn(
                f"Training was interrupted (Ctrl-C) during epoch {state.n_iter}; the estimator "
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
        probe = None
        if data.n_rows:
            rows = np.arange(min(data.n_rows, self.config.batch_size))
            probe, _ = self.task.make_batch(data, rows, self.device)
        self.dist.wrap(self.module, functools.partial(self.task.batch_loss, state=self.state),
                       probe)

    def _unwrap_data_parallel(self) -> None:
        """After a run: every rank takes rank 0's weights; the module is left unwrapped."""
        if not self.dist.enabled:
            return
        self.dist.unwrap(self.module)
        self.dist.broadcast_module_(self.module)
