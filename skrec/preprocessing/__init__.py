"""Turn an event log (user, item, time) into a user x item interaction matrix and back.

The matrix follows skrec's data contract: a ``scipy.sparse.csr_matrix`` of shape
``(n_users, n_items)`` with ``float64`` values, rows are users, columns are items, and a stored
value > 0 is an interaction whose value is also its **order** (larger = later).

pandas is optional: a ``pandas.DataFrame`` is accepted (duck-typed, never imported at module
import time), and so is any mapping of column name -> 1-D array, such as a dict of numpy arrays.
"""

from __future__ import annotations

from ._encoder import InteractionEncoder

__all__ = ["InteractionEncoder"]
