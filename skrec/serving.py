"""Serving: the scoring graph of a neural recommender, exported for other runtimes.

:func:`scoring_graph` wraps a fitted :class:`~skrec.SeqRecommender` or
:class:`~skrec.AERecommender` into a plain ``torch.nn.Module`` that takes tensors only:

* ``history`` -- ``(batch, length)`` int64: each user's items, oldest to newest, **left-padded
  with -1** (for a ``SeqRecommender``, at most ``max_len`` of the latest items);
* ``exclude`` -- ``(batch, n_exclude)`` int64: items never to recommend to the user, padded
  with -1 (the user's whole history to filter seen items, as ``predict`` does; a column of
  -1 to filter nothing);

and returns the top-``k`` item indices ``(batch, k)`` (best first, -1 where fewer than ``k``
items remain) and their scores ``(batch, k)`` (float32, ``-inf`` for padding), exactly the
ranking of :meth:`~skrec.base.BaseRecommender.recommend`: users with an empty history get the
popularity ranking. :func:`graph_inputs` builds both inputs from an interaction matrix.

:func:`export_program` exports the graph with :func:`torch.export.export` (dynamic batch size,
history length and exclusion width); :func:`export_onnx` writes it as an ONNX model, to be
served by ONNX Runtime or any other ONNX runtime (``pip install "skrec[onnx]"``).

An estimator that is not a recommender exports its own graph through the same functions: it
defines ``_serving_graph(precision)`` (a module with ``input_names``, ``output_names``,
``precision``, ``example_inputs()`` and ``dynamic_shapes()``) and ``_graph_inputs(X)``. The
click classifier's graph takes the encoded field tensors and returns the click probability
(see :class:`skrec.ctr.ClickGraph`).
"""

from __future__ import annotations

import copy
import importlib
import numbers
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._histories import ordered_sequences
from ._validation import check_k
from .training.precision import autocast

__all__ = ["ScoringGraph", "export_onnx", "export_program", "graph_inputs", "scoring_graph"]

#: Largest history length of an exported autoencoder graph (its input width is free).
_MAX_EXPORT_WIDTH = 1 << 20


def _static_length(estimator) -> bool:
    """Whether the exported graph takes histories of exactly the model's history limit.

    Recurrent encoders export for one sequence length only (``torch.export`` fixes an RNN's
    length): :func:`graph_inputs` then left-pads every history to that limit.
    """
    encoder = getattr(getattr(estimator, "module_", None), "encoder", None)
    return bool(getattr(encoder, "export_static_length", False))


class ScoringGraph(nn.Module):
    """``(history, exclude) -> (top-k ids, top-k scores)``: a recommender as a tensor graph.

    Build it with :func:`scoring_graph`. The module holds a CPU copy of the module that
    serves the estimator's ``recommend`` (its inference set-up: the fitted module, or its
    bf16, fp16 or int8 copy, run under the same autocast), the popularity scores of cold
    users, and the estimator's scoring function.

    Parameters
    ----------
    estimator : SeqRecommender, AERecommender or CTRClassifier
        A fitted neural recommender, or a click classifier (whose graph takes the encoded
        fields and returns click probabilities; ``k`` does not apply).
    k : int or None, default=10
        Items returned per user; ``None`` returns the full score matrix instead (with
        ``-inf`` for excluded items).
    precision : {"fp32", "bf16", "fp16", "int8"} or None, default=None
        The inference precision served; ``None``: the estimator's ``inference_precision``,
        where ``"auto"`` (autocast of the fp32 weights to the training precision) serves
        fp32 weights under the same autocast.

    Attributes
    ----------
    module : torch.nn.Module
        The copy of the serving module.
    autocast_precision : str
        The autocast precision of the forward pass (``"fp32"``: none).
    precision : str
        The inference precision served (the estimator's ``inference_precision``, or
        ``precision``).
    max_history : int or None
        Longest ``history`` the model reads (``max_len`` for sequence models), or ``None``.
    n_items : int
        Catalogue size.
    """

    def __init__(self, estimator, k: int | None = 10, precision: str | None = None):
        super().__init__()
        check_is_fitted(estimator, "module_")
        setup, self.precision = estimator._export_setup(precision)
        self.module = setup.module
        self.autocast_precision = setup.autocast_precision
        self.n_items = int(estimator.n_features_in_)
        self.k = None if k is None else check_k(k, limit=self.n_items)
        self.max_history = estimator._history_limit()
        self.static_length = _static_length(estimator)
        # A shallow copy without the modules: its scoring function reads only parameters.
        self._owner = copy.copy(estimator)
        self._owner.__dict__.pop("module_", None)
        self._owner.__dict__.pop("_serving_copies", None)
        self.register_buffer("cold_scores", estimator._cold_scores().float())

    def forward(self, history: torch.Tensor, exclude: torch.Tensor):
        """Top-``k`` ids and scores (or all scores) of each row of ``history``.

        Parameters
        ----------
        history : torch.Tensor of shape (batch, length), int64
            Item indices in ``[0, n_items)``, oldest to newest, left-padded with -1 (at most
            ``max_history`` columns). Nothing is validated inside the graph:
            :func:`graph_inputs` builds valid inputs.
        exclude : torch.Tensor of shape (batch, n_exclude), int64
            Item indices not to recommend, padded with -1.

        Returns
        -------
        ids : torch.Tensor of shape (batch, k), int64
            Best first; -1 where fewer than ``k`` items remain (only with ``k`` set).
        scores : torch.Tensor of shape (batch, k) or (batch, n_items), float32
            The scores of ``ids`` (``-inf`` for padding), or all scores when ``k`` is None.
        """
        seq = (history + 1).clamp_min(0)  # 0 is padding, items are shifted by one
        with autocast(torch.device("cpu"), self.autocast_precision):
            scores = self._owner._history_scores(self.module, seq).float()
        cold = (seq == 0).all(dim=1, keepdim=True)
        scores = torch.where(cold, self.cold_scores, scores)
        ex = (exclude + 1).clamp_min(0)
        scores = F.pad(scores, (1, 0)).scatter(1, ex, float("-inf"))[:, 1:]
        if self.k is None:
            return scores
        top_scores, top_ids = torch.topk(scores, self.k, dim=1)
        top_ids = torch.where(torch.isneginf(top_scores), torch.full_like(top_ids, -1), top_ids)
        return top_ids, top_scores


