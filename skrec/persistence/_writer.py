"""Values -> tagged JSON and tensors: what :func:`~skrec.persistence.save` writes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ._base import _DTYPES, _NP_CODES, _TORCH_DTYPES, _name_of

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


def _is_estimator(value: Any) -> bool:
    """Whether ``value`` is a scikit-learn style estimator (an instance with ``get_params``),
    stored as a nested entry of its registered class."""
    return not isinstance(value, type) and callable(getattr(value, "get_params", None)) \
        and callable(getattr(value, "set_params", None))


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

    # -- estimators
    def entry(self, estimator: Any, where: str = "") -> dict[str, Any]:
        """One estimator's ``{"estimator", "params", "attributes"}`` (a file's entry, or an
        estimator held by another one, such as a classifier's fitted input encoder); its
        arrays go to this writer under ``where``."""
        from .._fitted_state import feature_tails

        try:
            name = _name_of(type(estimator))
        except TypeError as exc:
            if not where:
                raise
            raise TypeError(f"cannot save {where}: {exc}") from None
        try:
            params = estimator.get_params(deep=False)
        except AttributeError:
            raise TypeError(f"{type(estimator).__name__} has no get_params.") from None
        spot = f"{where}." if where else ""
        outer, self.derived = self.derived, feature_tails(estimator)
        try:
            return {
                "estimator": name,
                "params": {k: self.encode(v, f"{spot}params.{k}") for k, v in params.items()},
                "attributes": {k: self.encode(v, f"{spot}{k}")
                               for k, v in vars(estimator).items()
                               if k not in params and not k.startswith("_")},
            }
        finally:
            self.derived = outer

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
        if _is_estimator(value):
            return {"$estimator": self.entry(value, where)}
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
        from ..nn.config import module_config

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
