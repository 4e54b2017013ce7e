"""Safe persistence: save fitted estimators as JSON and tensors, load them without running code.

:func:`save` writes one file in the `safetensors <https://huggingface.co/docs/safetensors>`_
layout: an 8-byte header length, a JSON header, and the raw little-endian bytes of every
array. Everything that is not an array (the hyper-parameters, the fitted metadata such as
``history_`` or ``pruning_report_``, the structure of each torch module from
:func:`skrec.nn.module_config`) is JSON in the header's ``__metadata__``. One file holds one
estimator, or a *bundle*: a dict of named estimators (``{"encoder": enc, "model": model}``)
that :func:`load` returns as the same dict. The format is versioned (:data:`FORMAT_VERSION`)
and checksummed (a SHA-256 digest of the JSON metadata, the tensor index and the tensor
bytes), so a file of another format version, a truncated file, or a file modified after it
was written gets a :class:`ModelFileError` that says which.

**A checksum is not a signature**: whoever can write a file can recompute it. What makes an
untrusted file harmless is the loader, which treats every byte of the file as hostile input:

* **No code runs.** :func:`load` parses JSON and views the tensor bytes with
  ``numpy.frombuffer``: no pickle, no ``eval``, no import of a name found in the file.
  Estimator classes come from a registry (skrec's estimators, and classes registered with
  :func:`register_estimator`), torch modules from the registry of :mod:`skrec.nn.config`.
* **Only regular files are opened** (never a FIFO, a device or a directory, and without
  blocking on one), binary file objects are read in bounded chunks, and a text-mode file
  object is a ``TypeError``.
* **Every declared size is checked against the bytes present before anything is
  allocated**: the header against the file's size, each tensor's shape and dtype against its
  byte range (the ranges tile the data section exactly), each array's declared shape
  against the tensors that hold it (a sparse matrix's row pointers, a string array's
  offsets), and each module config against the tensors stored for it: the config is first
  built on PyTorch's ``meta`` device under a budget (:func:`skrec.nn.config.config_state_shapes`),
  and its implied shapes must equal the stored ones before the real module is built.
* **Memory and time are bounded** by :class:`LoadLimits` (overridable per call): the file's
  size, the header's size, the nesting depth of values, and the memory that decoding may
  allocate beyond the file's own bytes (JSON objects, strings, sparse conversions, module
  weights), by default 16 x the file's size + 64 MiB. Every tensor of a file is referenced
  exactly once, so one stored array cannot be decoded many times.
* **Every value is validated against its schema**: exact JSON types (no NaN or infinity
  constants, no lone surrogates, integers in the range of their dtype), exact keys of every
  tagged value, the invariants of a Mersenne-Twister state (624 words, ``0 <= pos <= 624``,
  ``has_gauss`` in {0, 1}, a finite cached Gaussian), sorted row pointers and in-range
  indices of sparse matrices, version numbers compared by type and value.
* **A loaded estimator is checked for consistency** before it is returned: its own
  ``_check_fitted_state()`` (the catalogue size against the module's item count and the
  popularity vector, ``precision_`` and ``device_``, ``module_`` present when fitted, the
  feature width, the pruning record, ...). See :mod:`skrec._fitted_state`.

Anything wrong is a :class:`ModelFileError` whose message names the field.

What is stored, generically (a new estimator attribute or a new module needs no change
here): the estimator's ``get_params(deep=False)`` and every public instance attribute that is
not a parameter (the fitted attributes, trailing underscore by convention). Values may be
``None``, bools, ints, floats (NaN and infinities included), strings, lists, tuples, dicts,
numpy arrays (numeric, bool, datetime, unicode strings, or objects holding such scalars),
numpy scalars, scipy sparse matrices, torch tensors, devices and dtypes,
``numpy.random.RandomState`` instances (their exact state) and registered torch modules
(config, ``state_dict`` and the module's ``_skrec_*`` attributes, such as the unpruned sizes
that pruning records). Anything else, a callable for example, gets a TypeError that names it.
Attributes with a leading underscore are private caches and are not stored. The item
features of a neural model are stored once: the ``item_features`` parameter is stored, and
the module's copy of them (the rows its ``FeatureProjection`` built at fit) is rebuilt from
it at load; only the rows that ``add_items`` appended are stored with the module.

A path is written atomically and safely: a temporary file created exclusively
(``O_CREAT | O_EXCL``, an unpredictable name in the target folder) is filled, flushed and
renamed over the target, so a planted symbolic link is never followed and the model file is
always a regular file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
import math
import os
import re
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

__all__ = [
    "FORMAT_VERSION",
    "LoadLimits",
    "ModelFileError",
    "load",
    "register_estimator",
    "registered_estimators",
    "save",
]

#: Name of the format, stored in every file.
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
_BUILTIN = {
    "PopularityRecommender": "skrec.baselines",
    "EASERecommender": "skrec.baselines",
    "MarkovChainRecommender": "skrec.baselines",
    "SeqRecommender": "skrec.sequential",
    "AERecommender": "skrec.autoencoder",
    "InteractionEncoder": "skrec.preprocessing",
}
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


def _builtin_class(name: str) -> type:
    import importlib

    return getattr(importlib.import_module(_BUILTIN[name]), name)


def _name_of(cls: type) -> str:
    if cls.__name__ in _BUILTIN and _builtin_class(cls.__name__) is cls:
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
            return _builtin_class(name)
    raise ModelFileError(
        f"the file holds an estimator of class {name!r}, which is not registered here "
        f"(known: {registered_estimators()}); refusing to build it. Register the class with "
        "skrec.persistence.register_estimator if you trust it."
    )


# --------------------------------------------------------------------------------------------
# Values -> JSON + tensors
# --------------------------------------------------------------------------------------------


def _check_save_text(value: str, where: str) -> str:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"cannot save {where}: its string holds a lone surrogate, which "
                             "is not text (it would not load).") from None
    return value


class _Writer:
    """Turns Python values into tagged JSON, collecting the arrays into named tensors."""

    def __init__(self) -> None:
        self.arrays: dict[str, tuple[str, np.ndarray]] = {}  # key -> (dtype code, bytes view)
        #: Prefix of the tensor names (the entry's name in a bundle).
        self.prefix = ""
        #: id(module) -> {submodule: (parameter name, rows, tail buffers)}: item features
        #: rebuilt at load from the estimator's parameter (see _fitted_state.feature_tails).
        self.derived: dict[int, dict[str, Any]] = {}

    # -- arrays
    def _key(self, where: str) -> str:
        base = self.prefix + where
        key, n = base, 1
        while key in self.arrays:
            n += 1
            key = f"{base}#{n}"
        return key

    def add_numpy(self, arr: np.ndarray, where: str) -> str:
        code = _NP_CODES.get(arr.dtype.newbyteorder("="))
        if code is None:
            raise TypeError(f"cannot save {where}: arrays of dtype {arr.dtype} are not supported.")
        data = np.ascontiguousarray(arr, dtype=_DTYPES[code])
        key = self._key(where)
        self.arrays[key] = (code, data)
        return key

    def add_tensor(self, t: torch.Tensor, where: str) -> str:
        code = _TORCH_DTYPES.get(t.dtype)
        if code is None:
            raise TypeError(f"cannot save {where}: tensors of dtype {t.dtype} are not supported.")
        if t.layout != torch.strided:
            raise TypeError(f"cannot save {where}: only dense tensors are supported.")
        t = t.detach().to("cpu").contiguous()
        flat = t.reshape(-1)
        raw = flat.view(torch.uint16) if code == "BF16" else flat
        data = raw.numpy().reshape(tuple(t.shape)).astype(_DTYPES[code], copy=False)
        key = self._key(where)
        self.arrays[key] = (code, data)
        return key

    # -- values
    def encode(self, value: Any, where: str) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return _check_save_text(value, where)
        if type(value) is int:
            return value
        if type(value) is float:
            return value if math.isfinite(value) else {"$float": repr(value)}
        if isinstance(value, np.generic):
            return self._np_scalar(value, where)
        if isinstance(value, list):
            return [self.encode(v, f"{where}.{i}") for i, v in enumerate(value)]
        if type(value) is tuple:
            return {"$tuple": [self.encode(v, f"{where}.{i}") for i, v in enumerate(value)]}
        if type(value) is dict:
            return self._dict(value, where)
        if isinstance(value, np.ndarray):
            return self._ndarray(value, where)
        if sp.issparse(value):
            return self._sparse(value, where)
        if isinstance(value, nn.Module):
            return self._module(value, where)
        if isinstance(value, torch.Tensor):
            if isinstance(value, nn.Parameter):
                return {"$parameter": self.add_tensor(value, where),
                        "requires_grad": value.requires_grad}
            return {"$tensor": self.add_tensor(value, where)}
        if isinstance(value, torch.device):
            return {"$device": str(value)}
        if isinstance(value, torch.dtype):
            return {"$torch_dtype": str(value).removeprefix("torch.")}
        if isinstance(value, np.dtype):
            return {"$numpy_dtype": self._dtype_str(value, where)}
        if type(value) is np.random.RandomState:
            name, keys, pos, has_gauss, cached = value.get_state(legacy=True)
            return {"$random_state": {
                "bit_generator": name, "key": {"$ndarray": self.add_numpy(keys, where)},
                "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached),
            }}
        if callable(value):
            raise TypeError(
                f"cannot save {where}: it is a callable ({type(value).__name__}). A skrec file "
                "holds data, never code; set it to a value that names the behaviour (a string, "
                "a number) or None before saving."
            )
        raise TypeError(
            f"cannot save {where}: values of type {type(value).__module__}."
            f"{type(value).__qualname__} are not supported (see skrec.persistence)."
        )

    @staticmethod
    def _dtype_str(dtype: np.dtype, where: str) -> str:
        if dtype.kind not in "biufcMmUSO" or dtype.fields is not None or dtype.subdtype:
            raise TypeError(f"cannot save {where}: numpy dtype {dtype} is not supported.")
        return dtype.str

    def _np_scalar(self, value: np.generic, where: str) -> Any:
        kind = value.dtype.kind
        if kind not in "biuf" or value.dtype.itemsize > 8:
            raise TypeError(f"cannot save {where}: numpy scalars of dtype {value.dtype} are not "
                            "supported.")
        return {"$numpy_scalar": value.dtype.str, "value": self.encode(value.item(), where)}

    def _dict(self, value: dict, where: str) -> Any:
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {_check_save_text(k, where): self.encode(v, f"{where}.{k}")
                    for k, v in value.items()}
        return {"$dict": [[self.encode(k, f"{where} (a key)"), self.encode(v, f"{where}.{k}")]
                          for k, v in value.items()]}

    def _ndarray(self, arr: np.ndarray, where: str) -> Any:
        kind = arr.dtype.kind
        if kind in "biuf":
            return {"$ndarray": self.add_numpy(arr, where)}
        if kind in "Mm":
            view = self.add_numpy(arr.view(np.int64), where)
            return {"$ndarray": view, "view": self._dtype_str(arr.dtype, where)}
        if kind == "U":  # UTF-8 bytes and offsets: no JSON list of a million strings
            flat = arr.reshape(-1).tolist()
            try:
                encoded = [s.encode("utf-8") for s in flat]
            except UnicodeEncodeError:
                raise ValueError(f"cannot save {where}: a string holds a lone surrogate, "
                                 "which is not text (it would not load).") from None
            offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
            np.cumsum([len(b) for b in encoded], out=offsets[1:])
            data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
            return {"$strings": {
                "data": self.add_numpy(data, f"{where}.utf8"),
                "offsets": self.add_numpy(offsets, f"{where}.offsets"),
                "shape": list(arr.shape), "dtype": arr.dtype.str,
            }}
        if kind == "O":
            return {"$object_array": {
                "shape": list(arr.shape),
                "values": [self.encode(v, f"{where}[{i}]")
                           for i, v in enumerate(arr.reshape(-1).tolist())],
            }}
        raise TypeError(f"cannot save {where}: arrays of dtype {arr.dtype} are not supported.")

    def _sparse(self, value, where: str) -> Any:
        fmt = value.format
        stored = value if fmt in ("csr", "csc", "coo") else value.tocsr()
        out = {"format": fmt, "shape": [int(n) for n in value.shape],
               "array": not isinstance(value, sp.spmatrix)}
        if fmt == "bsr":
            out["blocksize"] = [int(n) for n in value.blocksize]
        if stored.format == "coo":
            out["row"] = {"$ndarray": self.add_numpy(np.asarray(stored.row), f"{where}.row")}
            out["col"] = {"$ndarray": self.add_numpy(np.asarray(stored.col), f"{where}.col")}
        else:
            out["indices"] = {"$ndarray": self.add_numpy(stored.indices, f"{where}.indices")}
            out["indptr"] = {"$ndarray": self.add_numpy(stored.indptr, f"{where}.indptr")}
        out["stored"] = stored.format
        data = np.asarray(stored.data)
        if data.dtype.kind not in "biuf":
            raise TypeError(f"cannot save {where}: sparse matrices of dtype {data.dtype} are "
                            "not supported.")
        out["data"] = self._ndarray(data, f"{where}.data")
        return {"$sparse": out}

    def _module(self, module: nn.Module, where: str) -> Any:
        from .nn.config import module_config

        try:
            config = module_config(module)
        except TypeError as exc:
            raise TypeError(
                f"cannot save {where}: {exc} Only modules registered with "
                "skrec.nn.register_module (and a config() method) can be saved."
            ) from None
        derived = self.derived.get(id(module), {})
        state = {}
        for name, t in module.state_dict().items():
            sub, _, buffer = name.rpartition(".")
            if sub in derived and buffer in derived[sub][2]:
                t = derived[sub][2][buffer]  # the rows after those rebuilt from the parameter
            state[name] = self.add_tensor(t, f"{where}.{name}")
        extras = {}
        for sub_name, sub in module.named_modules():
            attrs = {k: v for k, v in vars(sub).items() if k.startswith("_skrec_")}
            if attrs:
                extras[sub_name] = self.encode(attrs, f"{where}.{sub_name or '(module)'}")
        out = {
            "config": self.encode(config, f"{where} (config)"),
            "state": state,
            "training": bool(module.training),
            "attributes": extras,
        }
        if derived:
            out["derived"] = {sub: {"param": param, "rows": rows}
                              for sub, (param, rows, _) in derived.items()}
        return {"$module": out}


# --------------------------------------------------------------------------------------------
# JSON + tensors -> values (every value validated, every allocation charged to the budget)
# --------------------------------------------------------------------------------------------

_SCALAR_DTYPE = re.compile(r"[<>|=]?(b1|[iu][1248]|f[248])")
_TIME_DTYPE = re.compile(r"[<>=|]?[Mm]8(\[[0-9]{0,6}[a-zA-Z]{1,2}\])?")
_STR_DTYPE = re.compile(r"[<>=|]?U([0-9]{1,10})")
_NUMPY_DTYPE = re.compile(r"[<>=|]?[biufcMmUSO][0-9]{0,8}(\[[0-9]{0,6}[a-zA-Z]{1,2}\])?")
_DEVICE = re.compile(r"(cpu|cuda|mps|xpu)(:[0-9]{1,4})?")
_SPARSE_FORMATS = ("csr", "csc", "coo", "bsr", "dia", "dok", "lil")
_MAX_NUMPY_ITEMSIZE = 1 << 20
#: Mersenne-Twister state size (numpy's legacy RandomState).
_MT_WORDS = 624

#: tag -> (keys required next to the tag, keys allowed next to it)
_TAGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "$float": ((), ()), "$tuple": ((), ()), "$dict": ((), ()),
    "$numpy_scalar": (("value",), ()), "$ndarray": ((), ("view",)), "$strings": ((), ()),
    "$object_array": ((), ()), "$sparse": ((), ()), "$tensor": ((), ()),
    "$parameter": (("requires_grad",), ()), "$device": ((), ()), "$torch_dtype": ((), ()),
    "$numpy_dtype": ((), ()), "$random_state": ((), ()), "$module": ((), ()),
}


def _torch_dtypes() -> dict[str, torch.dtype]:
    # vars(torch): its own namespace only (no lazy submodule import through __getattr__)
    return {k: v for k, v in vars(torch).items()
            if isinstance(v, torch.dtype) and not k.startswith("_")}


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        return tuple(_hashable(k) for k in key)
    return key


def _kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    return "float" if dtype.is_floating_point or dtype.is_complex else "int"


class _Reader:
    """Rebuilds the values that :class:`_Writer` encoded, from the JSON and the tensors.

    Each tensor of the file is consumed once; each decoded allocation is charged to the
    budget before it is made; nesting deeper than ``max_depth`` is refused.
    """

    def __init__(self, tensors: dict[str, tuple[str, np.ndarray]], budget: _Budget,
                 max_depth: int, version: int) -> None:
        self.tensors = tensors
        self.used: set[str] = set()
        self.budget = budget
        self.max_depth = max_depth
        self.version = version
        #: The decoded parameters of the estimator being read (item features of modules).
        self.params: dict[str, Any] = {}

    # -- tensors
    def take(self, key: Any, where: str) -> tuple[str, np.ndarray]:
        if type(key) is not str or key not in self.tensors:
            raise _fail(where, f"refers to a tensor {key!r:.80} that the file lacks.")
        if key in self.used:
            raise _fail(where, f"refers to the tensor {key!r} a second time (each stored tensor "
                               "is read once).")
        self.used.add(key)
        return self.tensors[key]

    def tensor(self, key: Any, where: str) -> torch.Tensor:
        code, arr = self.take(key, where)
        t = torch.from_numpy(arr)
        return t.view(torch.bfloat16) if code == "BF16" else t

    def check_all_used(self) -> None:
        unused = sorted(set(self.tensors) - self.used)
        if unused:
            raise ModelFileError(f"the file holds tensors that nothing in it refers to: "
                                 f"{unused[:5]} (modified?).")

    # -- values
    def decode(self, value: Any, where: str, depth: int) -> Any:
        if depth > self.max_depth:
            raise _fail(where, f"values nested deeper than {self.max_depth} levels "
                               "(LoadLimits.max_depth).")
        kind = type(value)
        if value is None or kind is bool or kind is int or kind is float:
            return value
        if kind is str:
            return _text(value, where)
        if kind is list:
            self.budget.charge(64 + 8 * len(value), where)
            return [self.decode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        if kind is not dict:  # pragma: no cover - json.loads makes nothing else
            raise _fail(where, f"unexpected value of type {kind.__name__}.")
        tags = [k for k in value if k.startswith("$")]
        if not tags:
            self.budget.charge(64 + 104 * len(value), where)
            return {_text(k, where): self.decode(v, f"{where}.{k}", depth + 1)
                    for k, v in value.items()}
        tag = tags[0]
        if tag not in _TAGS:
            raise _fail(where, f"unknown value type {tag!r:.40} in the file (written by a newer "
                               "skrec?).")
        required, optional = _TAGS[tag]
        extra = [k for k in value if k != tag and k not in required and k not in optional]
        if len(tags) > 1 or extra or any(k not in value for k in required):
            raise _fail(where, f"a {tag} value with unexpected keys {sorted(value)[:6]}.")
        try:
            return getattr(self, "_" + tag[1:])(value[tag], value, where, depth)
        except ModelFileError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError,
                OverflowError) as exc:
            raise _fail(where, f"invalid {tag} value ({type(exc).__name__}: {exc}).") from None

    def _items(self, body: Any, where: str, depth: int) -> list:
        if type(body) is not list:
            raise _fail(where, "expected a list.")
        self.budget.charge(64 + 8 * len(body), where)
        return [self.decode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(body)]

    def _float(self, body, value, where, depth):
        if type(body) is not str or body not in ("nan", "inf", "-inf"):
            raise _fail(where, f"{body!r:.40} is not a non-finite float.")
        return float(body)

    def _tuple(self, body, value, where, depth):
        return tuple(self._items(body, where, depth))

    def _dict(self, body, value, where, depth):
        if type(body) is not list:
            raise _fail(where, "expected a list of [key, value] pairs.")
        self.budget.charge(64 + 104 * len(body), where)
        out = {}
        for i, pair in enumerate(body):
            if type(pair) is not list or len(pair) != 2:
                raise _fail(f"{where}[{i}]", "expected a [key, value] pair.")
            key = _hashable(self.decode(pair[0], f"{where} (key {i})", depth + 1))
            try:
                hash(key)
            except TypeError:
                raise _fail(f"{where} (key {i})", "is not hashable.") from None
            out[key] = self.decode(pair[1], f"{where}[{i}]", depth + 1)
        return out

    def _numpy_scalar(self, body, value, where, depth):
        if type(body) is not str or not _SCALAR_DTYPE.fullmatch(body):
            raise _fail(where, f"numpy scalars of dtype {body!r:.40} are not supported.")
        dtype = np.dtype(body)
        v = self.decode(value["value"], f"{where}.value", depth + 1)
        if dtype.kind == "b":
            if type(v) is not bool:
                raise _fail(where, f"a bool scalar holds {v!r:.40}.")
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            _int(v, f"{where}.value", int(info.min), int(info.max))
        else:
            if type(v) not in (int, float):
                raise _fail(where, f"a float scalar holds {type(v).__name__}.")
            try:
                v = float(v)
            except OverflowError:
                raise _fail(where, "the value does not fit a float.") from None
            if math.isfinite(v) and abs(v) > float(np.finfo(dtype).max):
                raise _fail(where, f"{v} does not fit {dtype}.")
        return dtype.type(v)

    def _ndarray(self, body, value, where, depth):
        code, arr = self.take(body, where)
        if code == "BF16":
            raise _fail(where, "a numpy array cannot be bfloat16.")
        if "view" not in value:
            return arr
        view = value["view"]
        if type(view) is not str or not _TIME_DTYPE.fullmatch(view) or code != "I64":
            raise _fail(where, f"cannot view the array as {view!r:.40}.")
        return arr.view(np.dtype(view))

    def _strings(self, body, value, where, depth):
        body = _fields(body, ("data", "offsets", "shape", "dtype"), where)
        match = _STR_DTYPE.fullmatch(body["dtype"]) if type(body["dtype"]) is str else None
        if match is None:
            raise _fail(f"{where}.dtype", f"{body['dtype']!r:.40} is not a unicode dtype.")
        width = int(match.group(1))
        shape = _shape(body["shape"], f"{where}.shape")
        count = math.prod(shape)
        dcode, data = self.take(body["data"], f"{where}.data")
        ocode, offsets = self.take(body["offsets"], f"{where}.offsets")
        if dcode != "U8" or data.ndim != 1 or ocode != "I64" or offsets.shape != (count + 1,):
            raise _fail(where, f"its bytes and offsets do not fit its shape {list(shape)}.")
        # the unicode array takes 4 bytes per character of the dtype's width, whatever the text
        self.budget.charge(count * (4 * max(width, 1) + 96) + 2 * data.size, where)
        if offsets[0] != 0 or offsets[-1] != data.size or (
                count and bool((offsets[1:] < offsets[:-1]).any())):
            raise _fail(f"{where}.offsets", "are not increasing from 0 to the data's length.")
        raw = data.tobytes()
        items = []
        for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
            text = raw[a:b].decode("utf-8")
            if len(text) > width:
                raise _fail(where, f"a string of {len(text)} characters in dtype U{width}.")
            items.append(text)
        return np.array(items, dtype=np.dtype(f"<U{width}")).reshape(shape)

    def _object_array(self, body, value, where, depth):
        body = _fields(body, ("shape", "values"), where)
        shape = _shape(body["shape"], f"{where}.shape")
        values = body["values"]
        if type(values) is not list or len(values) != math.prod(shape):
            raise _fail(where, f"its values do not fit its shape {list(shape)}.")
        self.budget.charge(64 + 8 * len(values), where)
        out = np.empty(len(values), dtype=object)
        for i, v in enumerate(values):
            out[i] = self.decode(v, f"{where}[{i}]", depth + 1)
        return out.reshape(shape)

    def _sparse_array(self, value: Any, where: str, depth: int, codes: tuple[str, ...] | None
                      ) -> np.ndarray:
        value = _fields(value, ("$ndarray",), where)
        code, arr = self.take(value["$ndarray"], where)
        if arr.ndim != 1 or (codes is not None and code not in codes) or code == "BF16":
            raise _fail(where, f"expected a 1-D array{f' of {codes}' if codes else ''}.")
        return arr

    def _sparse(self, body, value, where, depth):
        stored = body.get("stored") if type(body) is dict else None
        if stored not in ("csr", "csc", "coo"):
            raise _fail(f"{where}.stored", f"{stored!r:.40} is not csr, csc or coo.")
        parts = ("row", "col") if stored == "coo" else ("indices", "indptr")
        fmt = body.get("format")
        optional = ("blocksize",) if fmt == "bsr" else ()
        body = _fields(body, ("format", "shape", "array", "stored", "data", *parts), where,
                       optional)
        if fmt not in _SPARSE_FORMATS or (fmt in ("csr", "csc", "coo") and fmt != stored):
            raise _fail(f"{where}.format", f"{fmt!r:.40} is not a sparse format it can hold.")
        if type(body["array"]) is not bool:
            raise _fail(f"{where}.array", "expected true or false.")
        shape = _shape(body["shape"], f"{where}.shape", ndim=2)
        data = self._sparse_array(body["data"], f"{where}.data", depth, None)
        a, b = (self._sparse_array(body[p], f"{where}.{p}", depth, _INDEX_CODES) for p in parts)
        nnz = data.size
        if stored == "coo":
            if not a.size == b.size == nnz:
                raise _fail(where, "its rows, columns and values differ in length.")
            for arr, n, name in ((a, shape[0], "row"), (b, shape[1], "col")):
                if nnz and (int(arr.min()) < 0 or int(arr.max()) >= n):
                    raise _fail(f"{where}.{name}", f"holds indices outside [0, {n}).")
            self.budget.charge(nnz * 24, where)
            m = sp.coo_matrix((data, (a, b)), shape=shape)
        else:
            indices, indptr = a, b
            n_major, n_minor = shape if stored == "csr" else shape[::-1]
            if indptr.size != n_major + 1:
                raise _fail(f"{where}.indptr", f"has {indptr.size} entries for a shape of "
                                               f"{list(shape)} (needs {n_major + 1}).")
            self.budget.charge(nnz * 24 + n_major * 24, where)
            if (int(indptr[0]) != 0 or int(indptr[-1]) != nnz or indices.size != nnz
                    or (n_major and bool((indptr[1:] < indptr[:-1]).any()))):
                raise _fail(f"{where}.indptr", "is not a valid row pointer array for its "
                                               f"{nnz} values.")
            if nnz and (int(indices.min()) < 0 or int(indices.max()) >= n_minor):
                raise _fail(f"{where}.indices", f"holds indices outside [0, {n_minor}).")
            cls = sp.csr_matrix if stored == "csr" else sp.csc_matrix
            m = cls((data, indices, indptr), shape=shape)
            m.check_format(full_check=True)
        m = self._sparse_format(m, fmt, body, where)
        if body["array"]:
            m = getattr(sp, f"{fmt}_array")(m)
        return m

    def _sparse_format(self, m, fmt: str, body: dict, where: str):
        """``m`` converted to ``fmt``, its size charged first."""
        if fmt == m.format:
            return m
        nnz, itemsize = m.nnz, m.dtype.itemsize
        if fmt == "dia":  # one row of n_columns values per diagonal that holds a value
            coo = m.tocoo()
            self.budget.charge(nnz * 32, where)
            n_diagonals = np.unique(coo.col.astype(np.int64) - coo.row).size
            self.budget.charge(n_diagonals * (m.shape[1] * itemsize + 8), where)
            return coo.todia()
        if fmt == "bsr":
            blocksize = body.get("blocksize")
            if blocksize is None and self.version < 2:  # version 1 files did not store it
                self.budget.charge(nnz * (4 * itemsize + 16) + m.shape[0] * 8, where)
                return m.tobsr()
            r, c = _shape(blocksize, f"{where}.blocksize", ndim=2)
            if r < 1 or c < 1 or m.shape[0] % r or m.shape[1] % c:
                raise _fail(f"{where}.blocksize", f"{[r, c]} does not divide {list(m.shape)}.")
            self.budget.charge(nnz * (r * c * itemsize + 16) + m.shape[0] * 8, where)
            return m.tobsr(blocksize=(r, c))
        per_value = {"dok": 240, "lil": 96}.get(fmt, 24)
        per_row = {"lil": 128}.get(fmt, 8)
        self.budget.charge(nnz * per_value + max(m.shape) * per_row, where)
        return m.asformat(fmt)

    def _tensor(self, body, value, where, depth):
        return self.tensor(body, where)

    def _parameter(self, body, value, where, depth):
        requires_grad = value["requires_grad"]
        if type(requires_grad) is not bool:
            raise _fail(f"{where}.requires_grad", "expected true or false.")
        t = self.tensor(body, where)
        if requires_grad and not (t.is_floating_point() or t.is_complex()):
            raise _fail(where, f"a {t.dtype} parameter cannot require gradients.")
        return nn.Parameter(t, requires_grad=requires_grad)

    def _device(self, body, value, where, depth):
        if type(body) is not str or not _DEVICE.fullmatch(body):
            raise _fail(where, f"{body!r:.40} is not a device.")
        return torch.device(body)

    def _torch_dtype(self, body, value, where, depth):
        dtypes = _torch_dtypes()
        if type(body) is not str or body not in dtypes:
            raise _fail(where, f"{body!r:.40} is not a torch dtype.")
        return dtypes[body]

    def _numpy_dtype(self, body, value, where, depth):
        if type(body) is not str or not _NUMPY_DTYPE.fullmatch(body):
            raise _fail(where, f"numpy dtype {body!r:.40} is not supported.")
        dtype = np.dtype(body)
        if (dtype.kind not in "biufcMmUSO" or dtype.fields is not None or dtype.subdtype
                or dtype.itemsize > _MAX_NUMPY_ITEMSIZE):
            raise _fail(where, f"numpy dtype {body!r:.40} is not supported.")
        return dtype

    def _random_state(self, body, value, where, depth):
        body = _fields(body, ("bit_generator", "key", "pos", "has_gauss", "cached_gaussian"),
                       where)
        if body["bit_generator"] != "MT19937":
            raise _fail(f"{where}.bit_generator", f"{body['bit_generator']!r:.40} is not "
                                                  "MT19937.")
        key = _fields(body["key"], ("$ndarray",), f"{where}.key")
        code, words = self.take(key["$ndarray"], f"{where}.key")
        if code != "U32" or words.shape != (_MT_WORDS,):
            raise _fail(f"{where}.key", f"must be {_MT_WORDS} uint32 words; got {code} "
                                        f"{list(words.shape)}.")
        if not (words[0] & 0x80000000 or words[1:].any()):
            raise _fail(f"{where}.key", "is all zeros, not a Mersenne-Twister state.")
        pos = _int(body["pos"], f"{where}.pos", 0, _MT_WORDS)
        has_gauss = _int(body["has_gauss"], f"{where}.has_gauss", 0, 1)
        cached = body["cached_gaussian"]
        if type(cached) not in (int, float) or not math.isfinite(cached):
            raise _fail(f"{where}.cached_gaussian", "must be a finite number.")
        rs = np.random.RandomState()
        rs.set_state(("MT19937", np.array(words, dtype=np.uint32), pos, has_gauss,
                      float(cached)))
        return rs

    def _module(self, body, value, where, depth):
        from ._fitted_state import feature_buffers, join_feature_rows
        from .nn.config import build_module, config_state_shapes

        optional = ("derived",) if self.version >= 2 else ()
        body = _fields(body, ("config", "state", "training", "attributes"), where, optional)
        if type(body["training"]) is not bool:
            raise _fail(f"{where}.training", "expected true or false.")
        config = self.decode(body["config"], f"{where} (config)", depth + 1)
        state = body["state"]
        if type(state) is not dict:
            raise _fail(f"{where}.state", "expected an object of tensor names.")
        tensors = {_text(name, f"{where}.state"): self.tensor(key, f"{where}.{name}")
                   for name, key in state.items()}
        # item-feature rows rebuilt from the estimator's parameter (stored once)
        derived = body.get("derived", {})
        if type(derived) is not dict:
            raise _fail(f"{where}.derived", "expected an object.")
        extra_elements = 0
        rebuilt: dict[str, tuple[Any, dict[str, torch.Tensor]]] = {}
        for sub, spec in derived.items():
            spot = f"{where}.derived.{sub}"
            spec = _fields(spec, ("param", "rows"), spot)
            param = self.params.get(_text(spec["param"], f"{spot}.param"))
            rows = _int(spec["rows"], f"{spot}.rows")
            if not (isinstance(param, np.ndarray) or sp.issparse(param)) or param.ndim != 2 \
                    or param.shape[0] != rows:
                raise _fail(spot, f"the parameter {spec['param']!r:.40} is not the {rows}-row "
                                  "feature matrix its rows are rebuilt from.")
            names = {n.rpartition(".")[2] for n in tensors
                     if n.rpartition(".")[0] == sub} & {"crow", "col", "val", "dense"}
            sparse = "crow" in names
            if names != ({"crow", "col", "val"} if sparse else {"dense"}):
                raise _fail(spot, "names no feature buffers of the module.")
            cells = math.prod(param.shape)
            nnz = param.nnz if sp.issparse(param) else cells
            # validation copy + parts + the joined buffers (dense: float32 cells)
            cost = (24 * nnz + 24 * rows) if sparse else 12 * cells + 8 * nnz
            self.budget.charge(cost, spot)
            extra_elements += 2 * nnz + rows + 1 if sparse else cells
            rebuilt[sub] = (param, {n: tensors[f"{sub}.{n}"] for n in names})
        budget = dict(max_tensors=len(tensors),
                      max_elements=sum(t.numel() for t in tensors.values()) + extra_elements)
        try:
            with torch.random.fork_rng(devices=[]):  # no init may move the user's RNG
                shapes = config_state_shapes(config, **budget)
        except ValueError as exc:  # ConfigBudgetError included
            raise _fail(f"{where} (config)", str(exc)) from None
        for sub, (param, tails) in rebuilt.items():
            try:
                full = join_feature_rows(feature_buffers(param, "crow" in tails), tails)
            except (TypeError, ValueError, RuntimeError, IndexError) as exc:
                raise _fail(f"{where}.derived.{sub}", f"cannot rebuild the features: {exc}"
                            ) from None
            tensors.update({f"{sub}.{n}": t for n, t in full.items()})
        missing = sorted(set(shapes) - set(tensors))
        unexpected = sorted(set(tensors) - set(shapes))
        if missing or unexpected:
            raise _fail(where, f"the weights in the file do not fit a {config.get('type')} "
                               f"module built from its config (missing: {missing[:5]}, "
                               f"unexpected: {unexpected[:5]}).")
        n_bytes = 0
        for name, (shape, dtype) in shapes.items():
            t = tensors[name]
            if tuple(t.shape) != shape or _kind(t.dtype) != _kind(dtype):
                raise _fail(f"{where}.{name}", f"is a {t.dtype} tensor of shape "
                                               f"{list(t.shape)}; its config implies {dtype} "
                                               f"{list(shape)}.")
            n_bytes += math.prod(shape) * dtype.itemsize
        self.budget.charge(n_bytes, where)
        with torch.random.fork_rng(devices=[]):
            module = build_module(config)
        module.load_state_dict(tensors, strict=True)
        attributes = body["attributes"]
        if type(attributes) is not dict:
            raise _fail(f"{where}.attributes", "expected an object.")
        for sub_name, attrs in attributes.items():
            spot = f"{where}.attributes.{sub_name}"
            try:
                sub = module.get_submodule(_text(sub_name, spot))
            except AttributeError:
                raise _fail(spot, "names no submodule of the module.") from None
            values = self.decode(attrs, spot, depth + 1)
            if type(values) is not dict:
                raise _fail(spot, "expected an object of attributes.")
            for k, v in values.items():
                if type(k) is not str or not k.startswith("_skrec_") or not k.isidentifier():
                    raise _fail(spot, f"module attribute {k!r:.40} is not a _skrec_ attribute.")
                setattr(sub, k, v)
        module.train(body["training"])
        return module


# --------------------------------------------------------------------------------------------
# The container: the safetensors layout, plus a checksum
# --------------------------------------------------------------------------------------------


def _hasher(payload: str, index: dict[str, Any]):
    h = hashlib.sha256()
    h.update(payload.encode("utf-8"))
    h.update(b"\n")
    h.update(json.dumps(index, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    h.update(b"\n")
    return h


def _bytes_of(arr: np.ndarray) -> np.ndarray:
    """A flat uint8 view of a C-contiguous array (no copy)."""
    return arr.reshape(-1).view(np.uint8)


def _layout(payload: str, arrays: dict[str, tuple[str, np.ndarray]]
            ) -> tuple[bytes, list[np.ndarray]]:
    """The file's header (length prefix included) and its tensors' bytes, in file order."""
    # Larger elements first, so that every tensor starts at a multiple of its element size.
    order = sorted(arrays, key=lambda k: (-arrays[k][1].dtype.itemsize, k))
    index, chunks, offset = {}, [], 0
    for key in order:
        code, arr = arrays[key]
        raw = _bytes_of(np.ascontiguousarray(arr))
        index[key] = {"dtype": code, "shape": [int(n) for n in arr.shape],
                      "data_offsets": [offset, offset + raw.size]}
        chunks.append(raw)
        offset += raw.size
    h = _hasher(payload, index)
    for raw in chunks:
        h.update(raw)
    meta = {
        "format": FORMAT,
        "skrec.format_version": str(FORMAT_VERSION),
        "skrec.payload": payload,
        "skrec.sha256": h.hexdigest(),
    }
    header = json.dumps({"__metadata__": meta, **index}, separators=(",", ":")).encode("utf-8")
    if len(header) > _MAX_HEADER_BYTES:
        raise ValueError(f"the metadata of this estimator takes {len(header)} bytes, more than "
                         f"the {_MAX_HEADER_BYTES} a file may hold.")
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header, chunks


def _pack(payload: str, arrays: dict[str, tuple[str, np.ndarray]]) -> bytes:
    """The file's bytes (in one buffer: for tests and small files)."""
    header, chunks = _layout(payload, arrays)
    return header + b"".join(c.tobytes() for c in chunks)


