"""Training callbacks: hooks that see a training run from outside.

The trainer (:class:`skrec.training.Trainer`) calls every callback at the start and end of a run,
of each epoch and after each optimizer step. :class:`History` (the estimator's ``history_``)
and :class:`ProgressBar` (tqdm) are callbacks themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .training import Trainer

__all__ = ["Callback", "History", "ProgressBar"]




class Callback:
    """Base class of training callbacks: override the hooks you need.

    Every hook receives the running :class:`Trainer`; ``trainer.estimator`` is the estimator
    being fitted and ``trainer.module`` its torch module. Callbacks observe; they must not
    change the weights or the data.
    """

    def on_train_begin(self, trainer: Trainer) -> None:
        """Called once before the first epoch of a training run."""

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        """Called before each epoch (``epoch`` counts from 1 over the estimator's life)."""

    def on_step_end(self, trainer: Trainer, loss: float, n_targets: int) -> None:
        """Called after each optimizer step with the window's summed loss and target count."""

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Called after each epoch (and its validation) with its ``history_`` record."""

    def on_train_end(self, trainer: Trainer) -> None:
        """Called once at the end of the run, after the best weights were restored."""


class History(Callback):
    """Append every epoch's record to the estimator's ``history_``."""

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        trainer.estimator.history_.append(record)


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
        for bar in (self._step_bar, self._bar):
            if bar is not None:
                bar.close()
        self._bar = self._step_bar = None
