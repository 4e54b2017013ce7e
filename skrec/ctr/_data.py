"""What the click classifier trains on: labels, weights, encoded rows as tensors, validation.

The pieces under :class:`~skrec.ctr.CTRClassifier`'s training hooks: the binary target and
its classes, the sample weights (``sample_weight`` times ``class_weight``), the encoded rows
of a fit (:class:`CTRInputs`) and their tensors (:class:`CTRData`, from which the trainer's
mini-batches are gathered by index, with no DataLoader), the hold-out of validation rows and
the validation metrics (log loss and AUC).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import column_or_1d

from ..nn.ctr import gather_bags
from ._values import FieldBatch

__all__ = ["CTRData", "CTRInputs", "binary_target", "log_loss_and_auc", "sample_weights"]


# ---------------------------------------------------------------------------------------------
# Labels and weights
# ---------------------------------------------------------------------------------------------


def binary_target(y, n_rows: int, classes: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, y01)``: the two sorted classes and ``y`` as 0/1 floats (1 = ``classes[1]``,
    the click).

    With ``classes`` (a fitted model's, or those given to ``partial_fit``), ``y`` may hold one
    of them only; without, it must hold exactly two.
    """
    if y is None:
        raise ValueError("CTRClassifier requires y to be passed, but the target y is None: "
                         "give the click labels (0/1, or two classes).")
    y = column_or_1d(y, warn=True)
    if y.shape[0] != n_rows:
        raise ValueError(f"X has {n_rows} rows but y has {y.shape[0]} labels.")
    if n_rows:
        check_classification_targets(y)
    if classes is None:
        classes = np.unique(y)
        if classes.size > 2:
            raise ValueError(
                f"Only binary classification is supported. The type of the target is "
                f"{type_of_target(y)}: y holds {classes.size} classes "
                f"({classes[:5].tolist()}); CTRClassifier predicts click or not."
            )
        if classes.size < 2:
            raise ValueError(
                f"CTRClassifier needs two classes (clicks and non-clicks) to train; y holds "
                f"{classes.size} class ({classes.tolist()}). A chunk of a stream with one "
                "class needs classes=[0, 1] in partial_fit."
            )
        return classes, (y == classes[1]).astype(np.float32)
    unknown = np.setdiff1d(np.unique(y), classes)
    if unknown.size:
        raise ValueError(f"y holds the label(s) {unknown[:5].tolist()}, which are not among "
                         f"the model's classes {classes.tolist()}.")
    return classes, (y == classes[1]).astype(np.float32)


def sample_weights(y01: np.ndarray, sample_weight, class_weight, classes: np.ndarray,
                   partial: bool = False) -> np.ndarray | None:
    """Per-row weights: ``sample_weight`` times the weight of each row's class; ``None`` when
    every weight is 1 (the loss then skips the multiplication). The user's array is not
    modified."""
    w = None
    if sample_weight is not None:
        w = np.array(sample_weight, dtype=np.float64)  # a copy: the user's is untouched
        if w.ndim == 0:
            w = np.full(y01.shape[0], float(w))
        if w.shape != y01.shape:
            raise ValueError(f"sample_weight has shape {w.shape}; expected ({y01.shape[0]},), "
                             "one weight per row.")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("sample_weight must hold finite values >= 0.")
    if class_weight is not None:
        if isinstance(class_weight, str) and class_weight == "balanced" and partial:
            raise ValueError('class_weight="balanced" needs the whole training set; '
                             "partial_fit sees one chunk at a time: give the weights as a "
                             "dict {class: weight}.")
        labels = classes[y01.astype(np.int64)]
        present = np.unique(labels)
        per_class = compute_class_weight(class_weight, classes=present, y=labels)
        cw = per_class[np.searchsorted(present, labels)]
        w = cw if w is None else w * cw
    if w is None or np.all(w == 1.0):
        return None
    return w.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Encoded rows and their tensors
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CTRInputs:
    """The training input of one run: encoded rows, 0/1 labels, weights, and the validation
    rows when they were given (``X_val``) rather than held out.

    ``count_crosses``: whether the rows' pairwise crosses are counted into the wide part's
    mask, and their clicks into the click counts (the rows of ``fit`` and ``partial_fit``, not
    those of pruning's passes, which the fit counted already). ``recount``: whether the
    click counts start afresh from these rows (``fit``) instead of adding to the earlier
    ones (``partial_fit``).
    """

    batch: FieldBatch
    y: np.ndarray
    weight: np.ndarray | None = None
    validation: tuple[FieldBatch, np.ndarray, np.ndarray | None] | None = None
    count_crosses: bool = True
    recount: bool = False

    @property
    def n_rows(self) -> int:
        return len(self.batch)

    def take(self, rows: np.ndarray) -> CTRInputs:
        """The inputs of ``rows`` (no validation)."""
        w = None if self.weight is None else self.weight[rows]
        return CTRInputs(self.batch.take(rows), self.y[rows], w, None, self.count_crosses,
                         self.recount)


