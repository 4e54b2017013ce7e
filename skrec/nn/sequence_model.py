"""A sequence model: item representations, a sequence encoder, and tied catalogue scoring."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import build_module, module_config, register_module
from .items import ItemEmbedding, ItemTable

__all__ = ["SequenceModel"]


@register_module
class SequenceModel(nn.Module):
    """Items -> vectors (:class:`~skrec.nn.ItemEmbedding`) -> encoder -> hidden states.

    Sequences are left-padded item indices ``(B, L)``: ``0`` is padding, ``1..n_items`` the
    items (special tokens, such as a mask token, follow). The hidden state of a position is
    scored against the whole catalogue with the item representations' output weights
    (tied to the input embeddings) and biases.

    Parameters
    ----------
    items : ItemEmbedding
        Item representations (input and output side).
    encoder : torch.nn.Module
        A sequence encoder (see :mod:`skrec.nn.encoders`).
    max_len : int
        Longest history read; longer inputs keep their latest ``max_len`` positions.
    init_std : float, default=0.02
        Standard deviation of the N(0, std) initialisation of every weight (biases zero).
    """

    def __init__(self, items: ItemEmbedding, encoder: nn.Module, max_len: int,
                 init_std: float = 0.02):
        super().__init__()
        self.items = items
        self.encoder = encoder
        self.max_len = int(max_len)
        self.init_std = float(init_std)
        self.reset_parameters()

    def config(self) -> dict[str, Any]:
        """Everything that rebuilds this model with its current shapes (see
        :func:`skrec.nn.module_config`)."""
        return {
            "items": module_config(self.items),
            "encoder": module_config(self.encoder),
            "max_len": self.max_len,
            "init_std": self.init_std,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SequenceModel:
        """Rebuild a model (fresh weights) from :meth:`config`."""
        cfg = dict(config)
        return SequenceModel(build_module(cfg.pop("items")), build_module(cfg.pop("encoder")),
                             **cfg)

    def reset_parameters(self) -> None:
        """Initialise the item representations, then the encoder."""
        self.items.reset_parameters(self.init_std)
        reset = getattr(self.encoder, "reset_parameters", None)
        if reset is not None:
            reset(self.init_std)

    @property
    def n_items(self) -> int:
        """Catalogue size."""
        return self.items.n_items

    @property
    def d_model(self) -> int:
        """Width of the item vectors and hidden states."""
        return self.items.d_model

    @property
    def features(self):
        """The item side features (:class:`~skrec.nn.FeatureProjection`), or ``None``."""
        return self.items.features

    def set_id_mask(self, has_id: torch.Tensor) -> None:
        """See :meth:`ItemEmbedding.set_id_mask`."""
        self.items.set_id_mask(has_id)

    def add_items(self, features) -> None:
        """See :meth:`ItemEmbedding.add_items`."""
        self.items.add_items(features)

    def item_table(self) -> ItemTable:
        """The item vectors and biases of one pass (compute once, use on both sides)."""
        return self.items.table()

    def forward(self, seq: torch.Tensor, last_only: bool = False,
                table: ItemTable | None = None, sparse_grad: bool = False) -> torch.Tensor:
        """Hidden states (B, L, d) of a left-padded batch ``seq`` (B, L).

        With ``last_only`` only the last position is computed where the encoder allows it:
        (B, 1, d). ``table`` (from :meth:`item_table`) avoids recomputing the item vectors.
        With ``sparse_grad`` the item vectors are gathered with sparse gradients (see
        :class:`~skrec.nn.ItemEmbedding`).
        """
        if seq.shape[1] > self.max_len:
            seq = seq[:, -self.max_len :]
        return self.encoder(self.items(seq, table, sparse_grad), seq != 0, last_only)

    def output_weights(self, table: ItemTable | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Item output embeddings (n_items, d) and biases (n_items,), padding excluded."""
        return self.items.output_weights(table)

    def output_rows(self, idx: torch.Tensor, table: ItemTable | None = None,
                    sparse_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Output embeddings (k, d) and biases (k,) of the items ``idx`` (k,), optionally with
        sparse gradients (see :meth:`ItemEmbedding.output_rows`)."""
        return self.items.output_rows(idx, table, sparse_grad)

    def last_hidden(self, seq: torch.Tensor, table: ItemTable | None = None) -> torch.Tensor:
        """Hidden state of the last position (B, d): the next-item query of each sequence."""
        return self.forward(seq, last_only=True, table=table)[:, -1]

    def score_hidden(self, hidden: torch.Tensor,
                     table: ItemTable | None = None) -> torch.Tensor:
        """Scores ``(N, n_items)`` of query vectors ``hidden`` (N, d) over the catalogue."""
        weight, bias = self.output_weights(table)
        return hidden @ weight.t() + bias
