"""Side features of items as vectors: f(x) = W1 x + b1 over a fixed feature matrix.

:class:`FeatureProjection` holds an item-feature matrix (dense, or sparse in CSR parts so that
one-hot, multi-hot and TF-IDF features cost only their non-zeros) as buffers, and maps every
row into the model's space with a learned linear map (optionally a small MLP). It also gives
each item a scalar (an output bias learned from the features: how popular items *like this*
are), which is what lets a model score items it has never seen in training.
"""

from __future__ import annotations

from typing import Any, ClassVar

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
    dropout : float, default=0.0
        In training, each stored feature value is dropped with this probability (inverted
        dropout), so that no single feature (a rare title word, say, which identifies one
        item like an id would) can carry an item's representation alone.

    Notes
    -----
    Fill the buffers with :meth:`set_features`; a module rebuilt from :meth:`config` gets
    them from its ``state_dict``.
    """

    #: Runs in fp32 by design (sparse products have no low-precision kernels, and the linear
    #: layers' weights are read directly): reduced-precision inference copies
    #: (``inference_precision``) keep this module in fp32 and do not quantize it.
    inference_fp32: ClassVar[bool] = True

    def __init__(self, n_rows: int, n_features: int, out_dim: int, *,
                 hidden: int | None = None, scalar: bool = False, sparse: bool = False,
                 nnz: int = 0, dropout: float = 0.0):
        super().__init__()
        self.n_rows, self.n_features = int(n_rows), int(n_features)
        self.dropout = float(dropout)
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
            "dropout": self.dropout,
        }

    @property
    def out_dim(self) -> int:
        """Width of the vectors."""
        return self.out.out_features if self.out is not None else self.weight.shape[1]

    def _values(self) -> torch.Tensor:
        """The stored values (sparse) or the dense matrix, with dropout in training."""
        values = self.val if self.sparse else self.dense
        if self.training and self.dropout > 0:
            values = F.dropout(values, self.dropout)
        return values

    def _sparse(self, values: torch.Tensor) -> torch.Tensor:
        """The transposed feature matrix ``(n_features, n_rows)`` as a sparse COO tensor."""
        rows = torch.repeat_interleave(
            torch.arange(self.n_rows, device=self.crow.device), self.crow.diff()
        )
        return torch.sparse_coo_tensor(torch.stack([self.col, rows]), values,
                                       (self.n_features, self.n_rows), check_invariants=False)

    def _no_autocast(self):
        # sparse products have no low-precision kernels: keep them (and their backward) fp32
        return torch.autocast(self.weight.device.type, enabled=False)

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ X_features``: ``(B, n_rows)`` -> ``(B, n_features)`` in fp32, e.g. a user's
        profile in feature space (feature dropout applies in training)."""
        with self._no_autocast():
            values = self._values()
            if self.sparse:
                return torch.sparse.mm(self._sparse(values), x.float().t()).t()
            return x.float() @ values

    def rows_times(self, matrix: torch.Tensor) -> torch.Tensor:
        """``X_features @ matrix`` for a ``(n_features, k)`` matrix: ``(n_rows, k)``.

        Computed in fp32 and returned in ``matrix``'s dtype; a sparse feature matrix costs its
        non-zeros times ``k``. Feature dropout applies in training, as in :meth:`forward`.
        """
        with self._no_autocast():
            out = self._rows_times(self._values(), matrix.float())
        return out.to(matrix.dtype)

    def _rows_times(self, values: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        if self.sparse:
            # one bag per row (offsets): rows with no feature get zeros
            return F.embedding_bag(self.col, matrix.contiguous(), self.crow[:-1],
                                   per_sample_weights=values.to(matrix.dtype), mode="sum")
        return values.to(matrix.dtype) @ matrix

    def forward(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(vectors (n_rows, out_dim), scalars (n_rows,) or None)`` of every row."""
        values = self._values()
        h = self._rows_times(values, self.weight) + self.bias
        if self.out is not None:
            h = F.gelu(h)
            vectors = self.out(h)
        else:
            vectors = h
        if self.scalar is None:
            return vectors, None
        if self.out is not None:
            return vectors, self.scalar(h).squeeze(-1)
        # linear map: the scalar is a linear function of the raw features (in fp32)
        with self._no_autocast():
            s = self._rows_times(values, self.scalar.weight.float().t())
        return vectors, s.squeeze(-1) + self.scalar.bias
