"""The pruning core: importance, unit selection, slicing, summaries and the estimator mixin.

Architecture-specific knowledge lives in the adapters (:mod:`skrec.pruning.adapters`).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._distributed import Distributed
from .._parallel import limit_torch_threads
from ..training import Trainer
from ..training.params import check_int
from ..training.trainer import make_batches
from .adapters import PruningGroup, get_adapter

__all__ = [
    "PrunableMixin",
    "magnitude_prune",
    "model_summary",
    "pruning_groups",
    "structured_prune",
]

_METHODS = ("structured", "magnitude")
_IMPORTANCES = ("auto", "weight", "taylor")
_PRUNE_KEYS = ("amount", "method", "targets", "importance", "fine_tune_epochs",
               "importance_batches")
_BASE_ATTR = "_skrec_pruning_base"  # unpruned group sizes, stored on the module itself
_EPS = 1e-9


# --------------------------------------------------------------------------------------------
# Groups of prunable units
# --------------------------------------------------------------------------------------------


def pruning_groups(module: nn.Module) -> list[PruningGroup]:
    """The groups of units that structured pruning can remove from ``module``.

    Parameters
    ----------
    module : torch.nn.Module
        A skrec torch module with a registered pruning adapter (a
        :class:`~skrec.nn.SequenceModel` or :class:`~skrec.nn.MultVAE`).

    Returns
    -------
    groups : list of PruningGroup
        In a stable order (block by block, then the embedding; or input to output).
    """
    return get_adapter(module).groups(module)


def _sync_shapes(module: nn.Module) -> None:
    """Update the size attributes of every sub-module after its parameters were sliced."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            m.out_features, m.in_features = m.weight.shape
        elif isinstance(m, nn.Embedding):
            m.num_embeddings, m.embedding_dim = m.weight.shape
        elif isinstance(m, nn.LayerNorm) and m.weight is not None:
            m.normalized_shape = (m.weight.shape[0],)
    get_adapter(module).sync_shapes(module)


# --------------------------------------------------------------------------------------------
# Importance
# --------------------------------------------------------------------------------------------


def _per_unit(t: torch.Tensor, axis: int, n_units: int, chunks: int = 1) -> torch.Tensor:
    """Sum ``t`` over everything but the units along ``axis`` -> (n_units,) fp64 on CPU.

    With ``chunks`` the axis holds ``chunks`` blocks of the ``n_units`` units; a unit's
    entries in every block are summed.
    """
    if n_units == 0:
        return torch.zeros(0, dtype=torch.float64)
    t = t.detach().double().movedim(axis, 0).reshape(chunks, n_units, -1)
    return t.sum(dim=(0, 2)).cpu()


def _weight_importance(group: PruningGroup) -> torch.Tensor:
    score = torch.zeros(group.size, dtype=torch.float64)
    for s in group.slices:
        if not s.is_weight:
            continue
        sq = s.param.detach().float().pow(2)
        total = float(sq.sum())
        if total > 0:
            score += _per_unit(sq, s.axis, group.size, s.chunks) / total
    return score


def _taylor_importance(group: PruningGroup, acc: dict[int, torch.Tensor]) -> torch.Tensor:
    score = torch.zeros(group.size, dtype=torch.float64)
    for s in group.slices:
        a = acc.get(id(s.param))
        if a is not None:
            score += _per_unit(a, s.axis, group.size, s.chunks)
    return score


