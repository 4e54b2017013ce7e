"""Next-item losses over a catalogue: full softmax (chunked), sampled softmax, gBCE.

Every loss takes query vectors ``hidden`` (N, d), output item embeddings ``weight`` (n, d) and
biases ``bias`` (n,), and integer ``targets`` (N,) in ``[0, n)``, and returns the **sum** over
the N targets as an fp32 scalar (the trainer divides by the number of targets in the
accumulation window). Logits are upcast to fp32 before any softmax.

The sampled losses read only the rows of the targets and of the negatives. They may instead
be given ``rows``, a function that gathers those rows (``rows(idx) -> (weight[idx],
bias[idx])``, such as :meth:`skrec.nn.ItemEmbedding.output_rows` with sparse gradients), and
the catalogue size ``n_items``; then ``weight`` and ``bias`` are ``None`` and the catalogue is
never materialised.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    RowGather = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

__all__ = ["softmax_cross_entropy", "sampled_softmax_loss", "gbce_loss", "l2_penalty"]


def _chunk_ce(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, t: torch.Tensor):
    logits = torch.addmm(bias, h, weight.t()).float()
    return F.cross_entropy(logits, t, reduction="sum")


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Summed softmax cross-entropy in chunks of rows, the gradients taken in the same pass.

    Each chunk's logits are computed once: its loss, then (in place) the gradient of the loss
    with respect to the logits, ``softmax - onehot``, which is multiplied out at once into the
    gradients of the hidden rows, the item embeddings and the biases. Only those (the size
    of the inputs) are kept for the backward pass, which scales them by the incoming gradient:
    memory stays at one chunk of logits and nothing is recomputed.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, step, grad_enabled):  # noqa: D102
        # (under no_grad, needs_input_grad still says which inputs require gradients)
        need_h, need_w, need_b = (n and grad_enabled for n in ctx.needs_input_grad[:3])
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=torch.float32) if need_b else None
        total = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, hidden.shape[0], step):
            h, t = hidden[start : start + step], targets[start : start + step]
            logits = torch.addmm(bias, h, weight.t()).float()
            lse = torch.logsumexp(logits, dim=1)
            total += (lse - logits.gather(1, t.unsqueeze(1)).squeeze(1)).sum()
            if not (need_h or need_w or need_b):
                continue
            grad = logits.sub_(lse.unsqueeze(1)).exp_()  # softmax
            grad[torch.arange(t.shape[0], device=t.device), t] -= 1.0
            if need_b:
                grad_b += grad.sum(0)
            grad = grad.to(h.dtype)
            if need_h:
                grad_h[start : start + step] = grad @ weight.to(h.dtype)
            if need_w:
                grad_w += grad.t() @ h
        ctx.save_for_backward(*(g for g in (grad_h, grad_w, grad_b) if g is not None))
        ctx.needs = (need_h, need_w, need_b)
        ctx.dtypes = (weight.dtype, bias.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        saved = iter(ctx.saved_tensors)
        grads = [next(saved) if need else None for need in ctx.needs]
        if grads[0] is not None:
            grads[0] = grads[0] * grad_out.to(grads[0].dtype)
        for i, dtype in ((1, ctx.dtypes[0]), (2, ctx.dtypes[1])):
            if grads[i] is not None:
                grads[i] = (grads[i] * grad_out).to(dtype)
        return (*grads, None, None, None)


class _HalfSquaredNorm(torch.autograd.Function):
    """``0.5 * ||w||^2`` in one read of ``w`` (a dot product) and its gradient ``g * w`` in
    one multiplication: autograd's ``w.pow(2).sum()`` writes the square, then multiplies
    twice in the backward pass, which costs seconds per epoch on tables of millions of rows."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weight)
        flat = weight.detach().reshape(-1).float()
        with torch.autocast(weight.device.type, enabled=False):
            return 0.5 * torch.dot(flat, flat)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (weight,) = ctx.saved_tensors
        return weight * grad.to(weight.dtype)


def l2_penalty(params) -> torch.Tensor:
    """Half the sum of the squared entries of every tensor: ``0.5 * sum_p ||p||^2``.

    The L2 penalty of whole tables (an embedding table's regularisation at every step, as
    FuxiCTR applies it), computed in one pass over each table forward and one backward.

    Parameters
    ----------
    params : iterable of torch.Tensor
        The penalised tensors (usually parameters).

    Returns
    -------
    penalty : torch.Tensor
        A 0-dim fp32 tensor, differentiable with respect to every tensor.
    """
    terms = [_HalfSquaredNorm.apply(p) for p in params]
    if not terms:
        raise ValueError("l2_penalty needs at least one tensor.")
    return torch.stack(terms).sum()