class _Source:
    """Bounded reads from a regular file (opened without blocking) or a binary file object."""

    def __init__(self, source: Any) -> None:
        self.owned = False
        if hasattr(source, "read"):
            if isinstance(source, io.TextIOBase):
                raise TypeError("skrec.load needs a binary file object (open the file with "
                                "mode 'rb'), not a text-mode one.")
            self.f, self.size = source, None
            return
        path = os.fspath(source)
        flags = os.O_RDONLY
        for name in ("O_NONBLOCK", "O_CLOEXEC", "O_NOCTTY", "O_BINARY"):
            flags |= getattr(os, name, 0)
        fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO does not wait for a writer
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                what = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                        else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                        else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
                raise ModelFileError(f"{os.fsdecode(path)!r} is {what}; skrec.load reads "
                                     "regular files only.")
            self.size = os.fstat(fd).st_size
            self.f = os.fdopen(fd, "rb", buffering=0)
        except BaseException:
            os.close(fd)
            raise
        self.owned = True

    def close(self) -> None:
        if self.owned:
            self.f.close()

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end of the file)."""
        out = bytearray()
        while len(out) < n:
            chunk = self.f.read(min(n - len(out), _CHUNK))
            if chunk is None:
                raise ModelFileError("the file object has no data ready (a non-blocking "
                                     "stream?); skrec.load reads files and blocking streams.")
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise TypeError("skrec.load needs a binary file object (open the file with "
                                f"mode 'rb'); its read() returned {type(chunk).__name__}.")
            if not chunk:
                break
            if len(chunk) > n - len(out):
                raise ModelFileError("the file object returned more bytes than were asked for.")
            out += chunk
        return bytes(out)

    def read_data(self, n: int, hasher) -> bytearray:
        """Exactly ``n`` bytes, hashed as they come; a ModelFileError if the file ends first."""
        if self.size is not None:  # a regular file whose size was checked: one buffer
            buf = bytearray(n)
            view, pos = memoryview(buf), 0
            while pos < n:
                got = self.f.readinto(view[pos : pos + _CHUNK])
                if not got:
                    break
                hasher.update(view[pos : pos + got])
                pos += got
        else:  # a stream: the buffer grows with the bytes that really arrive
            buf = bytearray()
            while len(buf) < n:
                chunk = self.read(min(_CHUNK, n - len(buf)))
                if not chunk:
                    break
                hasher.update(chunk)
                buf += chunk
            pos = len(buf)
        if pos < n:
            raise ModelFileError(f"the file is truncated: its tensors need {n} bytes of data, "
                                 f"the file holds {pos}.")
        return buf


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _json_cost(text: str | bytes) -> int:
    """An upper bound of the memory ``json.loads(text)`` takes (measured: 25 bytes per byte of
    ``[],[],...``, 2-4 for numbers and strings)."""
    if isinstance(text, str):
        containers, commas = text.count("[") + text.count("{"), text.count(",")
    else:
        containers, commas = text.count(b"[") + text.count(b"{"), text.count(b",")
    return 64 * containers + 24 * commas + 2 * len(text)


def _parse_json(text: str | bytes, what: str, budget: _Budget, field: str) -> Any:
    budget.charge(_json_cost(text), field)
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:
        raise ModelFileError(f"{what} is nested too deeply.") from None
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise ModelFileError(f"{what} is not valid JSON ({str(exc)[:120]}).") from None


#: How skrec.save starts a header: the metadata, whose payload is one JSON string.
_HEADER_START = re.compile(r'\{"__metadata__":\{"format":"skrec-model",'
                           r'"skrec\.format_version":[^,]{1,40},"skrec\.payload":"')


def _parse_header(raw: bytes, budget: _Budget) -> Any:
    """The header's JSON. Its payload is one string (the skrec metadata, parsed later): in a
    header laid out as skrec writes it, that string is read on its own, so that only the
    containers outside it are charged as containers; any other header is charged in full."""
    what, field = "not a skrec model file: its header", "the file's header"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{what} is not valid JSON ({exc}).") from None
    start = _HEADER_START.match(text)
    if start is None:
        return _parse_json(text, what, budget, field)
    budget.charge(2 * len(text), field)
    begin = start.end() - 1
    try:
        payload, end = json.JSONDecoder().raw_decode(text, begin)  # a string: no container
    except ValueError as exc:
        raise ModelFileError(f"{what} is not valid JSON ({str(exc)[:120]}).") from None
    header = _parse_json(text[:begin] + '""' + text[end:], what, budget, field)
    if type(header) is dict and type(header.get("__metadata__")) is dict:
        header["__metadata__"]["skrec.payload"] = payload
    return header


def _check_index(header: dict[str, Any]) -> tuple[dict[str, tuple[str, tuple, int, int]], int]:
    """Validate the safetensors tensor index: ``({key: (code, shape, begin, stop)}, end)``.

    Each entry's byte range must hold exactly its shape's elements, and the ranges must tile
    the data section from 0 without gaps or overlaps (as safetensors requires).
    """
    index = {}
    for key, entry in header.items():
        spot = f"tensor {key!r:.80}"
        _text(key, spot)
        entry = _fields(entry, ("dtype", "shape", "data_offsets"), spot)
        code = entry["dtype"]
        if type(code) is not str or code not in _DTYPES:
            raise _fail(spot, f"dtype {code!r:.20} is not a safetensors dtype.")
        shape = _shape(entry["shape"], f"{spot} shape")
        offsets = entry["data_offsets"]
        if type(offsets) is not list or len(offsets) != 2:
            raise _fail(spot, "data_offsets must be [begin, end].")
        begin, stop = (_int(o, f"{spot} data_offsets", 0, 2**62) for o in offsets)
        if stop - begin != math.prod(shape) * _DTYPES[code].itemsize:
            raise _fail(spot, f"its byte range [{begin}, {stop}) does not hold a {code} tensor "
                              f"of shape {list(shape)}.")
        index[key] = (code, shape, begin, stop)
    end = 0
    for key, (_, _, begin, stop) in sorted(index.items(), key=lambda kv: kv[1][2:]):
        if begin != end:
            raise _fail(f"tensor {key!r:.80}", "its bytes overlap another tensor's or leave a "
                                               "gap (corrupted or modified).")
        end = stop
    return index, end


def _read(source: Any, limits: LoadLimits) -> tuple[Any, dict[str, tuple[str, np.ndarray]],
                                                    _Budget, int]:
    """Read, bound, parse and verify a file: ``(payload, tensors, budget, version)``."""
    budget = _Budget(limits)
    src = _Source(source)
    try:
        head = src.read(8)
        if len(head) < 8:
            raise ModelFileError(f"not a skrec model file: {len(head)} bytes is too short (the "
                                 "file is empty or truncated).")
        n = int.from_bytes(head, "little")
        if n == 0 or n > limits.max_header_bytes:
            raise ModelFileError(
                f"not a skrec model file (no safetensors header at its start), or one whose "
                f"header ({n} bytes) is larger than LoadLimits.max_header_bytes "
                f"({limits.max_header_bytes})."
            )
        if src.size is not None and 8 + n > src.size:
            raise ModelFileError(f"the file is truncated: its header needs {8 + n} bytes, the "
                                 f"file has {src.size}.")
        raw = src.read(n)
        if len(raw) < n:
            raise ModelFileError(f"the file is truncated: its header needs {8 + n} bytes, the "
                                 f"file has {8 + len(raw)}.")
        budget.file_bytes = 8 + n
        header = _parse_header(raw, budget)
        del raw
        meta = header.pop("__metadata__", None) if type(header) is dict else None
        if type(meta) is not dict or meta.get("format") != FORMAT:
            raise ModelFileError("not a skrec model file (a safetensors file without skrec "
                                 "metadata?); skrec.load reads files written by skrec.save.")
        version = _check_meta(meta)
        index, end = _check_index(header)
        total = 8 + n + end
        if total > limits.max_file_bytes:
            raise ModelFileError(
                f"the file declares {total:,} bytes, more than LoadLimits.max_file_bytes "
                f"({limits.max_file_bytes:,}); if you trust it, raise the limit: "
                "skrec.load(path, limits=skrec.persistence.LoadLimits(max_file_bytes=...))."
            )
        if src.size is not None and src.size < total:
            raise ModelFileError(f"the file is truncated: its tensors need {end} bytes of data, "
                                 f"the file holds {src.size - 8 - n}.")
        if src.size is not None and src.size > total:
            raise ModelFileError(f"the file has {src.size - total} unexpected bytes after its "
                                 "tensors (corrupted or modified).")
        budget.file_bytes = total
        payload = meta["skrec.payload"]
        hasher = _hasher(payload, header)
        data = src.read_data(end, hasher)
        if src.read(1):
            raise ModelFileError("the file has unexpected bytes after its tensors (corrupted "
                                 "or modified).")
    finally:
        src.close()
    if not hmac.compare_digest(hasher.hexdigest(), meta["skrec.sha256"]):
        raise ModelFileError("checksum mismatch: the file was corrupted or modified after "
                             "skrec.save wrote it.")
    tensors = {}
    for key, (code, shape, begin, stop) in index.items():
        dtype = _DTYPES[code]
        arr = np.frombuffer(data, dtype=dtype, count=(stop - begin) // dtype.itemsize,
                            offset=begin).reshape(shape)
        if not arr.flags.aligned:  # pragma: no cover - skrec aligns every tensor
            budget.charge(arr.nbytes, f"tensor {key!r}")
            arr = arr.copy()
        tensors[key] = (code, arr)
    payload = _parse_json(payload, "the file's skrec metadata", budget,
                          "the file's skrec metadata")
    return payload, tensors, budget, version


def _check_meta(meta: dict[str, Any]) -> int:
    """The safetensors ``__metadata__`` of a skrec file: its format version (an int)."""
    _fields(meta, ("format", "skrec.format_version", "skrec.payload", "skrec.sha256"),
            "the file's __metadata__")
    version = meta["skrec.format_version"]
    if type(version) is not str:
        raise ModelFileError(
            f"not a file written by skrec.save: its format version is stored as "
            f"{type(version).__name__} {version!r:.20} (skrec.save writes a string)."
        )
    readable = {str(v): v for v in _READABLE_VERSIONS}
    if version not in readable:
        shown = version if version.isdigit() and len(version) < 10 else repr(version[:20])
        raise ModelFileError(
            f"the file uses skrec model format version {shown}; this skrec "
            f"({_skrec_version()}) reads versions {', '.join(readable)}. Load it with the "
            "skrec version that wrote it (see its metadata) and save it again, or refit."
        )
    _text(meta["skrec.payload"], "the file's skrec metadata")
    sha = meta["skrec.sha256"]
    if type(sha) is not str or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ModelFileError("the file's checksum is not a SHA-256 digest (corrupted or "
                             "modified).")
    return readable[version]


def _unpack(buf: bytes | bytearray) -> tuple[Any, dict[str, tuple[str, np.ndarray]]]:
    """Parse and verify a file's bytes: ``(payload, tensors)`` (for tests)."""
    payload, tensors, _, _ = _read(io.BytesIO(bytes(buf)), LoadLimits())
    return payload, tensors