def _keep_indices(
    groups: list[PruningGroup],
    scores: dict[str, torch.Tensor],
    base: dict[str, int],
    amount: float,
) -> dict[str, np.ndarray]:
    """Units to keep per group: in each pool, drop the lowest-scored down to the target."""
    keep: dict[str, np.ndarray] = {}
    pools: dict[str, list[PruningGroup]] = {}
    for g in groups:
        pools.setdefault(g.pool, []).append(g)
    for members in pools.values():
        base_total = sum(base.get(g.name, g.size) for g in members)
        target = base_total - int(math.floor(amount * base_total + _EPS))
        target = max(target, sum(g.min_keep for g in members), 1 if base_total else 0)
        current = sum(g.size for g in members)
        n_remove = current - target
        if n_remove <= 0:
            continue
        cand = [(float(scores[g.name][u]), gi, u) for gi, g in enumerate(members)
                for u in range(g.size)]
        cand.sort()
        left = {g.name: g.size for g in members}
        removed: dict[str, set[int]] = {g.name: set() for g in members}
        for _, gi, u in cand:
            if n_remove == 0:
                break
            g = members[gi]
            if left[g.name] <= g.min_keep:
                continue
            removed[g.name].add(u)
            left[g.name] -= 1
            n_remove -= 1
        for g in members:
            if removed[g.name]:
                keep[g.name] = np.array([u for u in range(g.size) if u not in removed[g.name]],
                                        dtype=np.int64)
    return keep


def _slice_group(group: PruningGroup, keep: np.ndarray) -> None:
    w = group.unit_width
    idx = (np.asarray(keep, dtype=np.int64)[:, None] * w + np.arange(w)).reshape(-1)
    for s in group.slices:
        p = s.param
        # the kept units in each chunk (a chunk holds all group.size units)
        rows = np.concatenate([c * group.size * w + idx for c in range(s.chunks)])
        new = p.detach().index_select(s.axis, torch.as_tensor(rows, device=p.device)).clone()
        setattr(s.module, s.name, nn.Parameter(new, requires_grad=p.requires_grad))


def _record_base(module: nn.Module, groups: list[PruningGroup]) -> dict[str, int]:
    base = getattr(module, _BASE_ATTR, None)
    if base is None:
        base = {g.name: g.size for g in groups}
        setattr(module, _BASE_ATTR, base)
    return base


def structured_prune(
    module: nn.Module,
    amount: float,
    *,
    targets: Sequence[str] | None = None,
    grad_importance: dict[int, torch.Tensor] | None = None,
) -> list[dict[str, Any]]:
    """Remove whole units from ``module`` in place by slicing its dense matrices.

    Parameters
    ----------
    module : SequenceModel or MultVAE
        The module to prune.
    amount : float in [0, 1)
        Fraction of each group's units removed, counted against the **unpruned** module
        (its sizes are recorded on the module at the first call): a group of ``n`` units
        keeps ``n - floor(amount * n)``, so at least one unit when ``amount < 1``; the
        attention heads of all blocks form one pool (a block may lose all its heads). A group
        never grows back: calling again with the same or a smaller ``amount`` changes nothing.
    targets : sequence of str, default=None
        Kinds of units to prune; by default all (``"heads", "ffn", "embedding"`` for the
        transformer, ``"hidden", "embedding"`` for the GRU, ``"hidden", "latent"`` for the
        autoencoder).
    grad_importance : dict, default=None
        Accumulated ``|w * grad|`` per parameter (keyed by ``id(param)``) for Taylor
        importance; weight-norm importance when ``None``.

    Returns
    -------
    groups : list of dict
        One record per group: ``name``, ``target``, ``base`` (unpruned size), ``before``,
        ``after``.
    """
    _check_module(module)
    amount = _check_amount(amount)
    groups = pruning_groups(module)
    base = _record_base(module, groups)
    adapter = get_adapter(module)
    wanted = set(adapter.targets_for(module) if targets is None else targets)
    chosen = [g for g in groups if g.target in wanted]
    if grad_importance is None:
        scores = {g.name: _weight_importance(g) for g in chosen}
    else:
        scores = {g.name: _taylor_importance(g, grad_importance) for g in chosen}
    keep = _keep_indices(chosen, scores, base, amount)
    records = [{"name": g.name, "target": g.target, "base": int(base.get(g.name, g.size)),
                "before": int(g.size)} for g in groups]
    with torch.no_grad():
        for g in chosen:  # importance was computed for every group before any slicing
            if g.name in keep:
                _slice_group(g, keep[g.name])
    _sync_shapes(module)
    adapter.after_prune(module)
    sizes = {g.name: g.size for g in pruning_groups(module)}
    for r in records:
        r["after"] = int(sizes[r["name"]])
    return records


