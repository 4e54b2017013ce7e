"""Data-parallel training with ``torch.distributed``: the trainer's one helper (private).

A script that calls ``fit`` and is launched with ``torchrun --nproc_per_node=N`` trains
data-parallel without other changes. :class:`Distributed` is what the trainer
(:class:`skrec.training.Trainer`) asks, at its seams, for everything that differs between
one process and several:

* **who am I**: rank, world size and device from the environment (``LOCAL_RANK`` picks the
  GPU); the default process group is initialised (gloo on CPU, nccl on CUDA) when the user
  has not done it, and then destroyed at exit (or at once when a rank fails), never when the
  user created it;
* **data**: every rank draws the same batch list (same seed) of ``world_size`` times the
  per-rank batch size and keeps its interleaved share of each batch;
* **gradients**: a :class:`~torch.nn.parallel.DistributedDataParallel` wrapper around a
  module that computes the **loss** (so that parameters used outside ``forward``, such as the
  tied output embeddings, are synchronised too), ``no_sync`` inside accumulation windows, and
  the window's target count all-reduced, so that the gradient stays the target-weighted mean
  over all ranks;
* **agreement**: the random state, a fingerprint of the data and the hyper-parameters, the
  validation rankings and the final weights are shared, so that every rank takes the same
  decisions and ends with the same estimator;
* **failures**: a collective that fails because another rank died or timed out raises a
  clear error instead of a deep ``gloo``/``nccl`` message (a rank whose process ends makes
  the others fail at once; one that lives on after an error, at the group's timeout).

In one process every method is a no-op (or the identity), so the trainer has one code path.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import os
import pickle
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["process_rank"]

#: Whether skrec initialised the default process group (then skrec also destroys it).
_CREATED_GROUP = False
_ATEXIT_REGISTERED = False

#: The last collectives' work objects and tensors, released by this (the main) thread later.
#: A gloo worker thread that drops the last reference to a work object releases its tensors,
#: which needs the GIL; if that happens while the interpreter shuts down (a script that exits
#: right after ``fit``), the thread is killed inside a destructor and the process aborts
#: ("terminate called without an active exception"). Holding them here makes the main thread
#: release them instead.
_RECENT_WORK: deque = deque(maxlen=64)

# Words in the messages of gloo / nccl / c10d failures (their errors are plain RuntimeErrors).
_COMM_HINTS = ("gloo", "nccl", "c10d", "connection", "timed out", "timeout", "broken pipe",
               "socket", "processgroup", "process group", "peer")


def _dist():
    import torch.distributed as dist

    return dist


def process_rank() -> int:
    """This process's data-parallel rank: 0 in a single process.

    Read from the initialised default process group, else from torchrun's ``RANK``.

    Returns
    -------
    rank : int
        The global rank.
    """
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise RuntimeError(f"The environment variable {name}={value!r} is not an integer.") \
            from None


def _is_comm_error(exc: BaseException) -> bool:
    dist = _dist()
    dist_error = getattr(dist, "DistError", None)
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    message = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(h in message for h in _COMM_HINTS)


def _destroy_created_group() -> None:
    global _CREATED_GROUP
    dist = _dist()
    if _CREATED_GROUP and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
    _CREATED_GROUP = False


def _params_in_graph(loss: torch.Tensor) -> set[int]:
    """``id`` of every leaf tensor the autograd graph of ``loss`` reaches."""
    seen, found = set(), set()
    stack = [loss.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        variable = getattr(fn, "variable", None)
        if variable is not None:
            found.add(id(variable))
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return found


class _LossModule(nn.Module):
    """The module DDP wraps: its ``forward`` is the estimator's loss of a batch.

    Everything that touches the parameters (the model's forward, the tied output weights,
    the loss) runs inside DDP's forward, so every parameter the loss uses is synchronised.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, Any], torch.Tensor]):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


