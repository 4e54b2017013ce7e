"""Pure torch modules and losses used by the skrec estimators (no sklearn, no numpy I/O)."""

from .autoencoder import MultVAE, multinomial_elbo_loss
from .config import (
    MODULES,
    ConfigBudgetError,
    build_module,
    config_state_shapes,
    module_config,
    register_module,
)
from .ctr import CTRModel
from .encoders import ENCODERS, register_encoder
from .features import FeatureProjection
from .gru import GRUEncoder
from .items import ItemEmbedding, ItemTable
from .losses import gbce_loss, l2_penalty, sampled_softmax_loss, softmax_cross_entropy
from .optim import SparseAdamW, clip_grad_norm_
from .sequence_model import SequenceModel
from .transformer import TransformerBlock, TransformerEncoder

__all__ = [
    "ENCODERS",
    "MODULES",
    "CTRModel",
    "ConfigBudgetError",
    "FeatureProjection",
    "GRUEncoder",
    "ItemEmbedding",
    "ItemTable",
    "MultVAE",
    "SequenceModel",
    "SparseAdamW",
    "TransformerBlock",
    "TransformerEncoder",
    "build_module",
    "clip_grad_norm_",
    "config_state_shapes",
    "gbce_loss",
    "l2_penalty",
    "module_config",
    "multinomial_elbo_loss",
    "register_encoder",
    "register_module",
    "sampled_softmax_loss",
    "softmax_cross_entropy",
]