def _magnitude_params(module: nn.Module) -> list[nn.Parameter]:
    return [m.weight for m in module.modules() if isinstance(m, nn.Linear | nn.Embedding)]


def magnitude_prune(module: nn.Module, amount: float) -> dict[int, torch.Tensor]:
    """Zero the smallest-magnitude ``Linear``/``Embedding`` weights of ``module`` in place.

    One global threshold over all those weights (LayerNorm parameters and biases are left
    alone). Shapes do not change, so this saves no time with dense kernels.

    Parameters
    ----------
    module : torch.nn.Module
        The module to prune.
    amount : float in [0, 1)
        Target sparsity: afterwards ``round(amount * n_weights)`` of the weights are zero
        (weights already zero count; a module already sparser is left as it is).

    Returns
    -------
    masks : dict
        ``id(weight) -> bool mask`` (True = kept) of every weight tensor considered.
    """
    _check_module(module)
    amount = _check_amount(amount)
    params = _magnitude_params(module)
    if not params:
        return {}
    with torch.no_grad():
        flat = torch.cat([p.detach().abs().float().reshape(-1).cpu() for p in params])
        n_target = int(round(amount * flat.numel()))
        mask_flat = flat != 0
        n_zero = int(flat.numel() - mask_flat.sum())
        if n_target > n_zero:
            idx = torch.topk(flat, n_target, largest=False, sorted=False).indices
            mask_flat[idx] = False
        masks, start = {}, 0
        for p in params:
            m = mask_flat[start : start + p.numel()].reshape(p.shape).to(p.device)
            start += p.numel()
            p.mul_(m.to(p.dtype))
            masks[id(p)] = m
    return masks


# --------------------------------------------------------------------------------------------
# Diagnosis: size, FLOPs, sparsity
# --------------------------------------------------------------------------------------------


def model_summary(module: nn.Module, *, seq_len: int | None = None) -> dict[str, Any]:
    """Size, estimated inference FLOPs and sparsity of a skrec module.

    Parameters
    ----------
    module : torch.nn.Module
        A :class:`~skrec.nn.SequenceModel` or :class:`~skrec.nn.MultVAE` (other modules
        get parameter counts only).
    seq_len : int, default=None
        History length for the transformer's FLOPs; ``module.max_len`` (the worst case) when
        ``None``.

    Returns
    -------
    summary : dict
        ``parameters`` (all), ``nonzero_parameters``, ``sparsity`` (fraction of zeros among
        the ``Linear``/``Embedding`` weights), ``flops_per_user`` (2 x multiply-adds to score
        the whole catalogue for one user with dense kernels; the transformer's count is for
        a history of ``flops_seq_len`` items, attention computed over the full ``L x L``
        matrix as the masked kernel does) and ``architecture`` (current widths).
    """
    _check_module(module)
    params = list(module.parameters())
    n = sum(p.numel() for p in params)
    nz = sum(int(torch.count_nonzero(p.detach())) for p in params)
    weights = _magnitude_params(module)
    n_w = sum(p.numel() for p in weights)
    zeros = sum(p.numel() - int(torch.count_nonzero(p.detach())) for p in weights)
    out = {
        "parameters": int(n),
        "nonzero_parameters": int(nz),
        "sparsity": float(zeros / n_w) if n_w else 0.0,
        "flops_per_user": 0,
        "architecture": {},
    }
    adapter = get_adapter(module, required=False)
    if adapter is not None:
        out["flops_per_user"] = int(adapter.flops(module, seq_len))
        out["architecture"] = adapter.architecture(module)
        out.update(adapter.summary(module, seq_len))
    return out


# --------------------------------------------------------------------------------------------
# Parameter checks
# --------------------------------------------------------------------------------------------


def _check_module(module) -> None:
    if not isinstance(module, nn.Module):
        raise TypeError(f"Expected a torch.nn.Module (e.g. an estimator's module_); got "
                        f"{type(module).__name__}.")


def _check_amount(amount) -> float:
    ok = isinstance(amount, numbers.Real) and not isinstance(amount, bool)
    if not ok or not np.isfinite(amount) or not 0.0 <= float(amount) < 1.0:
        raise ValueError(f"amount must be a number in [0, 1); got {amount!r}.")
    return float(amount)


