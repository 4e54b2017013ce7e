"""The training parameters, declared once: their documentation and their checks."""

from __future__ import annotations

import dataclasses
import numbers
import textwrap
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = [
    "TRAINING_PARAM_DOCS",
    "check_float",
    "check_int",
    "declared_param_docs",
    "render_docstring",
    "render_param_docs",
]

# --------------------------------------------------------------------------------------------
# Parameter checks
# --------------------------------------------------------------------------------------------


def check_int(name: str, value: Any, low: int, allow_none: bool = False) -> None:
    """Raise a ValueError naming ``name`` unless ``value`` is an integer >= ``low`` (or
    ``None`` when allowed; bools are refused)."""
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")


def check_float(name: str, value: Any, low: float, high: float | None = None,
                low_inclusive: bool = True, allow_none: bool = False) -> None:
    """Raise a ValueError naming ``name`` unless ``value`` is a finite number in the range
    (``None`` when allowed; bools are refused)."""
    if allow_none and value is None:
        return
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok:
        ok = value >= low if low_inclusive else value > low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        rng = f"{'[' if low_inclusive else '('}{low}, {high if high is not None else 'inf'}]"
        raise ValueError(f"{name} must be a number in {rng}; got {value!r}.")


# --------------------------------------------------------------------------------------------
# Training parameters: declared and documented once
# --------------------------------------------------------------------------------------------

#: Documentation of every training parameter: name -> (type, description). Each estimator's
#: docstring gets these, with its own defaults, where it says ``{training_parameters}``; an
#: estimator may replace a description through ``_param_docs``, and declares the documentation
#: of parameters it adds for several estimators in ``_declared_param_docs``.
TRAINING_PARAM_DOCS: dict[str, tuple[str, str]] = {
    "max_iter": ("int", "Maximum number of epochs."),
    "batch_size": (
        "int or \"auto\"",
        "Users per micro-batch. ``\"auto\"``: about one micro-batch per 50 training users, "
        "rounded to a power of two and clipped to [32, 128] (32 up to about 2,200 users, 128 "
        "from about 4,500): small user bases need many optimizer steps per epoch, large ones "
        "train as well with larger, faster batches. The value used is ``batch_size_``.",
    ),
    "learning_rate_init": ("float", "AdamW learning rate."),
    "weight_decay": ("float", "AdamW decoupled weight decay."),
    "precision": (
        '{"auto", "fp32", "bf16", "fp16"}',
        "Autocast precision for training and inference; ``\"auto\"`` uses bf16 where the "
        "hardware runs it natively (recent GPUs; CPUs whose instruction set has AVX-512 BF16 "
        "or AMX, read from the CPU's flags, not from oneDNN, which calls emulated bf16 "
        "supported), fp16 on older GPUs and fp32 elsewhere, so it is never slower than "
        "fp32. An explicit ``\"bf16\"`` or ``\"fp16\"`` on a CPU that emulates it warns "
        "with the measured slowdown. fp16 uses a gradient scaler. Logits are upcast to fp32 "
        "before every softmax.",
    ),
    "inference_precision": (
        '{"auto", "fp32", "bf16", "fp16", "int8"}',
        "Precision of every prediction path (``predict``, ``recommend``, ``score``, "
        "``similar_items``, sessions, the exported graph) and of validation: ``\"auto\"`` "
        "uses the training precision (``precision_``, by autocast of the fp32 weights), or "
        "fp32 where this machine would emulate it; "
        "``\"fp32\"``; ``\"bf16\"`` or ``\"fp16\"`` serve from a copy of the model cast to "
        "that type, under autocast (no weight casts at each call: the fastest choice on CPUs "
        "with native bf16); ``\"int8\"`` serves from a copy whose linear layers are "
        "dynamically quantized to int8 (weights int8, activations quantized per batch; CPU "
        "only). Only inference changes, so it can be set after ``fit`` with ``set_params`` "
        "without refitting. The copy is made at the first call and kept until the weights "
        "change (see :class:`~skrec.training.precision.ServingCopies`). See the Serving "
        "guide for the measured speed and quality of each.",
    ),
    "accumulation_steps": (
        "int",
        "Micro-batches per optimizer step: ``k`` steps of ``batch_size`` give the same "
        "gradient as one batch ``k`` times larger (the gradient is divided by the true number "
        "of targets in each window; the last partial window still steps).",
    ),
    "clip_grad_norm": ("float or None", "Maximum gradient norm (``None``: no clipping)."),
    "early_stopping": (
        "bool",
        "Hold out ``validation_fraction`` of the users, evaluate them after every epoch, stop "
        "after ``n_iter_no_change`` epochs without an improvement of ``validation_metric`` "
        "by more than ``tol``, and restore the weights of the best epoch.",
    ),
    "validation_fraction": ("float", "Fraction of users used for validation."),
    "validation_metric": (
        "str",
        "What early stopping monitors: ``\"loss\"`` (the cross-entropy of the held-out items "
        "under the softmax of the model's scores over each user's unseen items; lower is "
        "better), a ranking metric ``\"name@k\"`` such as ``\"ndcg@10\"`` or "
        "``\"recall@20\"`` (see :func:`~skrec.metrics.get_rec_scorer`; higher is better), "
        "or ``\"auto\"``: ``\"ndcg@10\"`` from 1,000 validation users on, ``\"loss\"`` "
        "below (where one epoch's NDCG@10 is too noisy to select on). The metric used is "
        "``validation_metric_``.",
    ),
    "n_iter_no_change": ("int", "Patience of early stopping, in epochs."),
    "tol": ("float", "Minimum improvement of the monitored validation value."),
    "device": ("str", "``\"auto\"`` (CUDA when available), ``\"cpu\"``, ``\"cuda\"``, ..."),
    "random_state": (
        "int, RandomState instance or None",
        "Seed for initialisation, batching, dropout and the validation users: reproducible "
        "training on CPU.",
    ),
    "verbose": ("int", "1: a progress bar over epochs (renders in Jupyter); 2: also over "
                       "optimizer steps."),
    "warm_start": ("bool", "Continue from the current weights on the next ``fit``."),
    "weight_averaging": (
        "float or None",
        "Average the weights over epochs: after every epoch the running average takes this "
        "weight of the new weights (an exponential moving average, as in Polyak averaging "
        "and SWA); validation, early stopping and the fitted model use the average, while "
        "training continues from the latest weights. Smaller values average over more "
        "epochs (0.5: about the last three). ``None`` (or 1.0): the latest weights.",
    ),
    "callbacks": (
        "list of Callback or None",
        "Extra :class:`~skrec.callbacks.Callback` objects called at every hook of every "
        "training run (``fit``, ``partial_fit``, pruning's fine-tuning), after the built-in "
        "progress bars, for example :class:`~skrec.callbacks.TensorBoard`. "
        "``clone`` gives the clone copies of them.",
    ),
}


