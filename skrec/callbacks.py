"""Training callbacks: hooks that see a training run from outside.

The trainer (:class:`skrec.training.Trainer`) calls every callback at the start and end of a run,
of each epoch and after each optimizer step. :class:`ProgressBar` (tqdm) is a callback itself;
:class:`TensorBoard` logs to TensorBoard and :class:`History` collects the epoch records. Pass
your own to an estimator's ``callbacks`` parameter.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .training import Trainer

__all__ = ["Callback", "History", "ProgressBar", "TensorBoard"]


class Callback:
    """Base class of training callbacks: override the hooks you need.

    Every hook receives the running :class:`~skrec.training.Trainer`: ``trainer.state`` holds
    the counters and history of the run as it goes (``state.n_iter``, ``state.n_steps``,
    ``state.history``, ``state.best_epoch``; the estimator's fitted attributes ``n_iter_``,
    ``history_``, ... are written from it when the run ends), ``trainer.estimator`` is the
    estimator being fitted, ``trainer.module`` its torch module and ``trainer.optimizer`` the
    optimizer. Callbacks observe; they must not change the weights or the data.

    In data-parallel training (``torchrun``) every rank calls its callbacks with the same
    epoch records; ``trainer.rank`` tells which rank runs (write files on rank 0 only, as
    :class:`TensorBoard` does). Callbacks given to an estimator are copied by ``clone`` and
    pickled with it, so they should hold no open file or thread between runs.

    Examples
    --------
    >>> from skrec import SeqRecommender
    >>> from skrec.callbacks import Callback
    >>> from skrec.datasets import make_interactions
    >>> class PrintLoss(Callback):
    ...     def on_epoch_end(self, trainer, record):
    ...         print(f"epoch {record['epoch']}: loss {record['loss']:.2f}")
    >>> X = make_interactions(n_users=100, n_items=30, random_state=0)
    >>> rec = SeqRecommender(max_iter=2, early_stopping=False, random_state=0,
    ...                      callbacks=[PrintLoss()]).fit(X)  # doctest: +ELLIPSIS
    epoch 1: loss ...
    epoch 2: loss ...
    """

    def on_train_begin(self, trainer: Trainer) -> None:
        """Called once before the first epoch of a training run."""

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        """Called before each epoch (``epoch`` counts from 1 over the estimator's life)."""

    def on_step_end(self, trainer: Trainer, loss: float, n_targets: int) -> None:
        """Called after each optimizer step with the window's summed loss and target count.

        In data-parallel training ``n_targets`` counts the window's targets on all ranks and
        ``loss`` is this rank's share of the summed loss.
        """

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Called after each epoch (and its validation) with its ``history_`` record."""

    def on_train_end(self, trainer: Trainer) -> None:
        """Called once at the end of the run, after the best weights were restored."""


class History(Callback):
    """Collect the epoch records of every run the callback sees, in :attr:`records`.

    The estimator's own ``history_`` is kept by the trainer (see
    :class:`~skrec.training.TrainingState`); this callback keeps a list of its own, for
    example to gather the epochs of several estimators in one place.

    Attributes
    ----------
    records : list of dict
        One record per epoch, in the order they ended.
    """

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.records.append(record)


def _bars_can_nest() -> bool:
    """Whether two bars can be shown at once: notebook widgets, or a terminal.

    In plain text output (a log file, a CI console) a nested bar is drawn with cursor-moving
    escape codes that end up as debris in the text.
    """
    import sys

    from tqdm.auto import tqdm

    if "notebook" in tqdm.__module__:
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


class ProgressBar(Callback):
    """tqdm progress bars (``tqdm.auto``: widgets in Jupyter, text elsewhere).

    A bar over epochs, and with ``steps`` a bar over the optimizer steps of each epoch. Where
    bars cannot be nested without escape codes (text output that is not a terminal, such as
    a log file), ``steps`` shows one bar per epoch instead, labelled with the epoch, which
    stays as one line per epoch.

    Parameters
    ----------
    desc : str
        Label of the bars, e.g. the estimator's name (``"... fine-tuning"`` when pruning).
    steps : bool, default=False
        Also show the progress over optimizer steps.
    postfix : sequence of str, default=("loss", "val_loss", "val_ndcg@10")
        Record keys shown next to the bar.
    """

    def __init__(self, desc: str, steps: bool = False,
                 postfix: Sequence[str] = ("loss", "val_loss", "val_ndcg@10")):
        self.desc = desc
        self.steps = steps
        self.postfix = tuple(postfix)
        self._bar = self._step_bar = None
        self._nested = True

    def _values(self, record: dict[str, Any]) -> dict[str, float]:
        return {k: round(v, 4) for k, v in record.items() if k in self.postfix}

    def on_train_begin(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        self._nested = not self.steps or _bars_can_nest()
        if self._nested:
            self._bar = tqdm(total=trainer.epochs, desc=self.desc, unit="epoch", leave=True)
        self._epoch = 0

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        if not self.steps:
            return
        from tqdm.auto import tqdm

        self._epoch += 1
        if self._nested:
            self._step_bar = tqdm(total=trainer.n_windows, desc="steps", leave=False)
        else:
            self._step_bar = tqdm(total=trainer.n_windows, unit="step", leave=True,
                                  desc=f"{self.desc} epoch {self._epoch}/{trainer.epochs}")

    def on_step_end(self, trainer: Trainer, loss: float, n_targets: int) -> None:
        if self._step_bar is not None:
            self._step_bar.update(1)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if self._step_bar is not None:
            if not self._nested:
                self._step_bar.set_postfix(self._values(record))
            self._step_bar.close()
            self._step_bar = None
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(self._values(record))

    def on_train_end(self, trainer: Trainer) -> None:
        bar = self._bar
        stopper = getattr(trainer, "early_stopping", None)
        if (bar is not None and bar.total and bar.n < bar.total and not trainer.interrupted
                and getattr(stopper, "should_stop", False)):
            # Early stopping ended the run: its total is the epochs run, so that a Jupyter
            # bar closes green (tqdm marks a bar closed short of its total as failed, red).
            bar.total = bar.n
            bar.refresh()
        for bar in (self._step_bar, self._bar):
            if bar is not None:
                bar.close()
        self._bar = self._step_bar = None


def _summary_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``, or a clear ImportError naming the extra."""
    try:
        import tensorboard  # noqa: F401  (torch's writer needs the tensorboard package)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ImportError(
            "skrec.callbacks.TensorBoard needs the tensorboard package; install it with "
            '`pip install "skrec[tensorboard]"` (or `pip install tensorboard`).'
        ) from exc
    return SummaryWriter


