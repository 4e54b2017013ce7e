"""One rank of the data-parallel tests (``tests/test_distributed.py``); not a test module.

Run as ``python _ddp_worker.py SCENARIO OUT_DIR`` by ``torchrun`` or with torchrun's
environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``) set by the test. skrec initialises the process group itself. Results go to
``OUT_DIR/<name>.<rank>.pt``.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path

import torch

torch.set_num_threads(1)

from skrec import AERecommender, SeqRecommender  # noqa: E402
from skrec.callbacks import Callback  # noqa: E402
from skrec.datasets import make_interactions  # noqa: E402

RANK = int(os.environ.get("RANK", "0"))

#: Tiny models; no dropout, so that the two ranks' shards compute what one process computes.
SEQ = dict(d_model=16, n_heads=2, d_ff=32, n_layers=1, max_len=20, dropout=0.0,
           precision="fp32", random_state=0, device="cpu")
AE = dict(variational=False, hidden_sizes=(16,), latent_dim=8, dropout=0.0,
          precision="fp32", random_state=0, device="cpu")
#: Per-rank batch size of the equivalence runs (one process uses twice as many).
BATCH = 8
#: Timeout (seconds) of the process group that the "fail_alive" scenario creates itself.
TIMEOUT = 15


def data():
    """120 users x 40 items: the same matrix on every rank and in the test."""
    return make_interactions(n_users=120, n_items=40, mean_length=10, random_state=0)


def equivalence_estimators(batch_size: int):
    """The estimators whose weights the test compares with one process (shared with it)."""
    common = dict(max_iter=2, early_stopping=False, accumulation_steps=2, batch_size=batch_size)
    return {
        "seq": SeqRecommender(**SEQ, **common),
        "ae": AERecommender(**AE, **common),
    }


def flat(est) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in est.module_.parameters()])


def save(out: Path, name: str, value) -> None:
    torch.save(value, out / f"{name}.{RANK}.pt")


class RaiseAt(Callback):
    """Raise on this rank at the end of an epoch."""

    def __init__(self, rank: int, epoch: int):
        self.rank, self.epoch = rank, epoch

    def on_epoch_end(self, trainer, record):
        if trainer.rank == self.rank and record["epoch"] == self.epoch:
            raise ValueError(f"planted failure on rank {self.rank}")


class CtrlCAt(Callback):
    """Send this process a Ctrl-C (SIGINT) after an optimizer step, on one rank only."""

    def __init__(self, rank: int, step: int):
        self.rank, self.step = rank, step

    def on_step_end(self, trainer, loss, n_targets):
        if trainer.rank == self.rank and trainer.state.n_steps == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def ctr_data():
    """1,200 impressions of 4 categorical and 2 numeric fields (the same on every rank)."""
    from skrec.datasets import make_ctr

    d = make_ctr(1200, n_categorical=4, n_numeric=2, max_cardinality=50, click_rate=0.3,
                 as_frame=True, random_state=0)
    return d.X, d.y


def ctr_estimator(batch_size: int, **params):
    """A click model whose two ranks compute what one process computes (no batch norm, no
    dropout: per-rank batch statistics and dropout draws would differ)."""
    from skrec import CTRClassifier

    return CTRClassifier(**{**dict(max_iter=2, batch_size=batch_size, batch_norm=False,
                                   dropout=0.0, early_stopping=False, accumulation_steps=2,
                                   click_count_buckets=1 << 10, min_frequency=2,
                                   precision="fp32", random_state=0, device="cpu"), **params})


def main(out: Path) -> None:
    """The scenarios that succeed: equivalence, agreement, early stopping, pruning, ..."""
    X_ctr, y_ctr = ctr_data()
    est = ctr_estimator(BATCH * 4).fit(X_ctr, y_ctr)
    save(out, "ctr", {"params": flat(est), "history": est.history_,
                      "proba": est.predict_proba(X_ctr[:50])})
    # the default model (batch norm, dropout) with early stopping on gathered validation
    est = ctr_estimator(BATCH * 4, batch_norm=True, dropout=0.2, early_stopping=True,
                        max_iter=20, learning_rate_init=0.02)
    est.fit(X_ctr, y_ctr)
    save(out, "ctr_early", {"n_iter": est.n_iter_, "best_epoch": est.best_epoch_,
                            "val": [h["val_log_loss"] for h in est.history_],
                            "params": flat(est)})

    X = data()
    for name, est in equivalence_estimators(BATCH).items():
        est.fit(X)
        assert type(est.module_).__name__ != "DistributedDataParallel"
        save(out, name, {"params": flat(est), "history": est.history_,
                         "predict": est.predict(X[:20])})

    # early stopping on a ranking metric, whose value is gathered over the ranks
    est = SeqRecommender(**SEQ, max_iter=30, batch_size=BATCH, validation_metric="ndcg@10",
                         n_iter_no_change=2, learning_rate_init=1e-2)
    est.fit(X)
    save(out, "early", {"n_iter": est.n_iter_, "best_epoch": est.best_epoch_,
                        "best_score": est.best_score_, "params": flat(est),
                        "monitored": [h["val_ndcg@10"] for h in est.history_],
                        "val_loss": [h["val_loss"] for h in est.history_]})

    # pruning: the Taylor scores are all-reduced, so every rank prunes the same units; 3 of
    # the 4 heads go, so a block is left without heads, whose unused parameters DDP is told
    # about when it fine-tunes
    est = SeqRecommender(**{**SEQ, "n_layers": 2}, max_iter=2, batch_size=BATCH,
                         prune={"amount": 0.75, "targets": ["heads"], "fine_tune_epochs": 1})
    est.fit(X)
    acc = est._taylor_scores(est._training_matrix(X, None), None)
    import skrec.pruning._core as core

    single = core.Distributed.from_environment
    core.Distributed.from_environment = staticmethod(
        lambda device: core.Distributed(device=device)
    )
    try:
        acc_one = est._taylor_scores(est._training_matrix(X, None), None)
    finally:
        core.Distributed.from_environment = single
    save(out, "prune", {"params": flat(est), "groups": est.pruning_report_["groups"],
                        "heads": [b.attn.n_heads for b in est.module_.encoder.blocks],
                        "fine_tuned": est.pruning_report_["fine_tune_epochs"],
                        "taylor": [acc[id(p)] for p in est.module_.parameters()],
                        "taylor_one": [acc_one[id(p)] for p in est.module_.parameters()]})

    # every precision trains, and the ranks stay identical
    for precision in ("bf16", "fp16"):
        est = SeqRecommender(**{**SEQ, "precision": precision}, max_iter=1, batch_size=BATCH,
                             accumulation_steps=2, early_stopping=False).fit(X)
        save(out, precision, {"params": flat(est), "loss": est.history_[0]["loss"]})

    # Ctrl-C on one rank: every rank stops after the same step and keeps its weights
    est = SeqRecommender(**SEQ, max_iter=5, batch_size=BATCH, early_stopping=False,
                         callbacks=[CtrlCAt(rank=1, step=2)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X)
    save(out, "ctrl_c", {"n_steps": est.n_steps_, "n_iter": est.n_iter_, "params": flat(est),
                         "interrupted": est.history_[-1].get("interrupted", False),
                         "warned": any("interrupted" in str(w.message) for w in caught)})

    # the fitted estimator: progress bars on rank 0 only, pickled on rank 0 only
    est = AERecommender(**AE, max_iter=2, batch_size=BATCH, verbose=1).fit(X)
    if RANK == 0:
        (out / "ae.pkl").write_bytes(pickle.dumps(est))
    import torch.distributed as dist

    save(out, "fitted", {"predict": est.predict(X), "history": est.history_,
                         "group_kept": dist.is_initialized()})


def fail(out: Path, stay_alive: bool) -> None:
    """Rank 1 raises at the end of epoch 2; rank 0 must fail with a clear error, not hang.

    With ``stay_alive`` rank 1 catches its error and lives on: then rank 0 can only learn of
    it from the timeout, so this scenario creates the process group itself, with a short
    timeout (skrec uses a group it finds, and leaves it alone).
    """
    if stay_alive:
        import torch.distributed as dist

        dist.init_process_group("gloo", timeout=timedelta(seconds=TIMEOUT))
    est = SeqRecommender(**SEQ, max_iter=50, batch_size=BATCH, early_stopping=False,
                         callbacks=[RaiseAt(rank=1, epoch=2)])
    try:
        est.fit(data())
    except ValueError as exc:
        if RANK != 1 or not stay_alive:
            raise
        assert dist.is_initialized()  # the user's group is not destroyed by skrec
        (out / "raised.1").write_text(str(exc))
        time.sleep(120)  # a rank whose error was caught keeps the process alive


if __name__ == "__main__":
    scenario, out_dir = sys.argv[1], Path(sys.argv[2])
    if scenario == "main":
        main(out_dir)
    else:
        fail(out_dir, stay_alive=scenario == "fail_alive")