def _skrec_version() -> str:
    from . import __version__

    return __version__


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

_PAYLOAD_KEYS = ("format", "format_version", "estimator", "versions", "params", "attributes")
_BUNDLE_KEYS = ("format", "format_version", "versions", "bundle")
_ENTRY_KEYS = ("estimator", "params", "attributes")


def _stored_attributes(estimator: Any, params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in vars(estimator).items() if k not in params and not k.startswith("_")}


def _encode_entry(estimator: Any, writer: _Writer) -> dict[str, Any]:
    """One estimator's ``{"estimator", "params", "attributes"}``, its arrays in ``writer``."""
    from ._fitted_state import feature_tails

    name = _name_of(type(estimator))
    try:
        params = estimator.get_params(deep=False)
    except AttributeError:
        raise TypeError(f"{type(estimator).__name__} has no get_params.") from None
    writer.derived = feature_tails(estimator)
    return {
        "estimator": name,
        "params": {k: writer.encode(v, f"params.{k}") for k, v in params.items()},
        "attributes": {k: writer.encode(v, k)
                       for k, v in _stored_attributes(estimator, params).items()},
    }


def _bundle_key(key: Any) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= 256:
        raise TypeError(f"the names of a bundle must be strings of 1 to 256 characters; got "
                        f"{key!r:.60}.")
    return _check_save_text(key, f"the bundle name {key!r:.60}")


