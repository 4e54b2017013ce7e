"""Tests of skrec.datasets: the synthetic generator and the MovieLens loaders."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from skrec.datasets import (
    MOVIELENS_ARCHIVES,
    fetch_movielens,
    get_data_home,
    load_movielens,
    load_sequences,
    make_interactions,
)
from skrec.preprocessing import InteractionEncoder

# -- make_interactions -------------------------------------------------------------------------


def _rows_are_permutations(X):
    """Each row's values are a permutation of 1..nnz (vectorised)."""
    lengths = np.diff(X.indptr)
    rows = np.repeat(np.arange(X.shape[0]), lengths)
    order = np.lexsort((X.data, rows))
    start = np.repeat(X.indptr[:-1], lengths)
    expected = np.arange(X.nnz) - start + 1
    return np.array_equal(X.data[order], expected)


def test_make_interactions_shape_and_values():
    X = make_interactions(n_users=300, n_items=120, mean_length=15, min_length=4, random_state=0)
    assert sp.issparse(X) and X.format == "csr"
    assert X.shape == (300, 120) and X.dtype == np.float64
    assert X.has_canonical_format and (X.data > 0).all()
    lengths = np.diff(X.indptr)
    assert lengths.min() >= 4
    assert 12 < lengths.mean() < 18
    assert _rows_are_permutations(X)


def test_make_interactions_defaults():
    X = make_interactions(random_state=0)
    assert X.shape == (2000, 500)
    assert 35 < X.nnz / X.shape[0] < 45
    assert _rows_are_permutations(X)


def test_make_interactions_deterministic():
    a = make_interactions(n_users=200, n_items=80, random_state=42)
    b = make_interactions(n_users=200, n_items=80, random_state=np.random.RandomState(42))
    c = make_interactions(n_users=200, n_items=80, random_state=43)
    assert (a != b).nnz == 0
    assert (a != c).nnz > 0


def test_make_interactions_small_catalogue_and_edge_cases():
    X = make_interactions(n_users=50, n_items=12, mean_length=30, min_length=5, random_state=1)
    assert np.diff(X.indptr).max() <= 12  # capped: no item repeats
    assert _rows_are_permutations(X)
    X = make_interactions(
        n_users=5, n_items=3, mean_length=3, min_length=3, n_topics=1, random_state=0
    )
    np.testing.assert_array_equal(np.diff(X.indptr), 3)
    X = make_interactions(
        n_users=20, n_items=30, sequential_strength=1.0, popularity_exponent=0.0, random_state=0
    )
    assert _rows_are_permutations(X)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_users": 0}, "n_users"),
        ({"n_items": 2.5}, "n_items"),
        ({"min_length": 600}, "exceeds n_items"),
        ({"n_topics": 501}, "exceeds n_items"),
        ({"mean_length": 3}, "mean_length"),
        ({"sequential_strength": 1.5}, "sequential_strength"),
        ({"popularity_exponent": -1}, "popularity_exponent"),
    ],
)
def test_make_interactions_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_interactions(**kwargs)


def _leave_last_out(X):
    """Return (history items sorted by order per row, row of each, last history item, target)."""
    lengths = np.diff(X.indptr)
    rows = np.repeat(np.arange(X.shape[0]), lengths)
    order = np.lexsort((X.data, rows))
    rows, items = rows[order], X.indices[order]
    ends = X.indptr[1:] - 1
    target = items[ends]
    keep = np.ones(X.nnz, dtype=bool)
    keep[ends] = False
    return rows[keep], items[keep], items[ends - 1], target


def _hit_rate(scores, hist_rows, hist_items, target, k=10):
    scores = scores.astype(np.float64).copy()
    scores[hist_rows, hist_items] = -np.inf  # exclude seen items
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    return (top == target[:, None]).any(axis=1).mean()


