"""The optimizer of skrec's trainer: AdamW that also takes sparse (row-wise) gradients.

Sampled losses over a large catalogue touch a few hundred rows of the item embedding table per
step. Gathering those rows with sparse gradients (``F.embedding(..., sparse=True)``) and
updating only them makes a step cost ``O(rows touched x d)`` instead of ``O(n_items x d)``.
:class:`SparseAdamW` is one optimizer for the whole model: parameters whose gradient is dense
get PyTorch's own (fused) AdamW update, parameters whose gradient is sparse get a lazy AdamW
update of the touched rows; :func:`clip_grad_norm_` clips a mix of both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim.adam import adam

__all__ = ["SparseAdamW", "clip_grad_norm_"]


class SparseAdamW(torch.optim.AdamW):
    """AdamW that accepts sparse gradients, updating only the rows they touch (lazy AdamW).

    At each step, every parameter is routed by the layout of its gradient:

    * **dense gradient**: exactly :class:`torch.optim.AdamW` (the same functional update, fused
      into one kernel when ``fused=True``), so a model whose gradients are all dense trains as
      with ``torch.optim.AdamW``;
    * **sparse gradient** (a ``torch.sparse_coo`` tensor, e.g. from
      ``F.embedding(..., sparse=True)``): a *lazy* AdamW update of the rows (indices along
      the first dimension) present in the gradient, as :class:`torch.optim.SparseAdam`. The
      duplicated indices of the gradient are summed first; then, for the touched rows only,
      ``m = b1 * m + (1 - b1) * g``, ``v = b2 * v + (1 - b2) * g**2``, the decoupled weight
      decay ``w *= 1 - lr * weight_decay`` and ``w -= lr / (1 - b1**t) * m /
      (sqrt(v / (1 - b2**t)) + eps)``, where ``t`` counts the steps at which the parameter had
      a gradient (the bias correction is per parameter, not per row). Untouched rows, their
      moments and their weight decay are left as they are: they do not keep moving on the
      momentum of earlier steps as under dense AdamW, and a row decays only at the steps
      that touch it.

    Both kinds share one state layout (``step``, ``exp_avg``, ``exp_avg_sq`` per parameter),
    so a parameter may receive a dense gradient at one step and a sparse one at another. The
    two updates coincide on any step where the gradient touches every row (and, from a fresh
    state, on the first step for every row when ``weight_decay=0``). With a
    :class:`torch.amp.GradScaler` the optimizer honours ``grad_scale`` and ``found_inf`` as
    the fused AdamW does (sparse rows are unscaled, and no row moves on a step with
    non-finite gradients).

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups, as for :class:`torch.optim.AdamW`.
    lr : float, default=1e-3
        Learning rate.
    betas : tuple of float, default=(0.9, 0.999)
        Coefficients of the running averages of the gradient and its square.
    eps : float, default=1e-8
        Added to the denominator.
    weight_decay : float, default=0.0
        Decoupled weight decay (applied to the touched rows only for sparse gradients).
    foreach : bool, default=None
        Use the multi-tensor implementation for dense gradients (as in AdamW).
    fused : bool, default=None
        Use the fused kernel for dense gradients (as in AdamW).

    See Also
    --------
    torch.optim.AdamW : The update of dense gradients.
    torch.optim.SparseAdam : The same lazy update, without weight decay or dense gradients.

    Examples
    --------
    >>> import torch
    >>> emb = torch.nn.Embedding(1000, 8, sparse=True)
    >>> opt = SparseAdamW(emb.parameters(), lr=0.01)
    >>> emb(torch.tensor([3, 7])).sum().backward()
    >>> before = emb.weight.detach().clone()
    >>> opt.step()
    >>> changed = (emb.weight != before).any(1).nonzero().flatten().tolist()
    >>> changed
    [3, 7]
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
    ):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         foreach=foreach, fused=fused)

    def _state(self, p: torch.Tensor, group: dict) -> dict:
        """The state of ``p``, created as AdamW creates it (same layout and step device)."""
        state = self.state[p]
        if not state:
            on_device = group["capturable"] or group["fused"]
            state["step"] = torch.zeros((), dtype=torch.float32,
                                        device=p.device if on_device else "cpu")
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        """Perform one optimization step (dense and lazy sparse updates).

        Parameters
        ----------
        closure : callable, default=None
            Re-evaluates the model and returns the loss.

        Returns
        -------
        loss : float or None
            The closure's loss, if given.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        for group in self.param_groups:
            if group["amsgrad"]:  # pragma: no cover - not offered by the constructor
                raise ValueError("SparseAdamW does not support amsgrad.")
            dense = [p for p in group["params"] if p.grad is not None and not p.grad.is_sparse]
            sparse = [p for p in group["params"] if p.grad is not None and p.grad.is_sparse]
            if dense:
                self._dense_step(group, dense, grad_scale, found_inf)
            if sparse:
                self._lazy_step(group, sparse, grad_scale, found_inf)
        return loss

    def _dense_step(self, group, params, grad_scale, found_inf) -> None:
        states = [self._state(p, group) for p in params]
        beta1, beta2 = group["betas"]
        adam(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            [s["step"] for s in states],
            amsgrad=False,
            has_complex=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
            foreach=group["foreach"],
            capturable=group["capturable"],
            differentiable=group["differentiable"],
            fused=group["fused"],
            grad_scale=grad_scale,
            found_inf=found_inf,
            decoupled_weight_decay=True,
        )

    def _lazy_step(self, group, params, grad_scale, found_inf) -> None:
        if found_inf is not None and bool(found_inf.sum() > 0):
            return  # as the fused dense update: skip the step, keep the state
        beta1, beta2 = group["betas"]
        lr, eps, wd = float(group["lr"]), group["eps"], group["weight_decay"]
        for p in params:
            grad = p.grad.coalesce()
            rows_idx = grad.indices()[0]
            g = grad.values()
            if grad_scale is not None:
                g = g / grad_scale.to(g.dtype).reshape(())
            if group["maximize"]:
                g = -g
            g = g.to(p.dtype)
            state = self._state(p, group)
            state["step"] += 1
            t = float(state["step"])
            bias_correction1 = 1 - beta1**t
            bias_correction2_sqrt = math.sqrt(1 - beta2**t)
            exp_avg = state["exp_avg"].index_select(0, rows_idx).lerp_(g, 1 - beta1)
            exp_avg_sq = state["exp_avg_sq"].index_select(0, rows_idx)
            exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            state["exp_avg"].index_copy_(0, rows_idx, exp_avg)
            state["exp_avg_sq"].index_copy_(0, rows_idx, exp_avg_sq)
            rows = p.index_select(0, rows_idx)
            if wd:
                rows.mul_(1 - lr * wd)
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            rows.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)
            p.index_copy_(0, rows_idx, rows)


def clip_grad_norm_(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Clip the total 2-norm of gradients in place, dense or sparse.

    With dense gradients only, this is :func:`torch.nn.utils.clip_grad_norm_`. Sparse
    gradients are coalesced first (duplicated indices summed, so that their norm is the norm
    of the gradient they represent) and count in the total norm like dense ones.

    Parameters
    ----------
    parameters : iterable of torch.Tensor
        Parameters whose ``.grad`` is clipped.
    max_norm : float
        Largest total norm.

    Returns
    -------
    total_norm : torch.Tensor
        The total norm of the gradients before clipping.
    """
    params = [p for p in parameters if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    values = []
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            values.append(p.grad._values())
        else:
            values.append(p.grad)
    device = values[0].device
    norms = [torch.linalg.vector_norm(v).to(device) for v in values]
    total = torch.linalg.vector_norm(torch.stack(norms))
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for v in values:
        v.mul_(coef.to(v.device, v.dtype))
    return total