def save(obj: Any, path: str | os.PathLike | BinaryIO) -> None:
    """Save an estimator (fitted or not), or a dict of them, to a file that :func:`load`
    reads without running code.

    Parameters
    ----------
    obj : estimator or dict of str to estimator
        A skrec estimator (or one registered with :func:`register_estimator`), or a *bundle*:
        a dict of such estimators by name, e.g. ``{"encoder": enc, "model": model}``, written
        into one file (what belongs together stays together); :func:`load` returns the same
        dict, in the same order.
    path : str, path-like or binary file object
        Where to write. A path is written atomically and safely: the bytes go to a temporary
        file created exclusively (``O_CREAT | O_EXCL``, an unpredictable name) in the same
        folder, which is then renamed over ``path``. An interrupted save never leaves a
        half-written model behind, a symbolic link planted in the folder is never followed,
        and ``path`` ends up a regular file (a link at ``path`` itself is replaced, not
        written through).

    Raises
    ------
    TypeError
        If an estimator's class is not registered, a parameter or attribute holds a value
        that cannot be stored as data (a callable, an unregistered torch module, ...), a
        bundle name is not a string, or ``path`` is a text-mode file object; the message
        names it.
    ValueError
        If a string holds a lone surrogate (it would not load), or the bundle is empty.

    See Also
    --------
    load : read the file back.

    Notes
    -----
    The file is a valid safetensors file: its tensors (the weights ``module_.<name>``, the
    arrays such as ``item_popularity_``; ``<name>/...`` in a bundle) can be read by any
    safetensors reader; the skrec metadata (a JSON document) and its SHA-256 checksum are in
    the header's ``__metadata__``. Weights are stored as CPU tensors whatever device they are
    on. A neural model's item features are stored once (the ``item_features`` parameter; the
    module's rows are rebuilt from it at load, the rows added by ``add_items`` are stored
    with the module).

    Examples
    --------
    >>> import io
    >>> import skrec
    >>> from skrec.baselines import EASERecommender
    >>> from skrec.datasets import make_interactions
    >>> X = make_interactions(n_users=100, n_items=20, random_state=0)
    >>> rec = EASERecommender(l2=50.0).fit(X)
    >>> f = io.BytesIO()
    >>> skrec.save(rec, f)
    >>> back = skrec.load(io.BytesIO(f.getvalue()))
    >>> back.l2, (back.predict(X[:3]) == rec.predict(X[:3])).all()
    (50.0, np.True_)

    Several estimators in one file:

    >>> f = io.BytesIO()
    >>> skrec.save({"ease": rec, "wider": EASERecommender(l2=500.0)}, f)
    >>> sorted(skrec.load(io.BytesIO(f.getvalue())))
    ['ease', 'wider']
    """
    if isinstance(path, io.TextIOBase):
        raise TypeError("skrec.save needs a binary file object (open the file with mode 'wb'), "
                        "not a text-mode one.")
    writer = _Writer()
    if isinstance(obj, dict):
        if not obj:
            raise ValueError("skrec.save got an empty dict: a bundle needs at least one "
                             "estimator.")
        entries = {}
        for key, estimator in obj.items():
            writer.prefix = f"{_bundle_key(key)}/"
            try:
                entries[key] = _encode_entry(estimator, writer)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"bundle entry {key!r}: {exc}") from None
        payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": _versions(),
                   "bundle": entries}
    else:
        entry = _encode_entry(obj, writer)
        payload = {"format": FORMAT, "format_version": FORMAT_VERSION,
                   "estimator": entry["estimator"], "versions": _versions(),
                   "params": entry["params"], "attributes": entry["attributes"]}
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    header, chunks = _layout(text, writer.arrays)
    if hasattr(path, "write"):
        path.write(header)
        for chunk in chunks:
            path.write(chunk)
        return
    _write_atomically(Path(path), header, chunks)


