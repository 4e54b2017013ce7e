"""Pruning adapter of :class:`~skrec.nn.CTRModel`: embedding dimensions, MLP units, cross
rank, attention heads, feed-forward units and experts.

The model concatenates its ``F`` field vectors of width ``d`` into ``F * d`` features (index
``f * d + k``), so one embedding dimension ``k`` is ``F`` entries of every layer that reads
or writes the concatenation: a slice with ``chunks=F``.
"""

from __future__ import annotations

from typing import Any

from ..nn.ctr import MLP, CTRModel, ExpertMixture
from .adapters import (
    PruningAdapter,
    PruningGroup,
    _Slice,
    linear_slices,
    norm_slices,
    register_adapter,
)


def _mlp_groups(mlp: MLP, head_slices: list[_Slice]) -> list[PruningGroup]:
    groups = []
    n = len(mlp.layers)
    for i, layer in enumerate(mlp.layers):
        slices = linear_slices(layer, 0, bias=True)
        if mlp.norms is not None:
            norm = mlp.norms[i]
            slices += [_Slice(norm, "weight", 0), _Slice(norm, "bias", 0, is_weight=False),
                       _Slice(norm, "running_mean", 0, is_weight=False),
                       _Slice(norm, "running_var", 0, is_weight=False)]
        slices += [_Slice(mlp.layers[i + 1], "weight", 1)] if i + 1 < n else head_slices
        groups.append(PruningGroup(f"deep.{i}", "hidden", layer.out_features, 1, slices))
    return groups


def _expert_groups(moe: ExpertMixture, head_slices: list[_Slice]) -> list[PruningGroup]:
    groups = []
    n = len(moe.weights)
    for i in range(n):
        slices = [_Slice(moe.weights, str(i), 2), _Slice(moe.biases, str(i), 1,
                                                         is_weight=False)]
        slices += [_Slice(moe.weights, str(i + 1), 1)] if i + 1 < n else head_slices
        groups.append(PruningGroup(f"deep.{i}", "hidden", moe.hidden[i], 1, slices))
    experts = [_Slice(moe.gate, "weight", 0), _Slice(moe.gate, "bias", 0, is_weight=False)]
    for i in range(n):
        experts += [_Slice(moe.weights, str(i), 0), _Slice(moe.biases, str(i), 0,
                                                           is_weight=False)]
    groups.append(PruningGroup("experts", "experts", moe.n_experts, 1, experts))
    return groups


