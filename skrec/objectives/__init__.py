"""Training objectives of sequence models, selected by name (``SeqRecommender(objective=...)``).

An objective owns what turns user histories into training signal and back into scores: it
makes the training batches, computes the loss from the model's hidden states, and reads the
recommendation scores out of the model at inference. It also says which attention its encoder
needs (``causal``) and how many special input tokens it uses. A new objective is one new file
in this package that subclasses :class:`Objective` and decorates it with
:func:`register_objective`, imported here.
"""

from __future__ import annotations

from . import causal as _causal  # noqa: F401 - registers "causal"
from . import masked as _masked  # noqa: F401 - registers "masked"
from .base import OBJECTIVES, Objective, SeqData, register_objective

__all__ = ["OBJECTIVES", "Objective", "SeqData", "register_objective"]
