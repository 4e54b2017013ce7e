"""Fingerprints of fixed fits: weights, history and recommendations, bit for bit.

A refactoring of the training machinery must leave every fit exactly as it was. Each case
below fits one estimator with fixed settings on fixed data (CPU, one thread) and reduces the
result to SHA-256 digests of its weights (every tensor of ``module_.state_dict()``, in key
order), its ``history_`` (every value but the timings) and its recommendations (ids and
scores), plus the first epoch's loss as a number (compared with a tolerance on CPUs whose
kernels differ from the recorder's).

``tests/test_fingerprints.py`` compares them with ``tests/data/fingerprints.json``, recorded
by ``python tests/_fingerprints.py --write`` (with PYTHONPATH pointing at the source tree).
The exact comparison needs the recorder's torch version and CPU kernel family
(``torch.backends.cpu.get_cpu_capability()``); elsewhere only the first-epoch losses are
compared, to a relative 1e-4.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

GOLDEN = Path(__file__).resolve().parent / "data" / "fingerprints.json"

#: history keys that measure time or memory, not the training itself
_TIMING = ("seconds", "targets_per_s", "peak_memory_mb")

SEQ = dict(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=12, max_iter=4, batch_size=16,
           random_state=0, device="cpu", precision="fp32", n_iter_no_change=2)
AE = dict(latent_dim=16, hidden_sizes=(24,), max_iter=4, batch_size=32, random_state=0,
          device="cpu", precision="fp32", n_iter_no_change=2, anneal_steps=20)


def _data():
    from skrec.datasets import make_interactions

    X = make_interactions(n_users=150, n_items=40, mean_length=10, random_state=0)
    rng = np.random.RandomState(1)
    F = sp.csr_matrix((rng.rand(40, 7) < 0.3).astype(np.float32))
    U = rng.rand(150, 3).astype(np.float32)
    return X, F, U


def _digest(parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
    return h.hexdigest()[:24]


def fingerprint(est, X, user_features=None) -> dict:
    """Digests of ``est``'s weights, history and recommendations for the users of ``X``."""
    state = est.module_.state_dict()
    weights = _digest(
        part for k in sorted(state) for part in (k, state[k].detach().cpu().contiguous()
                                                 .numpy().tobytes())
    )
    history = [{k: v for k, v in rec.items() if k not in _TIMING} for rec in est.history_]
    kw = {} if user_features is None else {"user_features": user_features[:60]}
    ids, scores = est.recommend(X[:60], k=8, **kw)
    return {
        "weights": weights,
        "history": _digest([json.dumps(history, sort_keys=True, default=repr)]),
        "recommend": _digest([ids.tobytes(), scores.tobytes()]),
        "n_iter": int(est.n_iter_),
        "n_steps": int(est.n_steps_),
        "best_epoch": est.best_epoch_,
        "first_loss": float(est.history_[0]["loss"]),
    }


def cases():
    """name -> a function returning ``(fitted estimator, X, user_features)``."""
    from skrec import AERecommender, SeqRecommender

    X, F, U = _data()

    def seq(**kw):
        return lambda: (SeqRecommender(**{**SEQ, **kw}).fit(X), X, None)

    def ae(**kw):
        return lambda: (AERecommender(**{**AE, **kw}).fit(X, user_features=U), X, U)

    def warm():
        rec = SeqRecommender(**{**SEQ, "max_iter": 2}).fit(X)
        rec.set_params(warm_start=True, max_iter=2)
        return rec.fit(X), X, None

    def partial():
        rec = SeqRecommender(**{**SEQ, "max_iter": 2}).fit(X)
        rec.partial_fit(X[:80])
        return rec.partial_fit(X[80:]), X, None

    def pruned():
        rec = SeqRecommender(**{**SEQ, "max_iter": 2}).fit(X)
        return rec.prune_(0.5, X=X, fine_tune_epochs=2), X, None

    def int8():
        rec = SeqRecommender(**{**SEQ, "max_iter": 2}).fit(X)
        return rec.set_params(inference_precision="int8"), X, None

    return {
        "seq_default": seq(),
        "seq_acc2_wa_loss": seq(accumulation_steps=2, weight_averaging=0.5,
                                validation_metric="loss"),
        "seq_bf16": seq(precision="bf16", max_iter=2),
        "seq_gru": seq(encoder="gru"),
        "seq_masked": seq(objective="masked"),
        "seq_sampled": seq(loss="sampled", n_negatives=8),
        "seq_gbce": seq(loss="gbce", n_negatives=8),
        "seq_features": seq(item_features=F, feature_dropout=0.1, feature_hidden=8),
        "seq_prune_param": seq(prune={"amount": 0.5, "fine_tune_epochs": 1}),
        "seq_warm_start": warm,
        "seq_partial_fit": partial,
        "seq_prune_method": pruned,
        "seq_int8": int8,
        "ae_vae": ae(),
        "ae_dae_features": ae(variational=False, item_features=F, early_stopping=False,
                              max_iter=2),
    }


def compute(names=None) -> dict:
    """Fingerprints of the cases (all, or ``names``), with one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, make in cases().items():
                if names is None or name in names:
                    est, X, U = make()
                    out[name] = fingerprint(est, X, U)
    finally:
        torch.set_num_threads(threads)
    return out


def environment() -> dict:
    """What must match for the digests to be comparable bit for bit."""
    return {"torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="record the golden file")
    args = parser.parse_args(argv)
    result = {"environment": environment(), "cases": compute()}
    if args.write:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(json.dumps(result, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