def _umask() -> int:
    """The process's umask (from /proc where possible: setting it is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # pragma: no cover - systems without /proc
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


def _write_atomically(path: Path, header: bytes, chunks: list[np.ndarray]) -> None:
    """Write to an exclusively created temporary file beside ``path``, then rename it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # the mode an ordinary open() would give
        except (AttributeError, OSError):  # pragma: no cover - platforms without fchmod
            pass
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(header)
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _versions() -> dict[str, str]:
    import sklearn

    return {"skrec": _skrec_version(), "torch": torch.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "python": sys.version.split()[0]}


def _label(where: str) -> str:
    """``"bundle['model']: "`` for an entry of a bundle, ``""`` for a single estimator."""
    return f"{where.rstrip('.')}: " if where else ""


def _check_name(name: Any, where: str) -> str:
    if type(name) is not str or not name.isidentifier():
        raise _fail(where, f"{name!r:.60} is not a name an estimator can have.")
    return name


def _load_entry(entry: Any, reader: _Reader, where: str) -> Any:
    """Build, check and return one estimator of the file."""
    entry = _fields(entry, _ENTRY_KEYS, where.rstrip(".") or "the file's skrec metadata")
    cls = _class_of(entry["estimator"])
    params_json, attributes_json = entry["params"], entry["attributes"]
    if type(params_json) is not dict or type(attributes_json) is not dict:
        raise _fail(where.rstrip(".") or "the file", "params and attributes must be objects.")
    for name in params_json:
        _check_name(name, f"{where}params")
    for name in attributes_json:  # names first: nothing is decoded for a bad name
        ok = type(name) is str and name.isidentifier() and not name.startswith("_")
        member = getattr(cls, name, None) if ok else None
        if not ok or callable(member) or isinstance(member, property):
            raise ModelFileError(f"{_label(where)}the file sets an attribute {name!r:.60} "
                                 f"that a fitted {cls.__name__} cannot have.")
    params = {k: reader.decode(v, f"{where}params.{k}", 1) for k, v in params_json.items()}
    reader.params = params
    try:
        attributes = {k: reader.decode(v, f"{where}{k}", 1) for k, v in attributes_json.items()}
    finally:
        reader.params = {}
    try:
        estimator = cls(**params)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{_label(where)}the file's parameters do not fit this version's {cls.__name__} "
            f"({exc})."
        ) from None
    state = dict(vars(estimator))
    state.update(attributes)
    estimator.__dict__.update(state)
    _check_fitted(estimator, where)
    setstate = getattr(estimator, "__setstate__", None)
    if setstate is not None:  # a model saved from a GPU is moved to the CPU here if needed
        try:
            setstate(state)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ModelFileError(f"{_label(where)}the file's {cls.__name__} cannot be "
                                 f"restored: {exc}") from None
    return estimator


