"""Mult-VAE and Mult-DAE (Liang et al., 2018): autoencoders over a user's item set.

Pure torch: the module takes a dense ``(batch, n_items)`` tensor of binary interactions and the
loss takes the module's outputs; no numpy or scipy here. Every layer is a plain
:class:`torch.nn.Linear` kept in a simple list (``encoder``, ``mu``, ``logvar``,
``decoder``), so structured pruning can slice hidden units out of consecutive layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import build_module, module_config, register_module
from .features import FeatureProjection
from .items import NO_ID_LOGIT

__all__ = ["MultVAE", "multinomial_elbo_loss"]


def _init_linear(layer: nn.Linear) -> None:
    # As in the reference implementation: Glorot-uniform weights, N(0, 0.001^2) biases.
    nn.init.xavier_uniform_(layer.weight)
    nn.init.normal_(layer.bias, std=1e-3)


@register_module
class MultVAE(nn.Module):
    """Multinomial variational (or denoising) autoencoder for implicit feedback.

    ``[n_items -> hidden_sizes -> latent_dim -> reversed(hidden_sizes) -> n_items]`` with
    ``tanh`` between layers. The input is L2-normalised per user, then dropped out (training
    only). With ``variational=True`` (Mult-VAE) the encoder gives the mean and log-variance
    of a Gaussian posterior and training samples from it (reparameterisation); with
    ``variational=False`` (Mult-DAE) the code is ``tanh(mu(h))`` and is deterministic.

    Parameters
    ----------
    n_items : int
        Catalogue size (input and output width).
    hidden_sizes : sequence of int, default=(600,)
        Widths of the encoder's hidden layers; the decoder mirrors them.
    latent_dim : int, default=200
        Width of the code.
    dropout : float, default=0.5
        Dropout probability on the (normalised) input during training.
    variational : bool, default=True
        Mult-VAE (True) or Mult-DAE (False).
    decoder_sizes : sequence of int, default=None
        Widths of the decoder's hidden layers; ``reversed(hidden_sizes)`` when ``None`` (a
        pruned model may have different ones).
    features : FeatureProjection or None, default=None
        Side features of the items (a linear map or a small MLP, ``out_dim`` = the width of
        the last decoder layer's input, with ``scalar=True``). On the input side the user's
        profile in feature space, ``x @ X_features``, feeds the first layer next to the items
        (so an item's input vector is its column plus ``W1 x_i``, ``W1`` the first layer's
        feature columns); on the output side each item's logit gets ``h . f(x_i) + b(x_i)``.
        Items without an id (see :meth:`set_id_mask`) are represented by their features
        alone.
    id_dropout : float, default=0.0
        With features, the fraction of items whose id logits are hidden at each training step
        (on the output side only: the input keeps every id), so that the features learn to
        score items alone.
    n_user_features : int, default=0
        Width of the users' side features, read by the first layer next to the items (and
        the item-feature profile): the last ``n_user_features`` input columns. Every pass
        then needs them (``u`` of :meth:`forward`, :meth:`encode` and :meth:`scores`); a user
        without items is encoded from them alone.

    Attributes
    ----------
    encoder : torch.nn.ModuleList of torch.nn.Linear
        ``n_items -> hidden_sizes[0] -> ... -> hidden_sizes[-1]``, each followed by ``tanh``.
    mu : torch.nn.Linear
        Last hidden layer (or the input) -> code mean (the code itself for the DAE).
    logvar : torch.nn.Linear or None
        Last hidden layer -> code log-variance (Mult-VAE only).
    decoder : torch.nn.ModuleList of torch.nn.Linear
        ``latent_dim -> hidden_sizes[-1] -> ... -> n_items``, ``tanh`` between them; the last
        layer gives the logits.
    """

    def __init__(
        self,
        n_items: int,
        hidden_sizes: Sequence[int] = (600,),
        latent_dim: int = 200,
        dropout: float = 0.5,
        variational: bool = True,
        *,
        decoder_sizes: Sequence[int] | None = None,
        features: FeatureProjection | None = None,
        id_dropout: float = 0.0,
        n_user_features: int = 0,
    ):
        super().__init__()
        hidden = [int(h) for h in hidden_sizes]
        dec_hidden = list(reversed(hidden)) if decoder_sizes is None else [
            int(h) for h in decoder_sizes
        ]
        self.n_items = int(n_items)
        self.latent_dim = int(latent_dim)
        self.dropout = float(dropout)
        self.variational = bool(variational)
        self.id_dropout = float(id_dropout)
        self.n_user_features = int(n_user_features)
        n_in = (self.n_items + (features.n_features if features is not None else 0)
                + self.n_user_features)
        dims = [n_in, *hidden]
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.mu = nn.Linear(dims[-1], self.latent_dim)
        self.logvar = nn.Linear(dims[-1], self.latent_dim) if self.variational else None
        out_dims = [self.latent_dim, *dec_hidden, self.n_items]
        self.decoder = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(out_dims[:-1], out_dims[1:])
        )
        for layer in self.linear_layers():
            _init_linear(layer)
        self.features = features
        if features is not None:
            if features.n_rows != self.n_items or features.out_dim != out_dims[-2]:
                raise ValueError(
                    f"features give {features.n_rows} x {features.out_dim} vectors for "
                    f"{self.n_items} items read from a width of {out_dims[-2]}."
                )
            if features.scalar is None:
                raise ValueError("MultVAE features need scalar=True (each item's output bias "
                                 "gets a term from its features).")
            # 1 where the item's id (its input column, its output row) is used, else 0
            self.register_buffer("id_mask", torch.ones(self.n_items))

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this module with its current shapes."""
        return {
            "n_items": self.n_items,
            "hidden_sizes": [int(layer.out_features) for layer in self.encoder],
            "latent_dim": int(self.mu.out_features),
            "dropout": self.dropout,
            "variational": self.variational,
            "decoder_sizes": [int(layer.out_features) for layer in self.decoder[:-1]],
            "features": None if self.features is None else module_config(self.features),
            "id_dropout": self.id_dropout,
            "n_user_features": self.n_user_features,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MultVAE:
        """Rebuild (fresh weights) from :meth:`config`."""
        cfg = dict(config)
        features = cfg.pop("features", None)
        return cls(**cfg, features=None if features is None else build_module(features))

    # ------------------------------------------------------------------ ids and features
    def _first_layers(self) -> list[nn.Linear]:
        if len(self.encoder):
            return [self.encoder[0]]
        return [self.mu] if self.logvar is None else [self.mu, self.logvar]

    def set_id_mask(self, has_id: torch.Tensor) -> None:
        """Use the ids (input columns, output rows) of the items where ``has_id`` is true.

        The other items are represented by their features alone; their id weights are
        zeroed, so that they start from nothing if they get an id later.
        """
        if self.features is None:
            raise ValueError("Only a model with item features can score items without ids.")
        has_id = torch.as_tensor(has_id, dtype=torch.bool, device=self.id_mask.device)
        with torch.no_grad():
            off = torch.nonzero((self.id_mask > 0) & ~has_id).squeeze(1)
            for layer in self._first_layers():
                layer.weight[:, off] = 0.0
            last = self.decoder[-1]
            last.weight[off] = 0.0
            last.bias[off] = 0.0
            self.id_mask.copy_(has_id.to(self.id_mask.dtype))

    def add_items(self, features) -> None:
        """Grow the catalogue by the items of ``features`` (rows, as for
        :meth:`FeatureProjection.append_rows`); they have no id until trained."""
        if self.features is None:
            raise ValueError("Only a model with item features can add items without training.")
        before = self.features.n_rows
        self.features.append_rows(features)
        k, n = self.features.n_rows - before, self.n_items
        with torch.no_grad():
            for layer in self._first_layers():  # zero input columns before the features'
                w = layer.weight
                layer.weight = nn.Parameter(torch.cat(
                    [w[:, :n], w.new_zeros(w.shape[0], k), w[:, n:]], dim=1))
                layer.in_features += k
            last = self.decoder[-1]
            last.weight = nn.Parameter(torch.cat([last.weight, last.weight.new_zeros(
                k, last.weight.shape[1])]))
            last.bias = nn.Parameter(torch.cat([last.bias, last.bias.new_zeros(k)]))
            last.out_features += k
            self.id_mask = torch.cat([self.id_mask, self.id_mask.new_zeros(k)])
        self.n_items = n + k

    def _mask(self) -> torch.Tensor | None:
        """The id mask of this pass (with id dropout in training), ``None`` without features."""
        if self.features is None:
            return None
        mask = self.id_mask
        if self.training and self.id_dropout > 0:
            mask = mask * (torch.rand(mask.shape, device=mask.device) >= self.id_dropout)
        return mask

    def linear_layers(self) -> list[nn.Linear]:
        """All linear layers, input to output (``logvar`` right after ``mu`` when present)."""
        heads = [self.mu] if self.logvar is None else [self.mu, self.logvar]
        return [*self.encoder, *heads, *self.decoder]

    @staticmethod
    def normalize(x: torch.Tensor) -> torch.Tensor:
        """L2-normalise each row in fp32 (an empty row stays zero)."""
        x = x.float()
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def encode(
        self, x: torch.Tensor, u: torch.Tensor | None = None, *, dropout: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Code mean and log-variance (``None`` for the DAE) of binary rows ``x``.

        Input dropout is applied when ``dropout`` is True (by default: in training mode).
        ``u``: the users' side features ``(B, n_user_features)`` (required when the module
        has ``n_user_features``, ignored otherwise).
        """
        h = self.normalize(x)
        if dropout is None:
            dropout = self.training
        if dropout and self.dropout > 0:
            h = self._input_dropout(h)
        if self.n_user_features and (u is None or u.shape != (h.shape[0], self.n_user_features)):
            got = None if u is None else tuple(u.shape)
            raise ValueError(f"This model reads {self.n_user_features} user features per "
                             f"row; got {got} for {h.shape[0]} rows.")
        cache: dict[str, torch.Tensor] = {}
        if len(self.encoder):
            h = torch.tanh(self._read_input(self.encoder[0], h, u, cache))
            for layer in self.encoder[1:]:
                h = torch.tanh(layer(h))
            mu = self.mu(h)
            logvar = None if self.logvar is None else self.logvar(h)
        else:
            mu = self._read_input(self.mu, h, u, cache)
            logvar = None if self.logvar is None else self._read_input(self.logvar, h, u, cache)
        return (torch.tanh(mu), None) if logvar is None else (mu, logvar)

    def _read_input(self, layer: nn.Module, h: torch.Tensor, u: torch.Tensor | None,
                    cache: dict[str, torch.Tensor]) -> torch.Tensor:
        """A first layer applied to the input ``[h, profile, u]``: the normalised items
        ``h``, then (with item features) the user's profile in feature space, the mean feature
        row of their items ``(h @ X_features) / h.sum(1)``, then the user features ``u``.

        The input columns of items without an id hold zeros (:meth:`set_id_mask`, and no
        training row contains such an item), so ``h`` needs no id mask. The profile's part is
        computed in whichever order costs less: ``profile @ W_f^T`` (the profile is shared by
        the first layers, in ``cache``), or ``h @ (X_features @ W_f^T)``, one more product over
        the catalogue, when the features are many and sparse.
        """
        if self.features is None and not self.n_user_features:
            return layer(h)
        weight, bias = _linear_parts(layer)
        nf = 0 if self.features is None else self.features.n_features
        # one split: its backward is one concatenation (slices would each fill a zero copy)
        items, feats, users = weight.split([self.n_items, nf, self.n_user_features], dim=1)
        out = F.linear(h.to(items.dtype), items, bias)
        if nf:
            if "scale" not in cache:
                cache["scale"] = 1.0 / h.sum(1, keepdim=True).clamp_min(1e-12)
            if self._profile_first(h.shape[0], weight.shape[0]):
                if "profile" not in cache:
                    cache["profile"] = self.features.matmul(h) * cache["scale"]
                out = out + F.linear(cache["profile"].to(feats.dtype), feats)
            else:
                g = self.features.rows_times(feats.t())  # (n_items, width)
                out = out + F.linear(h.to(g.dtype), g.t()) * cache["scale"].to(g.dtype)
        if self.n_user_features:
            out = out + F.linear(u.to(out.dtype), users)
        return out

    def _profile_first(self, batch: int, width: int) -> bool:
        """Whether ``profile @ W_f^T`` costs less than ``h @ (X_features @ W_f^T)`` for a
        batch of ``batch`` rows and a layer of ``width`` units (multiply-adds: the product by
        the feature matrix, then by the weights)."""
        feats, n = self.features, self.n_items
        nnz = feats.col.numel() if feats.sparse else n * feats.n_features
        return batch * (nnz + feats.n_features * width) <= nnz * width + batch * n * width

    def _input_dropout(self, h: torch.Tensor) -> torch.Tensor:
        """Inverted dropout of the stored (non-zero) input entries only.

        Equivalent in distribution to ``F.dropout`` on the sparse input, but draws one random
        number per interaction instead of one per (user, item) cell: several times faster for
        the usual densities of 0.1-5 %.
        """
        rows, cols = h.nonzero(as_tuple=True)
        drop = torch.rand(rows.numel(), device=h.device) < self.dropout
        h = h.index_put((rows[drop], cols[drop]), h.new_zeros(()))
        return h * (1.0 / (1.0 - self.dropout))

    def decode(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits over the catalogue of codes ``z``.

        With features, ``mask`` (default: the id mask) hides the id logits of some items,
        and every item's logit gets its feature score.
        """
        h = z
        for layer in self.decoder[:-1]:
            h = torch.tanh(layer(h))
        last = self.decoder[-1]
        if self.features is None:
            return last(h)
        mask = self.id_mask if mask is None else mask
        # one product over the catalogue: an item's output row is its (masked) id row plus its
        # feature vector, and its bias the (masked) id bias plus its feature scalar
        weight, bias = _linear_parts(last)
        vectors, scalars = self.features()
        mask = mask.to(weight.dtype)
        logits = F.linear(h, weight * mask[:, None] + vectors.to(weight.dtype),
                          bias * mask + scalars.to(weight.dtype))
        if self.training:  # items without an id have nothing to learn from: out of the softmax
            logits = logits.masked_fill(self.id_mask == 0, NO_ID_LOGIT)
        return logits

    def _noise(self, std: torch.Tensor) -> torch.Tensor:
        """Standard normal noise for the reparameterisation (a hook for tests)."""
        return torch.randn_like(std)

    def forward(
        self, x: torch.Tensor, u: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Logits, code mean and log-variance for binary rows ``x`` of shape (B, n_items)
        (and the users' side features ``u``, if the module reads them).

        In training mode the Mult-VAE decodes a sample ``mu + exp(logvar / 2) * eps``; in
        evaluation mode it decodes the mean.
        """
        mask = self._mask()
        mu, logvar = self.encode(x, u)  # the input keeps every id: only the output drops them
        z = mu
        if logvar is not None and self.training:
            std = torch.exp(0.5 * logvar.float())
            z = mu.float() + std * self._noise(std)
        return self.decode(z, mask), mu, logvar

    def item_vectors(self) -> torch.Tensor:
        """The rows ``(n_items, width)`` of the last decoder layer: each item's output vector
        (dequantized in an int8 inference copy)."""
        return _linear_parts(self.decoder[-1])[0]

    def scores(self, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic logits (posterior mean, no dropout) for binary rows ``x`` (and the
        users' side features ``u``, if the module reads them)."""
        mu, _ = self.encode(x, u, dropout=False)
        return self.decode(mu)


def _linear_parts(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight and bias of a linear layer as tensors (dequantized in an int8 inference copy,
    whose dynamically quantized layers hand them out by method)."""
    weight, bias = layer.weight, layer.bias
    if callable(weight):
        return weight().dequantize(), bias()
    return weight, bias


def multinomial_elbo_loss(
    logits: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor | None = None,
    logvar: torch.Tensor | None = None,
    beta: float = 0.0,
) -> torch.Tensor:
    """Multinomial negative log-likelihood plus ``beta`` times the KL term, summed over users.

    ``-sum_i x_ui * log_softmax(logits_u)_i + beta * KL(N(mu_u, exp(logvar_u)) || N(0, I))``,
    summed over the rows (users) of the batch; the caller divides by the number of users.
    Logits are upcast to fp32 before the log-softmax.

    Parameters
    ----------
    logits : torch.Tensor of shape (B, n_items)
        Decoder output.
    x : torch.Tensor of shape (B, n_items)
        Binary interactions (the reconstruction target).
    mu, logvar : torch.Tensor of shape (B, latent_dim) or None, default=None
        Posterior parameters; the KL term is dropped when ``logvar`` is ``None`` (Mult-DAE).
    beta : float, default=0.0
        Weight of the KL term.

    Returns
    -------
    loss : torch.Tensor
        fp32 scalar: the sum over users.
    """
    log_probs = F.log_softmax(logits.float(), dim=1)
    loss = -(log_probs * x.float()).sum()
    if logvar is not None and mu is not None and beta:
        mu32, logvar32 = mu.float(), logvar.float()
        kl = 0.5 * (mu32.pow(2) + logvar32.exp() - 1.0 - logvar32).sum()
        loss = loss + float(beta) * kl
    return loss
