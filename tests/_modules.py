"""Small torch modules built the way the estimators build them, for tests of skrec.nn."""

from __future__ import annotations

from skrec.nn import ItemEmbedding, SequenceModel, TransformerEncoder


def causal_transformer(n_items: int, d_model: int = 64, n_layers: int = 2, n_heads: int = 2,
                       d_ff: int = 256, max_len: int = 200,
                       dropout: float = 0.2) -> SequenceModel:
    """SASRec's module: item embeddings and a causal transformer encoder, tied scoring."""
    encoder = TransformerEncoder.from_params(d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                                             d_ff=d_ff, max_len=max_len, dropout=dropout,
                                             causal=True)
    return SequenceModel(ItemEmbedding(n_items, d_model), encoder, max_len)
