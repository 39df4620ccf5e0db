"""TVAE: the tabular variational autoencoder of Xu et al. (NeurIPS 2019), as SDV's `ctgan.TVAE`, on hpcsynth's
shared transforms.

Two ReLU layers each for encoder and decoder; numeric blocks (standard normal after the quantile transform) are
decoded linearly with a learned per-column scale, softmax blocks with cross-entropy; the loss is SDV's,
loss_factor * reconstruction + KL, averaged over the rows of the batch. The networks work in a column order of
their own (`layout.column_order`) so that the loss is a handful of operations whatever the number of columns,
and a training step is a pure function that torch.compile can take whole. Conditions are met by rejection.
Design notes and measurements: docs/notes/models.md.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from hpcsynth.models.layout import column_order
from hpcsynth.models.protocol import OPTIMISER_PARAMETERS, GradientGenerator, documents_parameters


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


def _affine(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """`layer(x)` with the bias added apart from the product. Under bfloat16 autocast the bias then goes in
    in float32, and torch.compile fuses it into the activation that follows: a bfloat16 `addmm` with a broadcast
    bias is a copy and a slower product on the CPU."""
    return torch.mm(x, layer.weight.t()) + layer.bias


def _run(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """`layers(x)` for a stack of Linear and ReLU layers, through `_affine`."""
    for layer in layers:
        x = _run(layer, x) if isinstance(layer, nn.Sequential) else (
            _affine(x, layer) if isinstance(layer, nn.Linear) else layer(x))
    return x


def _levels_logsumexp(logits: torch.Tensor) -> torch.Tensor:
    """The log-sum-exp over the first (levels) dimension of a (levels, m) tensor, written level by level so that
    torch.compile vectorises it along m (its `logsumexp` over a short leading dimension compiles to a scalar loop
    on the CPU, several times slower). The shift by the maximum is detached: it leaves the value and the
    gradient unchanged."""
    levels = logits.unbind(0)
    top = functools.reduce(torch.maximum, levels).detach()
    return torch.log(sum(torch.exp(level - top) for level in levels)) + top


class _Encoder(nn.Module):
    """The hidden layers, then one product for the latent mean and log-variance together. It reads the columns
    in the networks' order (`column_order`): `forward(x)` takes encoded rows as they are and reorders them,
    `forward(x, ordered=True)` rows already in that order (training keeps a reordered copy of its data)."""

    def __init__(self, width: int, hidden: list[int], latent: int, order: torch.Tensor) -> None:
        super().__init__()
        self.body = _mlp([width, *hidden])
        self.head = nn.Linear(hidden[-1], 2 * latent)
        self.order = order

    def forward(self, x: torch.Tensor, ordered: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = _affine(_run(self.body, x if ordered else x[:, self.order]), self.head).chunk(2, dim=1)
        return mu, logvar


class _Decoder(nn.Module):
    """Outputs in the loss's column order (`column_order`), with one learned scale per Gaussian column.
    `forward(z)` gives rows; `columns(z)` the same outputs transposed, one row per output column, which is the
    layout the loss reads fastest (each softmax level a contiguous run over the batch)."""

    def __init__(self, latent: int, hidden: list[int], width: int, n_gaussian: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_mlp([latent, *hidden]), nn.Linear(hidden[-1], width))
        self.sigma = nn.Parameter(torch.ones(n_gaussian) * 0.1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _run(self.body, z)

    def columns(self, z: torch.Tensor) -> torch.Tensor:
        hidden, out = self.body
        return torch.mm(out.weight, _run(hidden, z).t()) + out.bias[:, None]


VAE_PARAMETERS = """
    hidden : list of int, default (128, 128)
        Widths of the encoder's hidden layers (the decoder's, mirrored).
    latent_dim : int, default 128
        Dimension of the latent space.
    loss_factor : float, default 2.0
        Weight of the reconstruction term against the KL term.
