"""Do user side features help? AERecommender with and without MovieLens-100K demographics.

User features: gender and occupation one-hot, age in 6 quantile bins (a scikit-learn
``ColumnTransformer``, as in the "Side features and cold start" guide): 29 columns, one row per
row of ``X``. Two protocols, ``--seeds`` seeds (the model's ``random_state`` and the split):

* ``all users``: leave-last-out (each user's latest rating is the target), full ranking, seen
  items excluded, NDCG@10 and HR@10 over the 943 users.
* ``new users``: 20 % of the users (seeded) are held out of training entirely. For each of them
  the first ``n`` ratings (by time) are revealed as their history, ``n`` in ``--reveal``
  (0 = a brand-new user), and the rest are the targets (NDCG@10, Recall@20 over all of them).
  Popularity, the id-only autoencoder (which, with an empty history, falls back to
  popularity) and the autoencoder with user features (which scores every user from them).

Run: ``python benchmarks/user_features.py [--data PATH] [--seeds 3]``; results in
``benchmarks/results/user_features.json``.
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder

from _common import markdown_table, ml100k_path, peak_rss_mb, save_json, summarize_seeds, timed
from skrec import AERecommender
from skrec.baselines import PopularityRecommender
from skrec.datasets import load_movielens, load_movielens_users
from skrec.metrics import hit_rate_at_k, ndcg_at_k, recall_at_k
from skrec.model_selection import leave_last_out_split


def user_feature_matrix(path) -> tuple[sp.csr_matrix | np.ndarray, sp.csr_matrix]:
    """``(U, X)``: the demographics of the users of ``X``, row for row."""
    data = load_movielens(path)
    users = load_movielens_users(path, user_ids=data.user_ids, as_frame=True)
    encoder = ColumnTransformer([
        ("categories", OneHotEncoder(handle_unknown="ignore"), ["gender", "occupation"]),
        ("age", KBinsDiscretizer(n_bins=6, encode="onehot", strategy="quantile"), ["age"]),
    ])
    return encoder.fit_transform(users), data.X


def first_n_split(X: sp.csr_matrix, n: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Each row's first ``n`` interactions (by stored value, ties by item) and the rest."""
    X = X.tocsr()
    hist_rows, hist_cols, rest_rows, rest_cols = [], [], [], []
    for u in range(X.shape[0]):
        lo, hi = X.indptr[u], X.indptr[u + 1]
        items, values = X.indices[lo:hi], X.data[lo:hi]
        order = items[np.lexsort((items, values))]
        hist_rows += [u] * min(n, order.size)
        hist_cols += list(order[:n])
        rest_rows += [u] * max(order.size - n, 0)
        rest_cols += list(order[n:])
    shape = X.shape
    hist = sp.csr_matrix((np.arange(1, len(hist_rows) + 1, dtype=float),
                          (hist_rows, hist_cols)), shape=shape)
    rest = sp.csr_matrix((np.ones(len(rest_rows)), (rest_rows, rest_cols)), shape=shape)
    return hist, rest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--reveal", type=int, nargs="+", default=[0, 1, 3, 5, 10])
    parser.add_argument("--name", default="user_features")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    path = ml100k_path(args.data)
    U, X = user_feature_matrix(path)
    print(f"X {X.shape}, user features {U.shape}", flush=True)

    rows_all, rows_new = [], []
    X_train, y_test = leave_last_out_split(X)
    for seed in range(args.seeds):
        for name, features in (("AE (ids)", None), ("AE + user features", U)):
            est = AERecommender(random_state=seed)
            _, seconds = timed(est.fit, X_train, user_features=features)
            pred = est.predict(X_train, user_features=features)
            row = {"model": name, "seed": seed, "NDCG@10": ndcg_at_k(y_test, pred, k=10),
                   "HR@10": hit_rate_at_k(y_test, pred, k=10), "train_s": seconds,
                   "epochs": est.n_iter_}
            rows_all.append(row)
            print(row, flush=True)

        rng = np.random.RandomState(seed)
        test = np.sort(rng.permutation(X.shape[0])[: int(round(0.2 * X.shape[0]))])
        train = np.setdiff1d(np.arange(X.shape[0]), test)
        models = {
            "popularity": (PopularityRecommender(), None),
            "AE (ids)": (AERecommender(random_state=seed), None),
            "AE + user features": (AERecommender(random_state=seed), U),
        }
        for name, (est, features) in models.items():
            fit_u = None if features is None else features[train]
            est.fit(X[train], **({} if fit_u is None else {"user_features": fit_u}))
            for n in args.reveal:
                hist, rest = first_n_split(X[test], n)
                kwargs = {} if features is None else {"user_features": features[test]}
                pred = est.predict(hist, k=20, **kwargs)
                row = {"model": name, "revealed": n, "seed": seed,
                       "NDCG@10": ndcg_at_k(rest, pred[:, :10], k=10),
                       "Recall@20": recall_at_k(rest, pred, k=20)}
                rows_new.append(row)
                print(row, flush=True)

    summary_all = summarize_seeds(rows_all, ("NDCG@10", "HR@10", "train_s", "epochs"))
    print(markdown_table(summary_all, ["model", "seeds", "NDCG@10", "HR@10", "train_s",
                                       "epochs"]))
    keyed = [{**r, "model": f"{r['model']} | {r['revealed']}"} for r in rows_new]
    summary_new = summarize_seeds(keyed, ("NDCG@10", "Recall@20"))
    for r in summary_new:
        r["model"], r["revealed"] = r["model"].split(" | ")
    summary_new.sort(key=lambda r: (int(r["revealed"]), r["model"]))
    print(markdown_table(summary_new, ["revealed", "model", "seeds", "NDCG@10", "Recall@20"]))
    save_json(args.name, {
        "protocol": __doc__.split("Run:")[0].strip(),
        "n_user_features": int(U.shape[1]),
        "all_users": {"rows": rows_all, "summary": summary_all},
        "new_users": {"rows": rows_new, "summary": summary_new},
        "peak_rss_mb": peak_rss_mb(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    })


if __name__ == "__main__":
    main()
