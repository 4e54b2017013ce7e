"""Devices and precisions: resolution, autocast, and the reduced-precision serving copies."""

from __future__ import annotations

import contextlib
import copy
import resource
import sys
import warnings
import weakref
from typing import Any

import torch

__all__ = [
    "ServingCopies",
    "autocast",
    "cpu_supports_bf16",
    "resolve_device",
    "resolve_precision",
]

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
INFERENCE_PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
_DEVICE_TYPES = ("cpu", "cuda", "mps")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


# --------------------------------------------------------------------------------------------
# Device and precision
# --------------------------------------------------------------------------------------------


def resolve_device(device) -> torch.device:
    """Turn ``"auto"`` (CUDA when available, else CPU) or a device name into a device.

    Parameters
    ----------
    device : str, torch.device or None
        ``"auto"`` (or ``None``), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...

    Returns
    -------
    device : torch.device
        The device to use.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, torch.device):
        dev = device
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(
                f"device must be 'auto', 'cpu', 'cuda' (or 'cuda:N') or 'mps'; got {device!r}."
            ) from None
    if dev.type not in _DEVICE_TYPES:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' (or 'cuda:N') or 'mps'; got {device!r} "
            f"(skrec does not train on {dev.type!r} devices)."
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was requested but CUDA is not available here.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s).")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} was requested but MPS is not available here.")
    return dev


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 matrix kernels (AVX-512 BF16 or AMX).

    Without them, bf16 matmuls on CPU are emulated and much slower than fp32.

    Returns
    -------
    supported : bool
        True when oneDNN reports native bf16 support.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - old or unusual builds
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """Resolve ``precision`` for ``device``; ``"auto"`` picks the fastest safe choice.

    ``"auto"`` means bf16 on GPUs that support it (fp16 on older GPUs), bf16 on CPUs with native
    bf16 kernels, and fp32 elsewhere.

    Parameters
    ----------
    precision : {"fp32", "bf16", "fp16", "auto"}
        The requested precision.
    device : torch.device
        The training or inference device.

    Returns
    -------
    precision : {"fp32", "bf16", "fp16"}
        The precision to use.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}.")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        return "bf16" if cpu_supports_bf16() else "fp32"
    return "fp32"


def warn_if_emulated(precision: str, device: torch.device, stacklevel: int = 3) -> None:
    """Warn when a low precision is requested on a CPU that only emulates it."""
    if device.type != "cpu" or precision == "fp32":
        return
    if precision == "bf16":
        native, isa = cpu_supports_bf16(), "AVX-512 BF16 or AMX"
    else:
        native, isa = _cpu_supports_fp16(), "AVX-512 FP16 or AMX-FP16"
    if not native:
        warnings.warn(
            f"precision={precision!r} is emulated on this CPU (no {isa} instructions) and "
            "typically 5-10x slower than fp32. Use precision='auto' to pick the fastest "
            "precision this machine supports.",
            UserWarning,
            stacklevel=stacklevel,
        )


def _cpu_supports_fp16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - old or unusual builds
        return False


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` on ``device`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def cast_floats(value: Any, dtype: torch.dtype) -> Any:
    """``value`` (a tensor, or a tuple or list of them and ``None``) with floats in ``dtype``."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, tuple | list):
        items = [cast_floats(v, dtype) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


def fp32_parts(module: torch.nn.Module) -> list[torch.nn.Module]:
    """Sub-modules that declare ``inference_fp32``: reduced-precision copies leave them be."""
    return [m for m in module.modules() if getattr(m, "inference_fp32", False)]


def quantize_int8(module: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of the (non-empty) linear layers of a CPU module, in place.

    Uses ``torch.ao.quantization.quantize_dynamic`` (weights quantized per tensor once,
    activations per batch at run time), whose deprecation notice (it moves to torchao) is
    silenced here.
    """
    quantize_dynamic = getattr(getattr(torch.ao, "quantization", None), "quantize_dynamic", None)
    if quantize_dynamic is None:  # pragma: no cover - a torch without it
        raise ValueError("inference_precision='int8' needs torch.ao.quantization.quantize_dynamic,"
                         " which this torch build lacks; use 'bf16' or 'fp32'.")
    kept = {id(m) for part in fp32_parts(module) for m in part.modules()}
    names = {name for name, m in module.named_modules()
             if isinstance(m, torch.nn.Linear) and m.weight.numel() > 0 and id(m) not in kept}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(module.to("cpu"), names, dtype=torch.qint8, inplace=True)


class ServingCopies:
    """The reduced-precision copy of a module that serves inference, cached until the weights
    change.

    :meth:`get` returns a copy of the module cast to bf16 or fp16 (sub-modules that declare
    ``inference_fp32`` keep computing in fp32 and hand back their outputs in the copy's
    type), or with its linear layers dynamically quantized to int8 (CPU only). The copy is
    made at the first call and kept while the module, its parameters and their contents are
    unchanged: a new module, new parameter objects (pruning, a new fit), an in-place update
    of a parameter (training, ``load_state_dict``, an in-place operation under
    ``torch.no_grad()``: torch bumps its version), or an edit through ``.data`` (which torch
    does not version) that changes a sample of each parameter's values (up to
    :data:`SAMPLE` values, evenly spaced: wholesale edits such as ``weight.data.mul_(-1)``
    or ``copy_``) make a new copy. An edit through ``.data`` of a few values between the
    sampled ones is not seen: edit in place under ``torch.no_grad()`` instead.
    """

    #: Values of each parameter whose sum is compared at every call (a cheap guard against
    #: edits through ``.data``).
    SAMPLE = 4096

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._served: torch.nn.Module | None = None

    def get(self, module: torch.nn.Module, device: torch.device,
            precision: str) -> torch.nn.Module:
        """The copy of ``module`` in ``precision`` ("bf16", "fp16" or "int8") on ``device``."""
        params = list(module.parameters())
        sums = self._sample_sums(params)
        if self._key is not None:
            cached_precision, cached_device, refs, versions, cached_sums = self._key
            if (cached_precision == precision and cached_device == device
                    and len(refs) == len(params) + 1 and refs[0]() is module
                    and all(r() is p for r, p in zip(refs[1:], params))
                    and versions == [p._version for p in params] and cached_sums == sums):
                return self._served
        self._key = self._served = None  # free the old copy first
        # Weak references: a module or parameter replaced since (pruning, a new fit) never
        # matches, even if a new object reuses the old one's id. In-place updates bump the
        # versions; the fused optimizer does not, so training drops the cache explicitly.
        key = (precision, device, [weakref.ref(module), *map(weakref.ref, params)],
               [p._version for p in params], sums)
        served = copy.deepcopy(module).eval()
        for p in served.parameters():
            p.grad = None
        if precision == "int8":
            served = quantize_int8(served.float())
        else:
            dtype = DTYPES[precision]
            served = served.to(dtype)
            for part in fp32_parts(served):
                part.float()  # computes in fp32, hands its outputs back in the copy's dtype
                part.register_forward_hook(lambda m, i, out, dtype=dtype: cast_floats(out,
                                                                                    dtype))
        self._key, self._served = key, served
        return served

    @classmethod
    def _sample_sums(cls, params: list[torch.nn.Parameter]) -> list[float]:
        """The sum of up to :attr:`SAMPLE` evenly spaced values of each parameter."""
        with torch.no_grad():
            return [float(p.detach().reshape(-1)[:: max(1, p.numel() // cls.SAMPLE)].sum())
                    if p.numel() else 0.0 for p in params]


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10

