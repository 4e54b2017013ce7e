"""Item representations: the one place where an item becomes a vector.

:class:`ItemEmbedding` serves both sides of a sequence model: the input side (the vectors of
the items in a history) and the output side (the catalogue's scoring weights and biases, all at
once or a few rows at a time), so the two stay tied and a new source of item information (side
features) plugs in here once.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import register_module

__all__ = ["ItemEmbedding"]


@register_module
class ItemEmbedding(nn.Module):
    """Item id embeddings tied between input and output, with an optional output bias.

    Indices: ``0`` is padding (a zero vector), ``1..n_items`` are the items, and
    ``n_items + 1 ..`` are ``n_special`` extra tokens (such as the mask token of a cloze
    objective), which exist on the input side only.

    Parameters
    ----------
    n_items : int
        Catalogue size.
    d_model : int
        Width of the vectors.
    n_special : int, default=0
        Extra input-only tokens after the items.
    output_bias : bool, default=True
        Learn a per-item bias added to the output scores.

    Notes
    -----
    ``sparse_grad=True`` in :meth:`forward` and :meth:`output_rows` gathers the rows with
    sparse gradients: the backward pass then produces ``torch.sparse_coo`` gradients holding
    only the rows used, and an optimizer that takes them
    (:class:`~skrec.nn.SparseAdamW`) updates only those rows. Sampled losses over large
    catalogues use it; a full softmax touches every row anyway and keeps dense gradients.
    """

    def __init__(self, n_items: int, d_model: int, *, n_special: int = 0,
                 output_bias: bool = True):
        super().__init__()
        self.n_items = int(n_items)
        self.n_special = int(n_special)
        self.id_emb = nn.Embedding(self.n_items + 1 + self.n_special, d_model, padding_idx=0)
        self.out_bias = nn.Parameter(torch.zeros(self.n_items + 1)) if output_bias else None

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this module with its current shapes."""
        return {
            "n_items": self.n_items,
            "d_model": int(self.d_model),
            "n_special": self.n_special,
            "output_bias": self.out_bias is not None,
        }

    @property
    def d_model(self) -> int:
        """Width of the item vectors."""
        return self.id_emb.embedding_dim

    def special_token(self, i: int = 0) -> int:
        """Input index of the ``i``-th special token."""
        if not 0 <= i < self.n_special:
            raise IndexError(f"special token {i} out of range ({self.n_special} tokens).")
        return self.n_items + 1 + i

    def reset_parameters(self, std: float = 0.02) -> None:
        """N(0, ``std``) vectors, a zero padding vector and zero biases."""
        nn.init.normal_(self.id_emb.weight, std=std)
        with torch.no_grad():
            self.id_emb.weight[0].zero_()
            if self.out_bias is not None:
                self.out_bias.zero_()

    def forward(self, ids: torch.Tensor, sparse_grad: bool = False) -> torch.Tensor:
        """Input vectors ``(..., d)`` of item indices ``ids`` (0 = padding).

        With ``sparse_grad`` the gradient of the table is sparse (the rows in ``ids`` only).
        """
        return F.embedding(ids, self.id_emb.weight, padding_idx=0, sparse=sparse_grad)

    def output_rows(self, idx: torch.Tensor,
                    sparse_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Scoring weights ``(k, d)`` and biases ``(k,)`` of the items ``idx`` (k,) in
        ``[0, n_items)``: the rows ``idx`` of :meth:`output_weights`.

        With ``sparse_grad`` the gradients of the table and of the biases are sparse (the rows
        in ``idx`` only), where indexing :meth:`output_weights` gives dense ones.
        """
        ids = idx.reshape(-1) + 1
        weight = F.embedding(ids, self.id_emb.weight, sparse=sparse_grad)
        if self.out_bias is None:
            return weight, weight.new_zeros(ids.shape[0])
        return weight, torch.gather(self.out_bias, 0, ids, sparse_grad=sparse_grad)

    def output_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Scoring weights ``(n_items, d)`` and biases ``(n_items,)`` of the catalogue."""
        weight = self.id_emb.weight[1 : self.n_items + 1]
        if self.out_bias is None:
            return weight, weight.new_zeros(self.n_items)
        return weight, self.out_bias[1:]