def scoring_graph(estimator, *, k: int | None = 10,
                  precision: str | None = None) -> ScoringGraph:
    """The scoring graph of a fitted neural recommender (history in, top-``k`` out).

    Parameters
    ----------
    estimator : SeqRecommender, AERecommender or CTRClassifier
        A fitted neural recommender, or a click classifier (whose graph takes the encoded
        fields and returns click probabilities; ``k`` does not apply).
    k : int or None, default=10
        Items returned per user (at most the catalogue size); ``None``: all scores.
    precision : {"fp32", "bf16", "fp16", "int8"} or None, default=None
        The inference precision of the graph; ``None``: the estimator's
        ``inference_precision`` (the graph then ranks as ``recommend`` does).

    Returns
    -------
    graph : ScoringGraph
        A ``torch.nn.Module``; see the module documentation for its inputs and outputs.

    Examples
    --------
    >>> from skrec import SeqRecommender
    >>> from skrec.datasets import make_interactions
    >>> from skrec.serving import graph_inputs, scoring_graph
    >>> X = make_interactions(n_users=100, n_items=30, random_state=0)
    >>> rec = SeqRecommender(d_model=16, max_iter=1, random_state=0, precision="fp32").fit(X)
    >>> history, exclude = graph_inputs(rec, X[:3])
    >>> ids, scores = scoring_graph(rec, k=5)(torch.as_tensor(history), torch.as_tensor(exclude))
    >>> bool((ids.numpy() == rec.predict(X[:3], k=5)).all())
    True
    """
    own = getattr(estimator, "_serving_graph", None)
    if own is not None:  # an estimator that describes its own graph (a click classifier)
        return own(precision)
    if not hasattr(type(estimator), "_history_scores"):
        raise TypeError(f"{type(estimator).__name__} has no exportable scoring graph; "
                        "SeqRecommender, AERecommender and CTRClassifier have one.")
    if getattr(estimator, "n_user_features_", 0):
        raise TypeError(f"This {type(estimator).__name__} was fitted with user_features; the "
                        "scoring graph reads histories only. Serve it with recommend().")
    graph = ScoringGraph(estimator, k=k, precision=precision)
    probe = torch.zeros((1, 1), dtype=torch.int64)
    try:
        with torch.inference_mode():
            graph(probe, probe)
    except NotImplementedError as exc:
        raise TypeError(str(exc)) from None
    return graph


