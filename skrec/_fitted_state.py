"""Consistency rules of fitted estimators, checked before :func:`skrec.load` returns one.

A file can be edited and its checksum recomputed, so a loaded estimator is checked like any
other input: each fitted attribute has the type and range that ``fit`` gives it, and the
attributes agree with each other (the catalogue size with the module's item count and the
popularity vector, the feature width with the module's features, ...). An estimator owns
its rules in a ``_check_fitted_state()`` method that raises a ``ValueError`` (or
``TypeError``) naming the attribute; :func:`skrec.load` turns that into a
:class:`~skrec.persistence.ModelFileError`.

This module holds the small checks those methods share (:func:`check_int`,
:func:`check_array`, ...), the rules of the neural estimators (:func:`check_neural_state`),
and the one definition of the feature buffers a neural model builds from its
``item_features`` parameter, which lets :func:`skrec.save` store those features once.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "check_array",
    "check_choice",
    "check_int",
    "check_item_features_state",
    "check_neural_state",
    "check_params",
    "feature_buffers",
    "feature_tails",
    "join_feature_rows",
    "split_feature_rows",
]

#: Precisions a fitted neural estimator resolves to (``precision_``).
_RESOLVED_PRECISIONS = ("fp32", "bf16", "fp16")
#: Device types a fitted neural estimator may hold in ``device_``.
_DEVICE_TYPES = ("cpu", "cuda", "mps")


# --------------------------------------------------------------------------------------------
# Shared checks (raise ValueError/TypeError naming the attribute)
# --------------------------------------------------------------------------------------------


def check_int(est: Any, name: str, *, low: int | None = None, high: int | None = None,
              optional: bool = False) -> int | None:
    """``est.<name>`` as an int in ``[low, high]`` (``None`` if absent and ``optional``)."""
    if not hasattr(est, name):
        if optional:
            return None
        raise ValueError(f"{name} is missing.")
    value = getattr(est, name)
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__} {value!r}.")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ValueError(f"{name} is {value}, outside {bounds}.")
    return value


def check_choice(est: Any, name: str, choices: tuple, *, optional: bool = False) -> Any:
    """``est.<name>``, which must be one of ``choices`` (compared by type and value)."""
    if not hasattr(est, name):
        if optional:
            return None
        raise ValueError(f"{name} is missing.")
    value = getattr(est, name)
    if not any(type(value) is type(c) and value == c for c in choices):
        raise ValueError(f"{name} is {value!r}; expected one of {choices}.")
    return value


def check_array(est: Any, name: str, *, shape: tuple | None = None, kinds: str = "f",
                finite: bool = False, nonnegative: bool = False, optional: bool = False,
                shape_from: str = "") -> np.ndarray | None:
    """``est.<name>`` as a numpy array of one of the dtype ``kinds``, of ``shape`` (which
    the attribute ``shape_from`` implies, named in the message)."""
    if not hasattr(est, name):
        if optional:
            return None
        raise ValueError(f"{name} is missing.")
    value = getattr(est, name)
    if type(value) is not np.ndarray:
        raise TypeError(f"{name} must be a numpy array; got {type(value).__name__}.")
    if value.dtype.kind not in kinds:
        raise TypeError(f"{name} has dtype {value.dtype}; expected a dtype of kind {kinds!r}.")
    if shape is not None and value.shape != tuple(shape):
        source = f" from {shape_from} = {shape[0]}" if shape_from else ""
        raise ValueError(f"{name} has shape {value.shape}; expected {tuple(shape)}{source}.")
    if finite and value.dtype.kind == "f" and not np.isfinite(value).all():
        raise ValueError(f"{name} holds NaN or infinite values.")
    if nonnegative and value.size and value.min() < 0:
        raise ValueError(f"{name} holds negative values.")
    return value


def check_params(est: Any) -> None:
    """The estimator's own parameter validation (``_check_params``), as at ``fit``.

    A fitted estimator's parameters passed it when it was fitted. The device is the one
    parameter whose validity depends on the machine (``"cuda"`` on a machine without CUDA):
    it is checked for its form only, since a model trained on a GPU loads on a CPU.
    """
    check = getattr(est, "_check_params", None)
    if check is None:
        return
    device = getattr(est, "device", None)
    if device is None or isinstance(device, str | torch.device):
        swap = "device" in vars(est)
        if swap:
            _check_device_form(device)
            est.device = "cpu"
        try:
            check()
        finally:
            if swap:
                est.device = device
    else:
        check()


def _check_device_form(device: Any) -> None:
    if device is None or isinstance(device, torch.device):
        return
    if device != "auto":
        try:
            torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device is {device!r}, not a device name.") from None


# --------------------------------------------------------------------------------------------
# Item features: what fit builds from the item_features parameter (stored once by save)
# --------------------------------------------------------------------------------------------


def feature_buffers(item_features: Any, sparse: bool) -> dict[str, torch.Tensor]:
    """The :class:`~skrec.nn.FeatureProjection` buffers that ``fit`` builds from
    ``item_features``: ``{"dense"}``, or ``{"crow", "col", "val"}`` when ``sparse``.

    The same validation (``check_item_features``), the same parts (``feature_parts``) and the
    same dtypes as :meth:`FeatureProjection.set_features`, so that the result is bitwise the
    module's buffers of a model fitted with these features.
    """
    from ._feature_validation import check_item_features, feature_parts

    parts = feature_parts(check_item_features(item_features), sparse)
    if sparse:
        crow, col, val = parts
        return {"crow": torch.as_tensor(crow, dtype=torch.int64),
                "col": torch.as_tensor(col, dtype=torch.int64),
                "val": torch.as_tensor(val, dtype=torch.float32)}
    return {"dense": torch.as_tensor(parts, dtype=torch.float32)}


def split_feature_rows(full: dict[str, torch.Tensor], prefix: dict[str, torch.Tensor]
                       ) -> dict[str, torch.Tensor] | None:
    """The rows of ``full`` after ``prefix`` (rows added by ``add_items``), or ``None`` when
    ``full`` does not start with exactly ``prefix``. CSR row pointers of the tail start at 0.
    """
    if set(full) != set(prefix):
        return None
    if "dense" in full:
        f, p = full["dense"], prefix["dense"]
        if f.dim() != 2 or f.shape[1:] != p.shape[1:] or f.shape[0] < p.shape[0]:
            return None
        if f.dtype != p.dtype or not torch.equal(f[: p.shape[0]].cpu(), p):
            return None
        return {"dense": f[p.shape[0]:]}
    crow, col, val = full["crow"], full["col"], full["val"]
    n, nnz = prefix["crow"].numel() - 1, prefix["col"].numel()
    if crow.numel() < n + 1 or col.numel() < nnz or val.numel() < nnz:
        return None
    for name, length in (("crow", n + 1), ("col", nnz), ("val", nnz)):
        f, p = full[name], prefix[name]
        if f.dtype != p.dtype or not torch.equal(f[:length].cpu(), p):
            return None
    return {"crow": crow[n:] - crow[n], "col": col[nnz:], "val": val[nnz:]}


def join_feature_rows(prefix: dict[str, torch.Tensor], tail: dict[str, torch.Tensor]
                      ) -> dict[str, torch.Tensor]:
    """Inverse of :func:`split_feature_rows` (as :meth:`FeatureProjection.append_rows`)."""
    if "dense" in prefix:
        return {"dense": torch.cat([prefix["dense"], tail["dense"].to(torch.float32)])}
    crow = tail["crow"].to(torch.int64)
    return {
        "crow": torch.cat([prefix["crow"], crow[1:] + prefix["crow"][-1]]),
        "col": torch.cat([prefix["col"], tail["col"].to(torch.int64)]),
        "val": torch.cat([prefix["val"], tail["val"].to(torch.float32)]),
    }


def feature_tails(est: Any) -> dict[int, dict[str, tuple[str, int, dict[str, torch.Tensor]]]]:
    """What :func:`skrec.save` needs to store a neural model's item features once.

    Returns ``{id(est.module_): {submodule: ("item_features", n_rows, tail)}}`` for each
    :class:`~skrec.nn.FeatureProjection` of the module whose buffers start with exactly the
    rows that ``fit`` builds from the ``item_features`` parameter (``tail``: the rows after
    them, added by ``add_items``); empty when there is nothing to share (no features, or
    ``item_features`` changed with ``set_params`` after fit: the module's rows are then
    stored in full).
    """
    from .nn.features import FeatureProjection

    module = getattr(est, "module_", None)
    param = getattr(est, "item_features", None)
    if not isinstance(module, torch.nn.Module) or not (
            isinstance(param, np.ndarray) or sp.issparse(param)):
        return {}
    shared = {}
    for name, sub in module.named_modules():
        if not isinstance(sub, FeatureProjection):
            continue
        names = ("crow", "col", "val") if sub.sparse else ("dense",)
        try:
            prefix = feature_buffers(param, sub.sparse)
        except (TypeError, ValueError):
            continue
        tail = split_feature_rows({n: getattr(sub, n) for n in names}, prefix)
        if tail is not None:
            shared[name] = ("item_features", int(param.shape[0]), tail)
    return {id(module): shared} if shared else {}


# --------------------------------------------------------------------------------------------
# Neural estimators
# --------------------------------------------------------------------------------------------


def _check_features(proj: Any, where: str) -> None:
    """CSR invariants of a sparse FeatureProjection (what its kernels index by)."""
    if not proj.sparse:
        return
    crow, col = proj.crow, proj.col
    if crow.numel() != proj.n_rows + 1 or crow[0] != 0 or crow[-1] != col.numel():
        raise ValueError(f"{where} has CSR row pointers that do not fit its {proj.n_rows} "
                         f"rows and {col.numel()} values.")
    if crow.numel() > 1 and bool((crow[1:] < crow[:-1]).any()):
        raise ValueError(f"{where} has decreasing CSR row pointers.")
    if col.numel() and (int(col.min()) < 0 or int(col.max()) >= proj.n_features):
        raise ValueError(f"{where} has feature indices outside [0, {proj.n_features}).")


def _check_pruning_base(module: torch.nn.Module, where: str) -> None:
    """``_skrec_pruning_base``: unpruned group sizes, never smaller than the current ones."""
    from .pruning import pruning_groups

    base = getattr(module, "_skrec_pruning_base", None)
    if base is None:
        return
    if type(base) is not dict:
        raise TypeError(f"{where}._skrec_pruning_base must be a dict of group sizes.")
    sizes = {g.name: g.size for g in pruning_groups(module)}
    for name, size in base.items():
        if name not in sizes:
            raise ValueError(f"{where}._skrec_pruning_base names a group {name!r} that the "
                             "module does not have.")
        if isinstance(size, bool) or not isinstance(size, int) or not sizes[name] <= size < 2**31:
            raise ValueError(f"{where}._skrec_pruning_base[{name!r}] is {size!r}, not an "
                             f"unpruned size >= the current {sizes[name]}.")


def check_neural_state(est: Any) -> None:
    """The fitted state of a neural estimator fits together (raise a ValueError or TypeError
    naming the attribute otherwise): its parameters, ``module_`` (present, of the
    estimator's module class, its pruning record), ``precision_``, ``device_``, the training
    counters and record, and ``module_params_``. The estimator classes add their own rules
    (``_check_fitted_state``).

    Parameters
    ----------
    est : NeuralEstimator
        A loaded estimator, before it is returned.
    """
    is_fitted = getattr(est, "__sklearn_is_fitted__", None)
    fitted = is_fitted() if is_fitted is not None else hasattr(est, "module_")
    if not fitted:
        for name in ("module_", "precision_", "device_"):
            if hasattr(est, name):
                raise ValueError(f"{name} is set but the estimator is not fitted "
                                 "(n_features_in_ is missing).")
        return
    check_params(est)
    module = getattr(est, "module_", None)
    if module is None:
        raise ValueError("module_ is missing from a fitted estimator.")
    expected = getattr(type(est), "_module_class", torch.nn.Module)
    if not isinstance(module, expected):
        raise TypeError(f"module_ is a {type(module).__name__}; a {type(est).__name__} holds "
                        f"a {expected.__name__}.")
    check_choice(est, "precision_", _RESOLVED_PRECISIONS)
    device = getattr(est, "device_", None)
    if not isinstance(device, torch.device) or device.type not in _DEVICE_TYPES:
        raise TypeError(f"device_ is {device!r}; expected a torch.device of type "
                        f"{_DEVICE_TYPES}.")
    for name in ("n_iter_", "n_steps_"):
        check_int(est, name, low=0, optional=True)
    check_int(est, "batch_size_", low=1, optional=True)
    history = getattr(est, "history_", [])
    if type(history) is not list or not all(type(r) is dict for r in history):
        raise TypeError("history_ must be a list of dicts (one per epoch).")
    for name in ("validation_metric_", "loss_"):
        if hasattr(est, name) and not isinstance(getattr(est, name), str):
            raise TypeError(f"{name} must be a string.")
    built = getattr(est, "module_params_", None)
    if built is not None and (type(built) is not dict
                              or set(built) != set(getattr(est, "_module_params", ()))):
        raise ValueError("module_params_ must be a dict of the parameters the module is "
                         f"built from: {sorted(getattr(est, '_module_params', ()))}.")
    for name, sub in module.named_modules():
        _check_pruning_base(sub, f"module_.{name}" if name else "module_")
    report = getattr(est, "pruning_report_", None)
    if report is not None and type(report) is not dict:
        raise TypeError("pruning_report_ must be a dict.")


def check_item_features_state(est: Any) -> None:
    """A neural recommender's item feature projections fit together: their CSR invariants,
    and ``n_item_features_`` equal to their input width."""
    from .nn.features import FeatureProjection

    for name, proj in est.module_.named_modules():
        if isinstance(proj, FeatureProjection):
            _check_features(proj, f"module_.{name}")
            check_int(est, "n_item_features_", low=proj.n_features, high=proj.n_features)


