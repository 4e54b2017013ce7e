"""Fits in parallel workers: joblib's loky, dask.distributed and Ray backends.

Each worker's task runs torch with the threads the worker was given (skrec._parallel), fitted
estimators travel between processes, and a grid search on a dask (or Ray) cluster gives the
scores of the local run. The clusters are started on 127.0.0.1 by the tests, every wait on
them is bounded by a timeout, and the tests skip when dask or Ray is not installed.
"""

from __future__ import annotations

import os
import threading

import joblib
import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV

from skrec import SeqRecommender, _parallel
from skrec._parallel import limit_torch_threads, worker_threads
from skrec.baselines import PopularityRecommender
from skrec.model_selection import leave_last_out_split

#: Seconds any start, grid search or shutdown of a cluster may take before the test fails.
TIMEOUT = 240


class _RecordThreads:
    """Mixin: record torch's thread count inside fit and inference."""

    def _fit(self, X, y, user_features=None):
        self.fit_threads_ = torch.get_num_threads()
        super()._fit(X, y, user_features)

    def _user_scores(self, X, user_features=None):
        self.predict_threads_ = torch.get_num_threads()
        return super()._user_scores(X, user_features)


class _ThreadRecorder(_RecordThreads, SeqRecommender):
    """A SeqRecommender that records its thread counts (trains a torch module)."""


class _PopularityThreadRecorder(_RecordThreads, PopularityRecommender):
    """A PopularityRecommender that records its thread counts (no training: fast)."""


def _tiny(cls=SeqRecommender, **params):
    base = dict(d_model=16, n_layers=1, n_heads=1, d_ff=32, max_len=20, max_iter=2,
                batch_size=64, precision="fp32", random_state=0)
    return cls(**{**base, **params})


def _fit_in_worker(est, X):
    """Run in a worker: torch starts at 2 threads, as on a 2-core machine by default."""
    torch.set_num_threads(2)
    est.fit(X)
    ids = est.predict(X)
    return est, ids, worker_threads(), torch.get_num_threads()


def _bounded(fn, timeout=TIMEOUT):
    """``fn()`` in a daemon thread; the test fails (rather than hangs) after ``timeout`` s."""
    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not finish within {timeout} s")
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.fixture(scope="module")
def data(interactions):
    return leave_last_out_split(interactions)