def graph_inputs(estimator, X, *, filter_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The ``history`` and ``exclude`` inputs of the scoring graph for the users of ``X``.

    Parameters
    ----------
    estimator : SeqRecommender, AERecommender or CTRClassifier
        The fitted recommender (for its history limit and catalogue size), or a click
        classifier, whose graph inputs are returned as a dict of arrays by input name
        (``ids``, ``numeric``, bags: see :class:`skrec.ctr.ClickGraph`).
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        Interactions, as for ``predict`` (values give the order).
    filter_seen : bool, default=True
        Exclude each user's items (the whole row), as ``predict`` does; else exclude nothing.

    Returns
    -------
    history : ndarray of shape (n_users, length), int64
        Each row's latest items (at most the model's history limit), oldest to newest,
        left-padded with -1: to the longest row, or, for a recurrent encoder
        (``encoder="gru"``), whose exported graph has one fixed length, to exactly the
        history limit (``max_len``).
    exclude : ndarray of shape (n_users, n_exclude), int64
        Each row's items (or one column of -1), padded with -1.
    """
    own = getattr(estimator, "_graph_inputs", None)
    if own is not None:  # a graph of its own inputs: a dict of arrays by input name
        return own(X)
    X = estimator._validate_X(X)
    limit = estimator._history_limit()
    longest = int(np.diff(X.indptr).max(initial=0))
    history = ordered_sequences(X, limit if limit is not None else max(longest, 1)) - 1
    if limit is not None and _static_length(estimator) and history.shape[1] < limit:
        history = np.pad(history, ((0, 0), (limit - history.shape[1], 0)), constant_values=-1)
    if filter_seen:
        exclude = ordered_sequences(X, max(longest, 1)) - 1
    else:
        exclude = np.full((X.shape[0], 1), -1, dtype=np.int64)
    return history, exclude


def _example_inputs(graph: ScoringGraph) -> tuple[torch.Tensor, torch.Tensor]:
    length = graph.max_history if graph.static_length else min(4, graph.max_history or 4)
    g = torch.Generator().manual_seed(0)
    history = torch.randint(0, graph.n_items, (3, length), generator=g)
    history[0, :-1] = -1  # some padding in the example
    exclude = torch.cat([history, torch.full((3, 3), -1)], dim=1)  # a width of its own
    return history, exclude


def _dynamic_shapes(graph: ScoringGraph):
    Dim = torch.export.Dim
    batch = Dim("batch", min=1, max=1 << 24)
    limit = graph.max_history or _MAX_EXPORT_WIDTH
    history = {0: batch}
    if limit > 1 and not graph.static_length:  # a model that reads one item: fixed length
        history[1] = Dim("length", min=1, max=limit)
    width = Dim("n_exclude", min=1, max=_MAX_EXPORT_WIDTH)
    return {"history": history, "exclude": {0: batch, 1: width}}


def export_program(estimator, *, k: int | None = 10,
                   precision: str | None = None) -> torch.export.ExportedProgram:
    """Export the scoring graph with :func:`torch.export.export`.

    The batch size, the history length (up to ``max_len`` for a ``SeqRecommender``) and the
    width of ``exclude`` are dynamic; a GRU encoder's graph takes histories of exactly the
    model's history limit (as :func:`graph_inputs` pads them), since a recurrence is exported
    for one sequence length.

    Parameters
    ----------
    estimator : SeqRecommender, AERecommender or CTRClassifier
        A fitted neural recommender, or a click classifier (whose graph takes the encoded
        fields and returns click probabilities; ``k`` does not apply).
    k : int or None, default=10
        Items returned per user; ``None``: all scores.
    precision : {"fp32", "bf16", "fp16"} or None, default=None
        The inference precision of the graph; ``None``: the estimator's
        ``inference_precision`` (int8 graphs cannot be exported: a ValueError says what to
        do instead).

    Returns
    -------
    program : torch.export.ExportedProgram
        Run it with ``program.module()(history, exclude)``; save it with
        :func:`torch.export.save`, or pass it to :func:`torch.onnx.export`.
    """
    graph = scoring_graph(estimator, k=k, precision=precision)
    if graph.precision == "int8":
        raise ValueError(
            "An int8 scoring graph cannot be exported: torch.export does not trace dynamically "
            "quantized layers. Export with precision='fp32' (or 'bf16') and quantize in the "
            "runtime (for ONNX, onnxruntime.quantization.quantize_dynamic), or serve int8 "
            "with recommend()."
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
        # nn.GRU re-assigns its flat weights while traced: harmless here
        warnings.filterwarnings("ignore", message="The tensor attributes .* during export")
        if hasattr(graph, "example_inputs"):  # a graph that describes its own inputs
            return torch.export.export(graph, (), kwargs=graph.example_inputs(),
                                       dynamic_shapes=graph.dynamic_shapes())
        try:
            return torch.export.export(graph, _example_inputs(graph),
                                       dynamic_shapes=_dynamic_shapes(graph))
        except Exception as exc:
            if "sparse" not in str(exc):
                raise
            raise ValueError(
                f"{type(estimator).__name__}'s scoring graph multiplies by a sparse matrix "
                "(its sparse item_features), which torch.export cannot trace. Fit the model to "
                "export with dense item_features (features.toarray())."
            ) from exc


def _graph_names(estimator) -> dict[str, list[str]]:
    """The input and output names of an estimator's own graph (without copying its model:
    the names follow from the fitted module)."""
    graph = estimator._serving_graph()
    return {"input_names": list(graph.input_names), "output_names": list(graph.output_names)}


def _require(*modules: str) -> None:
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)}: pip install \"skrec[onnx]\"")


def _opset_range() -> tuple[int, int]:
    """The ONNX opsets the installed exporter writes: ``torch.onnx.export(dynamo=True)``
    emits opset 18 and converts it with onnxscript's version converter, whose range this
    reads (18 to 25 with onnxscript 0.7; a request outside it silently gave opset 18)."""
    try:
        from onnxscript.version_converter import _version_converter as converter

        return (int(converter.SUPPORTED_MIN_ONNX_OPSET), int(converter.SUPPORTED_MAX_ONNX_OPSET))
    except (ImportError, AttributeError, TypeError, ValueError):  # another onnxscript layout
        return 18, 10**6  # the written file is checked after the export instead


def _check_opset_version(opset_version) -> int | None:
    """``None`` or an opset the exporter can write; a ``ValueError`` naming the range."""
    if opset_version is None:
        return None
    low, high = _opset_range()
    bounds = f"from {low} to {high}" if high < 10**6 else f"of at least {low}"
    if isinstance(opset_version, bool | np.bool_) or not isinstance(opset_version,
                                                                    numbers.Integral):
        raise ValueError(f"opset_version must be None (the exporter's default) or an integer "
                         f"{bounds}; got {opset_version!r}.")
    if not low <= opset_version <= high:
        raise ValueError(f"opset_version={opset_version} is outside the opsets this exporter "
                         f"writes (torch.onnx with the installed onnxscript): give one {bounds}, "
                         "or None for its default.")
    return int(opset_version)


def export_onnx(estimator, path: str | os.PathLike, *, k: int | None = 10,
                opset_version: int | None = None, precision: str | None = None) -> None:
    """Write the scoring graph as an ONNX model (inputs ``history``, ``exclude``; outputs
    ``ids``, ``scores``).

    Needs the ``onnx`` extra (``pip install "skrec[onnx]"``: onnx and onnxscript for
    :func:`torch.onnx.export`, onnxruntime to run the model).

    Parameters
    ----------
    estimator : SeqRecommender, AERecommender or CTRClassifier
        A fitted neural recommender, or a click classifier (whose graph takes the encoded
        fields and returns click probabilities; ``k`` does not apply).
    path : str or path-like
        The ``.onnx`` file (weights inside it).
    k : int or None, default=10
        Items returned per user; ``None``: one output ``scores`` with all scores.
    opset_version : int, default=None
        ONNX opset; the exporter's default when ``None``. ``torch.onnx.export`` writes
        opset 18 and converts it to the version asked for: 18 to 25 with onnxscript 0.7.
    precision : {"fp32", "bf16", "fp16"} or None, default=None
        The inference precision of the graph, as in :func:`export_program` (ONNX runtimes
        run fp32 graphs everywhere; bf16 and fp16 kernels vary by runtime and device).

    Raises
    ------
    ValueError
        If ``opset_version`` is not an integer in the range the installed exporter writes
        (checked before exporting, and on the written file: the exporter falls back to
        opset 18 when it cannot convert).

    Examples
    --------
    Serve the file with ONNX Runtime (``history`` and ``exclude`` from :func:`graph_inputs`)::

        import onnxruntime as ort
        session = ort.InferenceSession("model.onnx")
        ids, scores = session.run(None, {"history": history, "exclude": exclude})
    """
    _require("onnx", "onnxscript")
    opset_version = _check_opset_version(opset_version)
    program = export_program(estimator, k=k, precision=precision)
    outputs = ["scores"] if k is None else ["ids", "scores"]
    inputs = ["history", "exclude"]
    if getattr(estimator, "_serving_graph", None) is not None:
        names = _graph_names(estimator)
        inputs, outputs = names["input_names"], names["output_names"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        onnx_program = torch.onnx.export(
            program, (), dynamo=True, input_names=inputs, output_names=outputs,
            opset_version=opset_version, verbose=False,
        )
    written = {op.domain: op.version for op in onnx_program.model_proto.opset_import}.get("")
    if opset_version is not None and written != opset_version:
        raise ValueError(f"opset_version={opset_version}: the exporter could only write opset "
                         f"{written}; nothing was saved. Give an opset it converts to, or None.")
    onnx_program.save(os.fspath(path), external_data=False)
