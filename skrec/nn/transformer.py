"""Transformer encoders over item sequences (pre-LayerNorm blocks): SASRec and BERT4Rec."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import register_module
from .encoders import register_encoder

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

__all__ = ["MultiHeadSelfAttention", "TransformerBlock", "TransformerEncoder"]


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections of ``n_heads * head_dim``.

    The projections are kept separate (rather than fused) so that structured pruning can slice
    whole heads out of them.

    Parameters
    ----------
    d_model : int
        Width of the residual stream.
    n_heads : int
        Number of heads.
    head_dim : int
        Width of each head.
    dropout : float
        Attention dropout probability (training only).
    """

    def __init__(self, d_model: int, n_heads: int, head_dim: int, dropout: float = 0.0):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = head_dim
        inner = n_heads * head_dim
        with warnings.catch_warnings():  # a pruned block may have no head: 0-sized layers
            warnings.filterwarnings("ignore", "Initializing zero-element tensors")
            self.q_proj = nn.Linear(d_model, inner)
            self.k_proj = nn.Linear(d_model, inner)
            self.v_proj = nn.Linear(d_model, inner)
            self.out_proj = nn.Linear(inner, d_model)
        self.dropout = dropout

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        B, n, _ = t.shape
        return t.view(B, n, self.n_heads, self.head_dim).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, n_heads, L, head_dim) of the positions ``x`` (B, L, d)."""
        return self._split(self.k_proj(x)), self._split(self.v_proj(x))

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        last_only: bool = False,
        causal: bool = True,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
        return_kv: bool = False,
    ):
        """Attend over ``x`` (B, L, d) with a boolean ``mask`` (B, 1, L, L), True = attend.

        ``mask=None`` means plain causal attention (``causal``) or full attention. With
        ``last_only`` only the last position is a query (inference), and the output has shape
        (B, 1, d). With ``past``, the keys and values (B, n_heads, P, head_dim) of ``P``
        earlier positions, ``x`` is **one** new last position (B, 1, d) that attends to them
        and to itself (incremental inference, no mask). With ``return_kv`` the keys and values
        of every attended position are returned too: ``(out, (k, v))``.
        """
        B, L, _ = x.shape
        Lq = 1 if last_only else L
        if past is not None and L != 1:
            raise ValueError(f"past keys and values take one new position; got {L}.")
        if self.n_heads == 0:
            out = x.new_zeros(B, Lq, x.shape[-1])
            if return_kv:
                empty = x.new_zeros(B, 0, L + (0 if past is None else past[0].shape[2]), 0)
                return out, (empty, empty)
            return out
        q = self._split(self.q_proj(x[:, -1:] if last_only else x))
        k, v = self.keys_values(x)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        if last_only and mask is not None:
            mask = mask[:, :, -1:]
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            # the last query may see every key: no causal mask needed for it
            is_causal=causal and mask is None and not last_only and past is None,
            dropout_p=self.dropout if self.training else 0.0,
        )
        out = self.out_proj(out.transpose(1, 2).reshape(B, Lq, self.n_heads * self.head_dim))
        return (out, (k, v)) if return_kv else out


class TransformerBlock(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln(x))`` then ``x + ffn(ln(x))``.

    Parameters
    ----------
    d_model : int
        Width of the residual stream.
    n_heads : int
        Number of attention heads.
    head_dim : int
        Width of each head.
    d_ff : int
        Hidden units of the feed-forward network.
    dropout : float
        Dropout probability on the residual branches.
    inner_dropout : float, default=0.0
        Dropout on the attention weights and on the feed-forward hidden units (SASRec's
        recipe). Attention dropout takes the unfused attention kernel in training.
    """

    def __init__(self, d_model: int, n_heads: int, head_dim: int, d_ff: int, dropout: float,
                 inner_dropout: float = 0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadSelfAttention(d_model, n_heads, head_dim, inner_dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, d_ff)
        self.ff2 = nn.Linear(d_ff, d_model)
        self.drop = nn.Dropout(dropout)
        self.ff_drop = nn.Dropout(inner_dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        last_only: bool = False,
        causal: bool = True,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
        return_kv: bool = False,
    ):
        """Apply the block to ``x`` (B, L, d); with ``last_only``, return (B, 1, d).

        ``past`` and ``return_kv`` are those of :class:`MultiHeadSelfAttention` (incremental
        inference): with ``return_kv`` the output is ``(x, (k, v))``.
        """
        attn = self.attn(self.ln1(x), mask, last_only, causal, past, return_kv)
        if return_kv:
            attn, kv = attn
        if last_only:
            x = x[:, -1:]
        x = x + self.drop(attn)
        x = x + self.drop(self.ff2(self.ff_drop(F.gelu(self.ff1(self.ln2(x))))))
        return (x, kv) if return_kv else x


def _per_block(name: str, value, n_layers: int) -> list[int]:
    if isinstance(value, int):
        return [value] * n_layers
    values = [int(v) for v in value]
    if len(values) != n_layers:
        raise ValueError(f"{name} has {len(values)} values for {n_layers} blocks.")
    return values


@register_module
@register_encoder("transformer")
class TransformerEncoder(nn.Module):
    """Transformer encoder over embedded item sequences: positions, pre-LN blocks, final norm.

    Positions are learned and counted from the end, so the last position of the window always
    has the same embedding whatever the batch's padded length. With ``causal=True`` each
    position attends to itself and the earlier ones (SASRec); with ``causal=False`` to every
    position of the sequence (BERT4Rec). Padded positions are never attended to.

    Parameters
    ----------
    d_model : int
        Width of the residual stream.
    n_layers : int
        Number of blocks.
    n_heads : int or sequence of int
        Attention heads per block (one value for all blocks, or one per block, which is what
        a pruned encoder has; a block may have none).
    d_ff : int or sequence of int
        Feed-forward hidden units (for all blocks, or per block).
    max_len : int
        Longest sequence (number of position embeddings).
    dropout : float
        Dropout on the embeddings and the residual branches.
    causal : bool, default=True
        Causal (left-to-right) or bidirectional attention.
    head_dim : int, default=None
        Width of each head; ``d_model // n_heads`` when ``None`` (then ``n_heads`` must be one
        number that divides ``d_model``).
    inner_dropout : float, default=0.0
        Dropout on the attention weights and the feed-forward hidden units of every block.
    input_scale : float, default=1.0
        Factor of the item vectors before the positions are added. :meth:`from_params` (what
        the estimators build) sets ``sqrt(d_model)``, as SASRec and the original transformer
        do: with item and position embeddings initialised alike, the items then dominate the
        input and their updates move it as much as a wider embedding would; without it the
        positions are as large as the items and training starts far more slowly. It belongs
        to the architecture as built: pruning embedding dimensions keeps it (the remaining
        dimensions keep their values), and a saved config without it means 1.0.
    """

    def __init__(self, d_model: int, n_layers: int, n_heads: int | Sequence[int],
                 d_ff: int | Sequence[int], max_len: int, dropout: float, causal: bool = True,
                 *, head_dim: int | None = None, inner_dropout: float = 0.0,
                 input_scale: float = 1.0):
        super().__init__()
        heads = _per_block("n_heads", n_heads, n_layers)
        widths = _per_block("d_ff", d_ff, n_layers)
        if head_dim is None:
            if not isinstance(n_heads, int) or n_heads < 1 or d_model % n_heads:
                raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}.")
            head_dim = d_model // n_heads
        self.max_len = int(max_len)
        self.causal = bool(causal)
        self.dropout = float(dropout)
        self.inner_dropout = float(inner_dropout)
        self.head_dim = int(head_dim)
        self.input_scale = float(input_scale)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.emb_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, h, self.head_dim, f, dropout, self.inner_dropout)
            for h, f in zip(heads, widths)
        )
        self.final_ln = nn.LayerNorm(d_model)

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this encoder with its current shapes."""
        return {
            "d_model": int(self.pos_emb.embedding_dim),
            "n_layers": len(self.blocks),
            "n_heads": [int(b.attn.n_heads) for b in self.blocks],
            "d_ff": [int(b.ff1.out_features) for b in self.blocks],
            "max_len": self.max_len,
            "dropout": self.dropout,
            "causal": self.causal,
            "head_dim": self.head_dim,
            "inner_dropout": self.inner_dropout,
            "input_scale": self.input_scale,
        }

    @classmethod
    def from_params(cls, *, d_model: int, n_layers: int, n_heads: int, d_ff: int,
                    max_len: int, dropout: float, causal: bool, inner_dropout: float = 0.0,
                    **_) -> TransformerEncoder:
        """Build from the shared encoder hyper-parameters of ``SeqRecommender`` (item vectors
        scaled by ``sqrt(d_model)``, see ``input_scale``)."""
        return cls(d_model, n_layers, n_heads, d_ff, max_len, dropout, causal,
                   inner_dropout=inner_dropout, input_scale=math.sqrt(d_model))

    def reset_parameters(self, std: float = 0.02) -> None:
        """N(0, ``std``) weights, zero biases (LayerNorms keep their identity init)."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=std)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _scaled(self, x: torch.Tensor) -> torch.Tensor:
        """The item vectors ``x`` times ``input_scale`` (where they meet the positions)."""
        return x if self.input_scale == 1.0 else x * self.input_scale

    def forward(self, x: torch.Tensor, valid: torch.Tensor,
                last_only: bool = False) -> torch.Tensor:
        """Hidden states (B, L, d) of item vectors ``x`` (B, L, d); ``valid`` (B, L) marks items.

        With ``last_only`` the final block computes only the last position: (B, 1, d).
        """
        L = x.shape[1]
        positions = torch.arange(self.max_len - L, self.max_len, device=x.device)
        x = self.emb_drop(self._scaled(x) + self.pos_emb(positions)) * valid.unsqueeze(-1)
        mask = None
        # An exported graph always builds the mask: it cannot branch on the data.
        if torch.compiler.is_exporting() or not bool(valid.all()):
            keys = valid[:, None, :]
            if self.causal:
                keys = keys & torch.ones(L, L, dtype=torch.bool, device=x.device).tril_()
            eye = torch.eye(L, dtype=torch.bool, device=x.device)
            # Padded keys are hidden; every query row keeps at least itself (no fully masked
            # row, which gives NaN in some attention kernels).
            mask = (keys | eye).unsqueeze(1)
        n_blocks = len(self.blocks)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, last_only and i == n_blocks - 1, self.causal)
        if last_only and n_blocks == 0:
            x = x[:, -1:]
        return self.final_ln(x)

    # ------------------------------------------------------------------ incremental inference
    def next_state(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The cached keys and values that :meth:`step` reads for the item after ``x``.

        Positions are counted from the end: when an item is appended, every earlier item moves
        one position back, and with it its keys and values in every block. They are computed
        here directly in that shifted layout, the ``L`` items of ``x`` (B, L, d) (no padding,
        ``L < max_len``) at the positions ``max_len - 1 - L .. max_len - 2``, which does not
        depend on the item that will follow (causal attention: an item never sees later ones).
        The cost is that of a full forward pass; it can run before the next item is known.

        Parameters
        ----------
        x : torch.Tensor of shape (B, L, d)
            Vectors of the items so far (the latest ``max_len - 1`` at most).

        Returns
        -------
        state : list of (torch.Tensor, torch.Tensor)
            Per block, keys and values of shape (B, n_heads, L, head_dim).
        """
        if not self.causal:
            raise ValueError("Only a causal encoder can be run incrementally.")
        L = x.shape[1]
        if L >= self.max_len:
            raise ValueError(f"next_state takes at most max_len - 1 = {self.max_len - 1} "
                             f"items; got {L}.")
        positions = torch.arange(self.max_len - 1 - L, self.max_len - 1, device=x.device)
        x = self.emb_drop(self._scaled(x) + self.pos_emb(positions))
        state = []
        for i, block in enumerate(self.blocks):
            if i == len(self.blocks) - 1:  # the last block's outputs are not needed
                state.append(block.attn.keys_values(block.ln1(x)))
            else:
                x, kv = block(x, None, False, True, return_kv=True)
                state.append(kv)
        return state

    def step(self, x: torch.Tensor,
             state: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Hidden state (B, 1, d) of a new last item ``x`` (B, 1, d) after the items of
        ``state`` (from :meth:`next_state`): what :meth:`forward` with ``last_only`` gives
        for the whole sequence, at the cost of one position per block.

        Parameters
        ----------
        x : torch.Tensor of shape (B, 1, d)
            Vector of the new item.
        state : list of (torch.Tensor, torch.Tensor)
            The earlier items' keys and values, from :meth:`next_state`.

        Returns
        -------
        hidden : torch.Tensor of shape (B, 1, d)
            The final (normalised) hidden state of the new last position.
        """
        if len(state) != len(self.blocks):
            raise ValueError(f"state has {len(state)} blocks; the encoder has "
                             f"{len(self.blocks)}.")
        x = self.emb_drop(self._scaled(x) + self.pos_emb.weight[self.max_len - 1])
        for block, kv in zip(self.blocks, state):
            x = block(x, None, False, True, past=kv)
        return self.final_ln(x)
