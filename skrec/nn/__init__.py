"""Pure torch modules and losses used by the skrec estimators (no sklearn, no numpy I/O)."""

from .autoencoder import MultVAE, multinomial_elbo_loss
from .losses import gbce_loss, sampled_softmax_loss, softmax_cross_entropy
from .transformer import CausalTransformer, TransformerBlock

__all__ = [
    "CausalTransformer",
    "MultVAE",
    "TransformerBlock",
    "gbce_loss",
    "multinomial_elbo_loss",
    "sampled_softmax_loss",
    "softmax_cross_entropy",
]
