"""A GRU encoder over item sequences (GRU4Rec, Hidasi et al. 2016, 2018)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .config import register_module
from .encoders import register_encoder

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

__all__ = ["GRUEncoder"]


def _per_layer(value, n_layers: int) -> list[int]:
    if isinstance(value, int):
        return [value] * n_layers
    values = [int(v) for v in value]
    if len(values) != n_layers:
        raise ValueError(f"hidden_size has {len(values)} values for {n_layers} layers.")
    return values


@register_module
@register_encoder("gru")
class GRUEncoder(nn.Module):
    """Stacked GRU layers over embedded item sequences, read left to right (GRU4Rec).

    Each position's hidden state summarises the items up to and including it, so the encoder
    is causal by construction: it serves next-item objectives (``objective="causal"``) and
    cannot serve objectives that need to look both ways (``objective="masked"``). Dropout is
    applied to the input item vectors, between layers and to the last layer's states; a
    linear layer maps the last hidden state back to the model width ``d_model``, so the
    catalogue is scored against the (tied) item embeddings whatever the hidden size.

    Sequences are left-padded; each row is run from its first real item (padded positions
    are skipped with packed sequences, not fed as zeros), so a row's hidden states do not
    depend on the padding of the batch it is in.

    Parameters
    ----------
    d_model : int
        Width of the item vectors (input) and of the output states.
    n_layers : int, default=1
        Number of stacked GRU layers (at least 1).
    hidden_size : int or sequence of int, default=None
        Hidden units of each layer (one value for all, or one per layer, which is what a
        pruned encoder has); ``d_model`` when ``None``.
    dropout : float, default=0.0
        Dropout on the input item vectors, between layers and on the last layer's states.

    Attributes
    ----------
    layers : torch.nn.ModuleList of torch.nn.GRU
        One single-layer GRU per layer (so that each may have its own hidden size).
    out_proj : torch.nn.Linear
        Last hidden state -> ``d_model``.
    """

    #: Reads sequences left to right only.
    causal = True

    def __init__(self, d_model: int, n_layers: int = 1,
                 hidden_size: int | Sequence[int] | None = None, dropout: float = 0.0):
        super().__init__()
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"The GRU encoder needs n_layers >= 1; got {n_layers!r}.")
        hidden = _per_layer(d_model if hidden_size is None else hidden_size, n_layers)
        self.d_model = int(d_model)
        self.dropout = float(dropout)
        self.emb_drop = nn.Dropout(self.dropout)
        self.drop = nn.Dropout(self.dropout)
        self.layers = nn.ModuleList()
        width = self.d_model
        for h in hidden:
            self.layers.append(nn.GRU(width, h, batch_first=True))
            width = h
        self.out_proj = nn.Linear(width, self.d_model)

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this encoder with its current shapes."""
        return {
            "d_model": int(self.out_proj.out_features),
            "n_layers": len(self.layers),
            "hidden_size": [int(g.hidden_size) for g in self.layers],
            "dropout": self.dropout,
        }

    @classmethod
    def from_params(cls, *, d_model: int, n_layers: int, dropout: float, causal: bool = True,
                    **_) -> GRUEncoder:
        """Build from the shared encoder hyper-parameters of ``SeqRecommender``.

        Uses ``d_model`` (item width and hidden units), ``n_layers`` and ``dropout``; ignores
        ``n_heads``, ``d_ff`` and ``max_len``. Raises a ValueError for ``causal=False``.
        """
        if not causal:
            raise ValueError(
                "encoder='gru' reads sequences left to right only (causal); it cannot serve "
                "an objective that needs bidirectional attention such as objective='masked'. "
                "Use encoder='transformer' for it."
            )
        if n_layers < 1:
            raise ValueError(f"encoder='gru' needs n_layers >= 1; got {n_layers!r}.")
        return cls(d_model, n_layers, dropout=dropout)

    def reset_parameters(self, std: float = 0.02) -> None:
        """Glorot-uniform input weights and orthogonal recurrent weights (per gate), zero
        biases, a Glorot-uniform output layer.

        ``std`` (the N(0, std) of the item embeddings) is not used: a recurrence needs its
        weights at the scale that keeps its states alive over the sequence. On planted
        sequences this initialisation trained several times faster than PyTorch's default
        GRU initialisation with a small output layer.
        """
        with torch.no_grad():
            for gru in self.layers:
                for chunk in gru.weight_ih_l0.chunk(3, 0):
                    nn.init.xavier_uniform_(chunk)
                for chunk in gru.weight_hh_l0.chunk(3, 0):
                    nn.init.orthogonal_(chunk)
                gru.bias_ih_l0.zero_()
                gru.bias_hh_l0.zero_()
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    #: torch.export fixes a recurrence's sequence length: exported graphs take full histories.
    export_static_length = True

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        for i, gru in enumerate(self.layers):
            x, _ = gru(self.drop(x) if i else x)
        return x

    def forward(self, x: torch.Tensor, valid: torch.Tensor,
                last_only: bool = False) -> torch.Tensor:
        """Hidden states (B, L, d) of left-padded item vectors ``x`` (B, L, d).

        ``valid`` (B, L) marks the items (padding first, then the items, in each row). With
        ``last_only`` only the last position is returned: (B, 1, d).
        """
        x = self.emb_drop(x)
        if torch.compiler.is_exporting() or torch.compiler.is_compiling():
            h = self._run_rotated(x, valid, last_only)  # no data-dependent branch
        elif bool(valid.all()):
            h = self._run(x)
            h = h[:, -1:] if last_only else h
        else:
            h = self._run_packed(x, valid, last_only)
        return self.out_proj(self.drop(h))

    def _run_rotated(self, x: torch.Tensor, valid: torch.Tensor,
                     last_only: bool) -> torch.Tensor:
        """The packed path's result without packing (traceable by ``torch.export``).

        Each row is rotated so that its items come first; a recurrence is causal, so the
        states of the items never see the padding after them. Costs the padding's steps.
        """
        B, L, d = x.shape
        lengths = valid.sum(1)
        shift = L - lengths
        steps = torch.arange(L, device=x.device)
        idx = (steps[None, :] + shift[:, None]) % L
        h = self._run(x.gather(1, idx.unsqueeze(-1).expand(B, L, d)))
        if last_only:
            last = (lengths - 1).clamp(min=0)
            h_last = h.gather(1, last.view(B, 1, 1).expand(B, 1, h.shape[-1]))
            return h_last * (lengths > 0).view(B, 1, 1).to(h.dtype)
        back = (steps[None, :] - shift[:, None]) % L
        return h.gather(1, back.unsqueeze(-1).expand(B, L, h.shape[-1])) * valid.unsqueeze(-1)

    def _run_packed(self, x: torch.Tensor, valid: torch.Tensor, last_only: bool) -> torch.Tensor:
        B, L, d = x.shape
        lengths = valid.sum(1)
        shift = L - lengths  # leading padding of each row
        steps = torch.arange(L, device=x.device)
        # Left-aligned (right-padded) rows, as packing wants them: a rotation of each row.
        idx = (steps[None, :] + shift[:, None]) % L
        x = x.gather(1, idx.unsqueeze(-1).expand(B, L, d))
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True,
                                      enforce_sorted=False)
        h_n = None
        for i, gru in enumerate(self.layers):
            if i:
                packed = PackedSequence(self.drop(packed.data), packed.batch_sizes,
                                        packed.sorted_indices, packed.unsorted_indices)
            packed, h_n = gru(packed)
        if last_only:  # the final state of each row, in the batch's order (0 if empty)
            return (h_n[-1] * (lengths > 0).unsqueeze(-1)).unsqueeze(1)
        h, _ = pad_packed_sequence(packed, batch_first=True, total_length=L)
        back = (steps[None, :] - shift[:, None]) % L  # rotate back: padding first again
        return h.gather(1, back.unsqueeze(-1).expand(B, L, h.shape[-1]))