"""


@documents_parameters(VAE_PARAMETERS, OPTIMISER_PARAMETERS)
class TVAE(GradientGenerator):
    """Tabular VAE: `TVAE(epochs=300).fit(df).sample(1000)` in one process; federated through the protocol.

    Parameters
    ----------
    """

    name = "tvae"
    has_latent = True
    dp_sgd = True
    supports_privacy = True
    compilable = True
    survival_aware = True
    compile_min_steps = 20000  # `compile="auto"`: a step saves about 1.5 ms compiled (float32, one CPU thread)

    def __init__(self, *, epochs: int = 300, batch_size: int = 500, hidden: list[int] = (128, 128),
                 latent_dim: int = 128, loss_factor: float = 2.0, lr: float = 1e-3, weight_decay: float = 1e-5,
                 optimizer: str = "adam", device: str = "auto", seed: int = 0, categorical: list[str] = (),
                 time: str | None = None, event: str | None = None, numeric: str | None = None,
                 precision: str = "fp32", compile: str | bool = "auto", progress: bool = False) -> None:
        super().__init__(epochs=epochs, batch_size=batch_size, device=device, seed=seed, categorical=categorical,
                         time=time, event=event, numeric=numeric, precision=precision, compile=compile,
                         progress=progress)
        self.hidden = hidden
        self.latent_dim = latent_dim
        self.loss_factor = loss_factor
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer

    def _build(self, spans: list[tuple[str, int]]) -> list[nn.Module]:
        """The encoder and decoder over the encoded columns. With a survival time and event
        (`survival_layout_`) they model the covariates only, and the survival head after them
        (`hpcsynth.models.time_head`) the event and the time given the covariates; the training layout is then
        the covariates (in the networks' order), the event's block, the time's value."""
        survival = self.survival_layout_
        target_spans = survival.covariate_spans if survival else spans
        width = sum(w for _, w in target_spans)
        order, self.n_gaussian_, self.softmax_groups_ = column_order(target_spans)
        self.part_sizes_ = [self.n_gaussian_] + [w * c for w, c in self.softmax_groups_]
        self.n_targets_ = width
        if survival:  # positions in the covariates' layout -> the transform's columns, then the event, the time
            order = torch.cat([torch.tensor(survival.covariates)[order], torch.tensor(survival.event),
                               torch.tensor([survival.time])])
        self.order_, self.inv_order_ = order.to(self.device_), torch.argsort(order).to(self.device_)
        self.latent_target_ = None  # (mean, variance, weight) when a strategy aligns latent spaces
        self.encoder_ = _Encoder(width, list(self.hidden), self.latent_dim, self.order_[:width])
        self.decoder_ = _Decoder(self.latent_dim, list(self.hidden), width, self.n_gaussian_)
        self._ordered_for, self._ordered = None, None
        if not survival:
            self.time_head_ = None
            return [self.encoder_, self.decoder_]
        self.time_head_ = self._time_head(self.order_)
        return [self.encoder_, self.decoder_, self.time_head_]

    def loss_noise(self, n: int) -> torch.Tensor:
        """The reparameterisation draw of `n` rows."""
        return torch.randn((n, self.latent_dim), generator=self.train_generator_, device=self.device_)

    def loss(self, batch: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over rows of loss_factor * reconstruction + KL; `noise` is the reparameterisation draw."""
        if noise is None:
            noise = self.loss_noise(batch.shape[0])
        return self._ordered_loss(batch[:, self.order_], noise)

    def _train_rows(self, data: torch.Tensor) -> torch.Tensor:
        """Training draws its batches from a copy of the data in the networks' column order (made once)."""
        if self._ordered_for is not data:
            self._ordered_for, self._ordered = data, data[:, self.order_]
        return self._ordered

    def _train_loss(self, batch: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self._ordered_loss(batch, noise)

    def _ordered_loss(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The loss of rows `x` with their columns in the networks' order. The reconstruction term reads the
        decoder's outputs and the rows transposed (`_Decoder.columns`), split into the Gaussian part and one part
        per softmax group, so every term is a vectorised pass over contiguous memory."""
        rows = x
        if self.time_head_ is not None:  # the covariates, then the event and the time (the survival head's)
            x = x[:, :self.n_targets_]
        mu, logvar = self.encoder_(x, ordered=True)
        std = torch.exp(0.5 * logvar)
        outputs = self.decoder_.columns(noise * std + mu).float().split(self.part_sizes_)
        targets = x.t().split(self.part_sizes_)
        n, s = x.shape[0], self.decoder_.sigma
        reconstruction = (((targets[0] - outputs[0]) ** 2).sum(1) * (0.5 / s**2)).sum() + torch.log(s).sum() * n
        # the cross-entropy of every softmax block against its one-hot target: the log-sum-exp of its logits
        # less the target's logit
        for (width, count), logits, target in zip(self.softmax_groups_, outputs[1:], targets[1:]):
            reconstruction = (reconstruction + _levels_logsumexp(logits.reshape(width, count * n)).sum()
                              - (target * logits).sum())
        mu, logvar, std = mu.float(), logvar.float(), std.float()
        kl = -0.5 * torch.sum(1 + logvar - mu**2 - std * std)
        if self.time_head_ is not None:
            reconstruction = reconstruction + self.time_head_.loss(rows)
        return (self.loss_factor * reconstruction + kl) / n + self._alignment(mu)

    def _compile_key(self) -> tuple:
        """Whether the loss has the latent-alignment penalty, and its weight (the targets are tensors a compiled
        loss reads anew at every call)."""
        return (None,) if self.latent_target_ is None else (self.latent_target_[2],)

    def _alignment(self, mu: torch.Tensor) -> torch.Tensor:
        """The latent-alignment penalty: the batch's latent moments against the pooled ones (0 without)."""
        if self.latent_target_ is None:
            return mu.new_zeros(())
        mean, var, weight = self.latent_target_
        return weight * (((mu.mean(0) - mean) ** 2).sum() + ((mu.var(0, unbiased=False) - var) ** 2).sum())

    def _after_step(self) -> None:
        self.decoder_.sigma.data.clamp_(0.01, 1.0)

    def _latent(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Draws from the sampling prior: the standard normal of the VAE's objective, or the pooled latent
        Gaussian when the sites aligned their latent spaces."""
        z = torch.randn((n, self.latent_dim), generator=generator, device=self.device_)
        if self.latent_target_ is None:
            return z
        mean, var, _ = self.latent_target_
        return mean + var.sqrt() * z

    def _fitted_arrays(self) -> dict[str, np.ndarray]:
        """The weights, and the pooled latent moments when a strategy aligned the sites' latent spaces."""
        arrays = super()._fitted_arrays()
        if self.latent_target_ is not None:
            mean, var, weight = self.latent_target_
            arrays.update(latent_mean=mean.cpu().numpy(), latent_var=var.cpu().numpy(),
                          latent_weight=np.array(weight))
        return arrays

    def _load_fitted_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        super()._load_fitted_arrays(arrays)
        if "latent_mean" in arrays:
            self.latent_target_ = (torch.as_tensor(arrays["latent_mean"], device=self.device_),
                                   torch.as_tensor(arrays["latent_var"], device=self.device_),
                                   float(arrays["latent_weight"]))

    def _generate(self, n: int, generator: torch.Generator, codes: dict[int, int]) -> torch.Tensor:
        z = self._latent(n, generator)
        out = self.decoder_(z)
        g = self.n_gaussian_
        noise = torch.randn((n, g), generator=generator, device=out.device)
        out[:, :g] += noise * self.decoder_.sigma
        if self.time_head_ is None:
            return out[:, self.inv_order_]
        return self._outcome_of(out, self.order_[:self.n_targets_], generator, self.order_)