def softmax_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    targets: torch.Tensor,
    *,
    max_logits: int = 1 << 22,
) -> torch.Tensor:
    """Full softmax cross-entropy over the whole catalogue, summed over targets.

    When ``N * n`` exceeds ``max_logits`` the logits are computed in chunks of rows, and the
    gradients of each chunk are taken as soon as its loss is (a fused pass: nothing is
    recomputed in the backward pass), so peak memory stays at about ``max_logits`` floats
    however large the batch or catalogue.

    Parameters
    ----------
    hidden : torch.Tensor of shape (N, d)
        Query vectors.
    weight : torch.Tensor of shape (n, d)
        Output item embeddings.
    bias : torch.Tensor of shape (n,)
        Output item biases.
    targets : torch.Tensor of shape (N,)
        Target item indices.
    max_logits : int, default=2**22
        Largest number of logits materialised at once.

    Returns
    -------
    loss : torch.Tensor
        Scalar fp32 sum of the per-target losses.
    """
    n_rows, n_items = hidden.shape[0], weight.shape[0]
    if n_rows * n_items <= max_logits:
        return _chunk_ce(hidden, weight, bias, targets)
    return _ChunkedCrossEntropy.apply(hidden, weight, bias, targets,
                                      max(1, max_logits // n_items), torch.is_grad_enabled())


def _sample_negatives(
    n_items: int, n_negatives: int, probs: torch.Tensor | None, device, generator
) -> torch.Tensor:
    if probs is None:
        return torch.randint(n_items, (n_negatives,), device=device, generator=generator)
    return torch.multinomial(probs, n_negatives, replacement=True, generator=generator)


def _row_access(weight, bias, rows, n_items) -> tuple[RowGather, int]:
    """The row gather and the catalogue size of a sampled loss's arguments."""
    if rows is None:
        if weight is None or bias is None:
            raise ValueError("Pass weight and bias, or rows and n_items.")
        return (lambda idx: (weight[idx], bias[idx])), weight.shape[0]
    if n_items is None:
        if weight is None:
            raise ValueError("n_items is required with rows when weight is not given.")
        n_items = weight.shape[0]
    return rows, int(n_items)


def _logits(hidden, gather, targets, neg) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 logits (N,) of the targets and (N, K) of the shared negatives, from one gather."""
    weight, bias = gather(torch.cat([targets, neg]))
    weight = weight.to(hidden.dtype)
    n = targets.shape[0]
    pos_logit = (hidden * weight[:n]).sum(-1).float() + bias[:n]
    neg_logit = (hidden @ weight[n:].t()).float() + bias[n:]
    return pos_logit, neg_logit


def sampled_softmax_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    n_negatives: int,
    sampling_probs: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    rows: RowGather | None = None,
    n_items: int | None = None,
) -> torch.Tensor:
    """Sampled softmax with logQ correction, negatives shared across the batch.

    ``n_negatives`` items are drawn from ``sampling_probs`` (uniform if ``None``); every logit is
    corrected by ``-log(n_negatives * q(item))`` (Bengio & Senecal; Yi et al. 2019), and a
    negative that equals a row's target is masked out for that row.

    Parameters
    ----------
    hidden, weight, bias, targets : torch.Tensor
        As in :func:`softmax_cross_entropy`.
    n_negatives : int
        Number of shared negatives.
    sampling_probs : torch.Tensor of shape (n,), default=None
        Proposal distribution (for example popularity); uniform when ``None``.
    generator : torch.Generator, default=None
        Random generator for the draw.
    rows : callable, default=None
        ``rows(idx) -> (weight[idx], bias[idx])``: gathers the output rows of item indices
        ``idx`` in place of indexing ``weight`` and ``bias`` (which may then be ``None``).
    n_items : int, default=None
        Catalogue size, required with ``rows`` when ``weight`` is ``None``.

    Returns
    -------
    loss : torch.Tensor
        Scalar fp32 sum of the per-target losses.
    """
    gather, n_items = _row_access(weight, bias, rows, n_items)
    neg = _sample_negatives(n_items, n_negatives, sampling_probs, hidden.device, generator)
    if sampling_probs is None:
        log_q_pos = log_q_neg = math.log(n_negatives / n_items)
    else:
        def log_q(idx):  # of the sampled rows only: O(batch), not O(catalogue)
            return torch.log(sampling_probs[idx].clamp_min(1e-12) * n_negatives)

        log_q_pos, log_q_neg = log_q(targets), log_q(neg)
    pos_logit, neg_logit = _logits(hidden, gather, targets, neg)
    pos_logit = pos_logit - log_q_pos
    neg_logit = neg_logit - log_q_neg
    neg_logit = neg_logit.masked_fill(neg.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
    logits = torch.cat([pos_logit.unsqueeze(1), neg_logit], dim=1)
    return -(F.log_softmax(logits, dim=1)[:, 0]).sum()


def gbce_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    n_negatives: int,
    t: float = 0.75,
    generator: torch.Generator | None = None,
    rows: RowGather | None = None,
    n_items: int | None = None,
) -> torch.Tensor:
    """Generalised binary cross-entropy of gSASRec (Petrov & Macdonald, 2023).

    The positive probability is ``sigmoid(s)**beta`` with
    ``beta = alpha * (t * (1 - 1/alpha) + 1/alpha)`` and ``alpha = n_negatives / (n - 1)``,
    which counters the overconfidence that negative sampling gives BCE. Negatives are uniform
    and shared across the batch; a negative equal to a row's target is ignored for that row.

    Parameters
    ----------
    hidden, weight, bias, targets : torch.Tensor
        As in :func:`softmax_cross_entropy`.
    n_negatives : int
        Number of shared negatives.
    t : float, default=0.75
        Calibration parameter in [0, 1]; ``t=0`` is plain BCE.
    generator : torch.Generator, default=None
        Random generator for the draw.
    rows : callable, default=None
        ``rows(idx) -> (weight[idx], bias[idx])``: gathers the output rows of item indices
        ``idx`` in place of indexing ``weight`` and ``bias`` (which may then be ``None``).
    n_items : int, default=None
        Catalogue size, required with ``rows`` when ``weight`` is ``None``.

    Returns
    -------
    loss : torch.Tensor
        Scalar fp32 sum of the per-target losses.
    """
    gather, n_items = _row_access(weight, bias, rows, n_items)
    neg = _sample_negatives(n_items, n_negatives, None, hidden.device, generator)
    alpha = n_negatives / max(n_items - 1, 1)
    beta = alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)
    pos_logit, neg_logit = _logits(hidden, gather, targets, neg)
    hit = neg.unsqueeze(0) == targets.unsqueeze(1)
    neg_term = F.logsigmoid(-neg_logit).masked_fill(hit, 0.0).sum(1)
    return -(beta * F.logsigmoid(pos_logit) + neg_term).sum()