def _baselines(X):
    n_users, n_items = X.shape
    h_rows, h_items, last, target = _leave_last_out(X)
    pop = np.bincount(h_items, minlength=n_items).astype(np.float64)
    tie = 1e-6 * pop / pop.max()
    same_user = h_rows[1:] == h_rows[:-1]
    C = np.zeros((n_items, n_items))
    np.add.at(C, (h_items[:-1][same_user], h_items[1:][same_user]), 1.0)
    # last three history items, decayed: reads more of the history than a Markov chain
    hist_len = np.diff(X.indptr) - 1
    start = np.repeat(np.cumsum(hist_len) - hist_len, hist_len)
    back = hist_len[h_rows] - 1 - (np.arange(h_rows.size) - start)  # 0 = last history item
    recent = back < 3
    M = np.zeros((n_users, n_items))
    np.add.at(M, h_rows[recent], C[h_items[recent]] * (0.5 ** back[recent])[:, None])
    H = sp.csr_matrix((np.ones(h_rows.size), (h_rows, h_items)), shape=X.shape)
    G = (H.T @ H).toarray() + 100.0 * np.eye(n_items)
    P = np.linalg.inv(G)
    B = -P / np.diag(P)
    np.fill_diagonal(B, 0.0)
    return {
        "pop": _hit_rate(np.tile(pop, (n_users, 1)), h_rows, h_items, target),
        "markov": _hit_rate(C[last] + tie, h_rows, h_items, target),
        "recent3": _hit_rate(M + tie, h_rows, h_items, target),
        "ease": _hit_rate(np.asarray(H @ B) + tie, h_rows, h_items, target),
    }


def test_planted_structure_markov_and_cooccurrence_beat_popularity():
    X = make_interactions(n_users=1500, random_state=0)
    hr = _baselines(X)
    assert hr["markov"] > hr["pop"] + 0.15, hr  # sequential structure
    assert hr["ease"] > hr["pop"] + 0.15, hr  # co-occurrence structure
    assert hr["recent3"] > hr["markov"] + 0.05, hr  # more than first-order


def test_without_sequential_structure_markov_gain_shrinks():
    plain = _baselines(make_interactions(n_users=1000, sequential_strength=0.0, random_state=0))
    seq = _baselines(make_interactions(n_users=1000, random_state=0))
    assert seq["markov"] - seq["pop"] > 2 * (plain["markov"] - plain["pop"])
    assert plain["ease"] > plain["pop"] + 0.1  # topics alone give co-occurrence structure


# -- load_movielens ----------------------------------------------------------------------------

# user item rating timestamp; user 1 has a timestamp tie (items 10 and 30: file order wins)
_UDATA = b"1\t10\t4\t100\n1\t20\t5\t50\n2\t10\t3\t70\n1\t30\t2\t100\n3\t20\t1\t10\n"
_UITEM = "10|Ten (1995)|01-Jan-1995||http://x|0|1\n20|Vingt (1996)|...\n30|Trente|...\n"