class CTRData:
    """The tensors a run's mini-batches are gathered from (the trainer's training data).

    Parameters
    ----------
    inputs : CTRInputs
        The training rows.
    """

    def __init__(self, inputs: CTRInputs):
        self.tensors = inputs.batch.to_torch()
        self.n_multi = inputs.batch.n_multi
        self.y = torch.as_tensor(inputs.y, dtype=torch.float32)
        self.weight = None if inputs.weight is None else torch.as_tensor(inputs.weight)
        self.n_rows = inputs.n_rows

    def rows(self, rows: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        """The model's inputs for ``rows``, on ``device``."""
        idx = torch.as_tensor(rows, dtype=torch.int64)
        return take_rows(self.tensors, idx, self.n_multi, device)

    def batch(self, rows: np.ndarray, device: torch.device) -> tuple[Any, int]:
        """``((inputs, y, weight), n_rows)``: one micro-batch."""
        idx = torch.as_tensor(rows, dtype=torch.int64)
        w = None if self.weight is None else self.weight[idx].to(device)
        return (take_rows(self.tensors, idx, self.n_multi, device), self.y[idx].to(device),
                w), int(idx.numel())


def take_rows(tensors: dict[str, torch.Tensor], idx: torch.Tensor, n_multi: int,
              device: torch.device) -> dict[str, torch.Tensor]:
    """The model's inputs of the rows ``idx`` of ``tensors``, on ``device``."""
    out = {"ids": tensors["ids"][idx].to(device), "numeric": tensors["numeric"][idx].to(device)}
    if "bag_ids" in tensors:
        bag_ids, offsets, weights = gather_bags(tensors["bag_ids"], tensors["bag_offsets"],
                                                tensors["bag_weights"], idx, n_multi)
        out.update(bag_ids=bag_ids.to(device), bag_offsets=offsets.to(device),
                   bag_weights=weights.to(device))
    return out


def slice_rows(tensors: dict[str, torch.Tensor], start: int, stop: int, n_multi: int,
               device: torch.device) -> dict[str, torch.Tensor]:
    """The model's inputs of the contiguous rows ``start:stop`` (prediction in chunks)."""
    if "bag_ids" not in tensors:
        return {"ids": tensors["ids"][start:stop].to(device),
                "numeric": tensors["numeric"][start:stop].to(device)}
    return take_rows(tensors, torch.arange(start, stop), n_multi, device)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def hold_out(inputs: CTRInputs, fraction: float, rng: np.random.RandomState
             ) -> tuple[CTRInputs, tuple[FieldBatch, np.ndarray, np.ndarray | None] | None]:
    """Split ``fraction`` of the rows off for validation, stratified by class (the same share
    of clicks in both parts); no validation when a part would be empty."""
    n = inputs.n_rows
    perm = rng.permutation(n)
    val_rows = []
    for c in (0.0, 1.0):
        rows = perm[inputs.y[perm] == c]
        val_rows.append(rows[: int(round(fraction * rows.size))])
    val = np.sort(np.concatenate(val_rows))
    if val.size == 0 or val.size == n:
        return inputs, None
    keep = np.ones(n, dtype=bool)
    keep[val] = False
    part = inputs.take(val)
    return inputs.take(np.flatnonzero(keep)), (part.batch, part.y, part.weight)


def log_loss_and_auc(logit: np.ndarray, y: np.ndarray, weight: np.ndarray | None
                     ) -> tuple[float, float]:
    """Mean (weighted) log loss of the logits, computed from the logits (no clipping), and
    the ROC AUC (NaN when ``y`` holds one class)."""
    from sklearn.metrics import roc_auc_score

    lt = torch.as_tensor(logit, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64)
    per_row = F.binary_cross_entropy_with_logits(lt, yt, reduction="none").numpy()
    if weight is None:
        ll = float(per_row.mean()) if per_row.size else float("nan")
    else:
        total = float(np.sum(weight))
        ll = float(np.dot(per_row, weight) / total) if total > 0 else float("nan")
    if np.unique(y).size < 2:
        return ll, float("nan")
    return ll, float(roc_auc_score(y, logit, sample_weight=weight))
