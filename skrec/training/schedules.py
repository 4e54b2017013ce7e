"""Learning-rate schedules (:class:`~skrec.training.trainer.LRSchedule` implementations)."""

from __future__ import annotations

from .trainer import TrainingState

__all__ = ["PlateauDecay"]


class PlateauDecay:
    """Divide the learning rate at each plateau of the validation, restarting from the best.

    After every validated epoch that does not improve on the best one (as early stopping
    judges it: its monitored value, ``tol`` and smoothing), the learning rate of every
    parameter group is multiplied by ``decay``, at most ``max_decays`` times in a run, and
    (with ``restore_best``) the next epoch starts from the best weights so far rather than
    from the worse ones of the plateau. Epochs that improve change nothing. Early stopping
    keeps counting its patience as usual, so with a patience of ``p`` a run ends after ``p``
    epochs in a row without improvement, each of which lowered the learning rate (until
    ``max_decays``). Without validation (no early stopping) the rate stays constant.

    This is Keras's ``ReduceLROnPlateau`` with a patience of one epoch and the best weights
    restored, the schedule of the BARS click-prediction benchmark.

    Parameters
    ----------
    decay : float, default=0.1
        Multiplier of the learning rate at each plateau, in (0, 1].
    max_decays : int, default=2
        Most decays in one run.
    restore_best : bool, default=True
        Restart each decayed epoch from the best weights so far.

    Attributes
    ----------
    n_decays : int
        Decays so far in this run.
    """

    def __init__(self, decay: float = 0.1, max_decays: int = 2, restore_best: bool = True):
        self.decay = float(decay)
        self.max_decays = int(max_decays)
        self.restore_best = bool(restore_best)
        self.n_decays = 0

    def factor(self, state: TrainingState, progress: float) -> float:
        """``decay ** n_decays``: the multiplier of the coming step's learning rates."""
        return self.decay ** self.n_decays

    def after_validation(self, state: TrainingState, improved: bool) -> bool:
        """Decay after an epoch without improvement; returns whether to restore the best
        weights before the next epoch."""
        if improved or self.n_decays >= self.max_decays:
            return False
        self.n_decays += 1
        return self.restore_best