def _check_fixture(b):
    np.testing.assert_array_equal(b.user_ids, [1, 2, 3])
    np.testing.assert_array_equal(b.item_ids, [10, 20, 30])
    np.testing.assert_array_equal(b.X.toarray(), [[2, 1, 3], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(b.timestamps.toarray(), [[100, 50, 100], [70, 0, 0], [0, 10, 0]])
    np.testing.assert_array_equal(b.ratings.toarray(), [[4, 5, 2], [3, 0, 0], [0, 1, 0]])
    assert isinstance(b.encoder, InteractionEncoder)
    np.testing.assert_array_equal(b.encoder.inverse_transform_items([2, 0]), [30, 10])
    assert "MovieLens" in b.DESCR and "Harper" in b.DESCR


def test_load_movielens_100k_folder_file_and_zip(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_bytes(_UDATA)
    _check_fixture(load_movielens(folder))
    _check_fixture(load_movielens(folder / "u.data"))
    _check_fixture(load_movielens(tmp_path))  # parent folder holding ml-100k/
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ml-100k/u.data", _UDATA)
        z.writestr("ml-100k/u.item", _UITEM.encode("latin-1"))
    b = load_movielens(archive)
    _check_fixture(b)
    np.testing.assert_array_equal(b.item_titles, ["Ten (1995)", "Vingt (1996)", "Trente"])


def test_load_movielens_1m_format_and_items_tsv(tmp_path):
    raw = _UDATA.replace(b"\t", b"::")
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ml-1m/ratings.dat", raw)
        z.writestr("ml-1m/movies.dat", "10::Ten (1995)::Drama\n30::Trente::Comedy\n")
    b = load_movielens(archive)
    _check_fixture(b)
    np.testing.assert_array_equal(b.item_titles, ["Ten (1995)", "", "Trente"])
    assert "ratings.dat" in b.DESCR
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "ratings.dat").write_bytes(raw)
    (folder / "items.tsv").write_text("item\ttitle\tyear\tgenres\n20\tVingt\t1996\tDrama\n")
    b = load_movielens(folder)
    _check_fixture(b)
    np.testing.assert_array_equal(b.item_titles, ["", "Vingt", ""])


def test_load_movielens_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_movielens(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="u.data"):
        load_movielens(tmp_path)
    bad = tmp_path / "u.data"
    bad.write_bytes(b"1\t2\t3\n")
    with pytest.raises(ValueError, match="4"):
        load_movielens(bad)
    bad.write_bytes(b"1\t2\tx\t4\n")
    with pytest.raises(ValueError, match="MovieLens"):
        load_movielens(bad)
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match="no ratings"):
        load_movielens(bad)


def _real_ml100k():
    candidates = []
    if os.environ.get("SKREC_DATA_DIR"):
        candidates.append(Path(os.environ["SKREC_DATA_DIR"]) / "ml-100k")
    candidates.append(Path(__file__).resolve().parents[2] / "shared/data/ml-100k")
    for path in candidates:
        if (path / "u.data").is_file():
            return path
    pytest.skip("MovieLens 100K not found (set SKREC_DATA_DIR to a folder holding ml-100k/)")


def test_load_real_movielens_100k():
    path = _real_ml100k()
    b = load_movielens(path)
    assert b.X.shape == (943, 1682) and b.X.nnz == 100_000
    np.testing.assert_array_equal(b.user_ids, np.arange(1, 944))
    np.testing.assert_array_equal(b.item_ids, np.arange(1, 1683))
    assert _rows_are_permutations(b.X)
    for M in (b.timestamps, b.ratings):
        np.testing.assert_array_equal(M.indptr, b.X.indptr)
        np.testing.assert_array_equal(M.indices, b.X.indices)
    assert set(np.unique(b.ratings.data)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    # order: by timestamp, ties in file order (checked against the raw file)
    raw = np.loadtxt(path / "u.data", dtype=np.int64)
    for user in (1, 13, 405, 655):
        sel = np.flatnonzero(raw[:, 0] == user)
        expected = raw[sel[np.lexsort((sel, raw[sel, 3]))], 1]  # stable by time, then line
        row = b.X[user - 1]
        got = b.item_ids[row.indices[np.argsort(row.data)]]
        np.testing.assert_array_equal(got, expected)
    assert len(b.item_titles) == 1682 and b.item_titles[0] == "Toy Story"


# -- load_sequences ----------------------------------------------------------------------------

# user item per line, in order per user; users interleaved, ids not contiguous
_SEQ = b"7 30\n7 10\n2 10\n7 20\n2 40\n5 30\n"


def test_load_sequences_file_and_folder(tmp_path):
    path = tmp_path / "sequences.txt"
    path.write_bytes(_SEQ)
    for source in (path, tmp_path, str(path)):
        b = load_sequences(source)
        np.testing.assert_array_equal(b.user_ids, [2, 5, 7])
        np.testing.assert_array_equal(b.item_ids, [10, 20, 30, 40])
        # positions 1..n in file order within each user
        np.testing.assert_array_equal(
            b.X.toarray(), [[1, 0, 0, 2], [0, 0, 1, 0], [2, 3, 1, 0]]
        )
        assert sp.issparse(b.X) and b.X.format == "csr" and b.X.dtype == np.float64
        assert b.n_repeats == 0 and "3 users" in b.DESCR and "6 interactions" in b.DESCR
        np.testing.assert_array_equal(b.encoder.inverse_transform_items([3, 0]), [40, 10])


def _sequences_fixture(tmp_path):
    path = tmp_path / "fixture.txt"
    path.write_bytes(_SEQ)
    return load_sequences(path).X


def test_load_sequences_separators_and_whitespace(tmp_path):
    tabs = tmp_path / "tabs.txt"
    tabs.write_bytes(_SEQ.replace(b" ", b"\t").replace(b"\n", b"\r\n") + b"\n")
    commas = tmp_path / "commas.csv"
    commas.write_bytes(_SEQ.replace(b" ", b","))
    expected = _sequences_fixture(tmp_path)
    for b in (load_sequences(tabs), load_sequences(commas, sep=",")):
        assert (b.X != expected).nnz == 0


def test_load_sequences_repeats_keep_last(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_bytes(b"1 10\n1 20\n1 10\n1 30\n")  # item 10 consumed twice
    b = load_sequences(path)
    assert b.n_repeats == 1 and "1 repeated" in b.DESCR
    # kept: 20, 10 (its later occurrence), 30 -> positions count the distinct items
    np.testing.assert_array_equal(b.X.toarray(), [[2, 1, 3]])


def test_load_sequences_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_sequences(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="sequences.txt"):
        load_sequences(tmp_path)
    bad = tmp_path / "bad.txt"
    for raw, match in [
        (b"", "no interactions"),
        (b"1 2 3\n", "3 columns"),
        (b"1\n2\n", "1 columns"),
        (b"1 x\n", "sequence file"),
        (b"1 2.5\n", "non-integer"),
        (b"1 2\n1\n", "sequence file"),
    ]:
        bad.write_bytes(raw)
        with pytest.raises(ValueError, match=match):
            load_sequences(bad)


def _real_games():
    candidates = []
    if os.environ.get("SKREC_DATA_DIR"):
        candidates.append(Path(os.environ["SKREC_DATA_DIR"]) / "amazon-games")
        candidates.append(Path(os.environ["SKREC_DATA_DIR"]).parent / "amazon-games")
    candidates.append(Path(__file__).resolve().parents[2] / "shared/data/amazon-games")
    for path in candidates:
        if (path / "sequences.txt").is_file():
            return path / "sequences.txt"
    pytest.skip("Amazon Games sequences not found (../shared/data/amazon-games/sequences.txt)")


def test_load_real_amazon_games():
    path = _real_games()
    b = load_sequences(path)
    assert b.X.shape == (31013, 23715) and b.X.nnz == 287107 and b.n_repeats == 0
    np.testing.assert_array_equal(b.user_ids, np.arange(1, 31014))
    np.testing.assert_array_equal(b.item_ids, np.arange(1, 23716))
    assert _rows_are_permutations(b.X)
    raw = np.loadtxt(path, dtype=np.int64)
    for user in (1, 2, 500, 31013):
        expected = raw[raw[:, 0] == user, 1]  # file order
        row = b.X[user - 1]
        np.testing.assert_array_equal(b.item_ids[row.indices[np.argsort(row.data)]], expected)


# -- fetch_movielens ---------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A local HTTP server (127.0.0.1, never the internet) serving tmp_path/www."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    www = tmp_path / "www"
    www.mkdir()
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(www))
    )
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _serve_fixture(www, base, monkeypatch, sha256=None):
    archive = www / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ml-100k/u.data", _UDATA)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    spec = {"url": f"{base}/ml-100k.zip", "sha256": sha256 or digest, "filename": "ml-100k.zip"}
    monkeypatch.setitem(MOVIELENS_ARCHIVES, "100k", spec)
    return digest


def test_fetch_downloads_then_uses_cache(server, tmp_path, monkeypatch):
    www, base, hits = server
    digest = _serve_fixture(www, base, monkeypatch)
    home = tmp_path / "cache"
    b = fetch_movielens("100k", data_home=home, verbose=False)
    _check_fixture(b)
    assert hits == ["/ml-100k.zip"]
    cached = home / "ml-100k.zip"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in home.iterdir()) == ["ml-100k.zip"]  # no temp file left
    b2 = fetch_movielens("ml-100k", data_home=home, download_if_missing=False, verbose=False)
    _check_fixture(b2)
    assert len(hits) == 1  # cache hit: the server was not asked again


