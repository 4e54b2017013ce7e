"""Click-prediction models: fields -> embeddings -> interaction block -> logit.

The building blocks, pure torch:

- :class:`FieldEmbedding`: one table for the ids of every categorical and multi-valued field
  (each field owns a block of rows, with its unknown and missing rows), multi-valued fields
  pooled (weighted mean of their entries), numeric fields as a value times a learned vector;
- :class:`WidePart`: exactly ``f(x) = W1 x + b1`` over the sparse one-hot / multi-hot
  features (one weight per table row) plus the numeric values;
- :class:`MLP` (optionally with batch normalisation whose statistics are sliceable, so that
  pruning can remove units), :class:`FactorizationMachine` (DeepFM),
  :class:`CrossNetwork` (DCN-v2, full-rank or low-rank), self-attention over the field tokens
  (:class:`~skrec.nn.TransformerBlock` without a mask, AutoInt-like) and
  :class:`ExpertMixture` (a softmax gate over expert MLPs, MMoE-like);
- :class:`CTRModel`, which assembles them by architecture name (``"wide_deep"``,
  ``"deepfm"``, ``"dcnv2"``, ``"transformer"``) and returns one fp32 logit per row.

Every unit that structured pruning may remove (embedding dimensions, MLP units, cross rank,
attention heads, feed-forward units, experts) is a slice of dense parameters, and
:meth:`CTRModel.config` records the current sizes, so a pruned model rebuilds exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import register_module
from .transformer import TransformerBlock

__all__ = [
    "ARCHITECTURES",
    "CTRModel",
    "CrossNetwork",
    "ExpertMixture",
    "FactorizationMachine",
    "FieldEmbedding",
    "MLP",
    "WidePart",
    "cross_ids",
    "gather_bags",
]

#: Architecture names of :class:`CTRModel`.
ARCHITECTURES = ("wide_deep", "deepfm", "dcnv2", "transformer")


def gather_bags(bag_ids: torch.Tensor, bag_offsets: torch.Tensor, bag_weights: torch.Tensor,
                rows: torch.Tensor, n_multi: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The bags of the samples ``rows``: a row subset of the packed multi-valued fields.

    Parameters
    ----------
    bag_ids, bag_weights : torch.Tensor of shape (nnz,)
        Entries of all bags, bag after bag (bag ``i * n_multi + j`` is field ``j`` of sample
        ``i``).
    bag_offsets : torch.Tensor of shape (n_samples * n_multi + 1,)
        Start of every bag, and the total at the end.
    rows : torch.Tensor of shape (B,)
        Samples to keep, in order.
    n_multi : int
        Multi-valued fields per sample.

    Returns
    -------
    bag_ids, bag_offsets, bag_weights : torch.Tensor
        The same layout for the ``B`` samples.
    """
    bags = (rows[:, None] * n_multi + torch.arange(n_multi, device=rows.device)).reshape(-1)
    starts = bag_offsets[bags]
    lengths = bag_offsets[bags + 1] - starts
    offsets = torch.zeros(bags.numel() + 1, dtype=bag_offsets.dtype, device=rows.device)
    torch.cumsum(lengths, 0, out=offsets[1:])
    total = int(offsets[-1])
    # position of every kept entry in the source: its bag's start + its rank in the bag
    within = torch.arange(total, device=rows.device) - torch.repeat_interleave(
        offsets[:-1], lengths, output_size=total)
    src = torch.repeat_interleave(starts, lengths, output_size=total) + within
    return bag_ids[src], offsets, bag_weights[src]


