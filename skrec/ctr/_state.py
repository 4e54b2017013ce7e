"""Load-time consistency rules of the click-prediction estimators (what :func:`skrec.load`
checks before it returns a :class:`~skrec.ctr.FieldEncoder` or a
:class:`~skrec.ctr.CTRClassifier` read from a file)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._fitted_state import check_array, check_choice, check_int
from ._values import _INPUT_KINDS, _KINDS, N_RESERVED

__all__ = ["check_classifier_state", "check_encoder_state"]


def check_encoder_state(enc: Any) -> None:
    """A fitted FieldEncoder's layout fits together: fields tile the table rows, the
    vocabularies and counts match the field sizes, numeric scalings have one value per
    numeric field, sparse column ids stay in the table (raise a ValueError or TypeError
    naming the attribute otherwise)."""
    if not hasattr(enc, "fields_"):
        return
    kind = check_choice(enc, "input_kind_", _INPUT_KINDS)
    n_features = check_int(enc, "n_features_in_", low=1)
    n_ids = check_int(enc, "n_ids_", low=0)
    fields, cats, counts = enc.fields_, enc.categories_, enc.category_counts_
    if type(fields) is not list or not fields or any(type(f) is not dict for f in fields):
        raise TypeError("fields_ must be a non-empty list of dicts.")
    if type(cats) is not list or type(counts) is not list or \
            not len(cats) == len(counts) == len(fields):
        raise ValueError("categories_ and category_counts_ need one entry per field.")
    offset, order, n_numeric = 0, [], 0
    for i, f in enumerate(fields):
        where = f"fields_[{i}]"
        if f.get("kind") not in _KINDS:
            raise ValueError(f"{where} has kind {f.get('kind')!r}; expected one of {_KINDS}.")
        order.append(_KINDS.index(f["kind"]))
        if f["kind"] == "numeric":
            n_numeric += 1
            continue
        size, start = f.get("size"), f.get("offset")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (size, start)) \
                or start != offset or size < N_RESERVED:
            raise ValueError(f"{where}: offset {start!r} and size {size!r} do not continue "
                             f"the table at row {offset}.")
        offset += size
        if kind == "sparse":
            continue
        if f.get("hashed"):
            buckets = getattr(enc, "hash_buckets", None)
            if cats[i] is not None or not isinstance(buckets, int) or \
                    size != N_RESERVED + buckets:
                raise ValueError(f"{where} is hashed but its size is not {N_RESERVED} + "
                                 "hash_buckets.")
            continue
        vocab = cats[i]
        if type(vocab) is not np.ndarray or vocab.ndim != 1 or \
                vocab.size != size - N_RESERVED:
            raise ValueError(f"categories_[{i}] must be an array of {size - N_RESERVED} "
                             "categories (its field's size).")
        if type(counts[i]) is not np.ndarray or counts[i].shape != vocab.shape:
            raise ValueError(f"category_counts_[{i}] must match categories_[{i}].")
    if order != sorted(order):
        raise ValueError("fields_ must list the categorical, then the multi-valued, then the "
                         "numeric fields.")
    if offset != n_ids:
        raise ValueError(f"n_ids_ is {n_ids}, but the fields take {offset} rows.")
    for name in ("numeric_mean_", "numeric_scale_"):
        check_array(enc, name, shape=(n_numeric,), kinds="f", finite=True)
    if not (enc.numeric_scale_ > 0).all():
        raise ValueError("numeric_scale_ must be positive.")
    if kind == "sparse":
        ids = check_array(enc, "column_ids_", shape=(n_features,), kinds="iu")
        if ids.size and (ids.min() < 0 or ids.max() >= max(n_ids, 1)):
            raise ValueError("column_ids_ holds ids outside the table.")


def check_classifier_state(est: Any) -> None:
    """A fitted CTRClassifier fits together: its encoder, classes and module agree."""
    enc = est.encoder_
    check_encoder_state(enc)
    classes = check_array(est, "classes_", kinds="biufUO")
    if classes.shape != (2,) or classes[0] == classes[1]:
        raise ValueError("classes_ must hold two distinct labels.")
    check_int(est, "n_features_in_", low=enc.n_features_in_, high=enc.n_features_in_)
    emb = est.module_.embedding
    layout = (emb.n_ids, emb.n_categorical, emb.n_multi, emb.n_numeric)
    est._check_params()
    expected = (*est._model_layout(), enc.n_multi_, enc.n_numeric_)
    if layout != expected:
        raise ValueError(f"module_ reads (ids, categorical, multi-valued, numeric) = {layout}, "
                         f"but encoder_ and click_counts write {expected}.")
    n_pairs = expected[1] - enc.n_categorical_
    if n_pairs:
        check_array(est, "click_counts_", shape=(n_pairs, 2, est.click_count_buckets),
                    kinds="u")
    wide = est.module_.wide
    if wide is not None and wide.cross_buckets:
        fields = wide.cross_fields or list(range(emb.n_categorical))
        if any(not 0 <= f < emb.n_categorical for f in fields):
            raise ValueError("module_.wide crosses fields the encoder does not have.")
        counts = getattr(est, "cross_counts_", None)
        if counts is not None:
            check_array(est, "cross_counts_", shape=(wide.cross_buckets,), kinds="u")
