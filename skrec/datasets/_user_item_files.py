"""Loader for "user item" sequence files (one interaction per line, in order per user)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ..preprocessing import InteractionEncoder
from ._movielens import _read_table

__all__ = ["load_sequences"]

#: File name looked up when ``load_sequences`` is given a folder.
_SEQUENCES_FILE = "sequences.txt"


def _parse_pairs(raw: bytes, source: str, sep: str | None) -> np.ndarray:
    """Parse ``user item`` lines into an (n, 2) int64 array."""
    arr = _read_table(raw, source, sep, ("user", "item"),
                      "a sequence file (one 'user item' pair of integer ids per line)",
                      "interactions")
    if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
        raise ValueError(f"{source} has non-integer user or item ids.")
    return arr.astype(np.int64)


def load_sequences(path: str | os.PathLike, *, sep: str | None = None) -> Bunch:
    """Load a "user item" sequence file as a user x item matrix of positions.

    The file holds one interaction per line, ``user item`` (integer ids), and each user's
    lines are in chronological order (they need not be contiguous). This is the format of the
    preprocessed data sets of SASRec (Kang & McAuley, 2018), for example Amazon "Video
    Games" (``Video.txt``) or MovieLens-1M (``ml-1m.txt``). There are no timestamps: the order
    of a user's lines is the order of the interactions.

    Parameters
    ----------
    path : str or path-like
        The file, or a folder holding ``sequences.txt``.
    sep : str, default=None
        Field separator; ``None`` splits on any whitespace (spaces or tabs).

    Returns
    -------
    data : sklearn.utils.Bunch
        With the fields:

        X : scipy.sparse.csr_matrix of shape (n_users, n_items)
            Values are the positions 1..n of each user's interactions in file order. Ready
            for ``SeqRecommender`` and ``leave_last_out_split``.
        user_ids : ndarray of shape (n_users,)
            Original user id of each row (sorted).
        item_ids : ndarray of shape (n_items,)
            Original item id of each column (sorted). For files whose item ids are
            ``1..n_items`` with none missing, column ``j`` is item ``j + 1``.
        encoder : InteractionEncoder
            The fitted encoder that built ``X``; use it to map predicted column indices back
            to item ids (``encoder.inverse_transform_items``).
        n_repeats : int
            Number of lines dropped because the same (user, item) pair occurs again later
            for that user (a matrix holds each pair once; the latest occurrence is kept and
            positions count the distinct items kept).
        DESCR : str
            Description of what was loaded.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist, or is a folder without ``sequences.txt``.
    ValueError
        If the file is empty or a line is not two integer ids.

    See Also
    --------
    load_movielens : the official MovieLens files (with timestamps and ratings).
    skrec.preprocessing.InteractionEncoder : build ``X`` from any event log.

    Notes
    -----
    Parsing uses numpy only. ``X`` is built by :class:`~skrec.preprocessing.InteractionEncoder`
    without a time column, so the order is the line order within each user.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from skrec.datasets import load_sequences
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "seq.txt"
    >>> _ = path.write_text("1 10\\n1 30\\n2 20\\n1 20\\n")
    >>> data = load_sequences(path)
    >>> data.X.toarray()
    array([[1., 3., 2.],
           [0., 1., 0.]])
    >>> data.item_ids
    array([10, 20, 30])
    """
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / _SEQUENCES_FILE).is_file():
            raise FileNotFoundError(f"No {_SEQUENCES_FILE} in the folder {path}.")
        path = path / _SEQUENCES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"Sequence file not found: {path}")
    pairs = _parse_pairs(path.read_bytes(), str(path), sep)
    encoder = InteractionEncoder(values="order")
    X = encoder.fit_transform({"user": pairs[:, 0], "item": pairs[:, 1]})
    n_repeats = int(pairs.shape[0] - X.nnz)
    lengths = np.diff(X.indptr)
    descr = (
        f"User-item sequences loaded from {path}.\n\n"
        f"{X.shape[0]} users (rows), {X.shape[1]} items (columns), {X.nnz} interactions "
        f"({lengths.mean():.1f} per user on average, {lengths.min()} to {lengths.max()}); "
        f"{n_repeats} repeated (user, item) line(s) dropped (the latest occurrence is kept).\n"
        "X holds each user's positions 1..n in file order. user_ids and item_ids give the "
        "original ids of rows and columns.\n"
    )
    return Bunch(
        X=X,
        user_ids=encoder.users_,
        item_ids=encoder.items_,
        encoder=encoder,
        n_repeats=n_repeats,
        DESCR=descr,
    )
