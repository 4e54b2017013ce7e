"""Data-parallel training (DistributedDataParallel): two gloo ranks on 127.0.0.1.

The ranks run ``tests/_ddp_worker.py``: once under ``torchrun`` (the user's launcher; skrec
initialises the process group from its environment), and with torchrun's environment
variables set by the test for the failure cases, where the test must see each rank's own
exit. Every launch is bounded by a timeout, so a hang fails the test instead of blocking it.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

torch_dist = pytest.importorskip("torch.distributed")
if not torch_dist.is_available():  # pragma: no cover
    pytest.skip("this PyTorch build has no torch.distributed", allow_module_level=True)

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_ddp_worker.py"
sys.path.insert(0, str(HERE))
import _ddp_worker as worker  # noqa: E402

#: Seconds a whole launch may take (imports included) before the test fails as a hang.
LAUNCH_TIMEOUT = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict[str, str]:
    env = dict(os.environ)
    root = str(HERE.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    env.update(extra)
    return env


def _load(out: Path, name: str) -> list:
    return [torch.load(out / f"{name}.{rank}.pt", weights_only=False) for rank in (0, 1)]


@pytest.fixture(scope="module")
def torchrun_run(tmp_path_factory):
    """Launch the successful scenarios once with ``torchrun --nproc_per_node=2``."""
    out = tmp_path_factory.mktemp("ddp")
    logs = out / "logs"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
        f"--log-dir={logs}", "--redirects=3",
        str(WORKER), "main", str(out),
    ]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT)
    rank_logs = {}
    for rank in (0, 1):
        files = list(logs.rglob(f"*/{rank}/stderr.log"))
        rank_logs[rank] = files[0].read_text() if files else ""
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:], rank_logs)
    return out, rank_logs


def _single(name: str):
    """The same estimator in this process, with the two ranks' batches as one batch."""
    X = worker.data()
    with torch.random.fork_rng():
        return worker.equivalence_estimators(2 * worker.BATCH)[name].fit(X)


@pytest.mark.parametrize("name", ["seq", "ae"])
def test_two_ranks_reach_the_weights_of_one_process_with_the_shards_together(
        torchrun_run, name):
    out, _ = torchrun_run
    r0, r1 = _load(out, name)
    assert torch.equal(r0["params"], r1["params"])  # every rank holds the same model
    one = _single(name)
    torch.testing.assert_close(r0["params"], worker.flat(one), rtol=0, atol=1e-5)
    # the epoch loss is over every rank's targets, and the steps are the global ones
    for rec, ref in zip(r0["history"], one.history_, strict=True):
        assert rec["steps"] == ref["steps"]
        assert rec["loss"] == pytest.approx(ref["loss"], rel=1e-5)
    timing = ("seconds", "targets_per_s", "peak_memory_mb")  # local to each rank
    assert [{k: v for k, v in h.items() if k not in timing} for h in r0["history"]] == [
        {k: v for k, v in h.items() if k not in timing} for h in r1["history"]
    ]
    np.testing.assert_array_equal(r0["predict"], r1["predict"])


def test_a_click_model_trains_data_parallel_as_in_one_process(torchrun_run):
    out, _ = torchrun_run
    r0, r1 = _load(out, "ctr")
    assert torch.equal(r0["params"], r1["params"])
    X, y = worker.ctr_data()
    with torch.random.fork_rng():
        one = worker.ctr_estimator(2 * worker.BATCH * 4).fit(X, y)
    torch.testing.assert_close(r0["params"], worker.flat(one), rtol=0, atol=1e-5)
    for rec, ref in zip(r0["history"], one.history_, strict=True):
        assert rec["steps"] == ref["steps"]
        assert rec["loss"] == pytest.approx(ref["loss"], rel=1e-5)
    np.testing.assert_allclose(r0["proba"], one.predict_proba(X[:50]), atol=1e-5)
    # batch norm and dropout differ per rank; the gathered validation keeps them in step
    e0, e1 = _load(out, "ctr_early")
    assert e0["n_iter"] == e1["n_iter"] < 20 and e0["best_epoch"] == e1["best_epoch"]
    assert e0["val"] == e1["val"] and torch.equal(e0["params"], e1["params"])


def test_early_stopping_ends_every_rank_at_the_same_epoch(torchrun_run):
    out, _ = torchrun_run
    r0, r1 = _load(out, "early")
    assert r0["n_iter"] == r1["n_iter"] < 30  # it stopped early, on both ranks together
    assert r0["best_epoch"] == r1["best_epoch"]
    assert r0["best_score"] == r1["best_score"] == r0["monitored"][r0["best_epoch"] - 1]
    assert r0["monitored"] == r1["monitored"] and r0["val_loss"] == r1["val_loss"]
    assert torch.equal(r0["params"], r1["params"])


