"""Devices and precisions: resolution, autocast, and the reduced-precision serving copies."""

from __future__ import annotations

import contextlib
import copy
import functools
import resource
import sys
import time
import warnings
import weakref
from typing import Any

import torch

__all__ = [
    "ServingCopies",
    "autocast",
    "cpu_runs_natively",
    "cpu_supports_bf16",
    "low_precision_factor",
    "resolve_device",
    "resolve_precision",
    "serving_precision",
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


#: CPU instruction-set flags (as Linux names them) that run each precision's matrix products
#: natively; without them oneDNN emulates the type (it may still call it "supported").
_NATIVE_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16", "bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


@functools.cache
def _cpu_flags() -> frozenset[str] | None:
    """The CPU's instruction-set flags that decide low-precision speed, or ``None`` where they
    cannot be read (then :func:`low_precision_factor` measures instead).

    Read from torch's own CPU detection (cpuinfo) on x86, else from ``/proc/cpuinfo``.
    """
    flags: set[str] = set()
    probes = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported",
              "amx_fp16": "_is_amx_fp16_supported"}
    known = False
    for flag, name in probes.items():
        fn = getattr(torch.cpu, name, None)
        if fn is None:
            continue
        try:
            if fn():
                flags.add(flag)
            known = True
        except (RuntimeError, AttributeError):  # pragma: no cover - unusual builds
            pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags.update(line.split(":", 1)[1].split())
                    known = True
                    break
    except OSError:
        pass
    return frozenset(flags) if known else None


@functools.cache
def low_precision_factor(precision: str) -> float:
    """Measured time of a bf16 or fp16 matrix product on this CPU relative to fp32.

    A one-off timed probe, cached for the process: a ``256 x 64 @ 64 x 1682`` product (a
    batch of hidden states scored against a catalogue) under CPU autocast, the best of a few
    repetitions in each precision. Below 1 the precision is faster than fp32 (native
    kernels), above 1 it is emulated.

    Parameters
    ----------
    precision : {"bf16", "fp16"}
        The low precision.

    Returns
    -------
    factor : float
        Seconds in ``precision`` divided by seconds in fp32.
    """
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(256, 64, generator=g), torch.randn(64, 1682, generator=g)

    def best(dtype):
        times = []
        with torch.inference_mode(), contextlib.ExitStack() as stack:
            if dtype is not None:
                stack.enter_context(torch.autocast("cpu", dtype=dtype))
            for _ in range(12):
                t0 = time.perf_counter()
                for _ in range(4):
                    a @ b
                times.append(time.perf_counter() - t0)
        return min(times[2:])

    fp32 = best(None)
    return best(DTYPES[precision]) / max(fp32, 1e-9)


def cpu_runs_natively(precision: str) -> bool:
    """Whether this CPU runs ``precision``'s matrix products fast (natively, not emulated).

    fp32 always; bf16 with AVX-512 BF16 or AMX (x86) or the BF16 extension (Arm); fp16 with
    AVX-512 FP16 or AMX-FP16. Decided from the CPU's exact instruction-set flags; where they
    cannot be read, from a one-off timed probe (:func:`low_precision_factor` below 1).

    Parameters
    ----------
    precision : {"fp32", "bf16", "fp16"}
        The precision.

    Returns
    -------
    native : bool
        True when the precision is not emulated.
    """
    if precision == "fp32":
        return True
    flags = _cpu_flags()
    if flags is None:
        return low_precision_factor(precision) < 1.0
    return any(flag in flags for flag in _NATIVE_FLAGS[precision])


def cpu_supports_bf16() -> bool:
    """Whether this CPU runs bf16 matrix products natively (AVX-512 BF16 or AMX on x86, the
    BF16 extension on Arm).

    Without them, bf16 on CPU is emulated and slower than fp32, even where oneDNN reports
    bf16 as "supported" (an AVX-512 CPU without AVX512_BF16 emulates it). See
    :func:`cpu_runs_natively`.

    Returns
    -------
    supported : bool
        True when bf16 runs natively.
    """
    return cpu_runs_natively("bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """Resolve ``precision`` for ``device``; ``"auto"`` picks the fastest safe choice.

    ``"auto"`` means bf16 on GPUs that support it (fp16 on older GPUs), bf16 on CPUs that run it
    natively (:func:`cpu_supports_bf16`: exact instruction-set flags, not oneDNN's "supported",
    which includes emulation), and fp32 elsewhere: never a precision slower than fp32.

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
    """Warn when a low precision is requested on a CPU that only emulates it, with the
    measured slowdown (:func:`low_precision_factor`)."""
    if device.type != "cpu" or precision == "fp32":
        return
    native = cpu_supports_bf16() if precision == "bf16" else cpu_runs_natively(precision)
    if not native:
        isa = "AVX-512 BF16 or AMX" if precision == "bf16" else "AVX-512 FP16 or AMX-FP16"
        factor = low_precision_factor(precision)
        warnings.warn(
            f"precision={precision!r} is emulated on this CPU (no {isa} instructions): a "
            f"256x64 @ 64x1682 matrix product measured {factor:.1f}x the time of fp32 here. "
            "Use precision='auto' to pick the fastest precision this machine runs.",
            UserWarning,
            stacklevel=stacklevel,
        )


def serving_precision(precision: str, device: torch.device) -> str:
    """The precision a model trained in ``precision`` serves in on ``device`` under
    ``inference_precision="auto"``: the same, unless this CPU would emulate it (a model
    trained on a GPU or a bf16 CPU, served on one without bf16): then fp32."""
    if device.type == "cpu" and not cpu_runs_natively(precision):
        return "fp32"
    return precision


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