def _check_prune_args(module: nn.Module, amount, method, targets, importance,
                      fine_tune_epochs, importance_batches, X_given: bool):
    amount = _check_amount(amount)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}; got {method!r}.")
    if importance not in _IMPORTANCES:
        raise ValueError(f"importance must be one of {_IMPORTANCES}; got {importance!r}.")
    if importance == "taylor" and not X_given:
        raise ValueError("importance='taylor' needs training data: pass X.")
    check_int("fine_tune_epochs", fine_tune_epochs, 0)
    check_int("importance_batches", importance_batches, 1, allow_none=True)
    valid = get_adapter(module).targets_for(module)
    if targets is None:
        targets = valid
    elif isinstance(targets, str):
        targets = (targets,)
    try:
        targets = tuple(targets)
    except TypeError:
        raise ValueError(f"targets must be a sequence of {valid}; got {targets!r}.") from None
    bad = [t for t in targets if t not in valid]
    if bad or not targets:
        raise ValueError(f"targets must be a non-empty subset of {valid}; got {targets!r}.")
    return amount, targets


def _parse_prune_param(value) -> dict[str, Any] | None:
    """Validate the estimators' ``prune`` parameter: None, an amount, or a dict of options."""
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        spec = {"amount": value}
    elif isinstance(value, dict):
        unknown = sorted(set(value) - set(_PRUNE_KEYS))
        if unknown or "amount" not in value:
            raise ValueError(
                f"prune as a dict needs 'amount' and may have {_PRUNE_KEYS}; got keys "
                f"{sorted(value)}."
            )
        spec = dict(value)
    else:
        raise ValueError(
            f"prune must be None, a float in [0, 1) or a dict of prune_ options; got {value!r}."
        )
    _check_amount(spec["amount"])
    if spec.get("method", "structured") not in _METHODS:
        raise ValueError(f"prune's method must be one of {_METHODS}; got {spec['method']!r}.")
    if spec.get("importance", "auto") not in _IMPORTANCES:
        raise ValueError(
            f"prune's importance must be one of {_IMPORTANCES}; got {spec['importance']!r}."
        )
    check_int("prune's fine_tune_epochs", spec.get("fine_tune_epochs", 10), 0)
    return spec


# --------------------------------------------------------------------------------------------
# The estimator side
# --------------------------------------------------------------------------------------------


_PRUNE_PARAM_DOC = (
    "float, dict or None",
    "Prune the model at the end of ``fit`` and fine-tune it on the training data (see "
    ":meth:`prune_`): an amount in [0, 1) for structured pruning with the default options, "
    "or a dict of :meth:`prune_` options such as ``{\"amount\": 0.5, \"method\": "
    "\"structured\", \"fine_tune_epochs\": 5}``. Lets ``GridSearchCV`` compare pruning "
    "levels. Nothing is pruned (and nothing fine-tuned) with ``None`` or ``0``.",
)


