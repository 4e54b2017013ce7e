"""
Click prediction for ads: Frappe from a DataFrame
=================================================

:class:`~skrec.CTRClassifier` predicts the probability that an impression is clicked from
its fields (user, ad or app, and the context). This example trains it on Frappe_x1 (a
context-aware log of mobile app usage: one row per impression, 10 categorical fields, two
sampled negatives per positive), straight from a pandas DataFrame, with early stopping on the
published validation file, and then:

- compares it with a logistic regression on the one-hot matrix (the classic baseline);
- checks calibration with a reliability curve (what an ad auction needs: probabilities, not
  only a ranking);
- scores the candidate apps of one request in one batched call (what a serving system does);
- saves the model to a safe file and loads it back.

Without the Frappe files on this machine it says so loudly and runs on synthetic Criteo-like
impressions (:func:`skrec.datasets.make_ctr`) instead. Set ``SKREC_EXAMPLES_FAST=1`` for a
short run (for CI).
"""

# %%
# The data: one DataFrame per split
# ---------------------------------
import os
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import skrec
from skrec import CTRClassifier
from skrec.ctr import reliability_curve
from skrec.datasets import find_frappe, load_frappe, make_ctr

FAST = os.environ.get("SKREC_EXAMPLES_FAST", "0") not in ("", "0")
try:
    SEARCH_FROM = __file__
except NameError:  # run in a notebook
    SEARCH_FROM = None

folder = find_frappe(search_from=SEARCH_FROM, instead="synthetic impressions")
if folder is not None:
    data = load_frappe(folder)
    X_train, y_train = data.X_train, data.y_train
    X_valid, y_valid = data.X_valid, data.y_valid
    X_test, y_test = data.X_test, data.y_test
    request_field, candidate_field = "user", "item"
else:
    synthetic = make_ctr(60_000, n_categorical=8, n_numeric=2, max_cardinality=500,
                         click_rate=0.1, as_frame=True, random_state=0)
    X_train, X_rest, y_train, y_rest = train_test_split(
        synthetic.X, synthetic.y, test_size=0.3, random_state=0, stratify=synthetic.y)
    X_valid, X_test, y_valid, y_test = train_test_split(
        X_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest)
    request_field, candidate_field = synthetic.categorical[1], synthetic.categorical[0]
if FAST:  # a tenth of the training rows
    X_train, y_train = X_train.iloc[::10], np.asarray(y_train)[::10]
print(f"{len(X_train):,} training rows, {len(X_valid):,} validation, {len(X_test):,} test; "
      f"click rate {np.mean(y_train):.3f}")
X_train.head()

# %%
# Fit with early stopping on the validation file
# ----------------------------------------------
# Every integer column is a categorical field (an id); float columns would be numeric
# fields and list-valued columns multi-valued ones. Categories seen fewer than
# ``min_frequency`` times at fit, and those never seen, share their field's learned
# "unknown" vector: new users and apps at predict time are never an error.
clf = CTRClassifier(max_iter=10 if FAST else 100, random_state=0)
start = time.process_time()
clf.fit(X_train, y_train, X_val=X_valid, y_val=y_valid)
fit_cpu = time.process_time() - start
proba = clf.predict_proba(X_test)[:, 1]
print(f"CTRClassifier: test AUC {roc_auc_score(y_test, proba):.4f}, "
      f"log loss {log_loss(y_test, proba):.4f} ({clf.n_iter_} epochs, best "
      f"{clf.best_epoch_}, {fit_cpu:.0f} CPU s)")

# %%
# The baseline: logistic regression on the one-hot matrix
# -------------------------------------------------------
baseline = make_pipeline(OneHotEncoder(handle_unknown="ignore"),
                         LogisticRegression(C=1.0, max_iter=1000))
baseline.fit(X_train.astype(str), y_train)
proba_lr = baseline.predict_proba(X_test.astype(str))[:, 1]
print(f"LogisticRegression: test AUC {roc_auc_score(y_test, proba_lr):.4f}, "
      f"log loss {log_loss(y_test, proba_lr):.4f}")

# %%
# The training curve
# ------------------
history = pd.DataFrame(clf.history_)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(history["epoch"], history["loss"], label="training objective")
ax.plot(history["epoch"], history["val_log_loss"], label="validation log loss")
ax.axvline(clf.best_epoch_, color="grey", linestyle=":", label="kept epoch")
ax.set_xlabel("epoch")
ax.legend()
fig.tight_layout()

# %%
# Calibration: the reliability curve
# ----------------------------------
# An auction multiplies the click probability by the bid, so the probability itself must be
# right, not only the order. Bins of equal counts (the click rate is skewed); points on the
# diagonal are calibrated. ``ece`` is the count-weighted mean gap.
curve = reliability_curve(y_test, proba, n_bins=10)
fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
ax.plot(curve["mean_predicted"], curve["observed"], marker="o", label="CTRClassifier")
ax.set_xlabel("mean predicted click probability")
ax.set_ylabel("observed click rate")
ax.set_title(f"expected calibration error {curve['ece']:.4f}")
ax.legend()
fig.tight_layout()

# %%
# Serving: the candidates of one request in one call
# --------------------------------------------------
# A request fixes the user and the context; the candidates differ in the ad (here the app).
# ``score_candidates`` encodes the request once and scores every candidate in one forward
# pass.
request = X_test.iloc[[0]].drop(columns=candidate_field).to_dict("records")[0]
candidates = pd.DataFrame({candidate_field: np.unique(X_train[candidate_field])[:1000]})
start = time.perf_counter()
scores = clf.score_candidates(request, candidates)
elapsed_ms = (time.perf_counter() - start) * 1000
top = np.argsort(-scores)[:5]
print(f"{len(candidates)} candidates for {request_field} {request[request_field]} scored in "
      f"{elapsed_ms:.1f} ms; the best five:")
print(candidates.iloc[top].assign(click_probability=scores[top]).to_string(index=False))

# %%
# Save, load, predict the same
# ----------------------------
# :func:`skrec.save` writes weights, the fitted field encoder and the hyper-parameters into
# one file that loads without running code from it.
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "clicks.skrec")
    skrec.save(clf, path)
    loaded = skrec.load(path)
    np.testing.assert_allclose(loaded.predict_proba(X_test[:100]), clf.predict_proba(X_test[:100]),
                               rtol=1e-6)
    print(f"saved and loaded: {os.path.getsize(path) / 1e6:.1f} MB, the same predictions")
