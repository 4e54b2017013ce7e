"""Pruning adapter of :class:`~skrec.nn.MultVAE`: hidden units and latent dimensions."""

from __future__ import annotations

from typing import Any

from ..nn.autoencoder import MultVAE
from .adapters import (
    PruningAdapter,
    PruningGroup,
    _Slice,
    feature_slices,
    linear_slices,
    register_adapter,
)


@register_adapter(MultVAE)
class AutoencoderAdapter(PruningAdapter):
    """Hidden units of every hidden layer and the latent dimensions of a Mult-VAE/DAE.

    * ``hidden``: the rows of the layer that produces a unit and the columns of the layer
      that reads it, for every encoder and decoder hidden layer.
    * ``latent``: rows of ``mu`` and ``logvar`` together, columns of the first decoder layer.
    """

    targets = ("hidden", "latent")

    def groups(self, module: MultVAE) -> list[PruningGroup]:
        groups = []
        enc, dec = list(module.encoder), list(module.decoder)
        heads = [module.mu] if module.logvar is None else [module.mu, module.logvar]
        for i, layer in enumerate(enc):
            readers = [enc[i + 1]] if i + 1 < len(enc) else heads
            slices = linear_slices(layer, 0, bias=True)
            slices += [_Slice(r, "weight", 1) for r in readers]
            groups.append(PruningGroup(f"encoder.{i}", "hidden", layer.out_features, 1, slices))
        # the feature projection's vectors are read with the last decoder layer's input
        features = feature_slices(module.features)
        latent = [s for h in heads for s in linear_slices(h, 0, bias=True)]
        latent.append(_Slice(dec[0], "weight", 1))
        if len(dec) == 1:
            latent += features
        groups.append(PruningGroup("latent", "latent", module.mu.out_features, 1, latent))
        for j, layer in enumerate(dec[:-1]):
            slices = linear_slices(layer, 0, bias=True) + [_Slice(dec[j + 1], "weight", 1)]
            if j + 2 == len(dec):
                slices += features
            groups.append(PruningGroup(f"decoder.{j}", "hidden", layer.out_features, 1, slices))
        return groups

    def sync_shapes(self, module: MultVAE) -> None:
        module.latent_dim = module.mu.weight.shape[0]

    def architecture(self, module: MultVAE) -> dict[str, Any]:
        return {
            "encoder_sizes": [int(layer.out_features) for layer in module.encoder],
            "latent_dim": int(module.mu.out_features),
            "decoder_sizes": [int(layer.out_features) for layer in module.decoder[:-1]],
        }

    def flops(self, module: MultVAE, seq_len: int | None) -> int:
        layers = [*module.encoder, module.mu, *module.decoder]  # logvar unused at inference
        return int(sum(2 * layer.in_features * layer.out_features for layer in layers))
