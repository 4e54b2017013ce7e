"""Side features of items as vectors: f(x) = W1 x + b1 over a fixed feature matrix.

:class:`FeatureProjection` holds an item-feature matrix (dense, or sparse in CSR parts so that
one-hot, multi-hot and TF-IDF features cost only their non-zeros) as buffers, and maps every
row into the model's space with a learned linear map (optionally a small MLP). It also gives
each item a scalar (an output bias learned from the features: how popular items *like this*
are), which is what lets a model score items it has never seen in training.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import register_module

__all__ = ["FeatureProjection"]


@register_module
class FeatureProjection(nn.Module):
    """Vectors ``W2 act(W1 x + b1) + b2`` (or ``W1 x + b1``) of a fixed feature matrix.

    Parameters
    ----------
    n_rows : int
        Number of items (rows of the feature matrix).
    n_features : int
        Number of features (columns).
    out_dim : int
        Width of the vectors.
    hidden : int or None, default=None
        Width of a hidden layer (GELU); ``None`` for a linear map.
    scalar : bool, default=False
        Also give each item a scalar (e.g. an output bias) from the same representation.
    sparse : bool, default=False
        Whether the features are stored as CSR parts (``crow``, ``col``, ``val`` buffers)
        rather than a dense ``dense`` buffer.
    nnz : int, default=0
        Non-zeros of the sparse matrix (sizes the buffers when rebuilt from a config).

    Notes
    -----
    Fill the buffers with :meth:`set_features`; a module rebuilt from :meth:`config` gets
    them from its ``state_dict``.
    """

    def __init__(self, n_rows: int, n_features: int, out_dim: int, *,
                 hidden: int | None = None, scalar: bool = False, sparse: bool = False,
                 nnz: int = 0):
        super().__init__()
        self.n_rows, self.n_features = int(n_rows), int(n_features)
        self.hidden = None if hidden is None else int(hidden)
        self.sparse = bool(sparse)
        first = self.hidden or out_dim
        # W1 stored as (n_features, width): the layout F.embedding_bag reads for sparse rows.
        self.weight = nn.Parameter(torch.empty(self.n_features, first))
        self.bias = nn.Parameter(torch.zeros(first))
        self.out = nn.Linear(self.hidden, out_dim) if self.hidden else None
        self.scalar = nn.Linear(self.hidden or self.n_features, 1) if scalar else None
        if self.sparse:
            self.register_buffer("crow", torch.zeros(self.n_rows + 1, dtype=torch.int64))
            self.register_buffer("col", torch.zeros(int(nnz), dtype=torch.int64))
            self.register_buffer("val", torch.zeros(int(nnz)))
        else:
            self.register_buffer("dense", torch.zeros(self.n_rows, self.n_features))
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        """N(0, ``std``) weights and zero biases."""
        nn.init.normal_(self.weight, std=std)
        nn.init.zeros_(self.bias)
        for layer in (self.out, self.scalar):
            if layer is not None:
                nn.init.normal_(layer.weight, std=std)
                nn.init.zeros_(layer.bias)

    def set_features(self, features: Any) -> None:
        """Store the feature matrix: a dense ``(n_rows, n_features)`` tensor, or a
        ``(crow, col, val)`` triple of CSR parts, matching how the module was built."""
        if self.sparse:
            crow, col, val = features
            self.crow = torch.as_tensor(crow, dtype=torch.int64, device=self.weight.device)
            self.col = torch.as_tensor(col, dtype=torch.int64, device=self.weight.device)
            self.val = torch.as_tensor(val, dtype=torch.float32, device=self.weight.device)
            self.n_rows = self.crow.numel() - 1
        else:
            self.dense = torch.as_tensor(features, dtype=torch.float32,
                                         device=self.weight.device)
            self.n_rows = self.dense.shape[0]

    def append_rows(self, features: Any) -> None:
        """Add rows (new items) in the same format as :meth:`set_features`."""
        if self.sparse:
            crow, col, val = features
            crow = torch.as_tensor(crow, dtype=torch.int64, device=self.crow.device)
            self.set_features((
                torch.cat([self.crow, crow[1:] + self.crow[-1]]),
                torch.cat([self.col, torch.as_tensor(col, dtype=torch.int64,
                                                     device=self.col.device)]),
                torch.cat([self.val, torch.as_tensor(val, dtype=torch.float32,
                                                     device=self.val.device)]),
            ))
        else:
            new = torch.as_tensor(features, dtype=torch.float32, device=self.dense.device)
            self.set_features(torch.cat([self.dense, new]))

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this module with its current shapes."""
        return {
            "n_rows": self.n_rows,
            "n_features": self.n_features,
            "out_dim": int(self.out_dim),
            "hidden": self.hidden,
            "scalar": self.scalar is not None,
            "sparse": self.sparse,
            "nnz": int(self.col.numel()) if self.sparse else 0,
        }

    @property
    def out_dim(self) -> int:
        """Width of the vectors."""
        return self.out.out_features if self.out is not None else self.weight.shape[1]

    def _sparse(self, transpose: bool = False) -> torch.Tensor:
        """The feature matrix (or its transpose) as a sparse COO tensor."""
        rows = torch.repeat_interleave(
            torch.arange(self.n_rows, device=self.crow.device), self.crow.diff()
        )
        idx = torch.stack([self.col, rows] if transpose else [rows, self.col])
        shape = (self.n_features, self.n_rows) if transpose else (self.n_rows, self.n_features)
        return torch.sparse_coo_tensor(idx, self.val, shape, is_coalesced=not transpose,
                                       check_invariants=False)

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ X_features``: ``(B, n_rows)`` -> ``(B, n_features)``, e.g. a user's profile
        in feature space."""
        if self.sparse:
            return torch.sparse.mm(self._sparse(transpose=True), x.float().t()).t()
        return x.float() @ self.dense

    def score(self, h: torch.Tensor) -> torch.Tensor:
        """``h @ vectors.T + scalars`` for query vectors ``h`` (B, out_dim): (B, n_rows).

        For the linear map this is computed in factored form, ``((h W1^T) X^T) + ...``, which
        costs the non-zeros of the feature matrix instead of ``n_rows x out_dim``.
        """
        if self.out is not None:  # the MLP has no factored form
            vectors, scalars = self()
            out = h @ vectors.t()
            return out if scalars is None else out + scalars
        hw = h.float() @ self.weight.float().t()  # (B, n_features)
        if self.sparse:
            out = torch.sparse.mm(self._sparse(), hw.t()).t()
        else:
            out = hw @ self.dense.t()
        out = out + (h.float() @ self.bias.float())[:, None]
        if self.scalar is not None:
            if self.sparse:
                s = torch.sparse.mm(self._sparse(), self.scalar.weight.float().t()).squeeze(1)
            else:
                s = self.dense @ self.scalar.weight.float().t().squeeze(1)
            out = out + s + self.scalar.bias.float()
        return out

    def _first(self) -> torch.Tensor:
        if self.sparse:
            h = F.embedding_bag(self.col, self.weight, self.crow[:-1],
                                per_sample_weights=self.val.to(self.weight.dtype),
                                mode="sum")
            # embedding_bag returns one row per offset: rows with no feature get zeros
        else:
            h = self.dense.to(self.weight.dtype) @ self.weight
        return h + self.bias

    def forward(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(vectors (n_rows, out_dim), scalars (n_rows,) or None)`` of every row."""
        h = self._first()
        if self.out is not None:
            h = F.gelu(h)
            vectors = self.out(h)
        else:
            vectors = h
        if self.scalar is None:
            return vectors, None
        if self.out is not None:
            return vectors, self.scalar(h).squeeze(-1)
        # linear map: the scalar is a linear function of the raw features
        if self.sparse:
            s = F.embedding_bag(self.col, self.scalar.weight.t().contiguous(),
                                self.crow[:-1], per_sample_weights=self.val, mode="sum")
        else:
            s = self.dense @ self.scalar.weight.t()
        return vectors, s.squeeze(-1) + self.scalar.bias