class FieldEmbedding(nn.Module):
    """Per-field embeddings from one table: (ids, numeric, bags) -> (B, n_fields, d).

    Field order: the single-valued categorical fields (``ids``), the multi-valued fields (bags,
    pooled as the weighted mean of their entries' vectors: weight / number of entries), the
    numeric fields (value times a learned vector per field).

    Parameters
    ----------
    n_ids : int
        Rows of the table (every categorical and multi-valued field's block).
    n_categorical, n_multi, n_numeric : int
        Fields of each kind.
    embed_dim : int
        Width ``d`` of every field vector.
    """

    def __init__(self, n_ids: int, n_categorical: int, n_multi: int, n_numeric: int,
                 embed_dim: int):
        super().__init__()
        self.n_ids, self.n_categorical = int(n_ids), int(n_categorical)
        self.n_multi, self.n_numeric = int(n_multi), int(n_numeric)
        self.weight = nn.Parameter(torch.empty(max(self.n_ids, 1), embed_dim))
        self.numeric_weight = nn.Parameter(torch.empty(self.n_numeric, embed_dim))
        self.reset_parameters()

    @property
    def embed_dim(self) -> int:
        """Width of the field vectors."""
        return int(self.weight.shape[1])

    @property
    def n_fields(self) -> int:
        """Number of field vectors returned per row."""
        return self.n_categorical + self.n_multi + self.n_numeric

    def reset_parameters(self, std: float = 1e-4) -> None:
        """N(0, ``std``) table rows and numeric vectors."""
        nn.init.normal_(self.weight, std=std)
        nn.init.normal_(self.numeric_weight, std=std)

    def forward(self, ids: torch.Tensor, numeric: torch.Tensor | None = None,
                bag_ids: torch.Tensor | None = None, bag_offsets: torch.Tensor | None = None,
                bag_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Field vectors (B, n_fields, d)."""
        parts = [F.embedding(ids, self.weight)]
        if self.n_multi:
            # the weighted sum of each bag, divided by its number of entries (no per-entry
            # repeat of the scale: the graph exports to ONNX)
            lengths = (bag_offsets[1:] - bag_offsets[:-1]).clamp(min=1)
            pooled = F.embedding_bag(bag_ids, self.weight, bag_offsets[:-1], mode="sum",
                                     per_sample_weights=bag_weights.to(self.weight.dtype))
            pooled = pooled / lengths.to(pooled.dtype).unsqueeze(-1)
            parts.append(pooled.view(ids.shape[0], self.n_multi, -1))
        if self.n_numeric:
            parts.append(numeric.to(self.weight.dtype).unsqueeze(-1) * self.numeric_weight)
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def cross_ids(ids: torch.Tensor, n_buckets: int, fields: Sequence[int] | None = None
              ) -> torch.Tensor:
    """Hashed ids (B, F * (F - 1) / 2) of every pair of the categorical ids ``ids`` (B, F).

    Pair ``(i, j)`` of a row (``i < j``, fields in order) maps its two global ids (unique
    across fields) to ``hash(id_i, id_j, pair) mod n_buckets``: the cross-product features of
    Wide & Deep, hashed into one shared table. Integer arithmetic wraps modulo 2**64, so the
    result is the same on every machine.
    """
    if fields is not None:
        ids = ids[:, list(fields)]
    n = ids.shape[1]
    first, second = torch.triu_indices(n, n, 1, device=ids.device)
    a, b = ids[:, first], ids[:, second]
    pair = torch.arange(first.numel(), device=ids.device)
    h = a * -7046029254386353131 + b * -4658895280553007687 + pair * 2654435761
    h = h ^ (h >> 29)
    h = h * -4417276706812531889
    h = h ^ (h >> 32)
    return torch.remainder(h, n_buckets)


class WidePart(nn.Module):
    """The wide (linear) part, exactly ``f(x) = W1 x + b1`` over the sparse features.

    ``x`` is the one-hot / multi-hot vector over the table's rows (value 1 for a categorical
    id, the entry's weight in a bag) followed by the numeric values: the output is the sum of
    the weights of the row's ids, the weighted sum over its bag entries, the numeric values
    times their weights, and the bias. With ``cross_buckets``, ``x`` also holds the hashed
    cross-product features of every pair of categorical fields (:func:`cross_ids`, one-hot in
    a table of ``cross_buckets`` weights), the memorisation part of Wide & Deep.

    Parameters
    ----------
    n_ids : int
        Rows of the embedding table.
    n_numeric : int
        Numeric fields.
    cross_buckets : int, default=0
        Weights of the hashed pairwise crosses (0: no crosses).
    cross_fields : sequence of int, default=None
        Positions (among the categorical fields) of the fields crossed pairwise; all when
        ``None``.
    cross_dropout : float, default=0.0
        In training, each (row, pair) cross feature is left out with this probability, with
        no rescaling: the model then also learns to predict rows whose pair it has not
        memorised, which is what an unseen pair at prediction time is (its bucket is
        untrained). Without it, a model that memorises every training pair is over-confident
        on new pairs.
    """

    def __init__(self, n_ids: int, n_numeric: int, cross_buckets: int = 0,
                 cross_fields: Sequence[int] | None = None, cross_dropout: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(max(int(n_ids), 1), 1))
        self.numeric_weight = nn.Parameter(torch.zeros(int(n_numeric)))
        self.bias = nn.Parameter(torch.zeros(1))
        self.cross_buckets = int(cross_buckets)
        self.cross_weight = nn.Parameter(torch.zeros(self.cross_buckets, 1))
        self.cross_fields = None if cross_fields is None else [int(f) for f in cross_fields]
        self.cross_dropout = float(cross_dropout)
        # 1 for the buckets that may be used, 0 for those masked out (see set_cross_counts)
        self.register_buffer("cross_mask", torch.ones(self.cross_buckets))

    @torch.no_grad()
    def set_cross_counts(self, ids: torch.Tensor, min_count: int) -> None:
        """Use only the cross buckets that the training rows ``ids`` fill ``min_count`` times.

        A pair seen once cannot be told from noise: memorising it only fits that row. Buckets
        below the count are masked (their weight is never used, and gets no gradient), so an
        unseen or rare pair reads as no memorised pair at all.

        Parameters
        ----------
        ids : torch.Tensor of shape (n_samples, n_categorical)
            Categorical ids of the training rows.
        min_count : int
            Fewest training rows a bucket needs.
        """
        if not self.cross_buckets or ids.shape[1] < 2:
            return
        counts = torch.zeros(self.cross_buckets, dtype=torch.int64, device=ids.device)
        for start in range(0, ids.shape[0], 1 << 16):
            h = cross_ids(ids[start:start + (1 << 16)], self.cross_buckets, self.cross_fields)
            counts += torch.bincount(h.reshape(-1), minlength=self.cross_buckets)
        self.cross_mask.copy_((counts >= int(min_count)).to(self.cross_mask.dtype))

    def forward(self, ids: torch.Tensor, numeric: torch.Tensor | None = None,
                bag_ids: torch.Tensor | None = None, bag_offsets: torch.Tensor | None = None,
                bag_weights: torch.Tensor | None = None) -> torch.Tensor:
        """``W1 x + b1`` per row: (B,) in fp32."""
        out = F.embedding(ids, self.weight).float().sum(dim=(1, 2)) + self.bias.float()
        if self.cross_buckets and ids.shape[1] > 1:
            h = cross_ids(ids, self.cross_buckets, self.cross_fields)
            crossed = F.embedding(h, self.cross_weight).float().squeeze(-1) * self.cross_mask[h]
            if self.training and self.cross_dropout:
                crossed = crossed * (torch.rand_like(crossed) >= self.cross_dropout)
            out = out + crossed.sum(dim=1)
        if bag_ids is not None and bag_ids.numel():
            n_bags = bag_offsets.numel() - 1
            per_bag = F.embedding_bag(bag_ids, self.weight.float(), bag_offsets[:-1],
                                      mode="sum", per_sample_weights=bag_weights.float())
            out = out + per_bag.view(ids.shape[0], n_bags // ids.shape[0]).sum(dim=1)
        if self.numeric_weight.numel():
            out = out + numeric.float() @ self.numeric_weight.float()
        return out


class SliceableBatchNorm(nn.Module):
    """Batch normalisation over features whose running statistics are (frozen) parameters.

    The same computation as ``torch.nn.BatchNorm1d``; keeping the running mean and variance
    as parameters without gradient lets structured pruning slice them with the unit they
    belong to.

    Parameters
    ----------
    n : int
        Features.
    momentum : float, default=0.1
        Running-statistics momentum.
    eps : float, default=1e-5
        Added to the variance.
    """

    def __init__(self, n: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = float(momentum), float(eps)
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n))
        self.running_mean = nn.Parameter(torch.zeros(n), requires_grad=False)
        self.running_var = nn.Parameter(torch.ones(n), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (B, n)."""
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training and x.shape[0] > 1, self.momentum, self.eps)


