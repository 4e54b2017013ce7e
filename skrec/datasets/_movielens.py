"""MovieLens loaders: read the official files, or download and cache the official archives."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
from sklearn.base import clone
from sklearn.utils import Bunch

from ..preprocessing import InteractionEncoder
from ._local import find_local_data

__all__ = [
    "MOVIELENS_ARCHIVES",
    "fetch_movielens",
    "find_movielens",
    "get_data_home",
    "load_movielens",
    "load_movielens_titles",
]

#: Official MovieLens archives: variant -> url, SHA-256 of the zip, file name in the cache.
#: The checksums match those pinned by tensorflow_datasets (``url_checksums/movielens.txt``:
#: ml-100k.zip 4,924,029 bytes, ml-1m.zip 5,917,549 bytes) and by several other public projects.
#: Tests monkeypatch this dict to serve a local fixture.
MOVIELENS_ARCHIVES: dict[str, dict[str, str]] = {
    "100k": {
        "url": "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        "sha256": "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        "filename": "ml-100k.zip",
    },
    "1m": {
        "url": "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        "sha256": "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        "filename": "ml-1m.zip",
    },
}

_RATINGS_FILES = ("u.data", "ratings.dat")  # ML-100K, ML-1M
_TITLE_FILES = ("items.tsv", "u.item", "movies.dat")  # in order of preference

_LICENSE = """\
MovieLens data sets are distributed by GroupLens Research, University of Minnesota
(https://grouplens.org/datasets/movielens/) under their own usage licence: research use,
no redistribution without permission, no commercial use without permission, and
publications must cite: F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens
Datasets: History and Context. ACM Transactions on Interactive Intelligent Systems (TiiS)
5, 4, Article 19. https://doi.org/10.1145/2827872"""


def get_data_home(data_home: str | os.PathLike | None = None) -> Path:
    """Return the folder where skrec caches downloaded data sets, creating it if needed.

    Parameters
    ----------
    data_home : str or path-like, default=None
        The folder. When ``None``: the environment variable ``SKREC_DATA`` if set, else
        ``~/skrec_data``. ``~`` is expanded.

    Returns
    -------
    path : pathlib.Path
        The existing cache folder.
    """
    if data_home is None:
        data_home = os.environ.get("SKREC_DATA", Path("~") / "skrec_data")
    path = _as_path(data_home, "data_home")
    path.mkdir(parents=True, exist_ok=True)
    return path


def find_movielens(version: str = "100k", *, search_from: str | os.PathLike | None = None,
                   instead: str | None = None) -> Path | None:
    """The folder of a MovieLens data set already on this machine, without downloading.

    Looked up, in order: ``$SKREC_DATA_DIR`` (the folder itself, or its ``ml-<version>``
    sub-folder), the cache of :func:`fetch_movielens` (:func:`get_data_home`), and a
    ``shared/data/ml-<version>`` folder next to any parent of ``search_from`` (the layout of
    skrec's development machines).

    Parameters
    ----------
    version : {"100k", "1m"}, default="100k"
        Which data set (its ratings file: ``u.data`` or ``ratings.dat``).
    search_from : str or path-like, default=None
        Where the upward search for ``shared/data`` starts (an example passes its own
        ``__file__``); the working directory when ``None``.
    instead : str, default=None
        What the caller uses when the data are not found (e.g. ``"synthetic data"``): then
        a banner on standard output and a ``UserWarning`` say so loudly, with where the
        data were looked for and how to point ``SKREC_DATA_DIR`` at them, so that numbers
        computed on the substitute are never mistaken for MovieLens ones.

    Returns
    -------
    path : pathlib.Path or None
        The folder holding the ratings file, or ``None``.
    """
    if version not in MOVIELENS_ARCHIVES:
        raise ValueError(f"version must be one of {sorted(MOVIELENS_ARCHIVES)}; got "
                         f"{version!r}.")
    ratings = "u.data" if version == "100k" else "ratings.dat"
    return find_local_data(
        f"ml-{version}", ratings, search_from=search_from, instead=instead,
        label=f"MovieLens {version.upper()}",
        how_to_get=f"Get the data with skrec.datasets.fetch_movielens({version!r})")


# ---------------------------------------------------------------------------------------------
# Reading the official files.
# ---------------------------------------------------------------------------------------------


def _read_table(raw: bytes, source: str, sep: str | None, columns: tuple[str, ...],
                what: str, rows: str) -> np.ndarray:
    """Parse a numeric text table with ``len(columns)`` columns into an (n, k) float array.

    ``what`` names the expected kind of file and ``rows`` what a row is, for the errors.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
        try:
            arr = np.loadtxt(
                io.BytesIO(raw), delimiter=sep, dtype=np.float64, ndmin=2, comments=None
            )
        except ValueError as exc:
            raise ValueError(f"{source} is not {what}: {exc}") from None
    if arr.shape[0] == 0:
        raise ValueError(f"{source} holds no {rows}.")
    if arr.shape[1] != len(columns):
        raise ValueError(f"{source} has {arr.shape[1]} columns; expected {len(columns)} "
                         f"({', '.join(columns)}).")
    return arr


def _parse_ratings(raw: bytes, source: str) -> np.ndarray:
    """Parse ``user item rating timestamp`` rows (tab- or ``::``-separated) into (n, 4)."""
    text = raw.replace(b"::", b"\t").replace(b"\r\n", b"\n")
    arr = _read_table(text, source, "\t", ("user", "item", "rating", "timestamp"),
                      "a MovieLens ratings file (user, item, rating, timestamp separated by "
                      "tabs or '::')", "ratings")
    ids = arr[:, [0, 1, 3]]
    if not np.isfinite(arr).all() or (ids != np.round(ids)).any():
        raise ValueError(f"{source} has non-integer user, item or timestamp values.")
    return arr


def _parse_titles(name: str, raw: bytes) -> dict[int, str]:
    """Item id -> title from items.tsv (skrec), u.item (ML-100K) or movies.dat (ML-1M)."""
    text = raw.decode("utf-8") if name == "items.tsv" else raw.decode("latin-1")
    lines = text.splitlines()
    titles: dict[int, str] = {}
    if name == "items.tsv":
        header = lines[0].split("\t") if lines else []
        if "item" not in header or "title" not in header:
            return titles
        i_item, i_title = header.index("item"), header.index("title")
        rows = (line.split("\t") for line in lines[1:])
    else:
        sep = "|" if name == "u.item" else "::"
        i_item, i_title = 0, 1
        rows = (line.split(sep) for line in lines)
    for fields in rows:
        if len(fields) > max(i_item, i_title) and fields[i_item].strip().isdigit():
            titles[int(fields[i_item])] = fields[i_title]
    return titles


def _read_source(path: Path) -> tuple[str, bytes, str | None, bytes | None]:
    """Return (ratings name, ratings bytes, titles name, titles bytes) from a path."""
    if path.is_dir():
        for candidate in (
            *_RATINGS_FILES,
            *(f"ml-{v}/{f}" for v in ("100k", "1m") for f in _RATINGS_FILES),
        ):
            ratings = path / candidate
            if ratings.is_file():
                break
        else:
            raise FileNotFoundError(
                f"No MovieLens ratings file in {path}: expected u.data (ML-100K) or "
                "ratings.dat (ML-1M)."
            )
        for name in _TITLE_FILES:
            if (ratings.parent / name).is_file():
                return (
                    ratings.name,
                    ratings.read_bytes(),
                    name,
                    (ratings.parent / name).read_bytes(),
                )
        return ratings.name, ratings.read_bytes(), None, None
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = {PurePosixPath(n): n for n in archive.namelist() if not n.endswith("/")}
            found = sorted(
                (p for p in members if p.name in _RATINGS_FILES), key=lambda p: len(p.parts)
            )
            if not found:
                raise FileNotFoundError(
                    f"No MovieLens ratings file (u.data or ratings.dat) in the archive {path}."
                )
            ratings = found[0]
            raw = archive.read(members[ratings])
            for name in _TITLE_FILES:
                if ratings.parent / name in members:
                    return ratings.name, raw, name, archive.read(members[ratings.parent / name])
            return ratings.name, raw, None, None
    if path.is_file():
        titles_name = next((n for n in _TITLE_FILES if (path.parent / n).is_file()), None)
        titles = (path.parent / titles_name).read_bytes() if titles_name else None
        return path.name, path.read_bytes(), titles_name, titles
    raise FileNotFoundError(f"MovieLens path not found: {path}")


def _as_path(path, what: str = "path") -> Path:
    """``path`` as an expanded ``Path``, or a TypeError naming what was given."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(
            f"{what} must be a file or folder path (str or os.PathLike); got "
            f"{type(path).__name__}."
        )
    return Path(path).expanduser()


