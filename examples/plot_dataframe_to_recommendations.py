"""
From an event log to recommendations with your own ids
======================================================

Real data arrive as an event log: one row per event, with a user id, an item id and a time,
in whatever types your system uses (strings, UUIDs, large integers, datetimes).
:class:`~skrec.preprocessing.InteractionEncoder` turns such a pandas DataFrame into the user x
item matrix the estimators read, and maps predicted column indices back to your item ids.

The steps:

1. ``InteractionEncoder(time_col=...)`` learns the user and item vocabularies and builds ``X``
   (rows = users, columns = items, values = order of each event in the user's history);
2. evaluate with a leave-last-out split and fit a model;
3. recommend, and translate indices back with ``inverse_transform_items``;
4. serve a user who was not in the training log (fold-in: one more row, no retraining).

Set ``SKREC_EXAMPLES_FAST=1`` for a short run (for CI).
"""

# %%
# An event log
# ------------
# We make one from synthetic histories, with string ids and datetimes, as an application would
# log them. Any DataFrame with a user, an item and a time column works the same way.
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from skrec import EASERecommender, SeqRecommender
from skrec.datasets import make_interactions
from skrec.model_selection import leave_last_out_split
from skrec.preprocessing import InteractionEncoder

FAST = os.environ.get("SKREC_EXAMPLES_FAST", "0") not in ("", "0")

rng = np.random.default_rng(0)
histories = make_interactions(
    n_users=300 if FAST else 1500, n_items=400, mean_length=25, random_state=0
).tocoo()
start = pd.Timestamp("2024-01-01")
log = pd.DataFrame(
    {
        "customer": [f"cust-{u:05d}" for u in histories.row],
        "product": [f"SKU-{1000 + i}" for i in histories.col],
        # an event every few hours, in the order of the synthetic history
        "ts": start
        + pd.to_timedelta(histories.data * 6 + rng.integers(0, 5, histories.nnz), unit="h"),
    }
).sample(frac=1.0, random_state=0)  # logs are rarely sorted
print(log.head())
print(f"{len(log)} events, {log.customer.nunique()} customers, {log['product'].nunique()} products")

# %%
# Encode it
# ---------
# Row ``i`` of ``X`` is customer ``encoder.users_[i]``; column ``j`` is product
# ``encoder.items_[j]``. With ``values="order"`` (the default) each stored value is the
# position of the event in the customer's history, sorted by ``ts`` (ties keep the log order).
encoder = InteractionEncoder(user_col="customer", item_col="product", time_col="ts")
X_all = encoder.fit_transform(log)
print(repr(X_all))
print("first customer:", encoder.users_[0], "first product column:", encoder.items_[0])

# %%
# Evaluate, then fit on everything
# --------------------------------
# Hold out each customer's latest event, compare a sequence model with EASE, then refit the
# better one on the whole log before serving.
X, y = leave_last_out_split(X_all)
candidates = {
    "EASE": EASERecommender(l2=100.0),
    "SeqRecommender": SeqRecommender(
        d_model=32,
        n_layers=1,
        n_heads=1,
        d_ff=64,
        max_len=30,
        learning_rate_init=3e-3,
        max_iter=2 if FAST else 15,
        n_iter_no_change=3,
        random_state=0,
    ),
}
scores = {name: model.fit(X).score(X, y) for name, model in candidates.items()}
for name, score in scores.items():
    print(f"{name:<15} NDCG@10 = {score:.4f}")
best = max(scores, key=scores.get)
model = candidates[best].fit(X_all)

# %%
# Recommendations with the original ids
# -------------------------------------
# ``recommend`` returns column indices and scores; ``inverse_transform_items`` turns the
# indices into product ids (``-1`` padding, when fewer than ``k`` candidates remain, becomes
# ``fill_value``).
ids, item_scores = model.recommend(X_all[:3], k=5)
products = encoder.inverse_transform_items(ids, fill_value="")
table = pd.DataFrame(
    {
        "customer": np.repeat(encoder.users_[:3], 5),
        "rank": np.tile(np.arange(1, 6), 3),
        "product": products.ravel(),
        "score": item_scores.ravel(),
    }
)
print(table.to_string(index=False))

# %%
# A customer who was not in the training log
# ------------------------------------------
# ``transform(new_log, users=[...])`` builds rows for any customers, known or not, from their
# own events; unknown products are dropped with a warning. The model reads the row (fold-in).
new_log = pd.DataFrame(
    {
        "customer": ["new-customer"] * 3,
        "product": ["SKU-1010", "SKU-1042", "SKU-1007"],
        "ts": pd.to_datetime(["2024-03-01 10:00", "2024-03-01 11:30", "2024-03-02 09:15"]),
    }
)
X_new = encoder.transform(new_log, users=["new-customer"])
ids = model.predict(X_new, k=5)
print("new-customer bought:", new_log["product"].tolist())
print("recommended:        ", encoder.inverse_transform_items(ids)[0].tolist())

# %%
# And back to a log
# -----------------
# ``inverse_transform`` turns a matrix back into a DataFrame, one row per stored entry: handy
# to export held-out interactions or inspect a split. The value column is named after
# ``time_col`` but, with ``values="order"``, holds the position in the history, not the time.
print(encoder.inverse_transform(y).head())

# %%
# Plot: how long are the histories?
# ---------------------------------
lengths = np.diff(X_all.indptr)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.hist(lengths, bins=40)
ax.set_xlabel("events per customer")
ax.set_ylabel("customers")
plt.tight_layout()
plt.show()
