"""Item representations: the one place where an item becomes a vector.

:class:`ItemEmbedding` serves both sides of a sequence model: the input side (the vectors of
the items in a history) and the output side (the catalogue's scoring weights and biases, all at
once or a few rows at a time), so the two stay tied. An item's vector is its id embedding plus,
when the model has side features, ``f(x) = W1 x + b1`` of its feature row
(:class:`~skrec.nn.FeatureProjection`); its output bias likewise. Items without an id (never
seen in training, or added after training) are represented by their features alone.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import build_module, module_config, register_module
from .features import FeatureProjection

__all__ = ["ItemEmbedding", "ItemTable"]

#: Training logit of items without an id (no interaction in the training data): far below any
#: real logit, and finite in fp16 (``-inf`` times the zero target weight would give NaN).
NO_ID_LOGIT = -1e4


class ItemTable(NamedTuple):
    """The vectors of every index and the output biases of one forward pass.

    Attributes
    ----------
    vectors : torch.Tensor of shape (n_items + 1 + n_special, d)
        Row ``i`` is the input vector of index ``i`` (0: padding, a zero row).
    bias : torch.Tensor of shape (n_items + 1,) or None
        Output biases (index 0 unused).
    out_vectors : torch.Tensor or None
        Output vectors when they differ from the input ones (id dropout in training hides
        ids on the output side only); ``None`` means the same as ``vectors``.
    """

    vectors: torch.Tensor
    bias: torch.Tensor | None
    out_vectors: torch.Tensor | None = None


@register_module
class ItemEmbedding(nn.Module):
    """Item id embeddings tied between input and output, with optional side features.

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
    features : FeatureProjection or None, default=None
        Side features of the items (one row per item); their projection is added to the id
        embeddings (and, as a scalar, to the output biases).
    id_dropout : float, default=0.0
        With features, the fraction of items whose id embedding and id bias are hidden on the
        output side at each training step, so that the features learn to score items alone
        (as items without an id must be scored at inference).

    Notes
    -----
    ``sparse_grad=True`` in :meth:`forward` and :meth:`output_rows` gathers the id embeddings
    and output biases with sparse gradients: the backward pass then produces
    ``torch.sparse_coo`` gradients holding only the rows used, and an optimizer that takes
    them (:class:`~skrec.nn.SparseAdamW`) updates only those rows. Sampled losses over large
    catalogues use it on models without side features (whose :meth:`table` computes every
    item's vector anyway); a full softmax touches every row and keeps dense gradients.
    """

    def __init__(self, n_items: int, d_model: int, *, n_special: int = 0,
                 output_bias: bool = True, features: FeatureProjection | None = None,
                 id_dropout: float = 0.0):
        super().__init__()
        self.n_items = int(n_items)
        self.n_special = int(n_special)
        self.id_dropout = float(id_dropout)
        self.id_emb = nn.Embedding(self.n_items + 1 + self.n_special, d_model, padding_idx=0)
        self.out_bias = nn.Parameter(torch.zeros(self.n_items + 1)) if output_bias else None
        self.features = features
        if features is not None:
            if features.n_rows != self.n_items or features.out_dim != d_model:
                raise ValueError(
                    f"features give {features.n_rows} x {features.out_dim} vectors for "
                    f"{self.n_items} items of width {d_model}."
                )
            # 1 where the item's id embedding is used (items seen in training), else 0
            self.register_buffer("id_mask", torch.ones(self.n_items + 1 + self.n_special))

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this module with its current shapes."""
        return {
            "n_items": self.n_items,
            "d_model": int(self.d_model),
            "n_special": self.n_special,
            "output_bias": self.out_bias is not None,
            "features": None if self.features is None else module_config(self.features),
            "id_dropout": self.id_dropout,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ItemEmbedding:
        """Rebuild (fresh weights) from :meth:`config`."""
        cfg = dict(config)
        features = cfg.pop("features", None)
        return cls(**cfg, features=None if features is None else build_module(features))

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
        if self.features is not None:
            self.features.reset_parameters(std)

    # ------------------------------------------------------------------ ids without training
    def set_id_mask(self, has_id: torch.Tensor) -> None:
        """Use the id embeddings of the items where ``has_id`` (n_items,) is true only.

        The other items are scored from their features alone; their id embeddings and biases
        are zeroed, so that they start from nothing if they get an id later.
        """
        if self.features is None:
            raise ValueError("Only a model with item features can score items without ids.")
        has_id = torch.as_tensor(has_id, dtype=torch.bool, device=self.id_mask.device)
        with torch.no_grad():
            newly_off = (self.id_mask[1 : self.n_items + 1] > 0) & ~has_id
            rows = torch.nonzero(newly_off).squeeze(1) + 1
            self.id_emb.weight[rows] = 0.0
            if self.out_bias is not None:
                self.out_bias[rows] = 0.0
            self.id_mask[1 : self.n_items + 1] = has_id.to(self.id_mask.dtype)

    def add_items(self, features: Any) -> None:
        """Grow the catalogue by the items of ``features`` (rows, as for
        :meth:`FeatureProjection.append_rows`); they have no id until trained."""
        if self.features is None:
            raise ValueError("Only a model with item features can add items without training.")
        before = self.features.n_rows
        self.features.append_rows(features)
        n_new = self.features.n_rows - before
        n, w = self.n_items, self.id_emb.weight
        with torch.no_grad():
            zeros = w.new_zeros(n_new, w.shape[1])
            table = torch.cat([w[: n + 1], zeros, w[n + 1 :]])
            self.id_emb = nn.Embedding.from_pretrained(table, freeze=False, padding_idx=0)
            if self.out_bias is not None:
                self.out_bias = nn.Parameter(torch.cat([self.out_bias.detach(),
                                                        w.new_zeros(n_new)]))
            m = self.id_mask
            self.id_mask = torch.cat([m[: n + 1], m.new_zeros(n_new), m[n + 1 :]])
        self.n_items = n + n_new

    # ------------------------------------------------------------------ vectors
    def table(self) -> ItemTable:
        """The vectors of every index and the output biases, computed once per pass.

        Without features these are the id embeddings and biases themselves (no copy).
        """
        if self.features is None:
            return ItemTable(self.id_emb.weight, self.out_bias)
        n = self.n_items
        mask = self.id_mask
        vec, scal = self.features()
        d = vec.shape[1]
        vec = torch.cat([vec.new_zeros(1, d), vec, vec.new_zeros(self.n_special, d)])
        weight = self.id_emb.weight
        vectors = weight * mask[:, None].to(weight.dtype) + vec
        out_vectors = None
        if self.training and self.id_dropout > 0:
            # hide some ids on the output side only: the features must then score those
            # items alone, as they score items without an id; histories keep every id
            keep = torch.rand(mask.shape, device=mask.device) >= self.id_dropout
            keep[n + 1 :] = True  # special tokens have no features
            mask = mask * keep
            out_vectors = weight * mask[:, None].to(weight.dtype) + vec
        bias = None
        if self.out_bias is not None:
            bias = self.out_bias * mask[: n + 1]
            if scal is not None:
                bias = bias + torch.cat([scal.new_zeros(1), scal])
        if self.training:
            # items without an id have no interaction to learn from: leave them out of the
            # training softmax (as negatives they would teach the features to score the
            # features of new items down)
            if bias is None:
                bias = vectors.new_zeros(n + 1)
            bias = bias.masked_fill(self.id_mask[: n + 1] == 0, NO_ID_LOGIT)
        return ItemTable(vectors, bias, out_vectors)

    def _check_sparse(self, sparse_grad: bool, table: ItemTable | None) -> bool:
        if sparse_grad and (self.features is not None or table is not None):
            raise ValueError("sparse_grad gathers the id embeddings themselves: it needs a "
                             "model without item features and no precomputed table.")
        return sparse_grad

    def forward(self, ids: torch.Tensor, table: ItemTable | None = None,
                sparse_grad: bool = False) -> torch.Tensor:
        """Input vectors ``(..., d)`` of item indices ``ids`` (0 = padding).

        With ``sparse_grad`` (models without features) the gradient of the id embeddings is
        sparse: the rows in ``ids`` only.
        """
        if self._check_sparse(sparse_grad, table):
            return F.embedding(ids, self.id_emb.weight, padding_idx=0, sparse=True)
        if table is None:
            table = self.table()
        return F.embedding(ids, table.vectors, padding_idx=0)

    def output_rows(self, idx: torch.Tensor, table: ItemTable | None = None,
                    sparse_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Scoring weights ``(k, d)`` and biases ``(k,)`` of the items ``idx`` (k,) in
        ``[0, n_items)``: the rows ``idx`` of :meth:`output_weights`.

        With ``sparse_grad`` (models without features) the gradients of the id embeddings and
        of the biases are sparse (the rows in ``idx`` only), where indexing
        :meth:`output_weights` gives dense ones.
        """
        ids = idx.reshape(-1) + 1
        if self._check_sparse(sparse_grad, table) or (table is None and self.features is None):
            weight = F.embedding(ids, self.id_emb.weight, sparse=sparse_grad)
            if self.out_bias is None:
                return weight, weight.new_zeros(ids.shape[0])
            return weight, torch.gather(self.out_bias, 0, ids, sparse_grad=sparse_grad)
        if table is None:
            table = self.table()
        weight = table.vectors[ids]
        if table.bias is None:
            return weight, weight.new_zeros(ids.shape[0])
        return weight, table.bias[ids]

    def output_weights(self, table: ItemTable | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scoring weights ``(n_items, d)`` and biases ``(n_items,)`` of the catalogue."""
        if table is None:
            table = self.table()
        out = table.vectors if table.out_vectors is None else table.out_vectors
        weight = out[1 : self.n_items + 1]
        if table.bias is None:
            return weight, weight.new_zeros(self.n_items)
        return weight, table.bias[1:]