def _read_titles(path: Path) -> tuple[str, bytes]:
    """(file name, bytes) of the title file of a MovieLens folder, file or archive."""
    if path.is_dir():
        for folder in (path, path / "ml-100k", path / "ml-1m"):
            for name in _TITLE_FILES:
                if (folder / name).is_file():
                    return name, (folder / name).read_bytes()
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = sorted(
                (PurePosixPath(n) for n in archive.namelist() if not n.endswith("/")),
                key=lambda p: len(p.parts),
            )
            for name in _TITLE_FILES:
                found = [m for m in members if m.name == name]
                if found:
                    return name, archive.read(str(found[0]))
    elif path.is_file():
        if path.name in _TITLE_FILES:
            return path.name, path.read_bytes()
        for name in _TITLE_FILES:  # a ratings file: look next to it
            if (path.parent / name).is_file():
                return name, (path.parent / name).read_bytes()
    else:
        raise FileNotFoundError(f"MovieLens path not found: {path}")
    raise FileNotFoundError(
        f"No MovieLens title file in {path}: expected items.tsv (header item, title, ...), "
        "u.item (ML-100K) or movies.dat (ML-1M)."
    )


def load_movielens_titles(path: str | os.PathLike) -> dict[int, str]:
    """Read the movie titles of MovieLens: original item id -> title.

    Use it to show recommendations in original ids with their titles, e.g.
    ``recs["title"] = recs["item"].map(load_movielens_titles(path))``.

    Parameters
    ----------
    path : str or path-like
        A folder holding a title file (or an ``ml-100k/``/``ml-1m/`` sub-folder holding one),
        a title file itself, a ratings file with a title file next to it, or the official zip
        archive. Title files, in order of preference: ``items.tsv`` (tab-separated with a
        header naming the columns ``item`` and ``title``, UTF-8), the official ``u.item``
        (ML-100K: ``|``-separated, Latin-1, the title first after the id) or ``movies.dat``
        (ML-1M: ``::``-separated, Latin-1).

    Returns
    -------
    titles : dict of int to str
        Item id (as in the ratings file) -> title, as written in the file: the official files
        end titles with the year, ``"Toy Story (1995)"``; ``items.tsv`` keeps the year in its
        own column.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist or holds no title file.
    ValueError
        If the title file holds no title (``items.tsv`` without ``item`` and ``title``
        columns, or an empty file).

    See Also
    --------
    load_movielens : The ratings; its ``item_titles`` are the same titles aligned with the
        matrix columns.
    """
    path = _as_path(path)
    name, raw = _read_titles(path)
    titles = _parse_titles(name, raw)
    if not titles:
        raise ValueError(
            f"{path} ({name}) holds no titles: items.tsv needs a header with the columns "
            "'item' and 'title'; u.item and movies.dat start each line with the id and title."
        )
    return titles


