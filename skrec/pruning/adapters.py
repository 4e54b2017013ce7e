"""How structured pruning sees a family of torch modules: one adapter per architecture.

An adapter says which slices of which parameters form a prunable unit (:class:`PruningGroup`),
how to update a module's size attributes after its parameters were sliced, what fix-ups keep
the pruned module exact, and how to count its widths and inference FLOPs. Adapters are
registered by module type with :func:`register_adapter`; :func:`get_adapter` finds the one of
a module (or of its nearest registered base class). A new architecture plugs in by adding a
file with its adapter to this package and importing it in ``skrec/pruning/__init__.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

__all__ = ["ComponentAdapter", "PruningAdapter", "PruningGroup", "get_adapter",
           "register_adapter"]


@dataclass
class _Slice:
    """One parameter touched by a group: ``getattr(module, name)`` along ``axis``."""

    module: nn.Module
    name: str
    axis: int
    is_weight: bool = True  # counted by the "weight" importance (biases are not)

    @property
    def param(self) -> nn.Parameter:
        return getattr(self.module, self.name)


def linear_slices(layer: nn.Linear, axis: int, bias: bool) -> list[_Slice]:
    """The weight of ``layer`` along ``axis``, plus its bias (rows only) when ``bias``."""
    out = [_Slice(layer, "weight", axis)]
    if bias and layer.bias is not None:
        out.append(_Slice(layer, "bias", 0, is_weight=False))
    return out


def feature_slices(features: nn.Module | None) -> list[_Slice]:
    """The output dimensions of a :class:`~skrec.nn.FeatureProjection` (none without one)."""
    if features is None:
        return []
    if features.out is not None:  # the MLP's last layer makes the vectors
        return linear_slices(features.out, 0, bias=True)
    return [_Slice(features, "weight", 1), _Slice(features, "bias", 0, is_weight=False)]


def norm_slices(norm: nn.LayerNorm) -> list[_Slice]:
    """The weight and bias of a LayerNorm along its only axis."""
    out = [_Slice(norm, "weight", 0)]
    if norm.bias is not None:
        out.append(_Slice(norm, "bias", 0, is_weight=False))
    return out


@dataclass
class PruningGroup:
    """A set of interchangeable units that structured pruning may remove.

    Parameters
    ----------
    name : str
        Stable name, e.g. ``"blocks.0.heads"``, ``"blocks.1.ffn"``, ``"embedding"``,
        ``"encoder.0"``, ``"latent"``.
    target : str
        The kind of unit, as named in ``targets``: ``"heads"``, ``"ffn"``, ``"embedding"``,
        ``"hidden"`` or ``"latent"``.
    size : int
        Current number of units.
    unit_width : int
        Entries per unit along each sliced axis (``head_dim`` for heads, else 1).
    slices : list
        The parameters the group touches and the axis along which each is sliced.
    pool : str
        Groups with the same pool are ranked jointly (the heads of all blocks).
    min_keep : int
        Fewest units this group may keep.
    """

    name: str
    target: str
    size: int
    unit_width: int = 1
    slices: list[_Slice] = field(default_factory=list)
    pool: str = ""
    min_keep: int = 1

    def __post_init__(self) -> None:
        if not self.pool:
            self.pool = self.name


class PruningAdapter:
    """Base class of the per-architecture pruning adapters.

    Subclasses set :attr:`targets` and implement :meth:`groups`; the other hooks have
    defaults that suit modules built only of ``Linear``, ``Embedding`` and ``LayerNorm``
    layers (whose size attributes the pruning core updates itself).
    """

    #: The kinds of units this architecture can lose (the default ``targets``), in order.
    targets: ClassVar[tuple[str, ...]] = ()

    def targets_for(self, module: nn.Module) -> tuple[str, ...]:
        """The kinds of units ``module`` can lose (composite modules ask their parts)."""
        return self.targets

    def groups(self, module: nn.Module) -> list[PruningGroup]:  # pragma: no cover
        """The prunable groups of ``module``, in a stable order."""
        raise NotImplementedError

    def sync_shapes(self, module: nn.Module) -> None:
        """Update architecture attributes (head counts, widths) after slicing."""

    def after_prune(self, module: nn.Module) -> None:
        """Fix-ups that keep the pruned module exact (run after :meth:`sync_shapes`)."""

    def architecture(self, module: nn.Module) -> dict[str, Any]:
        """Current widths, for the pruning report."""
        return {}

    def flops(self, module: nn.Module, seq_len: int | None) -> int:
        """2 x multiply-adds of one user's recommendation with dense kernels."""
        return 0

    def summary(self, module: nn.Module, seq_len: int | None) -> dict[str, Any]:
        """Extra fields of :func:`~skrec.pruning.model_summary`."""
        return {}


class ComponentAdapter(PruningAdapter):
    """Adapter of a part of a larger model (an encoder, the item representations).

    Besides its own groups, a part says which of its slices run along the model's width
    ``d_model`` (:meth:`width_slices`), so the model's adapter can remove embedding
    dimensions across all parts at once.
    """

    def groups(self, module: nn.Module) -> list[PruningGroup]:
        return []

    def width_slices(self, module: nn.Module) -> list[_Slice]:  # pragma: no cover
        """Every slice of ``module`` along the model width ``d_model``."""
        raise NotImplementedError


_ADAPTERS: dict[type, PruningAdapter] = {}


def register_adapter(module_type: type):
    """Class decorator: register a :class:`PruningAdapter` for ``module_type`` (and subclasses).

    Parameters
    ----------
    module_type : type
        A ``torch.nn.Module`` subclass.

    Returns
    -------
    decorator : callable
        Registers an instance of the decorated adapter class and returns the class.
    """

    def decorate(adapter_cls: type[PruningAdapter]) -> type[PruningAdapter]:
        _ADAPTERS[module_type] = adapter_cls()
        return adapter_cls

    return decorate


def get_adapter(module: nn.Module, *, required: bool = True) -> PruningAdapter | None:
    """The adapter registered for ``module``'s type or its nearest registered base class.

    Parameters
    ----------
    module : torch.nn.Module
        The module to prune or describe.
    required : bool, default=True
        Raise a TypeError when there is none (else return ``None``).

    Returns
    -------
    adapter : PruningAdapter or None
        The adapter.
    """
    for cls in type(module).__mro__:
        adapter = _ADAPTERS.get(cls)
        if adapter is not None:
            return adapter
    if required:
        raise TypeError(f"Structured pruning does not know {type(module).__name__} modules.")
    return None