def test_fetch_checksum_mismatch_deletes_and_raises(server, tmp_path, monkeypatch):
    www, base, hits = server
    _serve_fixture(www, base, monkeypatch, sha256="0" * 64)
    home = tmp_path / "cache"
    with pytest.raises(OSError, match="checksum mismatch"):
        fetch_movielens("100k", data_home=home, verbose=False)
    assert hits == ["/ml-100k.zip"]
    assert list(home.iterdir()) == []  # neither the file nor a temp file is kept


def test_fetch_redownloads_corrupted_cache(server, tmp_path, monkeypatch):
    www, base, hits = server
    _serve_fixture(www, base, monkeypatch)
    home = tmp_path / "cache"
    home.mkdir()
    (home / "ml-100k.zip").write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="checksum"):
        b = fetch_movielens("100k", data_home=home, verbose=True)  # with a progress bar
    _check_fixture(b)
    assert len(hits) == 1


def test_fetch_missing_without_download(server, tmp_path, monkeypatch):
    www, base, hits = server
    _serve_fixture(www, base, monkeypatch)
    with pytest.raises(FileNotFoundError, match="download_if_missing=False"):
        fetch_movielens("100k", data_home=tmp_path / "cache", download_if_missing=False)
    assert hits == []


def test_fetch_unknown_variant_and_http_error(server, tmp_path, monkeypatch):
    www, base, hits = server
    with pytest.raises(ValueError, match="variant"):
        fetch_movielens("20m", data_home=tmp_path)
    monkeypatch.setitem(
        MOVIELENS_ARCHIVES, "1m", {"url": f"{base}/missing.zip", "sha256": "0" * 64}
    )
    with pytest.raises(OSError, match="Could not download"):
        fetch_movielens("1m", data_home=tmp_path / "c", verbose=False)
    assert list((tmp_path / "c").iterdir()) == []


