"""Pruning adapter of :class:`~skrec.nn.GRUEncoder`: hidden units of each GRU layer."""

from __future__ import annotations

from typing import Any

from ..nn.gru import GRUEncoder
from .adapters import ComponentAdapter, PruningGroup, _Slice, linear_slices, register_adapter


@register_adapter(GRUEncoder)
class GRUAdapter(ComponentAdapter):
    """Hidden units of every GRU layer, and the encoder's slices along the model width.

    * ``hidden`` (one group per layer): a unit ``u`` of a layer of ``H`` units is the rows
      ``u``, ``H + u`` and ``2H + u`` (its reset, update and new gates) of ``weight_ih``,
      ``weight_hh`` and both biases, the column ``u`` of ``weight_hh`` (the recurrence reads
      it), and the column ``u`` of whatever reads the layer's states: the next layer's
      ``weight_ih``, or ``out_proj`` after the last layer. Removing a unit whose outgoing
      weights are zero is exact.
    * Along the model width: the input columns of the first layer's ``weight_ih`` and the
      output rows of ``out_proj``.
    """

    targets = ("hidden",)

    def groups(self, module: GRUEncoder) -> list[PruningGroup]:
        groups = []
        layers = list(module.layers)
        for i, gru in enumerate(layers):
            reader = (_Slice(layers[i + 1], "weight_ih_l0", 1) if i + 1 < len(layers)
                      else _Slice(module.out_proj, "weight", 1))
            slices = [
                _Slice(gru, "weight_ih_l0", 0, chunks=3),
                _Slice(gru, "weight_hh_l0", 0, chunks=3),
                _Slice(gru, "bias_ih_l0", 0, is_weight=False, chunks=3),
                _Slice(gru, "bias_hh_l0", 0, is_weight=False, chunks=3),
                _Slice(gru, "weight_hh_l0", 1),
                reader,
            ]
            groups.append(PruningGroup(f"layers.{i}.hidden", "hidden", gru.hidden_size, 1,
                                       slices))
        return groups

    def width_slices(self, module: GRUEncoder) -> list[_Slice]:
        return [_Slice(module.layers[0], "weight_ih_l0", 1),
                *linear_slices(module.out_proj, 0, bias=True)]

    def sync_shapes(self, module: GRUEncoder) -> None:
        for gru in module.layers:
            gru.input_size = gru.weight_ih_l0.shape[1]
            gru.hidden_size = gru.weight_hh_l0.shape[1]
            gru.flatten_parameters()  # one contiguous weight buffer again (cuDNN)
        module.d_model = module.out_proj.out_features

    def architecture(self, module: GRUEncoder) -> dict[str, Any]:
        return {"hidden_size": [int(g.hidden_size) for g in module.layers]}

    def flops(self, module: GRUEncoder, seq_len: int | None) -> int:
        # Every layer runs over all L positions (a recurrence has no shortcut to the last
        # one); the output projection runs on the last position only.
        L = int(seq_len or 1)
        total = 0
        for gru in module.layers:
            total += 2 * L * 3 * gru.hidden_size * (gru.input_size + gru.hidden_size)
        return int(total + 2 * module.out_proj.in_features * module.out_proj.out_features)
