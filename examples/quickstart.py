"""
Quickstart
==========

skrec quickstart: fit recommenders like any scikit-learn estimator, evaluate, recommend.

Runs in seconds on a laptop CPU, with synthetic data (no download).
"""

from skrec import EASERecommender, PopularityRecommender, SeqRecommender
from skrec.datasets import make_interactions
from skrec.metrics import hit_rate_at_k, ndcg_at_k
from skrec.model_selection import leave_last_out_split

# Rows are users, columns are items; a stored value > 0 is an interaction and gives its order.
X_all = make_interactions(n_users=2000, n_items=500, random_state=0)
X, y = leave_last_out_split(X_all)  # y: each user's last item, held out
print(f"{X.shape[0]} users, {X.shape[1]} items, {X_all.nnz} interactions\n")

models = {
    "Popularity": PopularityRecommender(),
    "EASE": EASERecommender(l2=100.0),
    # A SASRec-family transformer over each user's ordered history (a short run).
    "SeqRecommender": SeqRecommender(max_len=50, max_iter=8, batch_size=64, random_state=0),
}

ndcg = {}
print(f"{'model':<16} {'NDCG@10':>8} {'HR@10':>7}")
for name, model in models.items():
    model.fit(X)
    top10 = model.predict(X, k=10)  # (n_users, 10) item indices, best first, seen items excluded
    ndcg[name] = ndcg_at_k(y, top10)
    print(f"{name:<16} {ndcg[name]:8.3f} {hit_rate_at_k(y, top10):7.3f}")

best = max(ndcg, key=ndcg.get)
print(f"\nTop-5 recommendations of {best} (held-out item in brackets):")
for user, items in enumerate(models[best].predict(X[:5], k=5)):
    print(f"  user {user}: {items.tolist()}  {y[user].indices.tolist()}")