class MLP(nn.Module):
    """Linear -> [batch norm] -> ReLU -> dropout, per hidden layer.

    Parameters
    ----------
    in_dim : int
        Input width.
    hidden : sequence of int
        Units of each layer (empty: the identity).
    dropout : float, default=0.0
        Dropout after each activation.
    batch_norm : bool, default=False
        Batch normalisation before each activation.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], dropout: float = 0.0,
                 batch_norm: bool = False):
        super().__init__()
        sizes = [int(in_dim), *[int(h) for h in hidden]]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.norms = nn.ModuleList(SliceableBatchNorm(b) for b in sizes[1:]) if batch_norm \
            else None
        self.dropout = float(dropout)
        self.in_dim = int(in_dim)

    @property
    def out_dim(self) -> int:
        """Output width."""
        return int(self.layers[-1].out_features) if len(self.layers) else self.in_dim

    @property
    def hidden(self) -> list[int]:
        """Current units of each layer."""
        return [int(layer.out_features) for layer in self.layers]

    def reset_parameters(self) -> None:
        """Xavier-normal weights, zero biases."""
        for layer in self.layers:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the layers to ``x`` (B, in_dim); with ``first``, the first layer's output
        (B, hidden[0]) computed by the caller, and ``x`` is not read."""
        for i, layer in enumerate(self.layers):
            x = first if (i == 0 and first is not None) else layer(x)
            if self.norms is not None:
                x = self.norms[i](x)
            x = F.relu(x)
            if self.dropout:
                x = F.dropout(x, self.dropout, self.training)
        return x


