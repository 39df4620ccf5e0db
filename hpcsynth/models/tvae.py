"""TVAE: the tabular variational autoencoder of Xu et al. (NeurIPS 2019, "Modeling Tabular Data using
Conditional GAN"), as in SDV's `ctgan.TVAE`, on hpcsynth's shared transforms.

Encoder and decoder are two hidden ReLU layers each (128, 128 by default, as SDV). Numeric blocks are already
standard normal after the quantile transform, so the decoder outputs them linearly (SDV's tanh suits its
mode-specific normalisation, not a Gaussian) with a learned per-column scale sigma, clamped to [0.01, 1] after
every step as in SDV; categorical and missingness blocks are softmax with cross-entropy. The loss is SDV's:
loss_factor * (reconstruction) + KL, both averaged over the rows of the batch, so that the loss of a pooled batch
is the size-weighted mean of the sites' losses — which is what makes FedAvg of one full-batch SGD step equal to
one pooled step.

At sampling time categorical blocks are drawn from the softmax (SDV takes the argmax, which erases rare
levels) and numeric values get the learned sigma as noise, as SDV does.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from hpcsynth.models.base import Generator


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class _Encoder(nn.Module):
    def __init__(self, width: int, hidden: list[int], latent: int) -> None:
        super().__init__()
        self.body = _mlp([width, *hidden])
        self.mu = nn.Linear(hidden[-1], latent)
        self.logvar = nn.Linear(hidden[-1], latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu(h), self.logvar(h)


class _Decoder(nn.Module):
    def __init__(self, latent: int, hidden: list[int], width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_mlp([latent, *hidden]), nn.Linear(hidden[-1], width))
        self.sigma = nn.Parameter(torch.ones(width) * 0.1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


def _span_indices(spans: list[tuple[str, int]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Column indices of the Gaussian outputs, and of the softmax blocks grouped by width (one (k, width)
    index tensor per width), so the loss is a handful of batched operations however many columns there are."""
    gaussian, groups, start = [], {}, 0
    for kind, width in spans:
        if kind == "gaussian":
            gaussian.append(start)
        else:
            groups.setdefault(width, []).append(list(range(start, start + width)))
        start += width
    return torch.tensor(gaussian, dtype=torch.long), [torch.tensor(g, dtype=torch.long) for g in groups.values()]


class TVAE(Generator):
    """Tabular VAE. `TVAE(epochs=300).fit(df).sample(1000)` in one process; federated through the protocol."""

    def __init__(self, epochs: int = 300, batch_size: int = 500, hidden: list[int] = (128, 128),
                 latent_dim: int = 128, loss_factor: float = 2.0, **kwargs) -> None:
        super().__init__(epochs=epochs, batch_size=batch_size, **kwargs)
        self.hidden = hidden
        self.latent_dim = latent_dim
        self.loss_factor = loss_factor

    def _build(self, spans: list[tuple[str, int]]) -> list[nn.Module]:
        width = sum(w for _, w in spans)
        self.gaussian_, self.softmax_groups_ = _span_indices(spans)
        self.latent_target_ = None  # (mean, variance, weight) when a strategy aligns latent spaces
        self.encoder_ = _Encoder(width, list(self.hidden), self.latent_dim)
        self.decoder_ = _Decoder(self.latent_dim, list(self.hidden), width)
        return [self.encoder_, self.decoder_]

    supports_privacy = True

    def loss_noise(self, n: int) -> torch.Tensor:
        """The reparameterisation draw of `n` rows."""
        return torch.randn((n, self.latent_dim), generator=self.train_generator_, device=self.device_)

    def loss(self, batch: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over rows of loss_factor * reconstruction + KL; `noise` is the reparameterisation draw."""
        mu, logvar = self.encoder_(batch)
        std = torch.exp(0.5 * logvar)
        if noise is None:
            noise = self.loss_noise(batch.shape[0])
        recon = self.decoder_(noise * std + mu)
        n = batch.shape[0]
        g = self.gaussian_.to(batch.device)
        s = self.decoder_.sigma[g]
        reconstruction = ((batch[:, g] - recon[:, g]) ** 2 / 2 / s**2).sum() + torch.log(s).sum() * n
        for idx in self.softmax_groups_:
            idx = idx.to(batch.device)
            logits, target = recon[:, idx], batch[:, idx].argmax(dim=2)
            reconstruction = reconstruction + F.cross_entropy(logits.transpose(1, 2), target, reduction="sum")
        kl = -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp())
        return (self.loss_factor * reconstruction + kl) / n + self._alignment(mu)

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

    def _generate(self, n: int, generator: torch.Generator) -> torch.Tensor:
        for m in self.modules_:
            m.eval()
        z = self._latent(n, generator)
        out = self.decoder_(z)
        idx = self.gaussian_.to(out.device)
        noise = torch.randn((n, idx.numel()), generator=generator, device=out.device)
        out[:, idx] = out[:, idx] + noise * self.decoder_.sigma[idx]
        return out
