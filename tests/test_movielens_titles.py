"""load_movielens_titles: item id -> title from items.tsv, u.item or movies.dat."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from skrec.datasets import load_movielens, load_movielens_titles

_UITEM = (
    "10|Ten (1995)|01-Jan-1995||http://x|0|1\n"
    "20|Vingt (1996)|01-Jan-1996||http://x|0|1\n"
    "30|Trente|||http://x|1|0\n"
)
_ITEMS_TSV = "item\ttitle\tyear\tgenres\n10\tTen\t1995\tDrama\n20\tVingt\t1996\tComedy Drama\n"


def test_official_u_item_in_a_folder_a_file_and_a_zip(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.item").write_bytes(_UITEM.encode("latin-1"))
    expected = {10: "Ten (1995)", 20: "Vingt (1996)", 30: "Trente"}
    assert load_movielens_titles(folder) == expected
    assert load_movielens_titles(tmp_path) == expected  # the parent of ml-100k/
    assert load_movielens_titles(folder / "u.item") == expected
    (folder / "u.data").write_text("1\t10\t4\t100\n")
    assert load_movielens_titles(folder / "u.data") == expected  # next to the ratings
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ml-100k/u.data", "1\t10\t4\t100\n")
        z.writestr("ml-100k/u.item", _UITEM.encode("latin-1"))
    assert load_movielens_titles(archive) == expected


def test_items_tsv_is_preferred_and_read_as_utf8(tmp_path):
    (tmp_path / "u.item").write_bytes(_UITEM.encode("latin-1"))
    (tmp_path / "items.tsv").write_text(_ITEMS_TSV.replace("Vingt", "Vingt é"), encoding="utf-8")
    assert load_movielens_titles(tmp_path) == {10: "Ten", 20: "Vingt é"}


def test_movies_dat(tmp_path):
    (tmp_path / "movies.dat").write_bytes("1::Toy Story (1995)::Animation\n".encode("latin-1"))
    assert load_movielens_titles(tmp_path / "movies.dat") == {1: "Toy Story (1995)"}


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_movielens_titles(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="u.item"):
        load_movielens_titles(tmp_path)  # an empty folder
    (tmp_path / "items.tsv").write_text("id\tname\n1\tx\n")
    with pytest.raises(ValueError, match="no titles"):
        load_movielens_titles(tmp_path)


def test_shared_ml100k_titles_match_load_movielens(ml100k_path):
    titles = load_movielens_titles(ml100k_path)
    assert len(titles) == 1682 and titles[1] == "Toy Story"
    data = load_movielens(ml100k_path)
    np.testing.assert_array_equal(
        [titles[int(i)] for i in data.item_ids], data.item_titles
    )
