"""Module configs: rebuild a skrec module, pruned shapes included, from a small dict.

Every skrec module has a ``config()`` method returning JSON-serialisable constructor
arguments that reproduce its *current* shapes (per-block head counts and widths after
pruning, for example), and is registered here by name. :func:`module_config` adds the type
name; :func:`build_module` builds a module with fresh weights from such a dict, ready for
``load_state_dict``. This is what safe persistence stores next to the tensors.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["MODULES", "build_module", "module_config", "register_module"]

#: Type name -> module class.
MODULES: dict[str, type[nn.Module]] = {}


def register_module(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: make ``cls`` rebuildable by :func:`build_module` under its name.

    The class needs a ``config()`` method; it is rebuilt with ``cls.from_config(config)``
    when it has one, else with ``cls(**config)``.

    Parameters
    ----------
    cls : type
        A ``torch.nn.Module`` subclass.

    Returns
    -------
    cls : type
        The same class.
    """
    MODULES[cls.__name__] = cls
    return cls


def module_config(module: nn.Module) -> dict[str, Any]:
    """``{"type": name, **module.config()}``: what :func:`build_module` needs.

    Parameters
    ----------
    module : torch.nn.Module
        A registered skrec module.

    Returns
    -------
    config : dict
        JSON-serialisable.
    """
    name = getattr(type(module), "_config_type", type(module).__name__)
    if name not in MODULES or not hasattr(module, "config"):
        raise TypeError(f"{type(module).__name__} modules have no config.")
    return {"type": name, **module.config()}


def build_module(config: dict[str, Any]) -> nn.Module:
    """A module with fresh weights and the shapes described by ``config``.

    Parameters
    ----------
    config : dict
        As returned by :func:`module_config`.

    Returns
    -------
    module : torch.nn.Module
        Load the saved ``state_dict`` into it to restore the weights.
    """
    cfg = dict(config)
    name = cfg.pop("type", None)
    cls = MODULES.get(name)
    if cls is None:
        raise ValueError(f"Unknown module type {name!r}; known: {sorted(MODULES)}.")
    from_config = getattr(cls, "from_config", None)
    return from_config(cfg) if from_config is not None else cls(**cfg)
