"""Pruning adapters of :class:`~skrec.nn.SequenceModel` and its item representations.

A sequence model's prunable units are those of its encoder (found through the encoder's own
adapter) plus the embedding dimensions, which run through the item representations and every
part of the encoder at once.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..nn.items import ItemEmbedding
from ..nn.sequence_model import SequenceModel
from .adapters import (
    ComponentAdapter,
    PruningAdapter,
    PruningGroup,
    _Slice,
    feature_slices,
    get_adapter,
    register_adapter,
)


@register_adapter(ItemEmbedding)
class ItemEmbeddingAdapter(ComponentAdapter):
    """The item vectors along the model width (the output embeddings are tied to them):
    the id embeddings and the output dimensions of the feature projection."""

    def width_slices(self, module: ItemEmbedding) -> list[_Slice]:
        return [_Slice(module.id_emb, "weight", 1), *feature_slices(module.features)]


def _parts(module: SequenceModel) -> list[tuple[nn.Module, ComponentAdapter]]:
    parts = []
    for part in (module.items, module.encoder):
        adapter = get_adapter(part)
        if not isinstance(adapter, ComponentAdapter):  # pragma: no cover - registry misuse
            raise TypeError(f"{type(part).__name__} needs a ComponentAdapter to be pruned.")
        parts.append((part, adapter))
    return parts


@register_adapter(SequenceModel)
class SequenceModelAdapter(PruningAdapter):
    """The encoder's units (e.g. ``heads``, ``ffn``) plus ``embedding`` dimensions.

    ``embedding`` removes dimensions of the model width ``d_model`` from the item vectors
    and from every width slice of the encoder. A LayerNorm over fewer dimensions normalises
    differently, so this perturbs every output a little even for unimportant dimensions.
    """

    def targets_for(self, module: SequenceModel) -> tuple[str, ...]:
        return (*get_adapter(module.encoder).targets_for(module.encoder), "embedding")

    def groups(self, module: SequenceModel) -> list[PruningGroup]:
        parts = _parts(module)
        groups = [g for part, adapter in parts for g in adapter.groups(part)]
        width = [s for part, adapter in parts for s in adapter.width_slices(part)]
        groups.append(PruningGroup("embedding", "embedding", module.d_model, 1, width))
        return groups

    def sync_shapes(self, module: SequenceModel) -> None:
        for part, adapter in _parts(module):
            adapter.sync_shapes(part)

    def after_prune(self, module: SequenceModel) -> None:
        for part, adapter in _parts(module):
            adapter.after_prune(part)

    def architecture(self, module: SequenceModel) -> dict[str, Any]:
        enc = module.encoder
        return {"d_model": int(module.d_model), **get_adapter(enc).architecture(enc)}

    def flops(self, module: SequenceModel, seq_len: int | None) -> int:
        enc = module.encoder
        L = int(seq_len or module.max_len)
        # the encoder, then the catalogue scored from one position
        return int(get_adapter(enc).flops(enc, L) + 2 * module.d_model * module.n_items)

    def summary(self, module: SequenceModel, seq_len: int | None) -> dict[str, Any]:
        return {"flops_seq_len": int(seq_len or module.max_len)}
