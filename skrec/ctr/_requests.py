"""One request and its candidates: the columns of ``N`` rows that share the request's fields
(what :meth:`~skrec.ctr.FieldEncoder.transform_request` encodes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._layouts import _frame_column
from ._values import _is_frame, _missing_mask, _pandas

#: ``read(column) -> (values, missing mask, dtype text)``: one value, or one per candidate.
Reader = Callable[[Any], tuple[np.ndarray, np.ndarray, str]]


def check_split(mine: list, theirs: list, fitted: list) -> None:
    """The request's columns and the candidates' together are exactly the fitted ones."""
    both = [c for c in mine if c in theirs]
    if both:
        raise ValueError(f"column(s) {both} are given in both the request and the candidates.")
    given = set(mine) | set(theirs)
    missing = [c for c in fitted if c not in given]
    if missing:
        raise ValueError(f"neither the request nor the candidates give the column(s) "
                         f"{missing} seen at fit time.")
    extra = [c for c in [*mine, *theirs] if c not in fitted]
    if extra:
        raise ValueError(f"column(s) {extra} were not seen at fit time.")


def sparse_request(request, candidates, width: int) -> sp.csr_matrix:
    """The candidates' sparse rows with the request's row added to each."""
    if not (sp.issparse(request) and sp.issparse(candidates)):
        raise ValueError("a model fitted on a sparse matrix takes a sparse request row and "
                         "sparse candidate rows.")
    if request.shape != (1, width) or candidates.shape[1] != width:
        raise ValueError(f"request must be one sparse row and candidates sparse rows of "
                         f"{width} columns; got {request.shape} and {candidates.shape}.")
    n = candidates.shape[0]
    return sp.csr_matrix(candidates) + sp.csr_matrix(np.ones((n, 1))) @ sp.csr_matrix(request)


def _cell_reader(cells: dict) -> Reader:
    """The reader of a request given as ``{column: one-cell column}`` of plain values (numbers,
    strings, lists, missing values): what a one-row DataFrame of it would give, without
    building one."""
    read_cells = {}
    for name, col in cells.items():
        if col.dtype.kind in "US":  # pandas holds strings as objects
            col = col.astype(object)
        read_cells[name] = (col, _missing_mask(col), str(col.dtype))
    return read_cells.__getitem__


def _one_value(value) -> np.ndarray:
    """A column of one cell holding ``value`` (a list for a multi-valued field)."""
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        col = np.empty(1, dtype=object)
        col[0] = list(value)
        return col
    return np.asarray([value])


def request_reader(encoder, request, candidates) -> tuple[Reader, int]:
    """The column reader of the candidates' rows and their number, for a fitted encoder of
    DataFrames or arrays (see :meth:`~skrec.ctr.FieldEncoder.transform_request`)."""
    fitted = list(dict.fromkeys(f["column"] for f in encoder.fields_))  # indicators: once
    if encoder.input_kind_ == "frame":
        if _is_frame(request):
            if request.shape[0] != 1:
                raise ValueError(f"request must be one row; got {request.shape[0]}.")
            mine = list(request.columns)
            read_request = lambda name: _frame_column(request, name)  # noqa: E731
        elif isinstance(request, dict):
            cells = {k: _one_value(v) for k, v in request.items()}
            mine = list(cells)
            if all(c.dtype.kind in "biufUSO" for c in cells.values()):
                read_request = _cell_reader(cells)  # plain values: no one-row frame
            else:  # e.g. dates: pandas reads them (and refuses them with its message)
                frame = _pandas().DataFrame(cells)
                read_request = lambda name: _frame_column(frame, name)  # noqa: E731
        else:
            raise ValueError("request must be a dict {column: value} or a one-row DataFrame; "
                             f"got {type(request).__name__}.")
        if not _is_frame(candidates):
            raise ValueError("candidates must be a DataFrame of the other columns (the model "
                             f"was fitted on a DataFrame); got {type(candidates).__name__}.")
        check_split(mine, list(candidates.columns), fitted)
        return (lambda name: read_request(name) if name in mine
                else _frame_column(candidates, name)), candidates.shape[0]
    if not isinstance(request, dict):
        raise ValueError("request must be a dict {column index: value} (the model was fitted "
                         f"on an array); got {type(request).__name__}.")
    mine = list(request)
    theirs = [c for c in fitted if c not in mine]
    check_split(mine, theirs, fitted)
    cand = encoder._as_array(candidates)
    if cand.shape[1] != len(theirs):
        raise ValueError(f"candidates has {cand.shape[1]} columns; the request gives "
                         f"{len(mine)} of the {len(fitted)} fields, so the candidates need the "
                         f"other {len(theirs)} (columns {theirs}, in order).")
    position = {c: k for k, c in enumerate(theirs)}

    def read(name):
        col = cand[:, position[name]] if name in position else _one_value(request[name])
        return col, _missing_mask(col), str(col.dtype)

    return read, cand.shape[0]
