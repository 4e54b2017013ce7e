"""The registry of sequence encoders, selected by name (``SeqRecommender(encoder=...)``).

A sequence encoder is a ``torch.nn.Module`` that maps embedded item sequences
``x`` (B, L, d) and their validity mask ``valid`` (B, L) to hidden states (B, L, d) (or the
last position only, (B, 1, d), with ``last_only=True``), and has a ``from_params`` class method
that builds it from the shared hyper-parameters (``d_model``, ``n_layers``, ``n_heads``,
``d_ff``, ``max_len``, ``dropout``, ``causal``; it ignores those it has no use for). An encoder
that cannot look both ways raises a ValueError for ``causal=False``. A new encoder is one new
file that defines the module and decorates it with :func:`register_encoder`, imported in
``skrec/nn/__init__.py``.
"""

from __future__ import annotations

from torch import nn

__all__ = ["ENCODERS", "register_encoder"]

#: Encoder name -> module class.
ENCODERS: dict[str, type[nn.Module]] = {}


def register_encoder(name: str):
    """Class decorator: make a sequence encoder available as ``encoder=name``.

    Parameters
    ----------
    name : str
        The name users pass to ``SeqRecommender(encoder=...)``.

    Returns
    -------
    decorator : callable
        Registers the class and returns it unchanged.
    """

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        ENCODERS[name] = cls
        return cls

    return decorate
