"""Next-item prediction at every position of a causal encoder (SASRec)."""

from __future__ import annotations

import numpy as np
import torch

from .base import Objective, SeqData, register_objective


@register_objective("causal")
class CausalObjective(Objective):
    """Predict every next item of every sequence at once (causal attention).

    A batch is the window of each sequence; the inputs are its items but the last, the
    targets its items but the first, and every non-padded position contributes one target.
    Recommendations score the catalogue from the hidden state of the last position.
    """

    causal = True

    def make_batch(self, data: SeqData, rows: np.ndarray, device: torch.device):
        n_targets = int(np.maximum(data.lengths[rows] - 1, 0).sum())
        return (self._rows(data, rows, device), data.sampling_probs), n_targets

    def batch_loss(self, module, batch, state=None) -> torch.Tensor:
        seq, probs = batch
        inputs, targets = seq[:, :-1], seq[:, 1:]
        valid = inputs != 0
        sparse = self.sparse_grads(module)
        table = None if sparse else module.item_table()  # one table for both sides
        hidden = module(inputs, table=table, sparse_grad=sparse)[valid]
        return self.catalogue_loss(module, hidden, targets[valid] - 1, probs, table=table)

    def sequence_scores(self, module, seq: torch.Tensor) -> torch.Tensor:
        table = module.item_table()  # the item vectors, computed once for both sides
        return module.score_hidden(module.last_hidden(seq, table), table)