@register_adapter(CTRModel)
class CTRModelAdapter(PruningAdapter):
    """Prunable units of a click model.

    * ``embedding``: columns of the table and of the numeric vectors, and every slice along
      the field width: the first MLP (or expert, gate) layer's input columns and the cross
      network's rows and columns (``chunks`` = number of fields), the cross output weights,
      the attention blocks' LayerNorms, input columns and output rows (as in
      :class:`~skrec.pruning.transformer.TransformerAdapter`). The FM term and the wide part
      need no change. Through a LayerNorm (transformer) the removal is not exact.
    * ``hidden``: units of each MLP layer (rows of the layer, its batch-norm entries, columns
      of the next layer or of the output layer); for an expert mixture, the same unit of
      every expert.
    * ``experts``: whole experts (gate rows and every batched expert weight).
    * ``rank``: the rank of each low-rank cross layer.
    * ``heads`` (pooled over blocks, at least one per block) and ``ffn`` of the attention
      blocks.
    """

    def targets_for(self, module: CTRModel) -> tuple[str, ...]:
        targets = ["embedding", "hidden"]
        if isinstance(module.deep, ExpertMixture):
            targets.append("experts")
        if module.cross is not None and module.cross.down is not None:
            targets.append("rank")
        if module.blocks is not None:
            targets += ["heads", "ffn"]
        return tuple(targets)

    def groups(self, module: CTRModel) -> list[PruningGroup]:
        head = [_Slice(module.head, "weight", 1)]
        if isinstance(module.deep, ExpertMixture):
            groups = _expert_groups(module.deep, head)
        else:
            groups = _mlp_groups(module.deep, head)
        cross = module.cross
        if cross is not None and cross.down is not None:
            for i, (down, up) in enumerate(zip(cross.down, cross.weights)):
                groups.append(PruningGroup(
                    f"cross.{i}", "rank", down.out_features, 1,
                    [_Slice(down, "weight", 0), _Slice(up, "weight", 1)]))
        if module.blocks is not None:
            for i, block in enumerate(module.blocks):
                attn = block.attn
                heads = []
                for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
                    heads += linear_slices(proj, 0, bias=True)
                heads.append(_Slice(attn.out_proj, "weight", 1))
                groups.append(PruningGroup(f"blocks.{i}.heads", "heads", attn.n_heads,
                                           attn.head_dim, heads, pool="heads"))
                ffn = linear_slices(block.ff1, 0, bias=True) + [_Slice(block.ff2, "weight", 1)]
                groups.append(PruningGroup(f"blocks.{i}.ffn", "ffn", block.ff1.out_features,
                                           1, ffn))
        groups.append(PruningGroup("embedding", "embedding", module.embed_dim, 1,
                                   self._width_slices(module)))
        return groups

    @staticmethod
    def _width_slices(module: CTRModel) -> list[_Slice]:
        n_fields = module.n_fields
        emb = module.embedding
        out = [_Slice(emb, "weight", 1), _Slice(emb, "numeric_weight", 1)]
        deep = module.deep
        if isinstance(deep, ExpertMixture):
            out += [_Slice(deep.weights, "0", 1, chunks=n_fields),
                    _Slice(deep.gate, "weight", 1, chunks=n_fields)]
        elif len(deep.layers):
            out.append(_Slice(deep.layers[0], "weight", 1, chunks=n_fields))
        else:  # no hidden layer: the output layer reads the field vectors
            out.append(_Slice(module.head, "weight", 1, chunks=n_fields))
        cross = module.cross
        if cross is not None:
            out.append(_Slice(module.cross_head, "weight", 1, chunks=n_fields))
            for i, up in enumerate(cross.weights):
                out += [_Slice(up, "weight", 0, chunks=n_fields),
                        _Slice(up, "bias", 0, is_weight=False, chunks=n_fields)]
                if cross.down is not None:
                    out.append(_Slice(cross.down[i], "weight", 1, chunks=n_fields))
                else:
                    out.append(_Slice(up, "weight", 1, chunks=n_fields))
        if module.blocks is not None:
            for block in module.blocks:
                attn = block.attn
                out += norm_slices(block.ln1) + norm_slices(block.ln2)
                for layer in (attn.q_proj, attn.k_proj, attn.v_proj, block.ff1):
                    out.append(_Slice(layer, "weight", 1))
                for layer in (attn.out_proj, block.ff2):
                    out += linear_slices(layer, 0, bias=True)
            out += norm_slices(module.final_ln)
        return out

    def sync_shapes(self, module: CTRModel) -> None:
        flat = module.n_fields * module.embed_dim
        deep = module.deep
        deep.in_dim = flat
        if module.cross is not None:
            module.cross.in_dim = flat
        if module.blocks is not None:
            for block in module.blocks:
                attn = block.attn
                attn.n_heads = attn.q_proj.weight.shape[0] // attn.head_dim

    def architecture(self, module: CTRModel) -> dict[str, Any]:
        cfg = module.config()
        keys = ("architecture", "embed_dim", "hidden", "n_experts", "cross_rank", "n_heads",
                "d_ff")
        return {k: cfg[k] for k in keys if k in cfg}

    def flops(self, module: CTRModel, seq_len: int | None) -> int:
        """2 x multiply-adds to score one row (embedding gathers not counted)."""
        n_f, d = module.n_fields, module.embed_dim
        flat = n_f * d
        total = 0
        deep = module.deep
        if isinstance(deep, ExpertMixture):
            sizes = [flat, *deep.hidden]
            total += 2 * flat * deep.n_experts
            total += deep.n_experts * sum(2 * a * b for a, b in zip(sizes, sizes[1:]))
        else:
            total += sum(2 * layer.in_features * layer.out_features for layer in deep.layers)
        total += 2 * module.head.in_features
        if module.cross is not None:
            for i in range(len(module.cross.weights)):
                if module.cross.down is not None:
                    total += 2 * 2 * flat * module.cross.down[i].out_features
                else:
                    total += 2 * flat * flat
            total += 2 * flat
        if module.fm is not None:
            total += 3 * flat
        if module.blocks is not None:
            for b in module.blocks:
                inner = b.attn.n_heads * b.attn.head_dim
                total += 2 * d * inner * 4 * n_f + 2 * 2 * n_f * n_f * inner
                total += 2 * 2 * n_f * d * b.ff1.out_features
        return int(total)