class FactorizationMachine(nn.Module):
    """Second-order factorisation machine term: sum over field pairs of ``<v_i, v_j>``."""

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """(B,) fp32 from field vectors (B, F, d)."""
        emb = emb.float()
        square_of_sum = emb.sum(dim=1).pow(2)
        sum_of_square = emb.pow(2).sum(dim=1)
        return 0.5 * (square_of_sum - sum_of_square).sum(dim=1)


class CrossNetwork(nn.Module):
    """DCN-v2 cross layers: ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l``.

    Full rank (``W_l`` of shape (in, in)) or low rank ``W_l = U_l V_l`` (``rank`` columns:
    ``x_0 * (U_l (V_l x_l) + b_l) + x_l``).

    Parameters
    ----------
    in_dim : int
        Width of ``x_0``.
    n_layers : int
        Cross layers.
    rank : int or sequence of int, default=None
        Rank of each layer (one value for all, or one per layer after pruning); full rank
        when ``None``.
    """

    def __init__(self, in_dim: int, n_layers: int, rank: int | Sequence[int] | None = None):
        super().__init__()
        self.in_dim = int(in_dim)
        self.low_rank = rank is not None
        if rank is None:
            self.weights = nn.ModuleList(nn.Linear(in_dim, in_dim) for _ in range(n_layers))
            self.down = None
        else:
            ranks = [int(rank)] * n_layers if isinstance(rank, int) else [int(r) for r in rank]
            if len(ranks) != n_layers:
                raise ValueError(f"rank has {len(ranks)} values for {n_layers} layers.")
            self.down = nn.ModuleList(nn.Linear(in_dim, r, bias=False) for r in ranks)
            self.weights = nn.ModuleList(nn.Linear(r, in_dim) for r in ranks)

    @property
    def ranks(self) -> list[int] | None:
        """Rank of each layer (``None`` for full rank)."""
        return None if self.down is None else [int(d.out_features) for d in self.down]

    def reset_parameters(self) -> None:
        """Xavier-normal weights, zero biases."""
        for layer in [*self.weights, *(self.down or [])]:
            nn.init.xavier_normal_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """Crossed features (B, in_dim) of ``x0`` (B, in_dim)."""
        x = x0
        for i, w in enumerate(self.weights):
            h = w(self.down[i](x)) if self.down is not None else w(x)
            x = x0 * h + x
        return x


