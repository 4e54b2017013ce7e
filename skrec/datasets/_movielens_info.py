"""MovieLens side information: item (movie) and user metadata, aligned with load_movielens."""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

__all__ = ["load_movielens_items", "load_movielens_users"]

_ITEM_FILES = ("items.tsv", "u.item", "movies.dat")  # in order of preference
_USER_FILES = ("users.tsv", "u.user", "users.dat")

#: Genre columns of ML-100K's u.item, in file order (from the data set's README and u.genre).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

#: ML-1M's occupation codes (users.dat), from the data set's README.
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip

_TITLE_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")


def _find_file(path: Path, names: tuple[str, ...], what: str) -> tuple[str, bytes, str]:
    """``(file name, bytes, where)`` of the first of ``names`` found at ``path``.

    ``path`` is a folder (the file inside it, or inside an ``ml-100k``/``ml-1m`` sub-folder),
    a zip archive, the metadata file itself, or another file of the data set (then its folder
    is searched).
    """
    if not path.exists():
        raise FileNotFoundError(f"MovieLens path not found: {path}")
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [PurePosixPath(n) for n in archive.namelist() if not n.endswith("/")]
            for name in names:
                found = sorted((m for m in members if m.name == name), key=lambda m: len(m.parts))
                if found:
                    return name, archive.read(str(found[0])), f"{path}:{found[0]}"
        raise FileNotFoundError(f"No MovieLens {what} file ({', '.join(names)}) in {path}.")
    if path.is_file():
        if path.name in names:
            return path.name, path.read_bytes(), str(path)
        path = path.parent
    for folder in (path, path / "ml-100k", path / "ml-1m"):
        for name in names:
            if (folder / name).is_file():
                return name, (folder / name).read_bytes(), str(folder / name)
    raise FileNotFoundError(f"No MovieLens {what} file ({', '.join(names)}) in {path}.")


