"""Pure torch modules and losses used by the skrec estimators (no sklearn, no numpy I/O)."""

from .autoencoder import MultVAE, multinomial_elbo_loss
from .encoders import ENCODERS, register_encoder
from .items import ItemEmbedding
from .losses import gbce_loss, sampled_softmax_loss, softmax_cross_entropy
from .sequence import CausalTransformer, SequenceModel
from .transformer import TransformerBlock, TransformerEncoder

__all__ = [
    "ENCODERS",
    "CausalTransformer",
    "ItemEmbedding",
    "MultVAE",
    "SequenceModel",
    "TransformerBlock",
    "TransformerEncoder",
    "gbce_loss",
    "multinomial_elbo_loss",
    "register_encoder",
    "sampled_softmax_loss",
    "softmax_cross_entropy",
]