class ExpertMixture(nn.Module):
    """A softmax gate over expert MLPs (MMoE / mixture of neural experts, one task).

    ``out = sum_e softmax(x G + g)_e * expert_e(x)``; the experts are MLPs of the same sizes,
    stored as batched weights (expert ``e`` is index ``e`` of every weight), so they run as
    one batched matrix product per layer and an expert can be removed by slicing.

    Parameters
    ----------
    in_dim : int
        Input width.
    n_experts : int
        Experts.
    hidden : sequence of int
        Units of each expert layer (at least one layer).
    dropout : float, default=0.0
        Dropout after each activation.
    """

    def __init__(self, in_dim: int, n_experts: int, hidden: Sequence[int],
                 dropout: float = 0.0):
        super().__init__()
        hidden = [int(h) for h in hidden]
        if not hidden:
            raise ValueError("expert MLPs need at least one layer.")
        sizes = [int(in_dim), *hidden]
        self.gate = nn.Linear(in_dim, n_experts)
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(n_experts, a, b))
                                        for a, b in zip(sizes, sizes[1:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(n_experts, b))
                                       for b in sizes[1:])
        self.dropout = float(dropout)
        self.in_dim = int(in_dim)
        self.reset_parameters()

    @property
    def n_experts(self) -> int:
        """Current number of experts."""
        return int(self.gate.out_features)

    @property
    def hidden(self) -> list[int]:
        """Units of each expert layer."""
        return [int(w.shape[2]) for w in self.weights]

    @property
    def out_dim(self) -> int:
        """Output width."""
        return self.hidden[-1]

    def reset_parameters(self) -> None:
        """Xavier-normal expert weights, zero biases, a uniform gate at the start."""
        for w in self.weights:
            std = math.sqrt(2.0 / (w.shape[1] + w.shape[2]))
            nn.init.normal_(w, std=std)
        for b in self.biases:
            nn.init.zeros_(b)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gated sum (B, out_dim) of the experts' outputs for ``x`` (B, in_dim)."""
        gate = torch.softmax(self.gate(x).float(), dim=-1).to(x.dtype)  # (B, E)
        h = x.unsqueeze(0).expand(self.n_experts, -1, -1)  # (E, B, in)
        for w, b in zip(self.weights, self.biases):
            h = F.relu(torch.baddbmm(b.unsqueeze(1).to(h.dtype), h, w.to(h.dtype)))
            if self.dropout:
                h = F.dropout(h, self.dropout, self.training)
        return torch.einsum("be,ebh->bh", gate, h)