@dataclasses.dataclass(kw_only=True, eq=False, repr=False)
class PrunableMixin:
    """Adds :meth:`prune_` and the ``prune`` parameter to a neural recommender.

    Mix in before :class:`~skrec.training.NeuralRecommender`. The estimator has a ``prune``
    parameter (``None``, an amount, or a dict of :meth:`prune_` options); when it is set,
    ``fit`` prunes and fine-tunes the model at its end, so that ``GridSearchCV`` can compare
    pruning levels. Constructor parameters are never changed: the pruned module itself
    carries its new shapes, and ``pruning_report_`` describes them.
    """

    prune: float | dict | None = None

    _declared_param_docs: ClassVar[dict[str, tuple[str, str]]] = {"prune": _PRUNE_PARAM_DOC}

    # ----------------------------------------------------------------- hooks into fit
    #: A pruning report describes the module it pruned: a new module has none.
    _module_attributes: ClassVar[tuple[str, ...]] = ("pruning_report_",)

    def _check_params(self) -> None:
        super()._check_params()
        _parse_prune_param(getattr(self, "prune", None))

    def _after_fit(self, inputs: Any) -> None:
        """At the end of ``fit``: prune and fine-tune on its training inputs when ``prune``
        says so."""
        super()._after_fit(inputs)
        spec = _parse_prune_param(getattr(self, "prune", None))
        if spec is not None:
            spec = dict(spec)
            amount = spec.pop("amount")
            self._prune_and_fine_tune(amount, inputs=inputs, skip_if_unchanged=True, **spec)

    # ----------------------------------------------------------------- public API
    def prune_(
        self,
        amount: float,
        method: str = "structured",
        *,
        X=None,
        y=None,
        targets: Sequence[str] | None = None,
        importance: str = "auto",
        fine_tune_epochs: int = 10,
        importance_batches: int | None = None,
        **fit_params,
    ):
        """Prune the fitted model in place, then fine-tune it on ``X`` if given.

        Parameters
        ----------
        amount : float in [0, 1)
            For ``"structured"``: the fraction of units removed in every group, counted
            against the unpruned model (its widths are recorded on the module at the first
            pruning): a group of ``n`` units keeps ``n - floor(amount * n)`` (at least one
            for feed-forward, embedding, hidden and latent groups). The attention heads of
            all blocks are one group, so a block may lose all its heads (the constant its
            attention branch still added, the output bias, is moved into the layer before
            it, which keeps the removal exact). Calls do not compound: ``prune_(0.5)``
            twice keeps half the units, and a smaller amount than before changes nothing
            (units never grow back).
            For ``"magnitude"``: the target fraction of zero weights among all ``Linear``
            and ``Embedding`` weights.
        method : {"structured", "magnitude"}, default="structured"
            ``"structured"`` removes whole units and slices the matrices: the model is
            really smaller and faster. ``"magnitude"`` zeroes individual weights globally by
            magnitude: **no speed or memory gain** with dense kernels (shapes are unchanged).
        X : {array-like, sparse matrix}, default=None
            Training data, as for ``fit`` (a recommender's interactions, a classifier's
            feature rows). When given, importance is estimated on it (with
            ``importance="auto"``) and the pruned model is fine-tuned on it.
        y : array-like, default=None
            As for ``fit``: a recommender's held-out items (merged into ``X``), a classifier's
            labels.
        targets : sequence of str, default=None
            Kinds of units to remove (structured only). Transformer: any of ``"heads"``,
            ``"ffn"``, ``"embedding"``; GRU: ``"hidden"``, ``"embedding"``; autoencoder:
            ``"hidden"``, ``"latent"``; click model: ``"embedding"``, ``"hidden"`` and, by
            architecture, ``"experts"``, ``"rank"``, ``"heads"``, ``"ffn"``. Default: all.
            Embedding dimensions shrink both the blocks and the final scoring over the
            catalogue (``d_model x n_items``). A LayerNorm over fewer dimensions normalises
            differently, so removing embedding dimensions perturbs every output a little
            even when the removed dimensions were unimportant.
        importance : {"auto", "weight", "taylor"}, default="auto"
            How units are ranked (structured only). ``"weight"``: the share of each weight
            tensor's squared norm a unit holds, summed over the tensors it touches.
            ``"taylor"``: first-order Taylor ``|w * dL/dw|`` summed over the unit's
            parameters and accumulated over batches of ``X`` through the model's own training
            loss (dropout off). ``"auto"``: ``"taylor"`` when ``X`` is given, else
            ``"weight"``.
        fine_tune_epochs : int, default=10
            Epochs of fine-tuning on ``X`` with the shared trainer, continuing from the
            pruned weights, with early stopping (and best-weight restore) when the estimator
            has ``early_stopping=True``. Ignored without ``X``. Magnitude-pruned weights stay
            zero while fine-tuning.
        importance_batches : int, default=None
            Batches of ``X`` used for Taylor importance; all when ``None``.
        **fit_params : dict
            The other per-sample data of ``fit``, for the rows of ``X``: ``user_features`` of
            a recommender fitted with them, ``sample_weight`` of a classifier; and a click
            classifier's explicit validation set ``X_val``, ``y_val`` for the fine-tuning's
            early stopping, as ``fit`` takes it.

        Returns
        -------
        self : object
            The estimator, with ``module_`` pruned and ``pruning_report_`` set.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        ValueError
            For an invalid ``amount``, ``method``, ``importance`` or ``targets``.

        Notes
        -----
        ``pruning_report_`` holds ``method``, ``amount``, ``targets``, ``importance``;
        ``before``, ``after_pruning_before_fine_tuning`` and ``after`` summaries (see
        :func:`model_summary`: parameters, non-zero parameters, sparsity, estimated FLOPs
        per user, widths); ``groups`` (per group: unpruned, before and after unit counts);
        ``fine_tune_epochs`` run, ``fine_tune_history_start`` (their first index in
        ``history_``), ``fine_tune_best_score`` (the monitored validation value of the
        restored epoch) and ``fine_tune_best_val_ndcg@10`` (a recommender's).

        The estimator's constructor parameters keep the unpruned widths (scikit-learn
        estimators never change their parameters), so ``clone`` or a fresh ``fit`` build
        the full model again; ``warm_start`` fits and ``partial_fit`` continue training the
        pruned module. Pickling keeps the pruned module as it is.

        Examples
        --------
        >>> from skrec import SeqRecommender
        >>> from skrec.datasets import make_interactions
        >>> X = make_interactions(n_users=100, n_items=30, random_state=0)
        >>> rec = SeqRecommender(d_model=16, max_iter=2, random_state=0).fit(X)
        >>> rec = rec.prune_(0.5, X=X, fine_tune_epochs=1)
        >>> rec.module_.d_model, rec.pruning_report_["groups"][-1]["after"]
        (8, 8)
        """
        check_is_fitted(self)
        if not hasattr(self, "module_"):  # pragma: no cover - fitted estimators have one
            check_is_fitted(self, "module_")
        self._check_params()  # once: the fine-tuning run does not check them again
        inputs = None
        if X is not None:
            inputs = self._training_inputs(X, y, **fit_params)
        elif any(v is not None for v in fit_params.values()):
            given = ", ".join(k for k, v in fit_params.items() if v is not None)
            raise ValueError(f"prune_ reads {given} with the X it fine-tunes on; pass X too.")
        with limit_torch_threads():  # the Taylor pass, in a parallel worker's thread budget
            return self._prune_and_fine_tune(
                amount, method=method, inputs=inputs, targets=targets, importance=importance,
                fine_tune_epochs=fine_tune_epochs, importance_batches=importance_batches,
            )

    # ----------------------------------------------------------------- implementation
    def _prune_and_fine_tune(
        self,
        amount: float,
        method: str = "structured",
        *,
        inputs: Any = None,
        targets: Sequence[str] | None = None,
        importance: str = "auto",
        fine_tune_epochs: int = 10,
        importance_batches: int | None = None,
        skip_if_unchanged: bool = False,
    ):
        """Prune ``module_`` in place, then fine-tune it on the training ``inputs`` (validated
        already) when given: what :meth:`prune_` and ``fit(prune=...)`` run."""
        module = self.module_
        amount, targets = _check_prune_args(
            module, amount, method, targets, importance, fine_tune_epochs, importance_batches,
            inputs is not None,
        )
        device = self._device()
        module.to(device)
        before = model_summary(module)
        masks = None
        if method == "structured":
            if importance == "auto":
                importance = "taylor" if inputs is not None else "weight"
            grads = None
            if importance == "taylor":
                grads = self._taylor_scores(inputs, importance_batches)
            groups = structured_prune(module, amount, targets=targets, grad_importance=grads)
            changed = any(g["after"] != g["before"] for g in groups)
        else:
            importance = "magnitude"
            groups = []
            masks = magnitude_prune(module, amount)
            changed = model_summary(module)["sparsity"] != before["sparsity"]
        pruned = model_summary(module)
        epochs_run, history_start = 0, len(getattr(self, "history_", []))
        if inputs is not None and fine_tune_epochs > 0 and (changed or not skip_if_unchanged):
            epochs_run = self._fine_tune(inputs, fine_tune_epochs, masks)
        self.pruning_report_ = {
            "method": method,
            "amount": amount,
            "targets": list(targets) if method == "structured" else None,
            "importance": importance,
            "before": before,
            "after": model_summary(module),
            "after_pruning_before_fine_tuning": pruned,
            "groups": groups,
            "fine_tune_epochs": epochs_run,
            "fine_tune_history_start": history_start,  # history_[start:] are those epochs
            "fine_tune_best_val_ndcg@10": (
                self.history_[self.best_epoch_ - 1].get("val_ndcg@10")
                if epochs_run and self.best_epoch_ else None
            ),
            # the monitored validation value of the restored epoch (any estimator's metric)
            "fine_tune_best_score": self.best_score_ if epochs_run else None,
        }
        return self

    def _taylor_scores(self, inputs: Any, max_batches: int | None) -> dict[int, torch.Tensor]:
        """Accumulate ``|w * dL/dw|`` over batches of the training ``inputs`` through the
        estimator's loss.

        Each batch goes through the trainer's own micro-step (forward, summed loss, backward
        of the per-target mean), with dropout off. In data-parallel training every rank
        draws the same batches, scores its share of them, and the sums are all-reduced: every
        rank gets the same scores (those of one process) and prunes the same units.
        """
        module = self.module_
        device = self._device()
        task = self._training_task()
        data = task.prepare(inputs)
        batch_size = (getattr(self, "batch_size_", None)
                      or self._resolve_batch_size(self._n_rows(inputs)))
        config = self._training_config(device, getattr(self, "precision_", "fp32"),
                                       loss_scaling=False, batch_size=batch_size)
        trainer = Trainer(task, module, config, state=self._training_state(continued=True))
        params = [p for p in module.parameters() if p.requires_grad]
        acc = {id(p): torch.zeros_like(p, dtype=torch.float32) for p in params}
        seed = np.random.RandomState(
            self.random_state if isinstance(self.random_state, numbers.Integral) else 0
        )
        batches = make_batches(data, batch_size, seed)
        if max_batches is not None:
            batches = batches[:max_batches]
        dist = Distributed.from_environment(device)
        was_training = module.training
        module.eval()  # no dropout: the importance of the model that will serve
        # Batches that draw random numbers (the masks of a masked objective) draw them from a
        # seeded, forked generator: the same importance every time, the global RNG untouched.
        fork_devices = [device] if device.type == "cuda" else []
        with dist.guard():  # a rank that fails here makes the others fail, not hang
            try:
                with torch.random.fork_rng(devices=fork_devices):
                    torch.manual_seed(int(seed.randint(np.iinfo(np.int32).max)))
                    for rows in batches[dist.rank :: dist.world_size]:
                        batch, n_targets = task.make_batch(data, rows, device)
                        if n_targets == 0:
                            continue
                        module.zero_grad(set_to_none=True)
                        trainer.micro_step(batch, n_targets)
                        with torch.no_grad():
                            for p in params:
                                if p.grad is not None:
                                    acc[id(p)] += (p.detach().float() * p.grad.float()).abs()
            finally:
                module.zero_grad(set_to_none=True)
                module.train(was_training)
            dist.sum_tensors_(list(acc.values()), "the all-reduce of the Taylor importance")
        return acc

    def _fine_tune(self, inputs: Any, epochs: int, masks: dict[int, torch.Tensor] | None):
        """Continue training with the shared trainer; masked weights stay zero."""
        continued = self._continues(partial=True)  # refuses changed module parameters
        module = self.module_
        hooks = []
        if masks:
            for p in module.parameters():
                m = masks.get(id(p))
                if m is not None:
                    hooks.append(p.register_hook(lambda g, m=m: g * m.to(g.dtype)))
        n_before = self.n_iter_
        try:
            self._run(inputs, epochs=epochs, continued=continued,
                      label=f"{type(self).__name__} fine-tuning")
        finally:
            for h in hooks:
                h.remove()
            if masks:
                with torch.no_grad():
                    for p in module.parameters():
                        m = masks.get(id(p))
                        if m is not None:
                            p.mul_(m.to(p.dtype))
        return self.n_iter_ - n_before