def test_archive_table_is_official():
    assert MOVIELENS_ARCHIVES["100k"]["url"].startswith("https://files.grouplens.org/")
    for spec in MOVIELENS_ARCHIVES.values():
        assert len(spec["sha256"]) == 64 and int(spec["sha256"], 16) >= 0


def test_get_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SKREC_DATA", str(tmp_path / "env"))
    assert get_data_home() == tmp_path / "env" and (tmp_path / "env").is_dir()
    assert get_data_home(tmp_path / "x") == tmp_path / "x"


# -- find_movielens ------------------------------------------------------------------------
def test_find_movielens_looks_in_the_env_the_cache_and_shared_data(tmp_path, monkeypatch):
    from skrec.datasets import find_movielens

    monkeypatch.delenv("SKREC_DATA_DIR", raising=False)
    monkeypatch.setenv("SKREC_DATA", str(tmp_path / "cache"))
    folder = tmp_path / "shared" / "data" / "ml-100k"
    folder.mkdir(parents=True)
    script = tmp_path / "a" / "b" / "example.py"
    assert find_movielens(search_from=script) is None  # no u.data yet: not found, silent
    (folder / "u.data").write_text("1\t1\t5\t1\n")
    assert find_movielens(search_from=script) == folder
    elsewhere = tmp_path / "env"
    (elsewhere / "ml-100k").mkdir(parents=True)
    (elsewhere / "ml-100k" / "u.data").write_text("1\t1\t5\t1\n")
    monkeypatch.setenv("SKREC_DATA_DIR", str(elsewhere))
    assert find_movielens(search_from=script) == elsewhere / "ml-100k"  # the env comes first


def test_find_movielens_says_loudly_what_is_used_instead(tmp_path, monkeypatch, capsys):
    from skrec.datasets import find_movielens

    monkeypatch.setenv("SKREC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SKREC_DATA", str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match="NOT FOUND.*synthetic data.*SKREC_DATA_DIR="):
        assert find_movielens("1m", search_from=tmp_path, instead="synthetic data") is None
    assert "NOT FOUND" in capsys.readouterr().out
    with pytest.raises(ValueError, match="version must be one of"):
        find_movielens("25m")


def test_find_frappe_looks_like_find_movielens(tmp_path, monkeypatch, capsys):
    from skrec.datasets import find_frappe

    monkeypatch.delenv("SKREC_DATA_DIR", raising=False)
    monkeypatch.setenv("SKREC_DATA", str(tmp_path / "cache"))
    folder = tmp_path / "shared" / "data" / "frappe"
    (folder / "x1").mkdir(parents=True)
    script = tmp_path / "a" / "example.py"
    with pytest.warns(UserWarning, match="Frappe NOT FOUND.*synthetic impressions"):
        assert find_frappe(search_from=script, instead="synthetic impressions") is None
    assert "NOT FOUND" in capsys.readouterr().out
    (folder / "x1" / "train.csv").write_text("label,user\n")
    assert find_frappe(search_from=script) == folder
