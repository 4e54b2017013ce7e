"""The format's constants, its error, the load limits and budget, and the estimator registry."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from .._registry import SAVEABLE, estimator_class

FORMAT = "skrec-model"
#: Version of the layout that :func:`save` writes. Version 2 stores neural models' item
#: features once and adds bundles; :func:`load` reads versions 1 and 2.
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
#: Largest JSON header written (the safetensors library's limit).
_MAX_HEADER_BYTES = 100_000_000
#: Bytes read (and hashed) at a time.
_CHUNK = 1 << 24
#: Default decoding budget: this many bytes per byte of the file, plus the base.
_DECODED_PER_FILE_BYTE = 16
_DECODED_BASE = 64 << 20

# safetensors dtype code -> numpy dtype (little-endian); BF16 is read as uint16 and viewed.
_DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F64": np.dtype("<f8"),
}
_NP_CODES = {
    np.dtype(np.bool_): "BOOL", np.dtype(np.uint8): "U8", np.dtype(np.int8): "I8",
    np.dtype(np.uint16): "U16", np.dtype(np.int16): "I16", np.dtype(np.float16): "F16",
    np.dtype(np.uint32): "U32", np.dtype(np.int32): "I32", np.dtype(np.float32): "F32",
    np.dtype(np.uint64): "U64", np.dtype(np.int64): "I64", np.dtype(np.float64): "F64",
}
_TORCH_DTYPES = {
    torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.uint16: "U16",
    torch.int16: "I16", torch.float16: "F16", torch.bfloat16: "BF16", torch.uint32: "U32",
    torch.int32: "I32", torch.float32: "F32", torch.uint64: "U64", torch.int64: "I64",
    torch.float64: "F64",
}
_INDEX_CODES = ("I32", "I64")


class ModelFileError(ValueError):
    """A file that :func:`load` refuses: not a skrec model, another format version, truncated,
    modified after it was written (checksum), larger than its :class:`LoadLimits`, or holding
    a value or an estimator that does not pass validation. The message names the field.
    """


@dataclasses.dataclass(frozen=True)
class LoadLimits:
    """What :func:`load` may read and allocate for one file.

    Loading refuses, with a :class:`ModelFileError` naming the limit, a file that would pass
    one of these. The defaults fit every honest model this machine can hold; raise a limit for
    a file you trust: ``skrec.load(path, limits=LoadLimits(max_file_bytes=64 * 2**30))``.

    Parameters
    ----------
    max_file_bytes : int, default=16 GiB
        Largest file read. Its tensor bytes are read into memory once (the arrays and the
        weights are views of them, or copied into the modules).
    max_header_bytes : int, default=100_000_000
        Largest JSON header (the safetensors limit).
    max_decoded_bytes : int or None, default=None
        Memory that decoding may allocate beyond the file's own bytes: parsed JSON, decoded
        strings, sparse-matrix conversions, torch modules, item features rebuilt from their
        parameter. ``None``: 16 x the file's size + 64 MiB.
    max_depth : int, default=32
        Deepest nesting of stored values (lists, dicts, tagged values).
    """

    max_file_bytes: int = 16 << 30
    max_header_bytes: int = _MAX_HEADER_BYTES
    max_decoded_bytes: int | None = None
    max_depth: int = 32

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None and field.name == "max_decoded_bytes":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LoadLimits.{field.name} must be a positive int; got "
                                 f"{value!r}.")


class _Budget:
    """Bytes that decoding may still allocate (:attr:`LoadLimits.max_decoded_bytes`)."""

    def __init__(self, limits: LoadLimits) -> None:
        self.limits = limits
        self.file_bytes = 0
        self.spent = 0

    @property
    def limit(self) -> int:
        if self.limits.max_decoded_bytes is not None:
            return self.limits.max_decoded_bytes
        return _DECODED_PER_FILE_BYTE * self.file_bytes + _DECODED_BASE

    def charge(self, nbytes: int, where: str) -> None:
        self.spent += int(nbytes)
        if self.spent > self.limit:
            raise ModelFileError(
                f"{where}: decoding this file would allocate more than {self.limit:,} bytes "
                "(LoadLimits.max_decoded_bytes; by default 16 x the file's size + 64 MiB): its "
                "declared sizes do not fit the bytes it holds. If you trust the file, raise the "
                "limit: skrec.load(path, limits=skrec.persistence.LoadLimits("
                "max_decoded_bytes=...))."
            )


def _fail(where: str, message: str) -> ModelFileError:
    return ModelFileError(f"{where}: {message}" if where else message)


def _text(value: Any, where: str) -> str:
    """``value`` if it is a str that encodes to UTF-8 (no lone surrogate)."""
    if type(value) is not str:
        raise _fail(where, f"expected a string; got {type(value).__name__}.")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _fail(where, "holds a lone surrogate, not text.") from None
    return value


def _int(value: Any, where: str, low: int | None = 0, high: int | None = None) -> int:
    if type(value) is not int:
        raise _fail(where, f"expected an integer; got {type(value).__name__} {value!r:.40}.")
    if (low is not None and value < low) or (high is not None and value > high):
        raise _fail(where, f"{value} is outside [{low}, {high if high is not None else 'inf'}].")
    return value


def _shape(value: Any, where: str, ndim: int | None = None) -> tuple[int, ...]:
    if type(value) is not list or len(value) > 32 or (ndim is not None and len(value) != ndim):
        raise _fail(where, f"expected a shape (a list of {ndim or 'at most 32'} integers).")
    return tuple(_int(v, f"{where}[{i}]", 0, 2**62) for i, v in enumerate(value))


def _fields(value: Any, required: tuple[str, ...], where: str,
            optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """``value`` as a dict with exactly the keys ``required`` (and some of ``optional``)."""
    if type(value) is not dict:
        raise _fail(where, f"expected an object with keys {list(required)}.")
    missing = [k for k in required if k not in value]
    extra = [k for k in value if k not in required and k not in optional]
    if missing or extra:
        raise _fail(where, f"unexpected keys (missing {missing}, unexpected {extra[:5]}).")
    return value


# --------------------------------------------------------------------------------------------
# The estimator registry (a whitelist: nothing else is ever built from a file)
# --------------------------------------------------------------------------------------------

#: skrec's own estimators: registry name -> the module that defines them (imported on load).
_BUILTIN = SAVEABLE
_REGISTERED: dict[str, type] = {}


def register_estimator(cls: type | None = None, *, name: str | None = None):
    """Allow :func:`save` and :func:`load` for an estimator class of your own.

    Use it as a decorator (``@register_estimator``) or call it. Only registered classes are
    ever built by :func:`load`; skrec's estimators (and
    :class:`~skrec.preprocessing.InteractionEncoder`) are registered already.

    Parameters
    ----------
    cls : type
        A scikit-learn style estimator class: ``__init__`` stores the parameters returned by
        ``get_params(deep=False)``, and its fitted state is its public instance attributes.
    name : str, default=None
        Name stored in the files; ``"module.QualName"`` of the class when ``None``.

    Returns
    -------
    cls : type
        The class (so that it can decorate).
    """

    def decorate(klass: type) -> type:
        key = name or f"{klass.__module__}.{klass.__qualname__}"
        if key in _BUILTIN:
            raise ValueError(f"{key!r} is the name of a skrec estimator; choose another name.")
        _REGISTERED[key] = klass
        return klass

    return decorate if cls is None else decorate(cls)


def registered_estimators() -> list[str]:
    """Names of the estimator classes that :func:`save` and :func:`load` accept.

    Returns
    -------
    names : list of str
        Sorted.
    """
    return sorted({*_BUILTIN, *_REGISTERED})


def _name_of(cls: type) -> str:
    if cls.__name__ in _BUILTIN and estimator_class(cls.__name__) is cls:
        return cls.__name__
    for key, klass in _REGISTERED.items():
        if klass is cls:
            return key
    raise TypeError(
        f"{cls.__module__}.{cls.__qualname__} is not a registered estimator, so it cannot be "
        f"saved with skrec.save (known: {registered_estimators()}). Register your own classes "
        "with skrec.persistence.register_estimator."
    )


def _class_of(name: Any) -> type:
    if isinstance(name, str):
        if name in _REGISTERED:
            return _REGISTERED[name]
        if name in _BUILTIN:
            return estimator_class(name)
    raise ModelFileError(
        f"the file holds an estimator of class {name!r}, which is not registered here "
        f"(known: {registered_estimators()}); refusing to build it. Register the class with "
        "skrec.persistence.register_estimator if you trust it."
    )
