"""Torch threads inside parallel workers: each task uses the threads its worker was given.

torch sizes its intra-op thread pool (OpenMP, MKL) to all the cores of the machine by default.
When joblib, dask or Ray run several fits at once, one per worker, every worker process (or
worker thread) would start that many threads: 2 workers on 2 cores then run 4 busy threads, and
OpenMP's spin-waiting makes such oversubscription much slower than running with fewer threads.

:func:`limit_torch_threads` wraps skrec's fit and inference entry points
(:meth:`skrec.base.BaseRecommender.fit`, ``recommend``, ``predict_scores``; ``predict`` and
``score`` go through ``recommend``). Inside a recognised worker it lowers
``torch.get_num_threads()`` to :func:`worker_threads` for the duration of the call and restores
the previous value afterwards; everywhere else (a notebook, a script, ``n_jobs=1``) it does
nothing. It only ever lowers the count, so a tighter limit that is already in force
(``torch.set_num_threads``, :func:`threadpoolctl.threadpool_limits`, ``OMP_NUM_THREADS``) is
kept.

What a worker was given:

* **dask.distributed** (a task running on a worker, found with
  :func:`distributed.get_worker`): the worker runs up to ``nthreads`` tasks at once in one
  process, so a task gets ``OMP_NUM_THREADS // nthreads`` threads, at least 1. dask's nanny
  sets ``OMP_NUM_THREADS=1`` in its worker processes by default (configuration key
  ``distributed.nanny.pre-spawn-environ``), so a task gets 1 thread unless that setting gives
  more; without the variable (``LocalCluster(processes=False)``, a worker without a nanny) a
  task gets 1 thread.
* **joblib's loky backend** (``GridSearchCV(n_jobs=...)``, a loky worker process): joblib sets
  ``OMP_NUM_THREADS`` in each worker to ``inner_max_num_threads`` (``joblib.parallel_config``)
  or ``cpu_count() // n_jobs``; that value.
* **Ray** (a task or actor in a Ray worker, as with ``ray.util.joblib``): Ray sets
  ``OMP_NUM_THREADS`` to the CPUs assigned to the task (1 for actors without ``num_cpus``,
  such as the joblib backend's pool); that value.

torch's thread count is per OS thread once set (OpenMP), while MKL's is per process; when
several tasks of one worker process run at once, the first one in lowers the count and the last
one out restores it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

import torch

__all__ = ["limit_torch_threads", "worker_threads"]


def _env_threads() -> int | None:
    """``OMP_NUM_THREADS`` as a positive int (first level of a nested list), else ``None``."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    try:
        n = int(value)
    except ValueError:
        return None
    return n if n >= 1 else None


def _dask_worker_nthreads() -> int | None:
    """``nthreads`` of the dask worker running the current task, ``None`` outside one."""
    distributed = sys.modules.get("distributed")  # never import dask ourselves
    if distributed is None:
        return None
    try:
        worker = distributed.get_worker()
    except (ValueError, AttributeError):
        return None
    state = getattr(worker, "state", worker)
    return max(1, int(getattr(state, "nthreads", 1) or 1))


def _in_loky_worker() -> bool:
    executor = sys.modules.get("joblib.externals.loky.process_executor")
    return executor is not None and getattr(executor, "_CURRENT_DEPTH", 0) > 0


def _in_ray_worker() -> bool:
    ray = sys.modules.get("ray")
    if ray is None:
        return False
    try:
        if not ray.is_initialized():
            return False
        from ray._private.worker import WORKER_MODE

        return ray.get_runtime_context().worker.mode == WORKER_MODE
    except Exception:  # a Ray version without these internals: not a worker we recognise
        return False


def worker_threads() -> int | None:
    """Intra-op threads the current parallel worker gave this task.

    Returns
    -------
    n_threads : int or None
        The thread budget of the task when it runs in a dask.distributed worker, a joblib loky
        worker or a Ray worker (see the module docstring for how each is read); ``None``
        outside such a worker, where skrec leaves torch's thread count alone.
    """
    nthreads = _dask_worker_nthreads()
    if nthreads is not None:
        return max(1, (_env_threads() or nthreads) // nthreads)
    if _in_loky_worker():
        return _env_threads()
    if _in_ray_worker():
        return _env_threads() or 1
    return None


_lock = threading.Lock()
_active = 0
_saved: int | None = None


@contextlib.contextmanager
def limit_torch_threads() -> Iterator[None]:
    """Run the block with torch's intra-op threads capped at :func:`worker_threads`.

    Outside a recognised worker, or when torch already uses no more threads than the worker
    was given, nothing changes. Otherwise ``torch.set_num_threads`` lowers the count for the
    block, and the value found by the first of the concurrently running blocks is restored
    when the last one exits. Re-entrant and thread-safe.

    Yields
    ------
    None
    """
    budget = worker_threads()
    if budget is None:
        yield
        return
    global _active, _saved
    with _lock:
        current = torch.get_num_threads()
        if _active == 0:
            _saved = current
        _active += 1
        if budget < current:
            torch.set_num_threads(budget)
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                if _saved is not None and torch.get_num_threads() != _saved:
                    torch.set_num_threads(_saved)
                _saved = None
