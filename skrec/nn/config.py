"""Module configs: rebuild a skrec module, pruned shapes included, from a small dict.

Every skrec module has a ``config()`` method returning JSON-serialisable constructor
arguments that reproduce its *current* shapes (per-block head counts and widths after
pruning, for example), and is registered here by name. :func:`module_config` adds the type
name; :func:`build_module` builds a module with fresh weights from such a dict, ready for
``load_state_dict``. This is what safe persistence stores next to the tensors.
:func:`config_state_shapes` tells which tensors (names, shapes, dtypes) a config implies
without allocating them, under a budget, so that a config read from a file can be checked
against the tensors stored with it before anything is built.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module_hooks

__all__ = [
    "MODULES",
    "ConfigBudgetError",
    "build_module",
    "config_state_shapes",
    "module_config",
    "register_module",
]

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


class ConfigBudgetError(ValueError):
    """A config describes a module larger than the budget :func:`config_state_shapes` was
    given (more tensors, submodules or elements, or a larger integer)."""


@contextmanager
def _registration_budget(max_tensors: int, max_elements: int):
    """Count the parameters, buffers and submodules registered by this thread; raise
    :class:`ConfigBudgetError` as soon as one count passes its budget."""
    owner = threading.get_ident()
    counts = {"tensors": 0, "elements": 0, "modules": 0}
    max_modules = 2 * max_tensors + 64

    def tensor(module, name, value):
        if value is None or threading.get_ident() != owner:
            return None
        counts["tensors"] += 1
        counts["elements"] += value.numel()
        if counts["tensors"] > max_tensors or counts["elements"] > max_elements:
            raise ConfigBudgetError(
                f"the config describes more than {max_tensors} tensors or {max_elements} "
                "elements"
            )
        return None

    def submodule(module, name, value):
        if value is None or threading.get_ident() != owner:
            return None
        counts["modules"] += 1
        if counts["modules"] > max_modules:
            raise ConfigBudgetError(f"the config describes more than {max_modules} submodules")
        return None

    handles = [
        _module_hooks.register_module_parameter_registration_hook(tensor),
        _module_hooks.register_module_buffer_registration_hook(tensor),
        _module_hooks.register_module_module_registration_hook(submodule),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _check_config_values(value: Any, max_int: int, max_len: int, where: str = "config") -> None:
    """Plain JSON data (dicts with str keys, lists, str, bool, None, finite floats), integers
    in ``[-max_int, max_int]``, lists of at most ``max_len`` items."""
    stack = [(value, where)]
    while stack:
        item, path = stack.pop()
        if item is None or isinstance(item, bool | str):
            continue
        if type(item) is int:
            if abs(item) > max_int:
                raise ConfigBudgetError(f"{path} is {item}, larger than the tensors stored for "
                                        f"this module allow (at most {max_int})")
        elif type(item) is float:
            if item != item or item in (float("inf"), float("-inf")):
                raise ValueError(f"{path} is {item}, not a finite number")
        elif type(item) in (list, tuple):
            if len(item) > max_len:
                raise ConfigBudgetError(f"{path} has {len(item)} entries, more than the "
                                        f"{max_len} tensors stored for this module")
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))
        elif type(item) is dict:
            for k, v in item.items():
                if not isinstance(k, str):
                    raise ValueError(f"{path} has a key {k!r} that is not a string")
                stack.append((v, f"{path}.{k}"))
        else:
            raise ValueError(f"{path} holds a {type(item).__name__}, not plain data")


def config_state_shapes(config: dict[str, Any], *, max_tensors: int,
                        max_elements: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The ``state_dict`` that ``build_module(config)`` would have, without allocating it.

    The module is built on PyTorch's ``meta`` device (shapes and dtypes, no memory) while
    every registration of a parameter, buffer or submodule is counted: the build stops as
    soon as it passes the budget, so that a config that describes a huge model costs neither
    memory nor time. Integers in the config are bounded beforehand (by ``max_elements`` plus
    2**20: a size larger than every stored tensor together cannot be honest), so that no
    constructor loops or allocates lists by them either.

    Parameters
    ----------
    config : dict
        As returned by :func:`module_config`.
    max_tensors : int
        Most parameters and buffers the module may register (e.g. the number of tensors
        stored for it).
    max_elements : int
        Most elements all those tensors may hold together.

    Returns
    -------
    shapes : dict
        ``state_dict`` key -> ``(shape, dtype)``.

    Raises
    ------
    ConfigBudgetError
        If the config describes more than the budget.
    ValueError
        If the config is not plain data or names no registered module, or its module cannot
        be built from it (the constructor's own error, as a ValueError).
    """
    if not isinstance(config, dict):
        raise ValueError(f"a module config must be a dict; got {type(config).__name__}.")
    _check_config_values(config, max_int=max_elements + 2**20, max_len=max_tensors + 16)
    try:
        with _registration_budget(max_tensors, max_elements), torch.device("meta"):
            skeleton = build_module(config)
    except ConfigBudgetError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError,
            OverflowError, ZeroDivisionError, NotImplementedError) as exc:
        raise ValueError(f"a {config.get('type')!r} module cannot be built from its config: "
                         f"{type(exc).__name__}: {exc}") from None
    return {name: (tuple(t.shape), t.dtype) for name, t in skeleton.state_dict().items()}