def load_movielens(path: str | os.PathLike) -> Bunch:
    """Load MovieLens ratings from the official files as user x item matrices.

    Parameters
    ----------
    path : str or path-like
        One of: a folder holding ``u.data`` (ML-100K: tab-separated ``user item rating
        timestamp``) or ``ratings.dat`` (ML-1M: ``::``-separated), possibly inside an
        ``ml-100k/`` or ``ml-1m/`` sub-folder; that file itself; or the official zip archive
        (``ml-100k.zip`` holding ``ml-100k/u.data``, ``ml-1m.zip`` holding
        ``ml-1m/ratings.dat``).

    Returns
    -------
    data : sklearn.utils.Bunch
        With the fields:

        X : scipy.sparse.csr_matrix of shape (n_users, n_items)
            Values are the order 1..n of each user's ratings by timestamp; equal timestamps
            keep the file's row order (stable sort). Ready for ``SeqRecommender``.
        timestamps : scipy.sparse.csr_matrix of shape (n_users, n_items)
            Same pattern as ``X``, values are the raw Unix timestamps (seconds).
        ratings : scipy.sparse.csr_matrix of shape (n_users, n_items)
            Same pattern as ``X``, values are the star ratings.
        user_ids : ndarray of shape (n_users,)
            Original user id of each row (sorted).
        item_ids : ndarray of shape (n_items,)
            Original item (movie) id of each column (sorted).
        encoder : InteractionEncoder
            The fitted encoder that built ``X``; use it to map predicted column indices back
            to movie ids (``encoder.inverse_transform_items``).
        item_titles : ndarray of str of shape (n_items,)
            Only when a title file sits next to the ratings (``items.tsv`` with a header
            ``item title year genres``, or the official ``u.item``/``movies.dat``); aligned
            with the columns, ``""`` for items without a title.
        DESCR : str
            Description and licence of the data set.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist or holds no ratings file.
    ValueError
        If the ratings file is malformed.

    Notes
    -----
    Parsing uses numpy only (no pandas). The matrices are built by
    :class:`skrec.preprocessing.InteractionEncoder` (``time_col="timestamp"``), so a
    (user, item) pair rated twice keeps its last rating time; MovieLens 100K and 1M have no
    such repeats.
    """
    path = _as_path(path)
    if not path.exists():
        raise FileNotFoundError(f"MovieLens path not found: {path}")
    ratings_name, raw, titles_name, titles_raw = _read_source(path)
    arr = _parse_ratings(raw, f"{path} ({ratings_name})")
    log = {
        "user": arr[:, 0].astype(np.int64),
        "item": arr[:, 1].astype(np.int64),
        "rating": arr[:, 2],
        "timestamp": arr[:, 3],
    }
    encoder = InteractionEncoder(time_col="timestamp", values="order")
    X = encoder.fit_transform(log)
    timestamps = clone(encoder).set_params(values="timestamp").fit_transform(log)
    ratings = clone(encoder).set_params(values="weight", weight_col="rating").fit_transform(log)
    for name, M in (("timestamps", timestamps), ("ratings", ratings)):
        if not (np.array_equal(M.indptr, X.indptr) and np.array_equal(M.indices, X.indices)):
            raise ValueError(f"{path}: {name} do not align with the interactions (zero values?).")
    kind = "ML-100K format (u.data)" if ratings_name == "u.data" else "ML-1M format (ratings.dat)"
    descr = (
        f"MovieLens ratings, {kind}, loaded from {path}.\n\n"
        f"{X.shape[0]} users (rows), {X.shape[1]} items (columns), {X.nnz} ratings.\n"
        "X holds each user's order 1..n by timestamp (ties keep the file order); timestamps "
        "and ratings hold the raw values with the same sparsity pattern. user_ids and "
        "item_ids give the original ids of rows and columns.\n\n" + _LICENSE + "\n"
    )
    bunch = Bunch(
        X=X,
        timestamps=timestamps,
        ratings=ratings,
        user_ids=encoder.users_,
        item_ids=encoder.items_,
        encoder=encoder,
        DESCR=descr,
    )
    if titles_name is not None:
        titles = _parse_titles(titles_name, titles_raw)
        if titles:
            bunch.item_titles = np.asarray(
                [titles.get(int(i), "") for i in encoder.items_.tolist()], dtype=object
            )
    return bunch


