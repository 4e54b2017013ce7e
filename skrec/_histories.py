"""Reading CSR rows as ordered item sequences (values give the order, ties by item index)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["merge_in_order", "ordered_sequences"]


def _row_ranks(X: sp.csr_matrix) -> np.ndarray:
    """Rank 1..n of each stored entry within its row, by value then item index."""
    counts = np.diff(X.indptr)
    rows = np.repeat(np.arange(X.shape[0]), counts)
    order = np.lexsort((X.indices, X.data, rows))
    ranks = np.empty(X.nnz, dtype=np.int64)
    ranks[order] = np.arange(X.nnz) - X.indptr[rows[order]] + 1
    return ranks


def ordered_sequences(X: sp.csr_matrix, length: int) -> np.ndarray:
    """Each row's items ordered by value (ties by item index), the last ``length`` kept.

    Parameters
    ----------
    X : scipy.sparse.csr_matrix of shape (n_users, n_items)
        Validated interactions (values give the order).
    length : int
        Width of the output; longer histories keep their latest items.

    Returns
    -------
    seqs : ndarray of shape (n_users, min(length, longest row)), dtype int64
        Left-padded with 0; items are shifted by one (item ``i`` is stored as ``i + 1``).
    """
    counts = np.diff(X.indptr)
    width = int(min(length, counts.max(initial=0)))
    out = np.zeros((X.shape[0], max(width, 1)), dtype=np.int64)
    if X.nnz == 0 or width == 0:
        return out
    rows = np.repeat(np.arange(X.shape[0]), counts)
    order = np.lexsort((X.indices, X.data, rows))
    from_end = X.indptr[rows + 1] - 1 - np.arange(X.nnz)  # rows stay grouped after lexsort
    keep = from_end < width
    out[rows[keep], width - 1 - from_end[keep]] = X.indices[order][keep] + 1
    return out


def merge_in_order(X: sp.csr_matrix, y: sp.csr_matrix | None) -> sp.csr_matrix:
    """One matrix of order ranks 1..n per row, with ``y``'s items after ``X``'s.

    Parameters
    ----------
    X : scipy.sparse.csr_matrix of shape (n_users, n_items)
        History (values give the order).
    y : scipy.sparse.csr_matrix of shape (n_users, n_items) or None
        Later items of the same users (their values order them among themselves).

    Returns
    -------
    merged : scipy.sparse.csr_matrix of shape (n_users, n_items)
        ``X`` itself when ``y`` is None. An item present in both keeps its later (``y``) rank.
    """
    if y is None:
        return X
    n_x = np.diff(X.indptr)
    x_rows = np.repeat(np.arange(X.shape[0]), n_x)
    y_rows = np.repeat(np.arange(y.shape[0]), np.diff(y.indptr))
    rows = np.concatenate([x_rows, y_rows])
    cols = np.concatenate([X.indices, y.indices])
    ranks = np.concatenate([_row_ranks(X), _row_ranks(y) + n_x[y_rows]]).astype(np.float64)
    # Keep the largest rank of a repeated (row, item): sort so it comes last, then dedupe.
    order = np.lexsort((ranks, cols, rows))
    rows, cols, ranks = rows[order], cols[order], ranks[order]
    last = np.ones(rows.size, dtype=bool)
    last[:-1] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    return sp.csr_matrix((ranks[last], (rows[last], cols[last])), shape=X.shape)
