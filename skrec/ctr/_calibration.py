"""Calibration for ads: undo negative subsampling, measure reliability."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["negative_sampling_correction", "reliability_curve"]


def negative_sampling_correction(logit, rate: float) -> np.ndarray:
    """Logits of the true click rate from a model trained on negatives kept at ``rate``.

    Keeping each negative with probability ``r`` (and every positive) multiplies the odds of
    a click by ``1 / r``: ``p_s / (1 - p_s) = p / ((1 - p) r)``. The true log-odds are
    therefore the trained ones plus ``log(r)``, and the true probability is
    ``p = p_s r / (p_s r + 1 - p_s)`` (He et al., 2014, "Practical lessons from predicting
    clicks on ads at Facebook"). This is exact when the model is calibrated on the subsampled
    data; the ranking of candidates does not change.

    Parameters
    ----------
    logit : array-like
        Log-odds predicted by the model trained on subsampled negatives.
    rate : float in (0, 1]
        The share of negatives kept for training.

    Returns
    -------
    logit : ndarray of float64
        Corrected log-odds (``scipy.special.expit`` gives the probabilities).
    """
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 < rate <= 1:
        raise ValueError(f"rate must be in (0, 1]; got {rate!r}.")
    return np.asarray(logit, dtype=np.float64) + np.log(float(rate))


def reliability_curve(y_true, proba, *, n_bins: int = 10, strategy: str = "quantile"
                      ) -> dict[str, np.ndarray]:
    """Observed click rate against predicted probability, per bin of predictions.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        0/1 labels.
    proba : array-like of shape (n_samples,)
        Predicted click probabilities.
    n_bins : int, default=10
        Number of bins.
    strategy : {"quantile", "uniform"}, default="quantile"
        Bins of equal counts (what a skewed click rate needs) or of equal width.

    Returns
    -------
    curve : dict
        ``mean_predicted``, ``observed`` and ``count`` per non-empty bin, and ``ece``: the
        expected calibration error (count-weighted mean of ``|observed - mean_predicted|``).
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(proba, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} values and proba {p.size}.")
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    elif strategy == "uniform":
        edges = np.linspace(0, 1, n_bins + 1)
    else:
        raise ValueError(f'strategy must be "quantile" or "uniform"; got {strategy!r}.')
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(edges.size - 2, 0))
    count = np.bincount(which, minlength=max(edges.size - 1, 1)).astype(np.float64)
    keep = count > 0
    mean_p = np.bincount(which, p, minlength=count.size)[keep] / count[keep]
    observed = np.bincount(which, y, minlength=count.size)[keep] / count[keep]
    ece = float(np.sum(count[keep] * np.abs(observed - mean_p)) / max(y.size, 1))
    return {"mean_predicted": mean_p, "observed": observed, "count": count[keep].astype(
        np.int64), "ece": ece}
