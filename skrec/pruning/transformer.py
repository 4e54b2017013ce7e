"""Pruning adapter of :class:`~skrec.nn.TransformerEncoder`: attention heads and FFN units."""

from __future__ import annotations

from typing import Any

import torch

from ..nn.transformer import TransformerEncoder
from .adapters import (
    ComponentAdapter,
    PruningGroup,
    _Slice,
    linear_slices,
    norm_slices,
    register_adapter,
)


@register_adapter(TransformerEncoder)
class TransformerAdapter(ComponentAdapter):
    """Attention heads (pooled across blocks) and feed-forward units of a transformer encoder.

    * ``heads``: rows of ``q/k/v_proj`` (and their biases), columns of ``out_proj``. The heads
      of all blocks are ranked jointly, and a block may lose all of them: the output bias its
      attention branch still added then moves into the layer before it (:meth:`after_prune`),
      which keeps the removal exact.
    * ``ffn``: rows of ``ff1``, columns of ``ff2``, per block.
    * Along the model width: columns of ``pos_emb``, every LayerNorm, the input columns of
      ``q/k/v_proj`` and ``ff1``, the output rows of ``out_proj`` and ``ff2``.
    """

    targets = ("heads", "ffn")

    def groups(self, module: TransformerEncoder) -> list[PruningGroup]:
        groups = []
        for i, block in enumerate(module.blocks):
            attn = block.attn
            heads = []
            for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
                heads += linear_slices(proj, 0, bias=True)
            heads.append(_Slice(attn.out_proj, "weight", 1))
            groups.append(PruningGroup(f"blocks.{i}.heads", "heads", attn.n_heads,
                                       attn.head_dim, heads, pool="heads", min_keep=0))
            ffn = linear_slices(block.ff1, 0, bias=True) + [_Slice(block.ff2, "weight", 1)]
            groups.append(PruningGroup(f"blocks.{i}.ffn", "ffn", block.ff1.out_features, 1,
                                       ffn))
        return groups

    def width_slices(self, module: TransformerEncoder) -> list[_Slice]:
        out = [_Slice(module.pos_emb, "weight", 1)]
        for block in module.blocks:
            attn = block.attn
            out += norm_slices(block.ln1) + norm_slices(block.ln2)
            for layer in (attn.q_proj, attn.k_proj, attn.v_proj, block.ff1):
                out.append(_Slice(layer, "weight", 1))
            for layer in (attn.out_proj, block.ff2):
                out += linear_slices(layer, 0, bias=True)
        return out + norm_slices(module.final_ln)

    def sync_shapes(self, module: TransformerEncoder) -> None:
        for block in module.blocks:
            attn = block.attn
            attn.n_heads = attn.q_proj.weight.shape[0] // attn.head_dim

    def after_prune(self, module: TransformerEncoder) -> None:
        """Keep a block that lost all its heads exact: move its output bias to the previous writer.

        Without heads, the attention branch only added ``out_proj.bias``, a constant. Nothing
        reads the residual stream between the previous writer (the previous block's ``ff2``,
        or the embeddings for the first block) and that addition, so the constant moves there
        exactly (at inference; dropout aside in training) and the bias is zeroed.
        """
        with torch.no_grad():
            for i, block in enumerate(module.blocks):
                attn = block.attn
                if attn.n_heads or not bool(attn.out_proj.bias.any()):
                    continue
                bias = attn.out_proj.bias
                if i == 0:  # every position's embedding gets it (padding is zeroed after)
                    module.pos_emb.weight.add_(bias)
                else:
                    module.blocks[i - 1].ff2.bias.add_(bias)
                bias.zero_()

    def architecture(self, module: TransformerEncoder) -> dict[str, Any]:
        return {
            "n_heads": [int(b.attn.n_heads) for b in module.blocks],
            "d_ff": [int(b.ff1.out_features) for b in module.blocks],
        }

    def flops(self, module: TransformerEncoder, seq_len: int | None) -> int:
        # Inference scores the last position only: the blocks before the last one run on all
        # L positions; the last block needs keys and values of all positions but queries,
        # output projection and feed-forward of the last position only.
        L = int(seq_len or module.max_len)
        d = module.pos_emb.embedding_dim
        total = 0
        n_blocks = len(module.blocks)
        for i, b in enumerate(module.blocks):
            n_q = 1 if i == n_blocks - 1 else L
            inner = b.attn.n_heads * b.attn.head_dim
            if inner:
                total += 2 * d * inner * (2 * L + 2 * n_q)  # k, v on L; q, out on n_q
                total += 2 * 2 * n_q * L * inner  # scores and weighted values (full mask)
            total += 2 * 2 * n_q * d * b.ff1.out_features
        return int(total)
