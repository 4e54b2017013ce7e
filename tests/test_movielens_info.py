"""MovieLens side information: load_movielens_items / load_movielens_users on small files."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from skrec.datasets import load_movielens, load_movielens_items, load_movielens_users

_FLAGS = {  # ML-100K genre flags (19 columns, unknown first)
    "Animation Children's Comedy": "0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0",
    "Crime Thriller": "0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|1|0|0",
    "unknown": "1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0",
}
# official u.item layout: id|title|release date|video release date|IMDb URL|19 genre flags
U_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|"
    + _FLAGS["Animation Children's Comedy"] + "\n"
    "12|Usual Suspects, The (1995)|14-Aug-1995||http://x|" + _FLAGS["Crime Thriller"] + "\n"
    "7|Café au lait (Métisse) (1993)|01-Jan-1993||http://x|" + _FLAGS["Crime Thriller"] + "\n"
    "267|unknown||||" + _FLAGS["unknown"] + "\n"
)
ITEMS_TSV = (
    "item\ttitle\tyear\tgenres\n"
    "1\tToy Story\t1995\tAnimation Children's Comedy\n"
    "7\tCafé au lait (Métisse)\t1993\tCrime Thriller\n"
    "12\tUsual Suspects, The\t1995\tCrime Thriller\n"
    "267\tunknown\t\tunknown\n"
)
MOVIES_DAT = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n"
    "7::Café au lait (Métisse) (1993)::Crime|Thriller\n"
    "12::Usual Suspects, The (1995)::Crime|Thriller\n"
    "267::unknown::unknown\n"
)
U_USER = "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|T8H1N\n"
USERS_TSV = (
    "user\tage\tgender\toccupation\tzip\n"
    "3\t23\tM\twriter\tT8H1N\n1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n"
)
USERS_DAT = "1::M::25::17::85711\n2::F::50::0::94043\n3::M::18::20::T8H1N\n"
U_DATA = b"1\t12\t4\t100\n2\t1\t3\t70\n3\t267\t1\t10\n1\t7\t5\t50\n"


def _write(folder, name, text, encoding="latin-1"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(text.encode(encoding))
    return folder / name


def _check_items(items):
    np.testing.assert_array_equal(items["item_id"], [1, 7, 12, 267])
    assert list(items["title"]) == ["Toy Story", "Café au lait (Métisse)", "Usual Suspects, The",
                                    "unknown"]
    assert list(items["genres"]) == [
        ("Animation", "Children's", "Comedy"),
        ("Crime", "Thriller"),
        ("Crime", "Thriller"),
        ("unknown",),
    ]


@pytest.mark.parametrize(
    ("name", "text", "encoding"),
    [("u.item", U_ITEM, "latin-1"), ("items.tsv", ITEMS_TSV, "utf-8"),
     ("movies.dat", MOVIES_DAT, "latin-1")],
)
def test_items_from_each_format(tmp_path, name, text, encoding):
    path = _write(tmp_path / "ml", name, text, encoding)
    items = load_movielens_items(path.parent, as_frame=False)
    _check_items(items)
    np.testing.assert_array_equal(items["year"], [1995, 1993, 1995, np.nan])
    assert items["item_id"].dtype == np.int64 and items["year"].dtype == np.float64
    # the file itself, or another file of the folder, works as well
    _check_items(load_movielens_items(path, as_frame=False))
    (path.parent / "u.data").write_bytes(U_DATA)
    _check_items(load_movielens_items(path.parent / "u.data", as_frame=False))


def test_items_aligned_with_load_movielens_and_frame(tmp_path):
    pd = pytest.importorskip("pandas")
    folder = tmp_path / "ml-100k"
    _write(folder, "u.item", U_ITEM)
    (folder / "u.data").write_bytes(U_DATA)
    data = load_movielens(folder)
    items = load_movielens_items(folder, item_ids=data.item_ids)
    assert isinstance(items, pd.DataFrame)
    assert list(items.index) == list(range(data.X.shape[1]))
    np.testing.assert_array_equal(items["item_id"], data.item_ids)
    assert str(items["year"].dtype) == "Int64" and items["year"].isna().tolist() == [
        False, False, False, True]
    # a custom order, and the parent folder / zip archive as the path
    sub = load_movielens_items(tmp_path, item_ids=[267, 1], as_frame=False)
    assert list(sub["title"]) == ["unknown", "Toy Story"]
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ml-100k/u.data", U_DATA)
        z.writestr("ml-100k/u.item", U_ITEM.encode("latin-1"))
        z.writestr("ml-100k/u.user", U_USER)
    _check_items(load_movielens_items(archive, item_ids=load_movielens(archive).item_ids))
    users = load_movielens_users(archive, as_frame=False)
    np.testing.assert_array_equal(users["user_id"], [1, 2, 3])


def test_items_tsv_preferred_and_same_as_official(tmp_path):
    folder = tmp_path / "ml"
    _write(folder, "u.item", U_ITEM)
    official = load_movielens_items(folder, as_frame=False)
    _write(folder, "items.tsv", ITEMS_TSV.replace("Toy Story", "Toy Story!"), "utf-8")
    derived = load_movielens_items(folder, as_frame=False)
    assert derived["title"][0] == "Toy Story!"  # items.tsv is read first
    derived["title"][0] = "Toy Story"
    for col in official:
        np.testing.assert_array_equal(official[col], derived[col])


@pytest.mark.parametrize(
    ("name", "text"), [("u.user", U_USER), ("users.tsv", USERS_TSV), ("users.dat", USERS_DAT)]
)
def test_users_from_each_format(tmp_path, name, text):
    path = _write(tmp_path / "ml", name, text)
    users = load_movielens_users(path.parent, as_frame=False)
    np.testing.assert_array_equal(users["user_id"], [1, 2, 3])
    assert list(users["gender"]) == ["M", "F", "M"]
    assert list(users["zip"]) == ["85711", "94043", "T8H1N"]
    assert users["age"].dtype == np.int64
    if name == "users.dat":  # ML-1M: age group codes, occupation codes -> names
        np.testing.assert_array_equal(users["age"], [25, 50, 18])
        assert list(users["occupation"]) == ["technician/engineer", "other", "writer"]
    else:
        np.testing.assert_array_equal(users["age"], [24, 53, 23])
        assert list(users["occupation"]) == ["technician", "other", "writer"]


def test_users_aligned_with_load_movielens(tmp_path):
    pytest.importorskip("pandas")
    folder = tmp_path / "ml-100k"
    _write(folder, "users.tsv", USERS_TSV, "utf-8")
    (folder / "u.data").write_bytes(U_DATA)
    data = load_movielens(folder)
    users = load_movielens_users(folder, user_ids=data.user_ids[::-1])
    np.testing.assert_array_equal(users["user_id"], [3, 2, 1])
    assert list(users["age"]) == [23, 53, 24]


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_movielens_items(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="u.item"):
        load_movielens_items(tmp_path)
    with pytest.raises(FileNotFoundError, match="u.user"):
        load_movielens_users(tmp_path)
    folder = tmp_path / "ml"
    _write(folder, "u.item", U_ITEM)
    with pytest.raises(ValueError, match=r"1 of the requested ids.*\[99\]"):
        load_movielens_items(folder, item_ids=[1, 99])
    with pytest.raises(ValueError, match="integer ids"):
        load_movielens_items(folder, item_ids=["a"])
    _write(folder, "u.item", U_ITEM + U_ITEM.splitlines()[0] + "\n")
    with pytest.raises(ValueError, match="id 1 appears more than once"):
        load_movielens_items(folder)
    _write(folder, "u.item", "1|Toy Story (1995)|01-Jan-1995\n")
    with pytest.raises(ValueError, match="line 1: 3 fields, expected 24"):
        load_movielens_items(folder)
    _write(folder, "u.item", "x|T (1995)|||u|" + _FLAGS["unknown"] + "\n")
    with pytest.raises(ValueError, match="item id 'x' is not an integer"):
        load_movielens_items(folder)
    _write(folder, "items.tsv", "item\ttitle\n1\tA\n", "utf-8")
    with pytest.raises(ValueError, match=r"lacks the header column\(s\) \['year', 'genres'\]"):
        load_movielens_items(folder)
    _write(folder, "users.dat", "1::M::25::99::1\n")
    with pytest.raises(ValueError, match="unknown occupation code 99"):
        load_movielens_users(folder)


def test_as_frame_true_without_pandas(tmp_path, monkeypatch):
    import sys

    _write(tmp_path, "u.user", U_USER)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r'pip install "skrec\[pandas\]"'):
        load_movielens_users(tmp_path, as_frame=True)
    assert isinstance(load_movielens_users(tmp_path), dict)  # None: a dict without pandas


def test_real_movielens_100k_side_information(ml100k_path):
    data = load_movielens(ml100k_path)
    items = load_movielens_items(ml100k_path, item_ids=data.item_ids, as_frame=False)
    users = load_movielens_users(ml100k_path, user_ids=data.user_ids, as_frame=False)
    assert len(items["title"]) == 1682 and len(users["age"]) == 943
    np.testing.assert_array_equal(items["title"], data.item_titles)
    assert items["title"][0] == "Toy Story" and items["year"][0] == 1995
    assert np.isnan(items["year"][266]) and items["genres"][266] == ("unknown",)
    genres = [g for gs in items["genres"] for g in gs]
    assert len(set(genres)) == 19 and genres.count("Drama") == 725
    assert len(set(users["occupation"])) == 21 and set(users["gender"]) == {"M", "F"}
    assert 7 <= users["age"].min() and users["age"].max() <= 73
