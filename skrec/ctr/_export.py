"""The scoring graph of a click model: encoded field tensors in, click probability out.

:class:`ClickGraph` is what :func:`skrec.serving.export_program` and
:func:`skrec.serving.export_onnx` export for a :class:`~skrec.ctr.CTRClassifier`. Its inputs
are the tensors of :meth:`~skrec.ctr.FieldBatch.to_torch` that the model reads (those of
:func:`graph_inputs`):

* ``ids`` -- ``(batch, n_categorical)`` int64: the global ids of the single-valued fields,
  then those of the click-count fields when the model has some (``click_counts``);
* ``numeric`` -- ``(batch, n_numeric)`` float32, when the model has numeric fields;
* ``bag_ids``, ``bag_offsets``, ``bag_weights`` -- the multi-valued fields' entries, their
  offsets (``batch * n_multi + 1``, the last one the total) and weights, when it has some;

and its output is ``proba`` -- ``(batch,)`` float32, the click probability (with the
negative-sampling correction), exactly ``predict_proba(X)[:, 1]`` of the estimator's
inference set-up. The input encoding (:class:`~skrec.ctr.FieldEncoder`) stays in Python: a
server encodes each request, or keeps the encoded ids of its candidate ads. So does the
look-up of the click counts (``click_counts_``, a table of hashed buckets rather than a
computation): :func:`graph_inputs` appends the count fields' ids.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..training.precision import autocast

__all__ = ["ClickGraph", "graph_inputs"]

#: Largest dynamic size of an exported dimension.
_MAX_DIM = 1 << 24


class ClickGraph(nn.Module):
    """``(ids[, numeric][, bag_ids, bag_offsets, bag_weights]) -> proba``: a click model as a
    tensor graph (see the module documentation).

    Parameters
    ----------
    estimator : CTRClassifier
        A fitted click classifier.
    precision : {"fp32", "bf16", "fp16", "int8"} or None, default=None
        The inference precision served; ``None``: the estimator's ``inference_precision``.

    Attributes
    ----------
    module : CTRModel
        A CPU copy of the module that serves the estimator (its inference set-up).
    input_names : list of str
        The inputs the graph reads, in order.
    precision : str
        The inference precision served.
    """

    def __init__(self, estimator, precision: str | None = None):
        super().__init__()
        check_is_fitted(estimator)
        setup, self.precision = estimator._export_setup(precision)
        self.module = setup.module
        self.autocast_precision = setup.autocast_precision
        self.log_rate = float(math.log(estimator.negative_sampling_rate))
        self.input_names = input_names(self.module)
        self.output_names = ["proba"]

    def forward(self, ids: torch.Tensor, numeric: torch.Tensor | None = None,
                bag_ids: torch.Tensor | None = None, bag_offsets: torch.Tensor | None = None,
                bag_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Click probabilities ``(batch,)`` of encoded rows (nothing is validated inside the
        graph: :func:`graph_inputs` builds valid inputs)."""
        with autocast(torch.device("cpu"), self.autocast_precision):
            logit = self.module(ids, numeric, bag_ids, bag_offsets, bag_weights).float()
        return torch.sigmoid(logit + self.log_rate)

    # ------------------------------------------------------------------ export
    def example_inputs(self) -> dict[str, torch.Tensor]:
        """Valid inputs of 3 rows (what the export traces)."""
        emb = self.module.embedding
        g = torch.Generator().manual_seed(0)
        batch = 3
        out = {"ids": torch.stack([torch.randint(0, max(emb.n_ids, 1), (batch,), generator=g)
                                   for _ in range(emb.n_categorical)], dim=1)}
        if emb.n_numeric:
            out["numeric"] = torch.randn(batch, emb.n_numeric, generator=g)
        if emb.n_multi:
            lengths = torch.arange(batch * emb.n_multi) % 3  # some empty bags
            out["bag_ids"] = torch.randint(0, max(emb.n_ids, 1), (int(lengths.sum()),),
                                           generator=g)
            out["bag_offsets"] = torch.cat([torch.zeros(1, dtype=torch.int64),
                                            torch.cumsum(lengths, 0)])
            out["bag_weights"] = torch.ones(int(lengths.sum()))
        return out

    def dynamic_shapes(self) -> dict[str, dict]:
        """The dynamic dimensions of the inputs: the batch, and the bags' entries."""
        Dim = torch.export.Dim
        batch = Dim("batch", min=1, max=_MAX_DIM)
        shapes: dict[str, dict] = {"ids": {0: batch}}
        if "numeric" in self.input_names:
            shapes["numeric"] = {0: batch}
        if "bag_ids" in self.input_names:
            entries = Dim("entries", min=0, max=_MAX_DIM)
            shapes["bag_ids"] = {0: entries}
            shapes["bag_offsets"] = {0: batch * self.module.embedding.n_multi + 1}
            shapes["bag_weights"] = {0: entries}
        return shapes


def graph_inputs(estimator, X) -> dict[str, np.ndarray]:
    """The inputs of the click graph for the rows of ``X``, by name.

    Parameters
    ----------
    estimator : CTRClassifier
        The fitted classifier (its encoder).
    X : DataFrame, array-like or sparse matrix
        Impressions, as for ``predict_proba``.

    Returns
    -------
    inputs : dict of str to ndarray
        ``ids`` (with the click-count fields' ids, when the model has them) and, when the
        model reads them, ``numeric`` and the bags: feed them to the
        exported program (``program.module()(**inputs)``, as tensors) or to ONNX Runtime
        (``session.run(None, inputs)``).
    """
    check_is_fitted(estimator)
    tensors = estimator._with_counts(estimator._encode(X)).to_torch()
    return {name: tensors[name].numpy() for name in input_names(estimator.module_)}


def input_names(module: nn.Module) -> list[str]:
    """The inputs of the click graph of ``module`` (a CTRModel), in order."""
    emb = module.embedding
    return ["ids"] + (["numeric"] if emb.n_numeric else []) + (
        ["bag_ids", "bag_offsets", "bag_weights"] if emb.n_multi else [])
