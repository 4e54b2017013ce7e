"""User side features: per-sample rows that travel with X through fit, validation and ranking."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold

import skrec
from skrec import AERecommender, SeqRecommender
from skrec.baselines import PopularityRecommender
from skrec.datasets import make_interactions
from skrec.metrics import ndcg_at_k
from skrec.model_selection import leave_last_out_split
from skrec.serving import scoring_graph

AE = dict(hidden_sizes=(16,), latent_dim=8, max_iter=3, batch_size=16, random_state=0,
          device="cpu", precision="fp32")


def _groups(n_users=400, n_items=60, seed=0):
    """Two user groups; each user has 2 items drawn from the whole catalogue, then 1 of
    their group's 6 favourites (last, in the stored order).

    Only the group, which is in the user features, tells which favourites come next: a
    history of random items says nothing about it.
    """
    rng = np.random.RandomState(seed)
    group = rng.randint(2, size=n_users)
    favourites = np.arange(12).reshape(2, 6)
    rows, cols, vals = [], [], []
    for u in range(n_users):
        first = rng.choice(np.arange(12, n_items), size=2, replace=False)
        rows += [u] * 3
        cols += [*first, rng.choice(favourites[group[u]])]
        vals += [1.0, 2.0, 3.0]
    X = sp.csr_matrix((vals, (rows, cols)), shape=(n_users, n_items))
    return X, np.eye(2)[group], group


@pytest.fixture(scope="module")
def data():
    X = make_interactions(n_users=120, n_items=40, mean_length=8, random_state=0)
    U = sp.csr_matrix((np.random.RandomState(1).rand(120, 7) < 0.3).astype(np.float64))
    return X, U


def test_fit_predict_and_the_fitted_width(data):
    X, U = data
    before = U.copy()
    est = AERecommender(**AE).fit(X, user_features=U)
    assert est.n_user_features_ == 7
    assert est.module_.n_user_features == 7
    ids = est.predict(X[:5], user_features=U[:5])
    assert ids.shape == (5, 10)
    assert (U != before).nnz == 0  # never modified
    # dense and sparse rows of the same values give the same ranking
    np.testing.assert_array_equal(ids, est.predict(X[:5], user_features=U[:5].toarray()))
    assert AERecommender(**AE).fit(X).n_user_features_ == 0


def test_user_features_make_a_difference_where_histories_say_little():
    X, U, group = _groups()
    train, test = np.arange(300), np.arange(300, 400)
    X_known, y_next = leave_last_out_split(X[test])
    params = {**AE, "max_iter": 30, "early_stopping": False}
    plain = AERecommender(**params).fit(X[train])
    with_u = AERecommender(**params).fit(X[train], user_features=U[train])
    ndcg_plain = ndcg_at_k(y_next, plain.predict(X_known))
    ndcg_u = ndcg_at_k(y_next, with_u.predict(X_known, user_features=U[test]))
    assert ndcg_u > 1.3 * ndcg_plain
    # a user with no history at all is ranked from the features, not by popularity
    empty = sp.csr_matrix((2, X.shape[1]))
    ids = with_u.predict(empty, user_features=np.eye(2), k=4)
    assert set(ids[0]) <= set(range(6)) and set(ids[1]) <= set(range(6, 12))
    np.testing.assert_array_equal(plain.predict(empty, k=5)[0], plain.predict(empty, k=5)[1])


@pytest.mark.parametrize("call", ["predict", "recommend", "predict_scores", "score"])
def test_a_model_fitted_with_user_features_needs_them(call, data):
    X, U = data
    est = AERecommender(**AE).fit(X, user_features=U)
    args = (X[:4], X[:4]) if call == "score" else (X[:4],)
    with pytest.raises(ValueError, match="fitted with user_features .7 columns"):
        getattr(est, call)(*args)
    with pytest.raises(ValueError, match="has 3 rows, but X has 4 rows"):
        getattr(est, call)(*args, user_features=U[:3])
    with pytest.raises(ValueError, match="has 5 columns; the model was fitted with 7"):
        getattr(est, call)(*args, user_features=np.zeros((4, 5)))
    out = getattr(est, call)(*args, user_features=U[:4])
    assert np.all(np.isfinite(np.asarray(out[1] if call == "recommend" else out, float)))


@pytest.mark.parametrize("scale, match", [(1e39, "beyond float32's range"),
                                          (1e30, "so large that training overflows")])
def test_huge_user_features_say_what_is_wrong(data, scale, match):
    """Not "NaN or infinite values" for 1e39, not a diverging fit that advises
    precision='fp32' (the model was in fp32) for 1e30: at fit and at predict."""
    X, U = data
    with pytest.raises(ValueError, match=match):
        AERecommender(**AE).fit(X, user_features=U * scale)
    est = AERecommender(**{**AE, "max_iter": 1}).fit(X, user_features=U)
    with pytest.raises(ValueError, match=match):
        est.predict(X[:5], user_features=U[:5].toarray() * scale)


def test_feature_scale_hint_names_badly_scaled_features():
    from skrec._feature_validation import feature_scale_hint

    assert feature_scale_hint(None, "user_features") == ""
    assert feature_scale_hint(np.ones((3, 2)), "user_features") == ""
    hint = feature_scale_hint(sp.csr_matrix(np.full((3, 2), -2e4)), "item_features")
    assert "item_features holds values up to 2e+04" in hint and "StandardScaler" in hint


def test_estimators_that_do_not_read_them_refuse_them(data):
    X, U = data
    for est in (SeqRecommender(max_iter=1, random_state=0), PopularityRecommender()):
        with pytest.raises(ValueError, match="does not read user_features"):
            est.fit(X, user_features=U)
    fitted = AERecommender(**AE).fit(X)
    with pytest.raises(ValueError, match="fitted without user_features"):
        fitted.predict(X[:3], user_features=U[:3])
    with pytest.raises(ValueError, match="has 100 rows, but X has 120 rows"):
        AERecommender(**AE).fit(X, user_features=U[:100])
    with pytest.raises(ValueError, match="NaN"):
        AERecommender(**AE).fit(X, user_features=np.full((120, 2), np.nan))


def test_validation_split_keeps_each_users_rows_together(data):
    X, _ = data
    U = np.arange(X.shape[0], dtype=np.float32)[:, None]  # the row number as its feature
    est = AERecommender(**AE, validation_fraction=0.25)
    (X_out, U_out), (X_hist, y_val, U_val) = est._hold_out_validation(
        (X, U), np.random.RandomState(0))
    assert U_out.shape[0] == X_out.shape[0] and U_val.shape[0] == X_hist.shape[0]
    rows = U_out[:, 0].astype(int)
    n_train = X.shape[0] - X_hist.shape[0]
    # training rows are the original rows; the validation users keep their histories
    assert (X_out[:n_train] != X[rows[:n_train]]).nnz == 0
    assert (X_out[n_train:] != X_hist).nnz == 0
    np.testing.assert_array_equal(rows[n_train:], U_val[:, 0].astype(int))
    assert ((X_hist + y_val) != X[U_val[:, 0].astype(int)]).nnz == 0


def test_grid_search_routes_and_slices_them_per_sample():
    X, U, _ = _groups(n_users=80, n_items=80)  # n_users == n_items: a fit param that could
    X_train, y_test = leave_last_out_split(X)  # be mistaken for per-item data is not
    est = AERecommender(**AE)
    cv = KFold(2, shuffle=True, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True):
        routed = clone(est).set_fit_request(user_features=True).set_score_request(
            user_features=True)
        search = GridSearchCV(routed, {"latent_dim": [4, 8]}, cv=cv, n_jobs=2,
                              error_score="raise").fit(X_train, y_test, user_features=U)
    train, test = next(cv.split(X_train))
    manual = clone(est).set_params(latent_dim=4).fit(
        X_train[train], y_test[train], user_features=U[train])
    expected = manual.score(X_train[test], y_test[test], user_features=U[test])
    assert search.cv_results_["split0_test_score"][0] == pytest.approx(expected)


def test_partial_fit_warm_start_pruning_and_persistence(data, tmp_path):
    X, U = data
    est = AERecommender(**AE).fit(X, user_features=U)
    est.partial_fit(X, user_features=U)
    assert est.n_iter_ >= 2
    with pytest.raises(ValueError, match="fitted with user_features"):
        est.partial_fit(X)
    warm = clone(est).set_params(warm_start=True).fit(X, user_features=U)
    with pytest.raises(ValueError, match="7 user feature columns, but user_features has 3"):
        warm.fit(X, user_features=np.ones((120, 3)))
    with pytest.raises(ValueError, match="pass X too"):
        est.prune_(0.5, user_features=U)
    est.prune_(0.5, X=X, user_features=U, fine_tune_epochs=1)
    expected = est.predict(X[:6], user_features=U[:6])
    path = tmp_path / "model.skrec"
    skrec.save(est, path)
    for loaded in (skrec.load(path), pickle.loads(pickle.dumps(est))):
        assert loaded.n_user_features_ == 7
        np.testing.assert_array_equal(loaded.predict(X[:6], user_features=U[:6]), expected)
    with pytest.raises(TypeError, match="fitted with user_features"):
        scoring_graph(est)
