"""A SASRec-family causal transformer over item sequences (pre-LayerNorm blocks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CausalTransformer", "TransformerBlock", "MultiHeadSelfAttention"]


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
        self.q_proj = nn.Linear(d_model, inner)
        self.k_proj = nn.Linear(d_model, inner)
        self.v_proj = nn.Linear(d_model, inner)
        self.out_proj = nn.Linear(inner, d_model)
        self.dropout = dropout

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, last_only: bool = False
    ) -> torch.Tensor:
        """Attend over ``x`` (B, L, d) with a boolean ``mask`` (B, 1, L, L), True = attend.

        ``mask=None`` means plain causal attention. With ``last_only`` only the last position
        is a query (inference), and the output has shape (B, 1, d).
        """
        B, L, _ = x.shape
        Lq = 1 if last_only else L
        if self.n_heads == 0:
            return x.new_zeros(B, Lq, x.shape[-1])

        def split(t, n):
            return t.view(B, n, self.n_heads, self.head_dim).transpose(1, 2)

        q = split(self.q_proj(x[:, -1:] if last_only else x), Lq)
        k, v = split(self.k_proj(x), L), split(self.v_proj(x), L)
        if last_only and mask is not None:
            mask = mask[:, :, -1:]
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            # the last query may see every key: no causal mask needed for it
            is_causal=mask is None and not last_only,
            dropout_p=self.dropout if self.training else 0.0,
        )
        out = out.transpose(1, 2).reshape(B, Lq, self.n_heads * self.head_dim)
        return self.out_proj(out)


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
        Dropout probability.
    """

    def __init__(self, d_model: int, n_heads: int, head_dim: int, d_ff: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        # No dropout on the attention matrix: it forces the unfused (L x L) kernel and its
        # random draws cost more than the rest of the block on CPU, for little regularisation.
        self.attn = MultiHeadSelfAttention(d_model, n_heads, head_dim, 0.0)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, d_ff)
        self.ff2 = nn.Linear(d_ff, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, last_only: bool = False
    ) -> torch.Tensor:
        """Apply the block to ``x`` (B, L, d); with ``last_only``, return (B, 1, d)."""
        attn = self.attn(self.ln1(x), mask, last_only)
        if last_only:
            x = x[:, -1:]
        x = x + self.drop(attn)
        x = x + self.drop(self.ff2(F.gelu(self.ff1(self.ln2(x)))))
        return x


class CausalTransformer(nn.Module):
    """Causal transformer over left-padded item sequences (SASRec family).

    Items are ``1..n_items`` (``0`` is padding). Item embeddings are tied with the output
    scoring (plus a per-item output bias); positions are learned and counted so that the last
    position of the window always has the same embedding, whatever the batch's padded length.

    Parameters
    ----------
    n_items : int
        Catalogue size (without the padding index).
    d_model : int, default=64
        Embedding and hidden width.
    n_layers : int, default=2
        Number of transformer blocks.
    n_heads : int, default=2
        Attention heads per block.
    d_ff : int, default=256
        Feed-forward hidden units.
    max_len : int, default=200
        Longest history read.
    dropout : float, default=0.2
        Dropout probability on the embeddings and the residual branches.
    """

    def __init__(
        self,
        n_items: int,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        d_ff: int = 256,
        max_len: int = 200,
        dropout: float = 0.2,
    ):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}.")
        self.n_items = n_items
        self.max_len = max_len
        self.item_emb = nn.Embedding(n_items + 1, d_model, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.emb_drop = nn.Dropout(dropout)
        head_dim = d_model // n_heads
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, n_heads, head_dim, d_ff, dropout) for _ in range(n_layers)
        )
        self.final_ln = nn.LayerNorm(d_model)
        self.out_bias = nn.Parameter(torch.zeros(n_items + 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise weights from N(0, 0.02) and biases at zero (padding embedding zero)."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
            self.out_bias.zero_()

    @property
    def d_model(self) -> int:
        """Width of the residual stream."""
        return self.item_emb.embedding_dim

    def forward(self, seq: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Hidden states (B, L, d) for a left-padded item sequence batch ``seq`` (B, L).

        With ``last_only`` the final block computes only the last position: (B, 1, d).
        """
        B, L = seq.shape
        if L > self.max_len:
            seq = seq[:, -self.max_len :]
            L = self.max_len
        valid = seq != 0
        positions = torch.arange(self.max_len - L, self.max_len, device=seq.device)
        x = self.item_emb(seq) + self.pos_emb(positions)
        x = self.emb_drop(x) * valid.unsqueeze(-1)
        mask = None
        if not bool(valid.all()):
            causal = torch.ones(L, L, dtype=torch.bool, device=seq.device).tril_()
            eye = torch.eye(L, dtype=torch.bool, device=seq.device)
            # Padded keys are hidden; every query row keeps at least itself (no fully masked
            # row, which gives NaN in some attention kernels).
            mask = ((causal & valid[:, None, :]) | eye).unsqueeze(1)
        n_blocks = len(self.blocks)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, last_only and i == n_blocks - 1)
        if last_only and n_blocks == 0:
            x = x[:, -1:]
        return self.final_ln(x)

    def output_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Item output embeddings (n_items, d) and biases (n_items,), padding excluded."""
        return self.item_emb.weight[1:], self.out_bias[1:]

    def last_hidden(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden state of the last position (B, d): the next-item query of each sequence."""
        return self.forward(seq, last_only=True)[:, -1]