def _fp32_linear(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` computed in fp32, also in a bf16 / fp16 serving copy of the model (whose
    weights are cast) and an int8 one (whose layer is quantized and takes fp32 input)."""
    weight = getattr(layer, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dtype != torch.float32:
        bias = None if layer.bias is None else layer.bias.float()
        return F.linear(x.float(), weight.float(), bias)
    return layer(x.float())


def _per_layer(name: str, value, n: int) -> list[int]:
    if isinstance(value, int):
        return [value] * n
    values = [int(v) for v in value]
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} values for {n} blocks.")
    return values


@register_module
class CTRModel(nn.Module):
    """A click model: field embeddings -> interaction block -> one logit per row.

    ``architecture`` picks how the field vectors interact:

    - ``"wide_deep"``: Wide & Deep (Cheng et al., 2016): the wide part plus an MLP over the
      concatenated field vectors;
    - ``"deepfm"``: DeepFM (Guo et al., 2017): the wide part (first order), the FM term over
      the field vectors and the MLP;
    - ``"dcnv2"``: DCN-v2 (Wang et al., 2021), parallel: a cross network and the MLP over the
      concatenated field vectors, their outputs concatenated before the output layer;
    - ``"transformer"``: self-attention over the field vectors as tokens (AutoInt, Song et
      al., 2019; pre-LN blocks, no mask, no positions: each field has its own table rows),
      then the MLP over the concatenated outputs.

    With ``n_experts`` the MLP is replaced by a mixture of expert MLPs of the same sizes.
    ``wide`` adds the wide part to any architecture. The logit (and the FM term and wide part)
    is computed in fp32 whatever the autocast context.

    Parameters
    ----------
    n_ids : int
        Rows of the embedding table.
    n_categorical, n_multi, n_numeric : int
        Fields of each kind (see :class:`FieldEmbedding`).
    architecture : {"wide_deep", "deepfm", "dcnv2", "transformer"}, default="wide_deep"
        Interaction block.
    embed_dim : int, default=16
        Width of the field vectors.
    hidden : sequence of int, default=(64,)
        MLP (or expert) layer sizes. The defaults are those measured best on the validation
        data of Frappe_x1 and of the synthetic Criteo-like data (``benchmarks/ctr_search.py``);
        the BARS configurations use (400, 400, 400), too slow to score 1,000 candidates in
        2 ms on one CPU thread.
    dropout : float, default=0.2
        Dropout in the MLP (and the transformer's residual branches).
    batch_norm : bool, default=True
        Batch normalisation in the MLP (without it, the MLP over embeddings initialised at
        N(0, 1e-4) did not learn past the logistic level in the measurements).
    wide : bool, default=None
        Add the wide part; by default for ``"wide_deep"`` and ``"deepfm"`` only.
    n_cross : int, default=3
        Cross layers (``"dcnv2"``).
    cross_rank : int or sequence of int, default=None
        Rank of the cross layers (``None``: full rank).
    n_blocks : int, default=2
        Attention blocks (``"transformer"``).
    n_heads : int or sequence of int, default=2
        Heads per block (per block after pruning).
    head_dim : int, default=None
        Width of a head; ``embed_dim // n_heads`` when ``None``.
    d_ff : int or sequence of int, default=None
        Feed-forward units per block; ``4 * embed_dim`` when ``None``.
    n_experts : int, default=0
        Experts of the mixture replacing the MLP (0: a plain MLP).
    cross_buckets : int, default=0
        Hashed pairwise cross-product features in the wide part (see :class:`WidePart`).
    cross_fields : sequence of int, default=None
        The categorical fields crossed (all when ``None``).
    cross_dropout : float, default=0.0
        Training dropout of the cross features (see :class:`WidePart`).
    """

    def __init__(self, n_ids: int, n_categorical: int, n_multi: int = 0, n_numeric: int = 0,
                 architecture: str = "wide_deep", embed_dim: int = 16,
                 hidden: Sequence[int] = (64,), dropout: float = 0.2,
                 batch_norm: bool = True, wide: bool | None = None, n_cross: int = 3,
                 cross_rank: int | Sequence[int] | None = None, n_blocks: int = 2,
                 n_heads: int | Sequence[int] = 2, head_dim: int | None = None,
                 d_ff: int | Sequence[int] | None = None, n_experts: int = 0,
                 cross_buckets: int = 0, cross_fields: Sequence[int] | None = None,
                 cross_dropout: float = 0.0):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}; "
                             f"got {architecture!r}.")
        self.architecture = architecture
        self.dropout = float(dropout)
        self.batch_norm = bool(batch_norm)
        self.embedding = FieldEmbedding(n_ids, n_categorical, n_multi, n_numeric, embed_dim)
        n_fields = self.embedding.n_fields
        flat = n_fields * embed_dim
        if wide is None:
            wide = architecture in ("wide_deep", "deepfm")
        self.wide = WidePart(n_ids, n_numeric, cross_buckets, cross_fields,
                             cross_dropout) if wide else None
        self.fm = FactorizationMachine() if architecture == "deepfm" else None
        self.cross = CrossNetwork(flat, n_cross, cross_rank) if architecture == "dcnv2" \
            else None
        self.blocks = None
        if architecture == "transformer":
            heads = _per_layer("n_heads", n_heads, n_blocks)
            if head_dim is None:
                if not isinstance(n_heads, int) or embed_dim % n_heads:
                    raise ValueError(f"embed_dim={embed_dim} must be divisible by "
                                     f"n_heads={n_heads}.")
                head_dim = embed_dim // n_heads
            widths = _per_layer("d_ff", 4 * embed_dim if d_ff is None else d_ff, n_blocks)
            self.head_dim = int(head_dim)
            self.blocks = nn.ModuleList(
                TransformerBlock(embed_dim, h, self.head_dim, f, self.dropout)
                for h, f in zip(heads, widths))
            self.final_ln = nn.LayerNorm(embed_dim)
        if n_experts:
            self.deep = ExpertMixture(flat, n_experts, hidden, self.dropout)
        else:
            self.deep = MLP(flat, hidden, self.dropout, self.batch_norm)
        self.head = nn.Linear(self.deep.out_dim, 1)
        # the output layer's weights over the crossed features (one linear map over the
        # concatenation [cross, deep], kept as two matrices so that each can be sliced)
        self.cross_head = nn.Linear(flat, 1, bias=False) if self.cross is not None else None
        self.reset_parameters()

    # ------------------------------------------------------------------ shapes and config
    @property
    def embed_dim(self) -> int:
        """Width of the field vectors."""
        return self.embedding.embed_dim

    @property
    def n_fields(self) -> int:
        """Field vectors per row."""
        return self.embedding.n_fields

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this model with its current (pruned) shapes."""
        cfg: dict[str, Any] = {
            "n_ids": self.embedding.n_ids, "n_categorical": self.embedding.n_categorical,
            "n_multi": self.embedding.n_multi, "n_numeric": self.embedding.n_numeric,
            "architecture": self.architecture, "embed_dim": self.embed_dim,
            "hidden": self.deep.hidden, "dropout": self.dropout,
            "batch_norm": self.batch_norm, "wide": self.wide is not None,
            "cross_buckets": self.wide.cross_buckets if self.wide is not None else 0,
            "cross_fields": self.wide.cross_fields if self.wide is not None else None,
            "cross_dropout": self.wide.cross_dropout if self.wide is not None else 0.0,
            "n_experts": self.deep.n_experts if isinstance(self.deep, ExpertMixture) else 0,
        }
        if self.cross is not None:
            cfg["n_cross"] = len(self.cross.weights)
            cfg["cross_rank"] = self.cross.ranks
        if self.blocks is not None:
            cfg["n_blocks"] = len(self.blocks)
            cfg["n_heads"] = [int(b.attn.n_heads) for b in self.blocks]
            cfg["head_dim"] = self.head_dim
            cfg["d_ff"] = [int(b.ff1.out_features) for b in self.blocks]
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CTRModel:
        """A model with fresh weights and the shapes of :meth:`config`."""
        return cls(**config)

    def reset_parameters(self) -> None:
        """Embeddings N(0, 1e-4); Xavier-normal dense weights, zero biases."""
        self.embedding.reset_parameters()
        self.deep.reset_parameters()
        if self.cross is not None:
            self.cross.reset_parameters()
        if self.blocks is not None:
            for module in self.blocks.modules():
                if isinstance(module, nn.Linear):
                    nn.init.xavier_normal_(module.weight)
                    nn.init.zeros_(module.bias)
        nn.init.xavier_normal_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        if self.cross_head is not None:
            nn.init.xavier_normal_(self.cross_head.weight)

    # ------------------------------------------------------------------ forward
    def forward_shared(self, ids: torch.Tensor, numeric: torch.Tensor | None = None,
                       bag_ids: torch.Tensor | None = None,
                       bag_offsets: torch.Tensor | None = None,
                       bag_weights: torch.Tensor | None = None,
                       shared: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`forward` of rows whose categorical columns ``shared`` (bool, one per column
        of ``ids``) hold one value in every row: the candidates of one request.

        The shared fields' vectors are looked up once and their share of the MLP's first
        layer (and of the factorisation machine's sums) computed once, not per row: scoring
        ``N`` candidates then costs about their own fields. The same logits as
        :meth:`forward` up to rounding, for the architectures whose field vectors meet
        first in a linear map (``"wide_deep"`` and ``"deepfm"`` with a plain MLP, in a float
        copy); the others, bags, training mode and a quantized copy take :meth:`forward`.
        """
        first = self.deep.layers[0] if isinstance(self.deep, MLP) and len(
            self.deep.layers) else None
        if (shared is None or self.training or self.blocks is not None
                or self.cross is not None or self.embedding.n_multi
                or not isinstance(first, nn.Linear) or not bool(shared.any())
                or ids.shape[0] < 2):
            return self.forward(ids, numeric, bag_ids, bag_offsets, bag_weights)
        emb_layer, d = self.embedding, self.embed_dim
        weight, B = emb_layer.weight, ids.shape[0]
        w = first.weight.reshape(first.out_features, -1, d)   # (H, n_fields, d)
        own, common = (~shared).nonzero().squeeze(1), shared.nonzero().squeeze(1)
        mine = F.embedding(ids[:, own], weight)                  # (B, V, d)
        theirs = F.embedding(ids[:1, common], weight)            # (1, S, d): once
        hidden = (F.linear(mine.reshape(B, -1), w[:, own].reshape(w.shape[0], -1))
                  + F.linear(theirs.reshape(1, -1), w[:, common].reshape(w.shape[0], -1),
                             first.bias))
        varying = [mine]
        if emb_layer.n_numeric:
            n_cat = emb_layer.n_categorical
            values = numeric.to(weight.dtype).unsqueeze(-1) * emb_layer.numeric_weight
            hidden = hidden + F.linear(values.reshape(B, -1),
                                       w[:, n_cat:].reshape(w.shape[0], -1))
            varying.append(values)
        deep = self.deep(mine, first=hidden)
        with torch.autocast(device_type=deep.device.type, enabled=False):
            logit = _fp32_linear(self.head, deep).squeeze(-1)
            if self.fm is not None:  # the sums over the fields, the shared ones once
                total, squares = theirs.float().sum(dim=1), theirs.float().pow(2).sum(dim=1)
                for part in varying:
                    total = total + part.float().sum(dim=1)
                    squares = squares + part.float().pow(2).sum(dim=1)
                logit = logit + 0.5 * (total.pow(2) - squares).sum(dim=1)
            if self.wide is not None:
                logit = logit + self.wide(ids, numeric)
        return logit

    def forward(self, ids: torch.Tensor, numeric: torch.Tensor | None = None,
                bag_ids: torch.Tensor | None = None, bag_offsets: torch.Tensor | None = None,
                bag_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B,) in fp32 of encoded rows (see :class:`skrec.ctr.FieldBatch`)."""
        emb = self.embedding(ids, numeric, bag_ids, bag_offsets, bag_weights)
        B = emb.shape[0]
        if self.blocks is not None:
            tokens = emb
            for block in self.blocks:
                tokens = block(tokens, None, causal=False)
            h = self.final_ln(tokens).reshape(B, -1)
        else:
            h = emb.reshape(B, -1)
        deep = self.deep(h)
        crossed = self.cross(emb.reshape(B, -1)) if self.cross is not None else None
        with torch.autocast(device_type=deep.device.type, enabled=False):
            logit = _fp32_linear(self.head, deep).squeeze(-1)
            if crossed is not None:
                logit = logit + _fp32_linear(self.cross_head, crossed).squeeze(-1)
            if self.fm is not None:
                logit = logit + self.fm(emb)
            if self.wide is not None:
                logit = logit + self.wide(ids, numeric, bag_ids, bag_offsets, bag_weights)
        return logit