def _format_default(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def render_param_docs(cls: type, names: Iterable[str], docs: dict[str, tuple[str, str]],
                      indent: int = 4) -> str:
    """numpydoc ``Parameters`` entries of ``names`` with ``cls``'s defaults.

    Parameters
    ----------
    cls : type
        A dataclass estimator (its field defaults are shown).
    names : iterable of str
        The parameters to document, in order.
    docs : dict
        name -> (type, description); ``cls._param_docs`` overrides descriptions.
    indent : int, default=4
        Indentation of the entries.

    Returns
    -------
    text : str
        The entries, without a trailing newline.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    overrides = getattr(cls, "_param_docs", {})
    pad = " " * indent
    lines = []
    for name in names:
        type_, desc = docs[name]
        desc = overrides.get(name, desc)
        lines.append(f"{pad}{name} : {type_}, default={_format_default(fields[name].default)}")
        lines += textwrap.wrap(desc, width=95 - indent, initial_indent=pad + "    ",
                               subsequent_indent=pad + "    ")
    return "\n".join(lines)


_DATACLASS = {"kw_only": True, "eq": False, "repr": False}


def declared_param_docs(cls: type) -> dict[str, tuple[str, str]]:
    """The documentation of the parameters declared along ``cls``'s bases: each class
    declares those it introduces in ``_declared_param_docs`` (bases first)."""
    docs: dict[str, tuple[str, str]] = {}
    for klass in reversed(cls.__mro__):
        docs.update(klass.__dict__.get("_declared_param_docs", {}))
    return docs


def render_docstring(cls: type) -> None:
    """Replace ``{training_parameters}`` in ``cls``'s docstring by the declared parameters."""
    marker = "    {training_parameters}"
    if cls.__doc__ and marker in cls.__doc__:
        fields = {f.name for f in dataclasses.fields(cls)}
        docs = declared_param_docs(cls)
        names = [name for name in docs if name in fields]
        cls.__doc__ = cls.__doc__.replace(marker, render_param_docs(cls, names, docs))