class TensorBoard(Callback):
    """Log every epoch's ``history_`` values and the learning rate to TensorBoard.

    After each epoch, every numeric value of the epoch's record (``loss``, ``val_loss``,
    ``val_ndcg@10`` and the monitored metric, ``seconds``, ``targets_per_s``, ``steps``,
    ``peak_memory_mb``, and estimator-specific ones such as the Mult-VAE's ``beta``) is
    written as a scalar at step ``epoch`` (counted over the estimator's life, so
    ``partial_fit``, ``warm_start`` fits and pruning's fine-tuning continue the curves), with
    the optimizer's ``learning_rate``. The event files are flushed at every epoch, so a
    running ``tensorboard --logdir`` shows training live.

    Needs the ``tensorboard`` package (``pip install "skrec[tensorboard]"``). In
    data-parallel training only rank 0 writes.

    Parameters
    ----------
    log_dir : str or path-like
        Directory of the event files. TensorBoard shows each directory under its
        ``--logdir`` as one run: give each model (or each ``GridSearchCV`` candidate) its own.
    prefix : str, default=""
        Prepended to every tag, e.g. ``"seq/"`` to group the curves of one model.

    Examples
    --------
    >>> from skrec import SeqRecommender
    >>> from skrec.callbacks import TensorBoard
    >>> rec = SeqRecommender(callbacks=[TensorBoard("runs/sasrec")])  # doctest: +SKIP
    >>> rec.fit(X)  # then: tensorboard --logdir runs  # doctest: +SKIP
    """

    def __init__(self, log_dir: str | os.PathLike, *, prefix: str = ""):
        _summary_writer_class()  # fail at once, not after the first epoch
        self.log_dir = log_dir
        self.prefix = prefix
        self._writer = None

    def __repr__(self) -> str:
        extra = f", prefix={self.prefix!r}" if self.prefix else ""
        return f"TensorBoard(log_dir={os.fspath(self.log_dir)!r}{extra})"

    def __getstate__(self) -> dict[str, Any]:
        # clone (deepcopy) and pickling carry the settings, never an open writer
        state = dict(self.__dict__)
        state["_writer"] = None
        return state

    def on_train_begin(self, trainer: Trainer) -> None:
        if getattr(trainer, "rank", 0) != 0:
            return
        self._writer = _summary_writer_class()(log_dir=os.fspath(self.log_dir))

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        writer = self._writer
        if writer is None:
            return
        step = int(record.get("epoch", trainer.state.n_iter))
        for key, value in record.items():
            if key != "epoch" and isinstance(value, numbers.Real) and not isinstance(value, bool):
                writer.add_scalar(self.prefix + key, float(value), step)
        optimizer = getattr(trainer, "optimizer", None)
        if optimizer is not None:
            groups = optimizer.param_groups
            for i, group in enumerate(groups):
                tag = "learning_rate" if len(groups) == 1 else f"learning_rate/group_{i}"
                writer.add_scalar(self.prefix + tag, float(group["lr"]), step)
        writer.flush()

    def on_train_end(self, trainer: Trainer) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