class Distributed:
    """Rank, world size, device and the collectives of one training run.

    ``Distributed()`` is the single-process helper: every method is the identity or a no-op.
    :meth:`from_environment` returns a multi-rank helper when this process is one of several
    (an initialised default process group of size > 1, or torchrun's ``WORLD_SIZE`` > 1).

    Parameters
    ----------
    rank : int, default=0
        Global rank.
    world_size : int, default=1
        Number of ranks.
    device : torch.device, default=None
        This rank's training device.
    """

    def __init__(self, rank: int = 0, world_size: int = 1,
                 device: torch.device | None = None):
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self.ddp: nn.Module | None = None
        self.probe_batch: Any = None
        self._comm_device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """Whether several ranks train together."""
        return self.world_size > 1

    def __repr__(self) -> str:
        return f"Distributed(rank={self.rank}, world_size={self.world_size}, " \
               f"device={self.device})"

    # ------------------------------------------------------------------ set-up
    @classmethod
    def from_environment(cls, device: torch.device) -> Distributed:
        """The helper of this process; initialises the default process group if needed.

        Parameters
        ----------
        device : torch.device
            The resolved training device. In data-parallel runs a ``cuda`` device without an
            index becomes ``cuda:LOCAL_RANK``.

        Returns
        -------
        helper : Distributed
            A single-process helper (``enabled`` is False) when this process trains alone.
        """
        dist = _dist()
        available = dist.is_available()
        if available and dist.is_initialized():
            world_size = dist.get_world_size()
        else:
            world_size = _env_int("WORLD_SIZE") or 1
        if world_size <= 1:
            return cls(device=device)
        if not available:
            raise RuntimeError(
                f"WORLD_SIZE={world_size} asks for data-parallel training, but this PyTorch "
                "build has no torch.distributed."
            )
        if device.type == "cuda":
            device = cls._rank_device(device)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            cls._init_group("nccl" if device.type == "cuda" else "gloo")
        backend = str(dist.get_backend()).lower()
        if device.type != "cuda" and "nccl" in backend and "gloo" not in backend:
            raise RuntimeError(
                "The default process group uses nccl, which reduces CUDA tensors only, but "
                f"this estimator trains on {device}. Train on device='cuda' (or 'auto'), or "
                "initialise a gloo process group for CPU training."
            )
        helper = cls(dist.get_rank(), dist.get_world_size(), device)
        helper._comm_device = device if "nccl" in backend else torch.device("cpu")
        return helper

    @staticmethod
    def _rank_device(device: torch.device) -> torch.device:
        if device.index is not None:
            return device
        local_rank = _env_int("LOCAL_RANK")
        if local_rank is None:
            local_rank = _dist().get_rank() if _dist().is_initialized() else 0
            local_rank %= max(torch.cuda.device_count(), 1)
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={local_rank}, but this machine has {torch.cuda.device_count()} "
                "CUDA device(s): start at most one process per GPU (torchrun "
                "--nproc_per_node=<number of GPUs>)."
            )
        return torch.device("cuda", local_rank)

    @staticmethod
    def _init_group(backend: str) -> None:
        global _CREATED_GROUP, _ATEXIT_REGISTERED
        missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
        if missing:
            raise RuntimeError(
                f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} asks for data-parallel training, "
                f"but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set. "
                "Launch the script with torchrun (torchrun --nproc_per_node=2 script.py), or "
                "call torch.distributed.init_process_group yourself before fit."
            )
        _dist().init_process_group(backend=backend, init_method="env://")
        _CREATED_GROUP = True
        if not _ATEXIT_REGISTERED:
            atexit.register(_destroy_created_group)
            _ATEXIT_REGISTERED = True

    # ------------------------------------------------------------------ failures
    def _fail(self, what: str, exc: BaseException) -> RuntimeError:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return RuntimeError(
            f"Data-parallel training failed on rank {self.rank} of {self.world_size} during "
            f"{what}: another rank stopped (it raised an error, was killed, or did not answer "
            "within the process group's timeout). Look for the first error in the other "
            f"ranks' output. ({type(exc).__name__}: {first[:300]})"
        )

    @contextlib.contextmanager
    def collective(self, what: str) -> Iterator[None]:
        """Turn the failure of a collective (a peer died or timed out) into a clear error."""
        if not self.enabled:
            yield
            return
        try:
            yield
        except RuntimeError as exc:
            if _is_comm_error(exc):
                raise self._fail(what, exc) from exc
            raise

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """On any error, release the DDP wrapper and destroy the group if skrec created it.

        The other ranks then fail with a clear error as soon as this process ends, or when
        the group's timeout expires if the error is caught and the process lives on.
        """
        try:
            yield
        except BaseException:
            if self.enabled:
                self._release()
                _destroy_created_group()
            raise

    # ------------------------------------------------------------------ data
    def shard(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        """This rank's interleaved share of every batch (all ranks hold the same list)."""
        if not self.enabled:
            return list(batches)
        return [rows[self.rank :: self.world_size] for rows in batches]

    def shard_rows(self, n_rows: int) -> slice:
        """A contiguous share of ``n_rows`` rows (rank order: concatenating gives all)."""
        if not self.enabled:
            return slice(0, n_rows)
        bounds = np.linspace(0, n_rows, self.world_size + 1).round().astype(int)
        return slice(int(bounds[self.rank]), int(bounds[self.rank + 1]))

    # ------------------------------------------------------------------ collectives
    def _run(self, what: str, op: Callable, tensor: torch.Tensor, **kwargs: Any) -> None:
        """Run one collective on ``tensor`` and wait; keep its work for the main thread."""
        with self.collective(what):
            work = op(tensor, async_op=True, **kwargs)
            work.wait()
        _RECENT_WORK.append((work, tensor))

    def sum_count(self, n: int, flag: bool = False) -> tuple[int, bool]:
        """Sum of an integer over the ranks, and whether any rank raised ``flag``."""
        if not self.enabled:
            return n, flag
        t = torch.tensor([n, int(bool(flag))], dtype=torch.int64, device=self._comm_device)
        self._run("the all-reduce of a window's target count", _dist().all_reduce, t)
        total, flags = t.tolist()
        return int(total), flags > 0

    def sum_floats(self, *values: float) -> tuple[float, ...]:
        """Sums of floats over the ranks (float64)."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        self._run("an all-reduce of the epoch's totals", _dist().all_reduce, t)
        return tuple(float(v) for v in t.tolist())

    def all_gather_object(self, obj: Any, what: str) -> list[Any]:
        """``obj`` of every rank, in rank order."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        with self.collective(what):
            _dist().all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, what: str) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        with self.collective(what):
            _dist().broadcast_object_list(box, src=0)
        return box[0]

    def sum_tensors_(self, tensors: Sequence[torch.Tensor], what: str) -> None:
        """Sum tensors over the ranks, in place."""
        if not self.enabled:
            return
        for t in tensors:
            if t.device.type == "cuda" or self._comm_device.type == "cpu":
                self._run(what, _dist().all_reduce, t)
            else:  # nccl reduces device tensors only
                moved = t.to(self._comm_device)
                self._run(what, _dist().all_reduce, moved)
                t.copy_(moved)

    def broadcast_module_(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every rank's ``module``."""
        if not self.enabled:
            return
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                self._run("the broadcast of the final weights", _dist().broadcast, t.data,
                          src=0)

    def sync_random_state(self, rng: np.random.RandomState) -> None:
        """Give ``rng`` rank 0's state: the same validation users and batches everywhere."""
        if self.enabled:
            rng.set_state(self.broadcast_object(rng.get_state(), "the random-state broadcast"))

    def check_consistent(self, **values: Any) -> None:
        """Raise the same ValueError on every rank if the ranks' ``values`` differ.

        Ranks that trained on different data or hyper-parameters would run different numbers
        of steps and wait for each other forever; this check stops them all at once.
        """
        if not self.enabled:
            return
        gathered = self.all_gather_object(values, "the check that all ranks agree")
        differ = sorted(k for k in values if any(g[k] != gathered[0][k] for g in gathered))
        if differ:
            detail = "; ".join(f"{k}: " + ", ".join(f"rank {r}={g[k]!r}"
                                                     for r, g in enumerate(gathered))
                               for k in differ)
            raise ValueError(
                "Data-parallel training needs the same data and hyper-parameters on every "
                f"rank (each rank trains on its share of the same batches); they differ in "
                f"{detail}."
            )

    # ------------------------------------------------------------------ the model
    def wrap(self, module: nn.Module, loss_fn: Callable[[nn.Module, Any], torch.Tensor],
             probe_batch: Any) -> None:
        """Wrap ``loss_fn(module, batch)`` in DistributedDataParallel (rank 0's weights).

        ``probe_batch`` is forwarded once (random state untouched) to find parameters the
        loss never uses (a pruned block without heads): DDP is told about them only when
        there are some, since the search costs a graph traversal per step.
        """
        if not self.enabled:
            return
        from torch.nn.parallel import DistributedDataParallel

        loss_module = _LossModule(module, loss_fn)
        params = [p for p in module.parameters() if p.requires_grad]
        unused = False
        if probe_batch is not None:
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                used = _params_in_graph(loss_module(probe_batch))
            unused = any(id(p) not in used for p in params)
        kwargs: dict[str, Any] = {
            "find_unused_parameters": unused,
            # gradients are views of the all-reduce buckets: no copy, less memory
            "gradient_as_bucket_view": True,
        }
        # No buffer broadcast in forward: ranks may run different numbers of forward passes
        # in an accumulation window (a micro-batch without targets is skipped).
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
            kwargs["forward_sync_buffers"] = False
        else:  # pragma: no cover - older torch
            kwargs["broadcast_buffers"] = False
        if self.device.type == "cuda":
            kwargs["device_ids"] = [self.device.index]
        with self.collective("the set-up of DistributedDataParallel"):
            self.ddp = DistributedDataParallel(loss_module, **kwargs)
        self.probe_batch = probe_batch

    def loss(self, batch: Any) -> torch.Tensor:
        """The summed loss of ``batch`` through the DDP wrapper."""
        return self.ddp(batch)

    def no_sync(self) -> contextlib.AbstractContextManager:
        """Accumulate gradients locally (the micro-batches of a window but the last)."""
        if self.ddp is None:
            return contextlib.nullcontext()
        return self.ddp.no_sync()

    def unwrap(self, module: nn.Module) -> None:
        """Drop the wrapper (and the gradients, views of its buckets) after a run."""
        self._release()
        module.zero_grad(set_to_none=True)

    def _release(self) -> None:
        # DDP's reducer hooks the parameters' gradient accumulators: left there, the hooks
        # would keep the reducer (its buckets: a copy of the gradients) alive after the run.
        ddp, self.ddp, self.probe_batch = self.ddp, None, None
        if ddp is not None:
            remove = getattr(ddp, "_remove_autograd_hooks", None)
            if remove is not None:
                with contextlib.suppress(RuntimeError):
                    remove()


def data_fingerprint(X) -> str:
    """A cheap fingerprint of a sparse matrix or an array: shape and a CRC of its values."""
    import scipy.sparse as sp

    if sp.issparse(X):
        X = X.tocsr()
        arrays, size = (X.indptr, X.indices, X.data), f"nnz={X.nnz}"
    else:
        X = np.asarray(X)
        arrays, size = (X,), f"dtype={X.dtype}"
    crc = 0
    for arr in arrays:
        try:
            data = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
        except (TypeError, ValueError):  # objects (strings, ...): their pickle
            data = pickle.dumps(arr)
        crc = zlib.crc32(data, crc)
    return f"{'x'.join(map(str, X.shape))}, {size}, crc32={crc:08x}"