# ---------------------------------------------------------------------------------------------
# Downloading and caching.
# ---------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, dest: Path, sha256: str, *, verbose: bool) -> None:
    """Download ``url`` to ``dest`` atomically (temp file + rename), checking its SHA-256."""
    from tqdm.auto import tqdm

    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=60)
            except urllib.error.URLError as exc:
                raise OSError(f"Could not download {url}: {exc}") from exc
            with response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                with tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=f"Downloading {dest.name}",
                    disable=not verbose,
                ) as bar:
                    for chunk in iter(lambda: response.read(1 << 16), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        actual = digest.hexdigest()
        if actual != sha256:
            raise OSError(
                f"SHA-256 checksum mismatch for {url}: expected {sha256}, got {actual}. The "
                "downloaded file was deleted; it may be corrupted or changed upstream. Retry, "
                "or download it yourself and use load_movielens(path)."
            )
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def fetch_movielens(
    variant: str = "100k",
    *,
    data_home: str | os.PathLike | None = None,
    download_if_missing: bool = True,
    verbose: bool = True,
) -> Bunch:
    """Load MovieLens 100K or 1M, downloading the official archive once if needed.

    The zip archive from files.grouplens.org is cached in ``data_home`` and verified with its
    published SHA-256 (see :data:`MOVIELENS_ARCHIVES`), then read by :func:`load_movielens`.

    Parameters
    ----------
    variant : {"100k", "1m"}, default="100k"
        Which data set (``"ml-100k"``/``"ml-1m"`` are accepted too).
    data_home : str or path-like, default=None
        Cache folder; default :func:`get_data_home` (``$SKREC_DATA`` or ``~/skrec_data``).
    download_if_missing : bool, default=True
        Download the archive when it is not in the cache; when ``False``, raise instead.
    verbose : bool, default=True
        Show a progress bar (``tqdm.auto``) while downloading.

    Returns
    -------
    data : sklearn.utils.Bunch
        As returned by :func:`load_movielens` (``X``, ``timestamps``, ``ratings``,
        ``user_ids``, ``item_ids``, ``encoder``, ``item_titles``, ``DESCR``).

    Raises
    ------
    ValueError
        If ``variant`` is unknown.
    FileNotFoundError
        If the archive is not cached and ``download_if_missing=False``.
    OSError
        If the download fails, or the downloaded file's SHA-256 does not match (the file is
        deleted).

    Notes
    -----
    The download is written to a temporary file in ``data_home`` and renamed once complete
    and verified, so an interrupted download never leaves a truncated archive in the cache.
    A cached archive whose checksum does not match is deleted and downloaded again.
    """
    key = str(variant).lower().removeprefix("ml-")
    if key not in MOVIELENS_ARCHIVES:
        raise ValueError(f"variant must be one of {sorted(MOVIELENS_ARCHIVES)}; got {variant!r}.")
    spec = MOVIELENS_ARCHIVES[key]
    url, sha256 = spec["url"], spec["sha256"].lower()
    filename = spec.get("filename") or PurePosixPath(urllib.parse.urlparse(url).path).name
    dest = get_data_home(data_home) / filename
    if dest.is_file() and _sha256(dest) != sha256:
        warnings.warn(
            f"Cached {dest} does not match its SHA-256 checksum; deleting it.",
            UserWarning,
            stacklevel=2,
        )
        dest.unlink()
    if not dest.is_file():
        if not download_if_missing:
            raise FileNotFoundError(
                f"MovieLens {key} not found at {dest} and download_if_missing=False. Call "
                f"fetch_movielens({key!r}) with download_if_missing=True, or download {url} "
                "yourself and use load_movielens(path)."
            )
        _download(url, dest, sha256, verbose=verbose)
    return load_movielens(dest)