def _check_fitted(estimator: Any, where: str) -> None:
    """The estimator's own consistency rules (``_check_fitted_state``), as a ModelFileError."""
    from ._fitted_state import check_neural_state
    from .training import NeuralRecommender

    try:
        check = getattr(estimator, "_check_fitted_state", None)
        if callable(check):
            check()
        # The neural estimators' rules, until NeuralRecommender's own _check_fitted_state
        # calls them.
        if (isinstance(estimator, NeuralRecommender)
                and "_check_fitted_state" not in vars(NeuralRecommender)):
            check_neural_state(estimator)
    except ModelFileError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, RuntimeError) as exc:
        raise ModelFileError(f"{_label(where)}the file's {type(estimator).__name__} does not "
                             f"fit together: {exc}") from None


def load(path: str | os.PathLike | BinaryIO, *, limits: LoadLimits | None = None) -> Any:
    """Load what :func:`save` wrote, without executing code from the file.

    The file is read as untrusted input (see :mod:`skrec.persistence`): only a regular file
    is opened, every declared size is checked against the bytes present and against the
    :class:`LoadLimits` before anything is allocated, every value against its schema, and the
    estimator's fitted attributes against each other before it is returned.

    Parameters
    ----------
    path : str, path-like or binary file object
        The file (a binary file object is read in bounded chunks from its current position).
    limits : LoadLimits, default=None
        What the file may take: its size, its header's size, the memory decoding may allocate
        beyond the file's bytes, the nesting depth of values. ``None``: ``LoadLimits()``
        (16 GiB files, decoding at most 16 x the file's size + 64 MiB).

    Returns
    -------
    obj : estimator or dict of str to estimator
        The estimator, with its parameters and fitted attributes (its torch modules are
        rebuilt from their configs, pruned shapes included, on the CPU; a model saved from a
        GPU loads on a machine without one and then serves on the CPU, in fp32); or, for a
        file saved from a dict, the same dict of estimators.

    Raises
    ------
    ModelFileError
        If the file is not a skrec model, uses another format version, is truncated, fails
        its checksum (corrupted or modified), passes a limit, holds a value that does not
        pass validation, names an estimator class or module type that is not registered, or
        holds an estimator whose fitted attributes do not fit together. The message names the
        field.
    TypeError
        If ``path`` is a text-mode file object.
    OSError
        If the file cannot be opened (``FileNotFoundError``, ...).

    See Also
    --------
    save : write the file.
    LoadLimits : raise a limit for a large file you trust.
    """
    if limits is None:
        limits = LoadLimits()
    elif not isinstance(limits, LoadLimits):
        raise TypeError(f"limits must be a skrec.persistence.LoadLimits; got "
                        f"{type(limits).__name__}.")
    payload, tensors, budget, version = _read(path, limits)
    reader = _Reader(tensors, budget, limits.max_depth, version)
    if type(payload) is not dict:
        raise ModelFileError("the file's skrec metadata is not an object.")
    bundle = "bundle" in payload and version >= 2
    _fields(payload, _BUNDLE_KEYS if bundle else _PAYLOAD_KEYS, "the file's skrec metadata")
    stored_version = payload["format_version"]
    if payload["format"] != FORMAT or type(stored_version) is not int or \
            stored_version != version:
        raise ModelFileError(f"the file's skrec metadata gives format version "
                             f"{stored_version!r:.20} where its header gives {version}.")
    versions = payload["versions"]
    if type(versions) is not dict or not all(type(v) is str for v in versions.values()):
        raise ModelFileError("the file's skrec metadata: versions must be an object of strings.")
    if bundle:
        entries = payload["bundle"]
        if type(entries) is not dict or not entries:
            raise ModelFileError("the file's bundle must be a non-empty object of estimators.")
        out = {}
        for key, entry in entries.items():
            spot = f"bundle[{_text(key, 'the bundle')!r:.60}]."
            out[key] = _load_entry(entry, reader, spot)
    else:
        out = _load_entry({k: payload[k] for k in _ENTRY_KEYS}, reader, "")
    reader.check_all_used()
    return out
