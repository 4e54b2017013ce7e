"""The protocol of benchmarks/cold_start.py (splits, evaluation, baselines) on small data."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from skrec.datasets import make_interactions

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def cs():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import cold_start
    finally:
        sys.path.remove(str(BENCHMARKS))
    return cold_start


@pytest.fixture(scope="module")
def X():
    return make_interactions(n_users=120, n_items=50, mean_length=10, random_state=0)


def test_split_removes_every_cold_interaction(cs, X):
    split = cs.cold_start_split(X, np.arange(X.shape[1]), 0.2, seed=3)
    assert len(split.cold_items) == 10 and len(split.warm_items) == 40
    assert np.intersect1d(split.cold_items, split.warm_items).size == 0
    assert split.X_train[:, split.cold_items].nnz == 0
    # training + targets rebuild the input; the targets are the cold columns only
    y_full = sp.lil_matrix(X.shape)
    y_full[split.users] = split.y
    np.testing.assert_array_equal((split.X_train + y_full).toarray(), X.toarray())
    assert set(np.unique(split.y.indices)) <= set(split.cold_items.tolist())
    expected_users = np.flatnonzero(X[:, split.cold_items].getnnz(axis=1) > 0)
    np.testing.assert_array_equal(split.users, expected_users)
    assert split.X_warm.shape == (X.shape[0], 40)
    # seeded: the same split again, a different one for another seed
    again = cs.cold_start_split(X, np.arange(X.shape[1]), 0.2, seed=3)
    np.testing.assert_array_equal(again.cold_items, split.cold_items)
    other = cs.cold_start_split(X, np.arange(X.shape[1]), 0.2, seed=4)
    assert not np.array_equal(other.cold_items, split.cold_items)


def test_validation_split_never_sees_test_items(cs, X):
    split = cs.cold_start_split(X, np.arange(X.shape[1]), 0.2, seed=0)
    val = cs.validation_split(split)
    assert set(val.cold_items) <= set(split.warm_items)
    assert set(val.warm_items) <= set(split.warm_items)
    assert val.X_train[:, split.cold_items].nnz == 0 and val.X_train[:, val.cold_items].nnz == 0


def test_evaluate_perfect_and_reversed_rankings(cs, X):
    split = cs.cold_start_split(X, np.arange(X.shape[1]), 0.2, seed=0)
    relevant = split.y[:, split.cold_items].toarray() > 0
    best = cs.evaluate(split, relevant.astype(float))
    assert best["NDCG@20"] == pytest.approx(1.0) and best["Recall@20"] == pytest.approx(1.0)
    # all scores equal: ties are broken at random, not by item index
    tied = cs.evaluate(split, np.zeros(relevant.shape))
    assert 0 < tied["NDCG@20"] < 1
    with pytest.raises(ValueError, match="shape"):
        cs.evaluate(split, np.zeros((1, 1)))


def test_baseline_runners_on_planted_features(cs, X):
    """Features that reveal each item's popularity: feature popularity must beat random."""
    pop = np.log1p(np.asarray((X > 0).sum(axis=0)).ravel())
    F = sp.csr_matrix(np.c_[pop, np.ones_like(pop)])
    split = cs.cold_start_split(X, np.arange(X.shape[1]), 0.2, seed=0).with_features(
        lambda warm: F
    )
    scores = {}
    for name in ("random", "content-kNN", "feature-popularity", "oracle: test popularity"):
        s, info = cs.RUNNERS[name].fn(split)
        assert s.shape == (len(split.users), len(split.cold_items))
        scores[name] = cs.evaluate(split, s)["NDCG@20"]
    assert scores["feature-popularity"] > scores["random"]
    # the oracle ranks by the targets' popularity, which these features reveal exactly: the
    # feature popularity's list is the same one
    assert scores["oracle: test popularity"] == pytest.approx(scores["feature-popularity"])


def test_feature_sets_fit_on_warm_items_only(cs):
    pd = pytest.importorskip("pandas")
    items = pd.DataFrame({
        "title": ["alpha beta", "beta gamma", "delta"],
        "genres": [("Drama",), ("Comedy", "Drama"), ("Horror",)],
    })
    F = cs.item_features("genres+title-tfidf", items, np.array([0, 1]))
    assert F.shape == (3, 2 + 3)  # Horror and delta are unknown to the fitted transformers
    assert F[2].nnz == 0


def test_warm_item_check_compares_with_and_without_features(cs, X):
    from skrec import PopularityRecommender

    seen = []

    def build(item_features, seed):
        seen.append(item_features is None)
        return PopularityRecommender()

    F = sp.identity(X.shape[1], format="csr")
    rows = cs.warm_item_check(build, X, F, seeds=2)
    assert seen == [True, False, True, False]
    assert [r["seed"] for r in rows] == [0, 1]
    for r in rows:  # the same model both times: no gain
        assert r["NDCG@10[ids]"] == pytest.approx(r["NDCG@10[ids+features]"])
        assert r["NDCG gain"] == pytest.approx(0.0) and r["fit overhead per epoch"] > 0


def test_a_merged_run_keeps_the_rows_another_run_wrote_meanwhile(cs, monkeypatch, tmp_path):
    """``--merge`` reads the results file just before writing it: a run that wrote it while
    this one ran (the two halves of the benchmark are run side by side, one per core) keeps its
    rows and its run record."""
    import json

    if not (cs.ml100k_path(None) / "u.data").is_file():
        pytest.skip("ML-100K is not in ../shared/data")
    monkeypatch.setattr(cs, "RESULTS", tmp_path)
    monkeypatch.setattr(sys.modules["_common"], "RESULTS", tmp_path)
    other = {"seed": 0, "method": "feature-popularity", "features": "genres", "n_features": 19,
             "Recall@20": 0.2, "NDCG@20": 0.2, "seconds_incl_tuning": 0.1, "alpha": 1.0}

    def warm_check_while_another_run_writes(build, X, F, seeds):
        (tmp_path / "cold_start.json").write_text(json.dumps(
            {"rows": [other], "runs": [{"note": "the other run"}]}))
        return [{"seed": 0, "NDCG gain": 0.0}]

    monkeypatch.setattr(cs, "warm_item_check", warm_check_while_another_run_writes)
    cs.main(["--methods", "random", "--features", "genres", "--seeds", "1", "--warm-check",
             "--warm-models", "AERecommender", "--merge", "--note", "this run"])
    out = json.loads((tmp_path / "cold_start.json").read_text())
    assert [(r["method"], r["features"]) for r in out["rows"]] == [
        ("feature-popularity", "genres"), ("random", "-")]
    assert [r["note"] for r in out["runs"]] == ["the other run", "this run"]
    assert set(out["warm_check"]) == {"AERecommender"}
