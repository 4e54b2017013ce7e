"""Tagged JSON and tensors -> values: every value validated, every allocation charged."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ._base import _INDEX_CODES, ModelFileError, _Budget, _fail, _fields, _int, _shape, _text

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
    "$estimator": ((), ()),
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
        #: Builds and checks an estimator held by another one: ``(entry, where, depth)``
        #: (set by :func:`~skrec.persistence.load`, which builds the file's estimators).
        self.load_entry: Any = None

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

    def _estimator(self, body, value, where, depth):
        if self.load_entry is None:  # pragma: no cover - load always sets it
            raise _fail(where, "holds an estimator where none is expected.")
        return self.load_entry(body, f"{where}.", depth)

    def _module(self, body, value, where, depth):
        from .._fitted_state import feature_buffers, join_feature_rows
        from ..nn.config import build_module, config_state_shapes

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