def _lines(raw: bytes, name: str) -> list[str]:
    text = raw.decode("utf-8") if name.endswith(".tsv") else raw.decode("latin-1")
    return [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


def _tsv_rows(lines: list[str], columns: tuple[str, ...], where: str) -> list[list[str]]:
    """Rows of a skrec TSV file as lists of fields in the order of ``columns``."""
    header = lines[0].split("\t") if lines else []
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{where} lacks the header column(s) {missing}; expected {list(columns)}.")
    pos = [header.index(c) for c in columns]
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        fields += [""] * (len(header) - len(fields))  # trailing empty fields
        if len(fields) != len(header):
            raise ValueError(
                f"{where}, line {lineno}: {len(fields)} fields, expected {len(header)}."
            )
        rows.append([fields[p] for p in pos])
    return rows


def _split(lines: list[str], sep: str, n_fields: int, where: str) -> list[list[str]]:
    rows = []
    for lineno, line in enumerate(lines, start=1):
        fields = line.split(sep)
        if len(fields) < n_fields:
            raise ValueError(
                f"{where}, line {lineno}: {len(fields)} fields, expected {n_fields} "
                f"separated by {sep!r}."
            )
        rows.append(fields)
    return rows


def _int(value: str, what: str, where: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError(f"{where}: {what} {value!r} is not an integer.") from None


def _year(value: str) -> float:
    value = value.strip()
    return float(value[-4:]) if len(value) >= 4 and value[-4:].isdigit() else np.nan


def _parse_items(name: str, raw: bytes, where: str) -> dict[str, list]:
    lines = _lines(raw, name)
    ids, titles, years, genres = [], [], [], []
    if name == "items.tsv":
        for item, title, year, g in _tsv_rows(lines, ("item", "title", "year", "genres"), where):
            ids.append(_int(item, "item id", where))
            titles.append(title)
            years.append(_year(year))
            genres.append(tuple(g.split()))
    elif name == "u.item":
        n_genres = len(ML100K_GENRES)
        for fields in _split(lines, "|", 5 + n_genres, where):
            ids.append(_int(fields[0], "item id", where))
            match = _TITLE_YEAR.search(fields[1])
            titles.append(fields[1][: match.start()] if match else fields[1].strip())
            year = _year(fields[2])  # the release date, e.g. 01-Jan-1995
            years.append(float(match.group(1)) if np.isnan(year) and match else year)
            flags = fields[5 : 5 + n_genres]
            if any(f.strip() not in ("0", "1") for f in flags):
                raise ValueError(f"{where}: item {fields[0]} has genre flags other than 0/1.")
            genres.append(tuple(g for g, f in zip(ML100K_GENRES, flags) if f.strip() == "1"))
    else:  # movies.dat (ML-1M): MovieID::Title (Year)::Genre|Genre
        for fields in _split(lines, "::", 3, where):
            ids.append(_int(fields[0], "item id", where))
            match = _TITLE_YEAR.search(fields[1])
            titles.append(fields[1][: match.start()] if match else fields[1].strip())
            years.append(float(match.group(1)) if match else np.nan)
            genres.append(tuple(g for g in fields[2].strip().split("|") if g))
    return {"item_id": ids, "title": titles, "year": years, "genres": genres}


def _parse_users(name: str, raw: bytes, where: str) -> dict[str, list]:
    lines = _lines(raw, name)
    out: dict[str, list] = {"user_id": [], "age": [], "gender": [], "occupation": [], "zip": []}
    if name == "users.tsv":
        rows = _tsv_rows(lines, ("user", "age", "gender", "occupation", "zip"), where)
    elif name == "u.user":  # user id | age | gender | occupation | zip code
        rows = [f[:5] for f in _split(lines, "|", 5, where)]
    else:  # users.dat (ML-1M): UserID::Gender::Age::Occupation::Zip-code
        rows = []
        for f in _split(lines, "::", 5, where):
            code = _int(f[3], "occupation code", where)
            if not 0 <= code < len(ML1M_OCCUPATIONS):
                raise ValueError(f"{where}: unknown occupation code {code} (user {f[0]}).")
            rows.append([f[0], f[2], f[1], ML1M_OCCUPATIONS[code], f[4]])
    for user, age, gender, occupation, zip_code in rows:
        out["user_id"].append(_int(user, "user id", where))
        out["age"].append(_int(age, "age", where))
        out["gender"].append(gender.strip())
        out["occupation"].append(occupation.strip())
        out["zip"].append(zip_code.strip())
    return out


def _align(columns: dict[str, list], id_col: str, ids: Any, where: str) -> dict[str, np.ndarray]:
    """Numpy columns, rows sorted by id, or in the order of ``ids`` when given."""
    file_ids = np.asarray(columns[id_col], dtype=np.int64)
    if file_ids.size == 0:
        raise ValueError(f"{where} holds no rows.")
    unique, counts = np.unique(file_ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{where}: id {unique[counts > 1][0]} appears more than once.")
    if ids is None:
        order = np.argsort(file_ids, kind="stable")
    else:
        wanted = np.asarray(ids)
        if wanted.ndim != 1 or wanted.dtype.kind not in "iuf" or (
            wanted.dtype.kind == "f" and (wanted != np.round(wanted)).any()
        ):
            raise ValueError(
                f"{id_col.replace('_id', '')}_ids must be a 1-D array of integer ids; got "
                f"{wanted.dtype} with shape {wanted.shape}."
            )
        wanted = wanted.astype(np.int64)
        sorter = np.argsort(file_ids)
        pos = np.searchsorted(file_ids, wanted, sorter=sorter)
        pos = np.minimum(pos, file_ids.size - 1)
        order = sorter[pos]
        missing = wanted[file_ids[order] != wanted]
        if missing.size:
            raise ValueError(
                f"{missing.size} of the requested ids are not in {where} (first: "
                f"{missing[:5].tolist()}); is it the same data set?"
            )
    out: dict[str, np.ndarray] = {}
    for col, values in columns.items():
        if col == id_col:
            out[col] = file_ids[order]
        elif col in ("year",):
            out[col] = np.asarray(values, dtype=np.float64)[order]
        elif col == "age":
            out[col] = np.asarray(values, dtype=np.int64)[order]
        else:
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
            out[col] = arr[order]
    return out


def _as_frame(out: dict[str, np.ndarray], as_frame: bool | None, func: str):
    if as_frame is None or as_frame:
        try:
            import pandas as pd
        except ImportError:
            if as_frame:
                raise ImportError(
                    f'{func}(as_frame=True) needs pandas: pip install "skrec[pandas]".'
                ) from None
            return out
        frame = pd.DataFrame(out)
        if "year" in frame:
            frame["year"] = pd.array(
                [None if np.isnan(y) else int(y) for y in out["year"]], dtype="Int64"
            )
        return frame
    return out


def load_movielens_items(
    path: str | os.PathLike, *, item_ids: Any = None, as_frame: bool | None = None
):
    """Load MovieLens movie metadata: title, year and genres.

    Reads, in this order of preference, ``items.tsv`` (a header ``item title year genres``,
    genres separated by spaces), the official ML-100K ``u.item`` (``|``-separated, latin-1,
    19 genre flags) or the official ML-1M ``movies.dat`` (``MovieID::Title (Year)::Genres``).
    All three give the same columns.

    Parameters
    ----------
    path : str or path-like
        A folder holding one of those files (possibly in an ``ml-100k/`` or ``ml-1m/``
        sub-folder), the official zip archive (as downloaded by
        :func:`~skrec.datasets.fetch_movielens`), the metadata file itself, or another file of
        the data set (``u.data``), whose folder is then searched.
    item_ids : array-like of int, default=None
        The movie id of each row to return, typically ``load_movielens(path).item_ids``, so
        that row ``j`` describes column ``j`` of ``X``. ``None``: every movie of the file,
        sorted by id.
    as_frame : bool, default=None
        Return a ``pandas.DataFrame`` (``True``) or a dict of numpy arrays (``False``).
        ``None``: a DataFrame when pandas is importable, else a dict.

    Returns
    -------
    items : pandas.DataFrame or dict of str to ndarray
        One row per movie, with the columns:

        item_id : int
            The movie id of the file (the ``item_ids`` of :func:`load_movielens`).
        title : str
            The title without the trailing ``" (YYYY)"`` (``"Usual Suspects, The"``).
        year : Int64 (float with NaN in a dict)
            From ``u.item``'s release date (else the title's year), ``movies.dat``'s title,
            or ``items.tsv``; missing where there is none (ML-100K item 267).
        genres : tuple of str
            For example ``("Animation", "Children's", "Comedy")``; ML-100K's genre
            ``"unknown"`` is kept as given.

    Raises
    ------
    FileNotFoundError
        If no metadata file is found.
    ValueError
        If the file is malformed, an id repeats, or some of ``item_ids`` are not in it.

    See Also
    --------
    load_movielens_users : the users' demographics.

    Notes
    -----
    For multi-hot genre features use ``MultiLabelBinarizer().fit_transform(items["genres"])``,
    or, inside a :class:`~sklearn.compose.ColumnTransformer`,
    ``CountVectorizer(analyzer=list, binary=True)`` on the ``"genres"`` column (each tuple is
    its own list of tokens).

    Examples
    --------
    >>> from skrec.datasets import load_movielens, load_movielens_items
    >>> data = load_movielens("ml-100k")  # doctest: +SKIP
    >>> items = load_movielens_items("ml-100k", item_ids=data.item_ids)  # doctest: +SKIP
    >>> items.loc[0, ["title", "year"]].tolist()  # doctest: +SKIP
    ['Toy Story', 1995]
    """
    name, raw, where = _find_file(Path(path).expanduser(), _ITEM_FILES, "item metadata")
    out = _align(_parse_items(name, raw, where), "item_id", item_ids, where)
    return _as_frame(out, as_frame, "load_movielens_items")


def load_movielens_users(
    path: str | os.PathLike, *, user_ids: Any = None, as_frame: bool | None = None
):
    """Load MovieLens user demographics: age, gender, occupation and zip code.

    Reads, in this order of preference, ``users.tsv`` (a header ``user age gender occupation
    zip``), the official ML-100K ``u.user`` (``|``-separated) or the official ML-1M
    ``users.dat`` (``UserID::Gender::Age::Occupation::Zip-code``, occupation codes turned
    into their names).

    Parameters
    ----------
    path : str or path-like
        A folder holding one of those files (possibly in an ``ml-100k/`` or ``ml-1m/``
        sub-folder), the official zip archive, the file itself, or another file of the data
        set, whose folder is then searched.
    user_ids : array-like of int, default=None
        The user id of each row to return, typically ``load_movielens(path).user_ids``, so
        that row ``i`` describes row ``i`` of ``X``. ``None``: every user of the file, sorted
        by id.
    as_frame : bool, default=None
        Return a ``pandas.DataFrame`` (``True``) or a dict of numpy arrays (``False``).
        ``None``: a DataFrame when pandas is importable, else a dict.

    Returns
    -------
    users : pandas.DataFrame or dict of str to ndarray
        One row per user, with the columns ``user_id`` (int), ``age`` (int: the age in
        ML-100K; in ML-1M the age group's code: 1 = under 18, 18 = 18-24, 25, 35, 45, 50,
        56 = 56+), ``gender`` (``"M"``/``"F"``), ``occupation`` (str, e.g. ``"technician"``)
        and ``zip`` (str; not always numeric).

    Raises
    ------
    FileNotFoundError
        If no user file is found.
    ValueError
        If the file is malformed, an id repeats, or some of ``user_ids`` are not in it.

    See Also
    --------
    load_movielens_items : the movies' titles, years and genres.
    """
    name, raw, where = _find_file(Path(path).expanduser(), _USER_FILES, "user")
    out = _align(_parse_users(name, raw, where), "user_id", user_ids, where)
    return _as_frame(out, as_frame, "load_movielens_users")