def test_pruning_prunes_the_same_units_on_every_rank(torchrun_run):
    out, _ = torchrun_run
    r0, r1 = _load(out, "prune")
    assert r0["groups"] == r1["groups"]
    assert any(g["after"] < g["before"] for g in r0["groups"])
    assert r0["heads"] == r1["heads"] and 0 in r0["heads"]  # a block without heads ...
    assert r0["fine_tuned"] == 1  # ... fine-tuned data-parallel all the same
    assert torch.equal(r0["params"], r1["params"])
    # the all-reduced Taylor scores are the scores of one process over all batches
    for a, b in zip(r0["taylor"], r1["taylor"], strict=True):
        assert torch.equal(a, b)
    for a, b in zip(r0["taylor"], r0["taylor_one"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precisions_train_data_parallel(torchrun_run, precision):
    out, _ = torchrun_run
    r0, r1 = _load(out, precision)
    assert np.isfinite(r0["loss"]) and r0["loss"] == r1["loss"]
    assert torch.equal(r0["params"], r1["params"])


def test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step(torchrun_run):
    out, _ = torchrun_run
    r0, r1 = _load(out, "ctrl_c")
    assert r0["n_steps"] == r1["n_steps"] == 3  # rank 1's request is shared at the next step
    assert r0["n_iter"] == r1["n_iter"] == 1 and r0["interrupted"] and r1["interrupted"]
    assert r0["warned"] and r1["warned"]
    assert torch.equal(r0["params"], r1["params"])


def test_fitted_estimator_is_unwrapped_picklable_and_progress_shows_on_rank_0(torchrun_run):
    out, logs = torchrun_run
    est = pickle.loads((out / "ae.pkl").read_bytes())  # pickled on rank 0
    assert type(est.module_).__name__ == "MultVAE"
    assert not any(p.grad is not None for p in est.module_.parameters())
    r0, r1 = _load(out, "fitted")
    X = worker.data()
    np.testing.assert_array_equal(est.predict(X), r0["predict"])
    np.testing.assert_array_equal(r0["predict"], r1["predict"])
    assert len(r0["history"]) == len(r1["history"]) == 2  # history_ on every rank
    assert r0["group_kept"]  # the group skrec created lives until the process exits
    assert "AERecommender" in logs[0] and "epoch" in logs[0]  # the bar, on rank 0
    assert "AERecommender" not in logs[1]


def _launch_pair(scenario: str, out: Path) -> list[subprocess.Popen]:
    port = _free_port()
    procs = []
    for rank in (0, 1):
        env = _env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen(
            [sys.executable, str(WORKER), scenario, str(out)], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    return procs


def _wait(proc: subprocess.Popen, timeout: float) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"a rank did not finish within {timeout:.0f} s: it hangs")
    return proc.returncode, err


@pytest.mark.parametrize("scenario", ["fail_exit", "fail_alive"])
def test_a_failing_rank_makes_the_other_fail_with_a_clear_error(tmp_path, scenario):
    """Rank 1 raises in the middle of training; rank 0 must stop with skrec's error.

    ``fail_exit``: rank 1's process ends (the usual case): rank 0 fails at once.
    ``fail_alive``: rank 1 catches its error and lives on: rank 0 fails when the process
    group's timeout (15 s, a group the script created itself) expires.
    """
    procs = _launch_pair(scenario, tmp_path)
    try:
        t0 = time.monotonic()
        code0, err0 = _wait(procs[0], LAUNCH_TIMEOUT)
        assert code0 != 0
        assert "Data-parallel training failed on rank 0 of 2" in err0, err0[-3000:]
        assert "another rank stopped" in err0
        if scenario == "fail_exit":  # rank 1's own error is its planted one
            code1, err1 = _wait(procs[1], 60)
            assert code1 != 0 and "planted failure on rank 1" in err1
        else:  # rank 1 caught its error and lives on; rank 0 gave up after the timeout
            assert "raised.1" in {p.name for p in tmp_path.iterdir()}
            assert procs[1].poll() is None
            assert time.monotonic() - t0 >= worker.TIMEOUT
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs (nccl)")
def test_nccl_on_two_gpus(tmp_path):  # pragma: no cover - GPU machines only
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "pytest"]
    script = tmp_path / "nccl.py"
    script.write_text(
        "import os, torch\n"
        "from skrec import SeqRecommender\n"
        "from skrec.datasets import make_interactions\n"
        "X = make_interactions(n_users=200, n_items=50, random_state=0)\n"
        "est = SeqRecommender(d_model=16, n_heads=2, max_iter=2, device='cuda',\n"
        "                     random_state=0).fit(X)\n"
        "assert torch.distributed.get_backend() == 'nccl'\n"
        "assert est.device_.index == int(os.environ['LOCAL_RANK'])\n"
        "v = torch.cat([p.detach().flatten() for p in est.module_.parameters()])\n"
        "torch.save(v.cpu(), f'{os.path.dirname(__file__)}/v{os.environ[\"RANK\"]}.pt')\n"
    )
    cmd = cmd[:-2] + [str(script)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.equal(torch.load(tmp_path / "v0.pt"), torch.load(tmp_path / "v1.pt"))
