"""Data sets: a synthetic generator with planted structure, and file loaders.

- :func:`make_interactions` generates user histories with planted topic (co-occurrence) and
  sequential structure: no download, the default for the quickstart and the tests.
- :func:`load_movielens` reads the official MovieLens 100K / 1M files or archives, and
  :func:`load_movielens_titles` their movie titles (item id -> title).
- :func:`load_sequences` reads "user item" sequence files (one interaction per line, in order
  per user), the format of SASRec's preprocessed data sets such as Amazon Video Games.
- :func:`fetch_movielens` downloads the official archive once (checked by SHA-256), caches it
  in :func:`get_data_home`, and loads it.
- :func:`load_movielens_items` and :func:`load_movielens_users` read the side information
  (titles, years, genres; age, gender, occupation) as rows aligned with ``X``'s columns and rows.

- :func:`load_frappe` reads the Frappe_x1 click-prediction split (train / valid / test)
  (:func:`find_frappe` finds it on this machine), and
  :func:`make_ctr` / :func:`iter_ctr_chunks` generate synthetic Criteo-like impressions (26
  skewed categorical fields, 13 numeric, about 3 % clicks, a planted signal), in memory or as
  a stream of chunks with bounded memory.

Every recommendation loader returns matrices in skrec's layout: ``scipy.sparse.csr_matrix``
user x item, values > 0 giving the order of each interaction (larger = later).
"""

from ._ctr import find_frappe, iter_ctr_chunks, load_frappe, make_ctr
from ._movielens import (
    MOVIELENS_ARCHIVES,
    fetch_movielens,
    find_movielens,
    get_data_home,
    load_movielens,
    load_movielens_titles,
)
from ._movielens_info import load_movielens_items, load_movielens_users
from ._synthetic import make_interactions
from ._user_item_files import load_sequences

__all__ = [
    "MOVIELENS_ARCHIVES",
    "fetch_movielens",
    "find_frappe",
    "find_movielens",
    "get_data_home",
    "iter_ctr_chunks",
    "load_frappe",
    "load_movielens",
    "load_movielens_items",
    "load_movielens_titles",
    "load_movielens_users",
    "load_sequences",
    "make_ctr",
    "make_interactions",
]
