"""The optimizer of skrec's trainer: AdamW that also takes sparse (row-wise) gradients.

Sampled losses over a large catalogue touch a few thousand rows of the item embedding table per
step. Gathering those rows with sparse gradients (``F.embedding(..., sparse=True)``) and
updating only them makes a step cost ``O(rows touched x d)`` instead of ``O(n_items x d)``.
:class:`SparseAdamW` is one optimizer for the whole model: parameters whose gradient is dense
get PyTorch's own (fused) AdamW update; for parameters whose gradient is sparse, the touched
rows are updated at once and the others later, in closed form, so that the result follows
dense AdamW; :func:`clip_grad_norm_` clips a mix of both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim.adam import adam

__all__ = ["SparseAdamW", "clip_grad_norm_"]

#: Skipped steps summed exactly when a row catches up: the momentum of a row decays as
#: ``(b1 / sqrt(b2)) ** j``, below 1e-11 of its first step after 256 steps (default betas).
_CATCH_UP_TERMS = 256


class SparseAdamW(torch.optim.AdamW):
    """AdamW that accepts sparse gradients and updates only the rows they touch, deferring the
    rest of the dense AdamW update of each row until the row is used again.

    At each step, every parameter is routed by the layout of its gradient:

    * **dense gradient**: exactly :class:`torch.optim.AdamW` (the same functional update, fused
      into one kernel when ``fused=True``), so a model whose gradients are all dense trains as
      with ``torch.optim.AdamW``;
    * **sparse gradient** (a ``torch.sparse_coo`` tensor, e.g. from
      ``F.embedding(..., sparse=True)``): the rows (indices along the first dimension) in the
      gradient (duplicates summed) get the AdamW update of this step; the other rows are not
      touched now. Under dense AdamW an untouched row still moves at every step: its zero
      gradient decays its moments (``m *= b1``, ``v *= b2``) while the momentum keeps moving the
      weights (``w -= lr * m_hat / (sqrt(v_hat) + eps)``) and the decoupled weight decay
      shrinks them (``w *= 1 - lr * weight_decay``). Here each row remembers the last step at
      which it was updated, and when it is touched again (or at :meth:`flush`) it first
      catches up on the steps it skipped, in closed form: ``m``, ``v`` and the weight decay
      exactly, and the momentum steps as the sum over the skipped steps of
      ``lr * u * (b1 / sqrt(b2))**j * sqrt(1 - b2**i) / (1 - b1**i)`` (step ``i``, the
      ``j``-th skipped, times the weight decay of the later ones) with ``u = m / (sqrt(v) +
      eps')``, ``m`` and ``v`` as of the row's last update. This is dense AdamW except for the
      ``eps`` of the skipped steps, which ``eps'`` takes at their centre of mass (about ten
      steps after the last update; the difference is of order ``eps / sqrt(v_hat)``, nil unless
      a row's gradients are vanishingly small) and for terms below ``1e-11`` of the first
      skipped step (the sum stops after 256 skipped steps).

    Call :meth:`flush` before reading the weights (the trainer does at the end of every
    epoch): it brings every row up to date. The cost of a step is that of the touched rows;
    :meth:`flush` costs one pass over the rows updated since the last flush (over all rows
    when ``weight_decay > 0``).

    Both kinds share one state layout (``step``, ``exp_avg``, ``exp_avg_sq`` per parameter, plus
    ``row_step``, the last update of each row, for sparse ones), and a parameter may receive a
    dense gradient at one step and a sparse one at another. With a
    :class:`torch.amp.GradScaler` the optimizer honours ``grad_scale`` and ``found_inf`` as the
    fused AdamW does (sparse rows are unscaled, and nothing moves on a step with non-finite
    gradients).

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
        Decoupled weight decay.
    foreach : bool, default=None
        Use the multi-tensor implementation for dense gradients (as in AdamW).
    fused : bool, default=None
        Use the fused kernel for dense gradients (as in AdamW).

    See Also
    --------
    torch.optim.AdamW : The update of dense gradients, which the sparse path follows.
    torch.optim.SparseAdam : Lazy Adam: only the touched rows move, and never catch up.

    Notes
    -----
    Purely lazy Adam (untouched rows frozen, as :class:`torch.optim.SparseAdam`) is cheaper
    still but is not the same optimizer: a row touched once moves about ten times less than
    under dense Adam, whose momentum keeps moving it for tens of steps. On a catalogue where a
    step touches a few percent of the rows, it trains the rare items less and lowers NDCG@10
    at equal epochs (the ``lazy`` rows of ``benchmarks/scale.py``), hence the catch-up.

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
    >>> opt.flush()  # rows 3 and 7 keep moving on their momentum, as under AdamW
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
        """Perform one optimization step (dense updates, and sparse rows with their catch-up).

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
        skip = found_inf is not None and bool(found_inf.sum() > 0)
        for group in self.param_groups:
            if group["amsgrad"]:  # pragma: no cover - not offered by the constructor
                raise ValueError("SparseAdamW does not support amsgrad.")
            dense = [p for p in group["params"] if p.grad is not None and not p.grad.is_sparse]
            sparse = [p for p in group["params"] if p.grad is not None and p.grad.is_sparse]
            if dense:
                if not skip:
                    for p in dense:  # rows left behind by earlier sparse steps catch up first
                        self._flush_param(p, group)
                self._dense_step(group, dense, grad_scale, found_inf)
                if not skip:
                    for p in dense:
                        if "row_step" in self.state[p]:
                            self.state[p]["row_step"].fill_(int(self.state[p]["step"]))
            if sparse and not skip:  # as the fused dense update: skip the step, keep the state
                for p in sparse:
                    self._sparse_step(p, group, grad_scale)
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

    # ------------------------------------------------------------------ sparse rows
    def _catch_up(self, p: torch.Tensor, state: dict, group: dict, rows: torch.Tensor,
                  now: int, weight: torch.Tensor, exp_avg: torch.Tensor,
                  exp_avg_sq: torch.Tensor) -> None:
        """Apply in place, to the gathered ``weight``/``exp_avg``/``exp_avg_sq`` of ``rows``, the
        dense AdamW steps ``row_step + 1 .. now`` that they skipped (zero gradients)."""
        last = state["row_step"].index_select(0, rows)
        skipped = now - last
        if not bool((skipped > 0).any()):
            return
        beta1, beta2 = group["betas"]
        lr, eps, wd = float(group["lr"]), group["eps"], group["weight_decay"]
        dev = weight.device
        n_terms = min(int(skipped.max()), _CATCH_UP_TERMS)
        j = torch.arange(1, n_terms + 1, device=dev, dtype=torch.float64)
        k = skipped.to(torch.float64)[:, None]
        i = last.to(torch.float64)[:, None] + j  # the absolute step of each skipped step
        decay = 1.0 - lr * wd
        ratio = beta1 / math.sqrt(beta2)
        terms = (ratio**j) * torch.sqrt(1 - beta2**i) / (1 - beta1**i)
        if wd:
            terms = terms * decay ** (k - j)  # the weight decay of the later skipped steps
        coef = (terms * (j <= k)).sum(1)  # (rows,)
        shape = (-1,) + (1,) * (weight.dim() - 1)
        # eps of the skipped steps, taken at their centre of mass (the momentum's mean life)
        mid = torch.clamp(k[:, 0], max=1.0 / (1.0 - ratio))
        eps_mid = eps * torch.sqrt(1 - beta2 ** (last.to(torch.float64) + mid)) / beta2 ** (
            mid / 2)
        u = exp_avg / (exp_avg_sq.sqrt() + eps_mid.to(weight.dtype).view(shape))
        if wd:
            weight.mul_((decay ** skipped.to(torch.float64)).to(weight.dtype).view(shape))
        weight.sub_(u * (lr * coef).to(weight.dtype).view(shape))
        exp_avg.mul_((beta1 ** k[:, 0]).to(exp_avg.dtype).view(shape))
        exp_avg_sq.mul_((beta2 ** k[:, 0]).to(exp_avg_sq.dtype).view(shape))

    def _row_state(self, p: torch.Tensor, group: dict) -> dict:
        state = self._state(p, group)
        if "row_step" not in state:  # rows are up to date with the parameter's step count
            state["row_step"] = torch.full((p.shape[0],), int(state["step"]),
                                           dtype=torch.int64, device=p.device)
        return state

    def _sparse_step(self, p: torch.Tensor, group: dict, grad_scale) -> None:
        beta1, beta2 = group["betas"]
        lr, eps, wd = float(group["lr"]), group["eps"], group["weight_decay"]
        grad = p.grad.coalesce()
        rows = grad.indices()[0]
        g = grad.values()
        if grad_scale is not None:
            g = g / grad_scale.to(g.dtype).reshape(())
        if group["maximize"]:
            g = -g
        g = g.to(p.dtype)
        state = self._row_state(p, group)
        t = int(state["step"]) + 1
        weight = p.index_select(0, rows)
        exp_avg = state["exp_avg"].index_select(0, rows)
        exp_avg_sq = state["exp_avg_sq"].index_select(0, rows)
        self._catch_up(p, state, group, rows, t - 1, weight, exp_avg, exp_avg_sq)
        state["step"] += 1
        exp_avg.lerp_(g, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        if wd:
            weight.mul_(1 - lr * wd)
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**t)).add_(eps)
        weight.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**t))
        p.index_copy_(0, rows, weight)
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        state["row_step"].index_fill_(0, rows, t)

    def _flush_param(self, p: torch.Tensor, group: dict) -> None:
        state = self.state.get(p)
        if not state or "row_step" not in state:
            return
        now = int(state["step"])
        behind = state["row_step"] < now
        if not group["weight_decay"]:
            # rows never updated have no momentum and, without decay, nothing to catch up
            behind &= state["exp_avg_sq"].reshape(p.shape[0], -1).any(1)
        rows = torch.nonzero(behind).squeeze(1)
        if rows.numel():
            weight = p.index_select(0, rows)
            exp_avg = state["exp_avg"].index_select(0, rows)
            exp_avg_sq = state["exp_avg_sq"].index_select(0, rows)
            self._catch_up(p, state, group, rows, now, weight, exp_avg, exp_avg_sq)
            p.index_copy_(0, rows, weight)
            state["exp_avg"].index_copy_(0, rows, exp_avg)
            state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        state["row_step"].fill_(now)

    @torch.no_grad()
    def flush(self) -> None:
        """Bring every row of the sparse-gradient parameters up to date (apply the dense
        AdamW steps they skipped), so that the weights are those of dense AdamW."""
        for group in self.param_groups:
            for p in group["params"]:
                self._flush_param(p, group)


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
