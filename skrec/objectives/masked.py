"""Masked-item prediction with bidirectional attention (BERT4Rec's cloze objective)."""

from __future__ import annotations

import numpy as np
import torch

from .._histories import ordered_sequences
from .base import Objective, SeqData, register_objective


@register_objective("masked")
class MaskedObjective(Objective):
    """Recover randomly masked items of each sequence from both sides (BERT4Rec).

    Training: in each sequence (its latest ``max_len`` items), ``round(mask_prob * length)``
    items (at least one) chosen uniformly at random are replaced by the mask token, and the
    encoder, which attends in both directions, predicts them; the loss counts the masked
    positions only. With probability ``last_item_prob`` a sequence instead has only its last
    item masked, which is exactly the inference task. The masks are drawn from torch's
    global (CPU) generator when the batch is made, so a seeded fit is reproducible, and the
    number of targets is known before the forward pass.

    Inference: the mask token is appended after the latest ``max_len - 1`` items and its
    hidden state scores the catalogue.

    Parameters
    ----------
    loss, n_negatives, gbce_t, max_len, sparse_grad
        See :class:`~skrec.objectives.Objective`.
    mask_prob : float
        Fraction of each training sequence's items that are masked.
    last_item_prob : float, default=0.0
        Fraction of the training sequences (drawn per batch) in which only the last item is
        masked.
    """

    causal = False
    n_special = 1

    def __init__(self, *, mask_prob: float, last_item_prob: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_prob = float(mask_prob)
        self.last_item_prob = float(last_item_prob)

    def prepare(self, inputs) -> SeqData:
        """Order each row of ``X`` (``inputs = (X, user_features)``) into a sequence of its
        latest ``max_len`` items."""
        X = inputs[0]
        seqs = ordered_sequences(X, self.max_len)
        return SeqData(seqs, (seqs != 0).sum(1), self._sampling_probs(X))

    def make_batch(self, data: SeqData, rows: np.ndarray, device: torch.device):
        width = max(int(data.lengths[rows].max(initial=0)), 1)
        seq = torch.as_tensor(data.seqs[rows, -width:])
        valid = seq != 0
        lengths = valid.sum(1)
        n_masks = torch.minimum((lengths * self.mask_prob).round().clamp(min=1), lengths)
        # The n_masks smallest of uniform draws over the items of each row: a uniform sample
        # of positions without replacement (padding is drawn last).
        draws = torch.rand(seq.shape).masked_fill(~valid, 2.0)
        masked = draws.argsort(1).argsort(1) < n_masks.unsqueeze(1)
        if self.last_item_prob > 0:
            last_only = (torch.rand(seq.shape[0]) < self.last_item_prob) & (lengths > 0)
            masked[last_only] = False
            masked[last_only, -1] = True
        n_targets = int(masked.sum())
        probs = data.sampling_probs
        if probs is not None and probs.device != device:
            data.sampling_probs = probs = probs.to(device)
        return (seq.to(device), masked.to(device), probs), n_targets

    def batch_loss(self, module, batch, state=None) -> torch.Tensor:
        seq, masked, probs = batch
        inputs = seq.masked_fill(masked, module.items.special_token())
        sparse = self.sparse_grads(module)
        table = None if sparse else module.item_table()  # one table for both sides
        hidden = module(inputs, table=table, sparse_grad=sparse)[masked]
        return self.catalogue_loss(module, hidden, seq[masked] - 1, probs, table=table)

    def history_length(self, module) -> int:
        """``module.max_len - 1``: the mask token takes the last position."""
        return int(module.max_len) - 1

    def sequence_scores(self, module, seq: torch.Tensor) -> torch.Tensor:
        mask = seq.new_full((seq.shape[0], 1), module.items.special_token())
        table = module.item_table()
        return module.score_hidden(module.last_hidden(torch.cat([seq, mask], dim=1), table),
                                   table)