@pytest.fixture
def two_threads():
    """torch at 2 intra-op threads for the test (the suite runs at 1), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _check_worker_fit(result, X, local_ids):
    est, ids, budget, after = result
    assert budget == 1
    assert est.fit_threads_ == 1 and est.predict_threads_ == 1  # inside fit and predict
    assert after == 2  # restored when fit and predict returned
    # The fitted estimator came back pickled: it predicts as in the worker and as a local fit.
    np.testing.assert_array_equal(est.predict(X), ids)
    np.testing.assert_array_equal(ids, local_ids)


# ---------------------------------------------------------------------------- the mechanism
def test_outside_workers_threads_are_left_alone(data, two_threads):
    X, _ = data
    assert worker_threads() is None
    est = _PopularityThreadRecorder().fit(X)
    est.predict(X[:5])
    assert est.fit_threads_ == 2 and est.predict_threads_ == 2
    assert torch.get_num_threads() == 2


def test_limit_lowers_restores_and_never_raises(data, two_threads, monkeypatch):
    X, _ = data
    monkeypatch.setattr(_parallel, "worker_threads", lambda: 1)
    est = _PopularityThreadRecorder().fit(X)
    assert est.fit_threads_ == 1
    est.predict_scores(X[:5])
    assert est.predict_threads_ == 1
    assert torch.get_num_threads() == 2
    with limit_torch_threads():
        with limit_torch_threads():  # re-entrant: the outer block restores
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    # A budget above the current count leaves a tighter limit alone.
    monkeypatch.setattr(_parallel, "worker_threads", lambda: 4)
    with limit_torch_threads():
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize(
    ("env", "nthreads", "expected"),
    [(None, 1, 1), (None, 4, 1), ("1", 2, 1), ("4", 1, 4), ("4", 2, 2), ("8,2", 2, 4)],
)
def test_dask_budget_divides_the_workers_threads(monkeypatch, env, nthreads, expected):
    monkeypatch.setattr(_parallel, "_dask_worker_nthreads", lambda: nthreads)
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert worker_threads() == expected


def test_loky_worker_uses_the_threads_joblib_gave_it(data):
    X, _ = data
    local_ids = _PopularityThreadRecorder().fit(X).predict(X)
    with joblib.parallel_config(backend="loky", inner_max_num_threads=1):
        results = joblib.Parallel(n_jobs=2)(
            joblib.delayed(_fit_in_worker)(_PopularityThreadRecorder(), X) for _ in range(2)
        )
    for result in results:
        _check_worker_fit(result, X, local_ids)


# ---------------------------------------------------------------------------- dask
@pytest.fixture(scope="module")
def dask_client():
    """A LocalCluster of 2 worker processes x 1 thread on 127.0.0.1, and its client."""
    distributed = pytest.importorskip("distributed", reason="needs pip install 'skrec[dask]'")
    with pytest.MonkeyPatch.context() as mp:
        # dask's nanny writes its pre-spawn variables (OMP_NUM_THREADS=1, ...) into this
        # process's environment; put them back afterwards.
        import dask

        for var in dask.config.get("distributed.nanny.pre-spawn-environ", {}):
            if var in os.environ:
                mp.setenv(var, os.environ[var])
            else:
                mp.delenv(var, raising=False)

        def start():
            cluster = distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None,
            )
            return cluster, distributed.Client(cluster)

        cluster, client = _bounded(start)
        try:
            yield client
        finally:
            def stop():
                client.close(timeout=60)
                cluster.close(timeout=60)

            _bounded(stop)


def test_dask_worker_fit_uses_given_threads_and_pickles(dask_client, data):
    X, _ = data
    local_ids = _tiny(_ThreadRecorder).fit(X).predict(X)
    future = dask_client.submit(_fit_in_worker, _tiny(_ThreadRecorder), X, pure=False)
    _check_worker_fit(future.result(timeout=TIMEOUT), X, local_ids)


def _grid_search(X, y, n_jobs):
    grid = GridSearchCV(_tiny(max_iter=3), {"d_model": [8, 16], "dropout": [0.0, 0.3]},
                        cv=2, n_jobs=n_jobs)
    return grid.fit(X, y)


def _check_same_search(local, remote):
    assert remote.best_params_ == local.best_params_
    for key in ("split0_test_score", "split1_test_score", "mean_test_score"):
        np.testing.assert_allclose(remote.cv_results_[key], local.cv_results_[key], atol=1e-6)
    np.testing.assert_array_equal(remote.cv_results_["rank_test_score"],
                                  local.cv_results_["rank_test_score"])


def test_dask_grid_search_matches_local(dask_client, data):
    X, y = data
    local = _grid_search(X, y, n_jobs=1)  # fp32, 1 thread: as each dask worker's task

    def remote():
        with joblib.parallel_backend("dask"):
            return _grid_search(X, y, n_jobs=-1)

    _check_same_search(local, _bounded(remote))


# ---------------------------------------------------------------------------- Ray
def _ray_scenario() -> None:
    """Run in a fresh interpreter: a local Ray runtime, the grid search, a JSON line out.

    Ray starts its own processes and signal handlers and may end the interpreter when its
    runtime fails, so it never runs inside the pytest process.
    """
    import json

    import ray
    from ray.util.joblib import register_ray

    from skrec.datasets import make_interactions

    torch.set_num_threads(1)  # as the test suite (conftest.py): 1 thread, as each Ray task
    X, y = leave_last_out_split(
        make_interactions(n_users=300, n_items=60, mean_length=12, random_state=0)
    )
    local = _grid_search(X, y, n_jobs=1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        register_ray()
        with joblib.parallel_backend("ray"):
            budgets = joblib.Parallel(n_jobs=2)(joblib.delayed(worker_threads)() for _ in range(2))
            remote = _grid_search(X, y, n_jobs=-1)
    finally:
        ray.shutdown()
    keys = ("split0_test_score", "split1_test_score", "mean_test_score", "rank_test_score")
    print("RESULT " + json.dumps({
        "budgets": budgets,
        "best_params": [local.best_params_, remote.best_params_],
        "scores": [{k: np.asarray(s.cv_results_[k]).tolist() for k in keys}
                   for s in (local, remote)],
    }))


@pytest.mark.slow
def test_ray_grid_search_matches_local():
    pytest.importorskip("ray", reason="needs pip install 'skrec[ray]'")
    import json
    import subprocess
    import sys
    from pathlib import Path

    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            "import test_parallel; test_parallel._ray_scenario()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (
        f"the Ray run failed (exit code {proc.returncode}):\n{proc.stdout[-3000:]}\n"
        f"{proc.stderr[-3000:]}"
    )
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["budgets"] == [1, 1]  # each Ray task runs torch with 1 thread
    local, remote = out["best_params"]
    assert remote == local
    local, remote = out["scores"]
    for key in local:
        np.testing.assert_allclose(remote[key], local[key], atol=1e-6)
