"""Safe persistence: save a fitted estimator as JSON and tensors, load it without running code.

:func:`save` writes one file in the `safetensors <https://huggingface.co/docs/safetensors>`_
layout: an 8-byte header length, a JSON header, and the raw little-endian bytes of every
array. Everything that is not an array (the hyper-parameters, the fitted metadata such as
``history_`` or ``pruning_report_``, the structure of each torch module from
:func:`skrec.nn.module_config`) is JSON in the header's ``__metadata__``. :func:`load` parses
the JSON and reads the bytes with ``numpy.frombuffer``: no pickle, no ``eval``, no import of a
name found in the file. Estimator classes are looked up in a registry (the estimators of
skrec, and classes registered with :func:`register_estimator`); torch modules in the module
registry of :mod:`skrec.nn.config`.

The format is versioned (:data:`FORMAT_VERSION`) and checksummed: a SHA-256 digest of the JSON
metadata, the tensor index and the tensor bytes, so a file of another format version, a
truncated file, or a file modified after it was written gets a :class:`ModelFileError` that
says which. The checksum detects corruption and edits; it is not a signature (whoever can
write the file can recompute it). Loading an untrusted file is still safe in the sense that
matters: it can only produce a registered estimator with data-only attributes.

What is stored, generically (a new estimator attribute or a new module needs no change
here): the estimator's ``get_params(deep=False)`` and every public instance attribute that is
not a parameter (the fitted attributes, trailing underscore by convention). Values may be
``None``, bools, ints, floats (NaN and infinities included), strings, lists, tuples, dicts,
numpy arrays (numeric, bool, datetime, unicode strings, or objects holding such scalars),
numpy scalars, scipy sparse matrices, torch tensors, devices and dtypes,
``numpy.random.RandomState`` instances (their exact state) and registered torch modules
(config, ``state_dict`` and the module's ``_skrec_*`` attributes, such as the unpruned sizes
that pruning records). Anything else, a callable for example, gets a TypeError that names it.
Attributes with a leading underscore are private caches and are not stored.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ._registry import SAVEABLE, estimator_class

__all__ = [
    "FORMAT_VERSION",
    "ModelFileError",
    "load",
    "register_estimator",
    "registered_estimators",
    "save",
]

#: Name of the format, stored in every file.
FORMAT = "skrec-model"
#: Version of the layout of the metadata; files of another version are refused.
FORMAT_VERSION = 1
#: Largest JSON header read (as the safetensors library).
_MAX_HEADER_BYTES = 100_000_000

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
_CODE_TORCH = {code: dtype for dtype, code in _TORCH_DTYPES.items()}


class ModelFileError(ValueError):
    """A file that :func:`load` refuses: not a skrec model, another format version, truncated,
    modified after it was written (checksum), or describing something this skrec cannot build.
    """


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


# --------------------------------------------------------------------------------------------
# Values -> JSON + tensors
# --------------------------------------------------------------------------------------------


class _Writer:
    """Turns Python values into tagged JSON, collecting the arrays into named tensors."""

    def __init__(self) -> None:
        self.arrays: dict[str, tuple[str, np.ndarray]] = {}  # key -> (dtype code, bytes view)

    # -- arrays
    def _key(self, where: str) -> str:
        key, n = where, 1
        while key in self.arrays:
            n += 1
            key = f"{where}#{n}"
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
        if value is None or isinstance(value, bool | str):
            return value
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
        if kind not in "biuf":
            raise TypeError(f"cannot save {where}: numpy scalars of dtype {value.dtype} are not "
                            "supported.")
        return {"$numpy_scalar": value.dtype.str, "value": self.encode(value.item(), where)}

    def _dict(self, value: dict, where: str) -> Any:
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: self.encode(v, f"{where}.{k}") for k, v in value.items()}
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
            encoded = [s.encode("utf-8") for s in flat]
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
        if stored.format == "coo":
            out["row"] = {"$ndarray": self.add_numpy(np.asarray(stored.row), f"{where}.row")}
            out["col"] = {"$ndarray": self.add_numpy(np.asarray(stored.col), f"{where}.col")}
        else:
            out["indices"] = {"$ndarray": self.add_numpy(stored.indices, f"{where}.indices")}
            out["indptr"] = {"$ndarray": self.add_numpy(stored.indptr, f"{where}.indptr")}
        out["stored"] = stored.format
        out["data"] = self._ndarray(np.asarray(stored.data), f"{where}.data")
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
        state = {name: self.add_tensor(t, f"{where}.{name}")
                 for name, t in module.state_dict().items()}
        extras = {}
        for sub_name, sub in module.named_modules():
            attrs = {k: v for k, v in vars(sub).items() if k.startswith("_skrec_")}
            if attrs:
                extras[sub_name] = self.encode(attrs, f"{where}.{sub_name or '(module)'}")
        return {"$module": {
            "config": self.encode(config, f"{where} (config)"),
            "state": state,
            "training": bool(module.training),
            "attributes": extras,
        }}


# --------------------------------------------------------------------------------------------
# JSON + tensors -> values
# --------------------------------------------------------------------------------------------


class _Reader:
    """Rebuilds the values that :class:`_Writer` encoded, from the JSON and the tensors."""

    def __init__(self, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
        self.tensors = tensors

    def array(self, key: Any) -> np.ndarray:
        if not isinstance(key, str) or key not in self.tensors:
            raise ModelFileError(f"the metadata refers to a tensor {key!r} that the file lacks.")
        return self.tensors[key][1]

    def tensor(self, key: Any) -> torch.Tensor:
        arr = self.array(key)
        t = torch.from_numpy(arr)
        return t.view(torch.bfloat16) if self.tensors[key][0] == "BF16" else t

    def decode(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if not isinstance(value, dict):
            raise ModelFileError(f"unexpected JSON value {value!r}.")
        tags = [k for k in value if k.startswith("$")]
        if not tags:
            return {k: self.decode(v) for k, v in value.items()}
        tag = tags[0]
        body = value[tag]
        method = getattr(self, "_" + tag[1:], None) if tag[1:].isidentifier() else None
        if method is None or tag not in _TAGS:
            raise ModelFileError(f"unknown value type {tag!r} in the file (written by a newer "
                                 "skrec?).")
        try:
            return method(body, value)
        except ModelFileError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError) as exc:
            raise ModelFileError(f"invalid {tag} value in the file: {exc}") from None

    def _float(self, body, _):
        if body not in ("nan", "inf", "-inf"):
            raise ValueError(f"{body!r} is not a non-finite float")
        return float(body)

    def _tuple(self, body, _):
        return tuple(self.decode(v) for v in body)

    def _dict(self, body, _):
        return {_hashable(self.decode(k)): self.decode(v) for k, v in body}

    def _numpy_scalar(self, body, value):
        dtype = np.dtype(body)
        if dtype.kind not in "biuf":
            raise ValueError(f"numpy scalar dtype {dtype}")
        return dtype.type(self.decode(value["value"]))

    def _ndarray(self, body, value):
        arr = self.array(body)
        if "view" in value:
            dtype = np.dtype(value["view"])
            if dtype.kind not in "Mm" or arr.dtype != np.int64:
                raise ValueError(f"view as {dtype}")
            arr = arr.view(dtype)
        return arr

    def _strings(self, body, _):
        data = self.array(body["data"]).tobytes()
        offsets = self.array(body["offsets"])
        dtype = np.dtype(body["dtype"])
        if dtype.kind != "U" or offsets.ndim != 1 or offsets.dtype != np.int64:
            raise ValueError("string array layout")
        if offsets.size and (offsets[0] != 0 or np.any(np.diff(offsets) < 0)
                             or offsets[-1] != len(data)):
            raise ValueError("string offsets")
        items = [data[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:])]
        return np.array(items, dtype=dtype).reshape([int(n) for n in body["shape"]])

    def _object_array(self, body, _):
        values = [self.decode(v) for v in body["values"]]
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out.reshape([int(n) for n in body["shape"]])

    def _sparse(self, body, _):
        shape = tuple(int(n) for n in body["shape"])
        data = self.decode(body["data"])
        if body["stored"] == "coo":
            m = sp.coo_matrix((data, (self.decode(body["row"]), self.decode(body["col"]))),
                              shape=shape)
        elif body["stored"] in ("csr", "csc"):
            cls = sp.csr_matrix if body["stored"] == "csr" else sp.csc_matrix
            m = cls((data, self.decode(body["indices"]), self.decode(body["indptr"])),
                    shape=shape)
            m.check_format(full_check=True)
        else:
            raise ValueError(f"sparse format {body['stored']!r}")
        fmt = body["format"]
        if fmt not in ("csr", "csc", "coo", "bsr", "dia", "dok", "lil"):
            raise ValueError(f"sparse format {fmt!r}")
        m = m.asformat(fmt)
        if body.get("array"):
            m = getattr(sp, f"{fmt}_array")(m)
        return m

    def _tensor(self, body, _):
        return self.tensor(body)

    def _parameter(self, body, value):
        return nn.Parameter(self.tensor(body), requires_grad=bool(value["requires_grad"]))

    def _device(self, body, _):
        return torch.device(str(body))

    def _torch_dtype(self, body, _):
        dtype = getattr(torch, str(body), None) if str(body).isidentifier() else None
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"torch dtype {body!r}")
        return dtype

    def _numpy_dtype(self, body, _):
        dtype = np.dtype(str(body))
        if dtype.kind not in "biufcMmUSO":
            raise ValueError(f"numpy dtype {body!r}")
        return dtype

    def _random_state(self, body, _):
        if body["bit_generator"] != "MT19937":
            raise ValueError(f"bit generator {body['bit_generator']!r}")
        rs = np.random.RandomState()
        rs.set_state((
            "MT19937", np.asarray(self.decode(body["key"]), dtype=np.uint32),
            int(body["pos"]), int(body["has_gauss"]), float(body["cached_gaussian"]),
        ))
        return rs

    def _module(self, body, _):
        from .nn.config import build_module

        config = self.decode(body["config"])
        if not isinstance(config, dict):
            raise ValueError("module config is not a dict")
        with torch.random.fork_rng(devices=[]):  # the fresh init must not move the user's RNG
            module = build_module(config)
        state = {name: self.tensor(key) for name, key in body["state"].items()}
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelFileError(
                f"the weights in the file do not fit a {config.get('type')} module built from "
                f"its config (missing: {list(missing)}, unexpected: {list(unexpected)})."
            )
        for sub_name, attrs in body.get("attributes", {}).items():
            sub = module.get_submodule(sub_name)
            for k, v in self.decode(attrs).items():
                if not k.startswith("_skrec_"):
                    raise ValueError(f"module attribute {k!r}")
                setattr(sub, k, v)
        module.train(bool(body["training"]))
        return module


_TAGS = {"$float", "$tuple", "$dict", "$numpy_scalar", "$ndarray", "$strings", "$object_array",
         "$sparse", "$tensor", "$parameter", "$device", "$torch_dtype", "$numpy_dtype",
         "$random_state", "$module"}


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        return tuple(_hashable(k) for k in key)
    return key


# --------------------------------------------------------------------------------------------
# The container: the safetensors layout, plus a checksum
# --------------------------------------------------------------------------------------------


def _digest(payload: str, index: dict[str, Any], data: bytes | memoryview) -> str:
    h = hashlib.sha256()
    h.update(payload.encode("utf-8"))
    h.update(b"\n")
    h.update(json.dumps(index, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    h.update(b"\n")
    h.update(data)
    return h.hexdigest()


def _pack(payload: str, arrays: dict[str, tuple[str, np.ndarray]]) -> bytes:
    """The file's bytes: safetensors layout, skrec metadata and checksum in ``__metadata__``."""
    # Larger elements first, so that every tensor starts at a multiple of its element size.
    order = sorted(arrays, key=lambda k: (-arrays[k][1].dtype.itemsize, k))
    index, chunks, offset = {}, [], 0
    for key in order:
        code, arr = arrays[key]
        raw = arr.tobytes()
        index[key] = {"dtype": code, "shape": [int(n) for n in arr.shape],
                      "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    data = b"".join(chunks)
    meta = {
        "format": FORMAT,
        "skrec.format_version": str(FORMAT_VERSION),
        "skrec.payload": payload,
        "skrec.sha256": _digest(payload, index, data),
    }
    header = json.dumps({"__metadata__": meta, **index}, separators=(",", ":")).encode("utf-8")
    if len(header) > _MAX_HEADER_BYTES:
        raise ValueError(f"the metadata of this estimator takes {len(header)} bytes, more than "
                         f"the {_MAX_HEADER_BYTES} a file may hold.")
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + data


def _unpack(buf: bytearray) -> tuple[dict[str, Any], dict[str, tuple[str, np.ndarray]]]:
    """Parse and verify a file's bytes: ``(payload, tensors)``."""
    if len(buf) < 8:
        raise ModelFileError(f"not a skrec model file: {len(buf)} bytes is too short (the file "
                             "is empty or truncated).")
    n = int.from_bytes(buf[:8], "little")
    if n > _MAX_HEADER_BYTES or n == 0:
        raise ModelFileError("not a skrec model file (no safetensors header at its start).")
    if 8 + n > len(buf):
        raise ModelFileError(f"the file is truncated: its header needs {8 + n} bytes, the file "
                             f"has {len(buf)}.")
    try:
        header = json.loads(bytes(buf[8 : 8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError("not a skrec model file (its header is not JSON).") from None
    meta = header.pop("__metadata__", None) if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError("not a skrec model file (a safetensors file without skrec metadata?"
                             "); skrec.load reads files written by skrec.save.")
    version = meta.get("skrec.format_version")
    if version != str(FORMAT_VERSION):
        raise ModelFileError(
            f"the file uses skrec model format version {version}; this skrec "
            f"({_skrec_version()}) reads version {FORMAT_VERSION}. Load it with the skrec "
            "version that wrote it (see its metadata) and save it again, or refit."
        )
    data = memoryview(buf)[8 + n :]
    end = 0
    for key, entry in header.items():
        try:
            code = entry["dtype"]
            shape = [int(s) for s in entry["shape"]]
            begin, stop = (int(o) for o in entry["data_offsets"])
        except (TypeError, ValueError, KeyError):
            raise ModelFileError(f"tensor {key!r} has an invalid header entry.") from None
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if (code not in _DTYPES or min(shape, default=0) < 0 or not 0 <= begin <= stop
                or stop - begin != count * _DTYPES[code].itemsize):
            raise ModelFileError(f"tensor {key!r} has an inconsistent dtype, shape or size.")
        end = max(end, stop)
    if len(data) < end:
        raise ModelFileError(f"the file is truncated: its tensors need {end} bytes of data, the "
                             f"file holds {len(data)}.")
    if len(data) > end:
        raise ModelFileError(f"the file has {len(data) - end} unexpected bytes after its tensors "
                             "(corrupted or modified).")
    payload = meta.get("skrec.payload")
    if not isinstance(payload, str) or meta.get("skrec.sha256") != _digest(payload, header,
                                                                           data):
        raise ModelFileError("checksum mismatch: the file was corrupted or modified after "
                             "skrec.save wrote it.")
    tensors = {}
    for key, entry in header.items():  # validated above
        code, shape = entry["dtype"], [int(s) for s in entry["shape"]]
        begin, stop = (int(o) for o in entry["data_offsets"])
        dtype = _DTYPES[code]
        if stop == begin:
            arr = np.empty(shape, dtype=dtype)
        else:
            arr = np.frombuffer(data, dtype=dtype, count=(stop - begin) // dtype.itemsize,
                                offset=begin).reshape(shape)
            if not arr.flags.aligned:
                arr = arr.copy()
        tensors[key] = (code, arr)
    try:
        payload = json.loads(payload)
    except json.JSONDecodeError:
        raise ModelFileError("the file's skrec metadata is not JSON.") from None
    return payload, tensors


def _skrec_version() -> str:
    from . import __version__

    return __version__


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _stored_attributes(estimator: Any, params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in vars(estimator).items() if k not in params and not k.startswith("_")}


def save(estimator: Any, path: str | os.PathLike | BinaryIO) -> None:
    """Save an estimator (fitted or not) to a file that :func:`load` reads without running code.

    Parameters
    ----------
    estimator : object
        A skrec estimator (or one registered with :func:`register_estimator`).
    path : str, path-like or binary file object
        Where to write. A path is written atomically (a temporary file renamed into place),
        so an interrupted save never leaves a half-written model behind.

    Raises
    ------
    TypeError
        If the estimator's class is not registered, or a parameter or attribute holds a value
        that cannot be stored as data (a callable, an unregistered torch module, ...); the
        message names it.

    See Also
    --------
    load : read the file back.

    Notes
    -----
    The file is a valid safetensors file: its tensors (the weights ``module_.<name>``, the
    arrays such as ``item_popularity_``) can be read by any safetensors reader; the skrec
    metadata (a JSON document) and its SHA-256 checksum are in the header's
    ``__metadata__``. Weights are stored as CPU tensors whatever device they are on.

    Examples
    --------
    >>> import skrec
    >>> from skrec.baselines import EASERecommender
    >>> from skrec.datasets import make_interactions
    >>> X = make_interactions(n_users=100, n_items=20, random_state=0)
    >>> rec = EASERecommender(l2=50.0).fit(X)
    >>> import io
    >>> f = io.BytesIO()
    >>> skrec.save(rec, f)
    >>> back = skrec.load(io.BytesIO(f.getvalue()))
    >>> back.l2, (back.predict(X[:3]) == rec.predict(X[:3])).all()
    (50.0, np.True_)
    """
    name = _name_of(type(estimator))
    try:
        params = estimator.get_params(deep=False)
    except AttributeError:
        raise TypeError(f"{type(estimator).__name__} has no get_params.") from None
    writer = _Writer()
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "estimator": name,
        "versions": _versions(),
        "params": {k: writer.encode(v, f"params.{k}") for k, v in params.items()},
        "attributes": {k: writer.encode(v, k)
                       for k, v in _stored_attributes(estimator, params).items()},
    }
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    blob = _pack(text, writer.arrays)
    if hasattr(path, "write"):
        path.write(blob)
        return
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _versions() -> dict[str, str]:
    import sklearn

    return {"skrec": _skrec_version(), "torch": torch.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "python": sys.version.split()[0]}


def _read_bytes(path: str | os.PathLike | BinaryIO) -> bytearray:
    if hasattr(path, "read"):
        return bytearray(path.read())
    path = Path(path)
    size = path.stat().st_size
    buf = bytearray(size)
    with open(path, "rb") as f:
        got = f.readinto(buf)
    return buf[:got] if got != size else buf


def load(path: str | os.PathLike | BinaryIO) -> Any:
    """Load an estimator saved with :func:`save`, without executing code from the file.

    Parameters
    ----------
    path : str, path-like or binary file object
        The file.

    Returns
    -------
    estimator : object
        The estimator, with its parameters and fitted attributes; its torch modules are
        rebuilt from their configs (pruned shapes included) on the CPU. A model saved from a
        GPU loads on a machine without one (it then serves on the CPU, in fp32).

    Raises
    ------
    ModelFileError
        If the file is not a skrec model, uses another format version, is truncated, fails its
        checksum (corrupted or modified), or names an estimator class or module type that is
        not registered.

    See Also
    --------
    save : write the file.
    """
    buf = _read_bytes(path)
    payload, tensors = _unpack(buf)
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise ModelFileError("the file's skrec metadata is malformed.")
    cls = _class_of(payload.get("estimator"))
    reader = _Reader(tensors)
    try:
        params = {k: reader.decode(v) for k, v in payload["params"].items()}
        attributes = {k: reader.decode(v) for k, v in payload["attributes"].items()}
        for name in attributes:
            if (not name.isidentifier() or name.startswith("_")
                    or callable(getattr(cls, name, None)) or isinstance(
                        getattr(cls, name, None), property)):
                raise ModelFileError(f"the file sets an attribute {name!r} that a fitted "
                                     f"{cls.__name__} cannot have.")
    except (KeyError, AttributeError, TypeError) as exc:
        raise ModelFileError(f"the file's skrec metadata is malformed ({exc}).") from None
    except ValueError as exc:  # module configs that the registry does not know, ...
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(str(exc)) from None
    try:
        estimator = cls(**params)
    except TypeError as exc:
        raise ModelFileError(
            f"the file's parameters do not fit this version's {cls.__name__} ({exc}); it was "
            f"written by skrec {payload.get('versions', {}).get('skrec')}."
        ) from None
    state = dict(vars(estimator))
    state.update(attributes)
    setstate = getattr(estimator, "__setstate__", None)
    if setstate is not None:  # a model saved from a GPU is moved to the CPU here if needed
        setstate(state)
    else:  # pragma: no cover - scikit-learn estimators all have one
        estimator.__dict__.update(state)
    return estimator


