"""Pure torch modules and losses used by the skrec estimators (no sklearn, no numpy I/O)."""

from .losses import gbce_loss, sampled_softmax_loss, softmax_cross_entropy
from .transformer import CausalTransformer, TransformerBlock

__all__ = [
    "CausalTransformer",
    "TransformerBlock",
    "gbce_loss",
    "sampled_softmax_loss",
    "softmax_cross_entropy",
]
