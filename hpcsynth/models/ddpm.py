"""TabDDPM: denoising diffusion for mixed-type tables (Kotelnikov et al., ICML 2023) on the shared transforms.

Numeric blocks follow Gaussian diffusion with epsilon prediction (Ho et al. 2020), softmax blocks multinomial
diffusion (Hoogeboom et al. 2021), both on the cosine schedule (Nichol & Dhariwal 2021); the loss is TabDDPM's
noise error plus the multinomial bound's term weighted by 1 / p(t). The denoiser is TabDDPM's MLPDiffusion.
Sampling runs a few evenly spaced steps of the ancestral chain (by default) or of DDIM; conditions are met by
inpainting (the conditioned blocks are held at their level at every reverse step). With a survival time and
event declared the chain diffuses the covariates only, and the survival head (`hpcsynth.models.time_head`) draws
the event and the time given them (SurvivalGAN's order, as TVAE). Design notes and measurements:
docs/notes/models.md and docs/survival.md.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from scipy.special import ndtri
from torch import nn
from torch.nn import functional as F

from hpcsynth.models.conditions import rejection_sample
from hpcsynth.models.estimator import Draw
from hpcsynth.models.layout import span_indices
from hpcsynth.models.protocol import OPTIMISER_PARAMETERS, GradientGenerator, documents_parameters
from hpcsynth.models.tvae import _mlp

_Z_MAX = float(ndtri(1 - 1e-6))  # the shared quantile transform's normal scores lie in [-_Z_MAX, _Z_MAX]
SAMPLERS = ("ddim", "ancestral")


def cosine_alpha_bar(steps: int, s: float = 0.008) -> np.ndarray:
    """abar_t for t = 0..steps-1 of the cosine schedule, with each beta_t capped at 0.999 (Nichol & Dhariwal)."""
    f = np.cos((np.arange(steps + 1) / steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = np.minimum(1 - f[1:] / f[:-1], 0.999)
    return np.cumprod(1 - betas)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps: cos and sin at geometric frequencies from 1 to 1/10000."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class _Denoiser(nn.Module):
    def __init__(self, width: int, hidden: list[int], time_dim: int) -> None:
        super().__init__()
        self.time_dim = time_dim
        self.proj = nn.Linear(width, time_dim)
        self.time = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.body = nn.Sequential(_mlp([time_dim, *hidden]), nn.Linear(hidden[-1], width))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.body(self.proj(x) + self.time(timestep_embedding(t, self.time_dim)))


def _draw_one_hot(probs: torch.Tensor, generator: torch.Generator | None = None,
                  uniform: torch.Tensor | None = None) -> torch.Tensor:
    """One category per (row, column) from probabilities over the last axis, as one-hot (inverse CDF), from
    `uniform` draws of shape (..., 1) when given (DP-SGD draws them outside the loss), else from `generator`."""
    cdf = probs.cumsum(-1)
    if uniform is None:
        uniform = torch.rand(probs.shape[:-1] + (1,), generator=generator, device=probs.device)
    index = (uniform * cdf[..., -1:] > cdf).sum(-1).clamp(max=probs.shape[-1] - 1)
    return (index[..., None] == torch.arange(probs.shape[-1], device=probs.device)).to(probs.dtype)


def _posterior(x_t: torch.Tensor, x0: torch.Tensor, alpha: torch.Tensor, abar_prev: torch.Tensor) -> torch.Tensor:
    """q(x_prev | x_t, x0) of multinomial diffusion, with `alpha` the one-jump keep rate and `abar_prev` the
    cumulative keep rate of the earlier state (1 at the end of the chain). Shapes (..., K); rates broadcast."""
    k = x_t.shape[-1]
    unnormalised = (alpha * x_t + (1 - alpha) / k) * (abar_prev * x0 + (1 - abar_prev) / k)
    return unnormalised / unnormalised.sum(-1, keepdim=True)


def _log_posterior(x_t: torch.Tensor, log_x0: torch.Tensor, alpha: torch.Tensor, abar_prev: torch.Tensor
                   ) -> torch.Tensor:
    """log q(x_prev | x_t, x0) as `_posterior`, from log-probabilities of x0 (the denoiser's log-softmax), in log
    space (Hoogeboom et al. 2021): at the chain's end (abar_prev = 1) the prior term is the predicted x0 itself,
    and in probability space a category the model rules out underflows to 0 and its gradient dies with it."""
    k = x_t.shape[-1]
    log_likelihood = torch.log(alpha * x_t + (1 - alpha) / k)
    log_prior = torch.logaddexp(torch.log(abar_prev) + log_x0, torch.log((1 - abar_prev) / k))
    unnormalised = log_likelihood + log_prior
    return unnormalised - unnormalised.logsumexp(-1, keepdim=True)


@documents_parameters(OPTIMISER_PARAMETERS)
class TabDDPM(GradientGenerator):
    """Tabular diffusion: `TabDDPM(epochs=300).fit(df).sample(1000, conditions={"os_event": 1})`.

    With `time` and `event` declared (the time quantile-encoded) the denoiser diffuses the covariates only, and a
    survival head in the same flat buffer draws the event and the time given them (`time_head_`); a condition on
    the event is then met by keeping the draws with its level, those on covariates by inpainting as before.

    Parameters
    ----------
    hidden : list of int, default (256, 256)
        Widths of the denoiser's hidden layers.
    time_dim : int, default 128
        Width of the timestep embedding and of the input projection.
    diffusion_steps : int, default 1000
        Steps of the forward (noising) chain.
    sampler : {"ancestral", "ddim"}, default "ancestral"
        The reverse process over the `sample_steps` steps. "ancestral" draws every block from the exact posterior
        of the strided chain, q(x_s | x_t, x0_hat) with abar_t / abar_s in place of alpha_t (Nichol & Dhariwal
        2021; multinomial: Hoogeboom et al. 2021). "ddim" is deterministic for the numeric blocks (DDIM with
        eta = 0, Song et al. 2021): each step moves to the predicted x_0 renoised with the noise it implies.
        Multinomial diffusion has no deterministic counterpart (an argmax would give every row the mode), so
        under "ddim" too each categorical block takes the strided posterior, drawn from the seeded generator.
        Both are functions of the sampling seed. Measured on flchain (benchmarks/ddpm_sampler.py), DDIM's
        quality is 0.024 below the 1,000-step chain at 50 steps and 0.04 at 20, the ancestral sampler's at 50
        steps within 0.003 of it, hence the default.
    sample_steps : int or None, default 50
        Reverse steps at sampling time, evenly spaced over the chain from its last step to step 0; None runs all
        `diffusion_steps`. Fifty steps sample about 10 times faster than 1,000.
    """

    name = "ddpm"
    dp_sgd = True
    supports_privacy = True
    native_conditions = True
    survival_aware = True

    def __init__(self, *, epochs: int = 300, batch_size: int = 500, hidden: list[int] = (256, 256),
                 time_dim: int = 128, diffusion_steps: int = 1000, sampler: str = "ancestral",
                 sample_steps: int | None = 50,
                 lr: float = 1e-3, weight_decay: float = 1e-5, optimizer: str = "adam", device: str = "auto",
                 seed: int = 0, categorical: list[str] = (), time: str | None = None, event: str | None = None,
                 numeric: str | None = None, precision: str = "fp32", compile: str | bool = "auto",
                 progress: bool = False) -> None:
        super().__init__(epochs=epochs, batch_size=batch_size, device=device, seed=seed, categorical=categorical,
                         time=time, event=event, numeric=numeric, precision=precision, compile=compile,
                         progress=progress)
        self.hidden = hidden
        self.time_dim = time_dim
        self.diffusion_steps = diffusion_steps
        self.sampler = sampler
        self.sample_steps = sample_steps
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer

    def _build(self, spans: list[tuple[str, int]]) -> list[nn.Module]:
        """The denoiser over the encoded columns. With a survival time and event (`survival_layout_`) it diffuses
        the covariates only (`columns_`), and the survival head after it models the event and the time given
        them; the head reads rows laid out as `order_`: the covariates, the event's block, the time's value."""
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler: expected {' or '.join(SAMPLERS)}, got {self.sampler!r}")
        survival = self.survival_layout_
        target_spans = survival.covariate_spans if survival else spans
        self.columns_ = survival.covariates if survival else list(range(sum(w for _, w in spans)))
        width = len(self.columns_)
        gaussian, groups = span_indices(target_spans)
        self.gaussian_ = gaussian.to(self.device_)
        self.softmax_groups_ = [g.to(self.device_) for g in groups]
        self.n_categorical_ = sum(g.shape[0] for g in groups)
        abar = cosine_alpha_bar(self.diffusion_steps)
        self.abar_ = torch.tensor(abar, dtype=torch.float32, device=self.device_)
        self.abar_prev_ = torch.tensor(np.concatenate([[1.0], abar[:-1]]), dtype=torch.float32, device=self.device_)
        self.denoiser_ = _Denoiser(width, list(self.hidden), self.time_dim)
        if not survival:
            self.time_head_ = None
            return [self.denoiser_]
        self.order_ = torch.tensor([*survival.covariates, *survival.event, survival.time], device=self.device_)
        self.time_head_ = self._time_head(self.order_)
        return [self.denoiser_, self.time_head_]

    # -- training -----------------------------------------------------------------------------------------
    def loss_noise(self, n: int) -> torch.Tensor:
        """Every draw the loss of `n` rows needs, in one (n, 1 + gaussian + categorical blocks) tensor: the
        timestep, the Gaussian noise and one uniform per categorical block."""
        device = self.device_
        t = torch.randint(0, self.diffusion_steps, (n, 1), generator=self.train_generator_, device=device)
        noise = torch.randn((n, self.gaussian_.numel()), generator=self.train_generator_, device=device)
        blocks = sum(idx.shape[0] for idx in self.softmax_groups_)
        uniform = torch.rand((n, blocks), generator=self.train_generator_, device=device)
        return torch.cat([t.float(), noise, uniform], dim=1)

    def loss(self, batch: torch.Tensor, draws: torch.Tensor | None = None) -> torch.Tensor:
        """The mean over rows of the denoising loss of the diffused columns (`_denoising_loss`) and, with a
        survival head, of the head's cross-entropy of each row's (event, time bin); `draws` are `loss_noise`'s.
        The head's loss is a sum over rows, hence divided by the rows here, and both stay per-row sums over n
        (what DP-SGD's per-sample gradients need)."""
        draws = self.loss_noise(batch.shape[0]) if draws is None else draws
        if self.time_head_ is None:
            return self._denoising_loss(batch, draws)
        rows = batch[:, self.order_]
        return (self._denoising_loss(rows[:, :len(self.columns_)], draws)
                + self.time_head_.loss(rows) / batch.shape[0])

    def _denoising_loss(self, batch: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """TabDDPM's loss of rows of the diffused columns: the noise error plus the multinomial bound's term."""
        n, g = batch.shape[0], self.gaussian_
        t = draws[:, 0].long()
        abar, abar_prev = self.abar_[t][:, None], self.abar_prev_[t][:, None]
        noise = draws[:, 1:1 + g.numel()]
        uniforms = draws[:, 1 + g.numel():]
        x_t = batch.clone()
        x_t[:, g] = abar.sqrt() * batch[:, g] + (1 - abar).sqrt() * noise
        used = 0
        for idx in self.softmax_groups_:
            u = uniforms[:, used:used + idx.shape[0], None]
            used += idx.shape[0]
            x_t[:, idx] = _draw_one_hot(abar[..., None] * batch[:, idx] + (1 - abar[..., None]) / idx.shape[1],
                                        uniform=u)
        out = self.denoiser_(x_t, t)
        total = ((out[:, g] - noise) ** 2).mean(dim=1).mean() if g.numel() else batch.new_zeros(())
        if self.n_categorical_:
            kl = batch.new_zeros(())
            alpha = (abar / abar_prev)[..., None]
            for idx in self.softmax_groups_:
                x0, xt = batch[:, idx], x_t[:, idx]
                true = _posterior(xt, x0, alpha, abar_prev[..., None])
                log_pred = _log_posterior(xt, F.log_softmax(out[:, idx].float(), dim=-1), alpha, abar_prev[..., None])
                kl = kl + (torch.xlogy(true, true) - true * log_pred).sum()
            # L_t / p(t) with p(t) = 1 / diffusion_steps: the stochastic estimate of the whole bound (TabDDPM's
            # `kl / pt`), not the one term L_t, which is O(beta_t) and would leave the categories untrained
            total = total + kl * self.diffusion_steps / (n * self.n_categorical_)
        return total

    # -- sampling -----------------------------------------------------------------------------------------
    def _timesteps(self) -> list[int]:
        count = min(self.sample_steps or self.diffusion_steps, self.diffusion_steps)
        return sorted({int(round(v)) for v in np.linspace(0, self.diffusion_steps - 1, count)})

    def _sampler(self, seed: int) -> Draw:
        """The protocol's draw; with a survival head a condition on the event is met by rejection (the event is
        drawn after the chain, given the covariates, so keeping the draws of its level is what samples the
        covariates given the event), the other conditions by inpainting within each draw."""
        draw = super()._sampler(seed)
        if self.time_head_ is None:
            return draw
        event = self.transformer_.columns.index(self.transformer_.event)

        def survival_draw(n: int, codes: dict[int, int]) -> pd.DataFrame:
            if event not in codes:
                return draw(n, codes)
            covariates = {i: code for i, code in codes.items() if i != event}
            return rejection_sample(lambda m: draw(m, covariates), n, {event: codes[event]}, self.transformer_)

        return survival_draw

    def _generate(self, n: int, generator: torch.Generator, codes: dict[int, int]) -> torch.Tensor:
        """Reverse diffusion of the diffused columns; with a survival head, then the event and the time given
        them (`_with_outcome`), in the transform's layout."""
        x = self._reverse_chain(n, generator, codes)
        if self.time_head_ is None:
            return x
        return self._outcome_of(x, self.columns_, generator, self.order_)

    def _reverse_chain(self, n: int, generator: torch.Generator, codes: dict[int, int]) -> torch.Tensor:
        """Reverse diffusion over the respaced steps (`sampler`) in the denoiser's columns (`columns_`); the
        blocks of the columns in `codes` {column: level} are inpainted with their levels."""
        starts = np.cumsum([0] + [t.width for t in self.transformer_.transforms_])
        blocks = {self.columns_.index(int(starts[i])): (self.transformer_.transforms_[i].width, code)
                  for i, code in codes.items()}
        width = len(self.columns_)
        g, device = self.gaussian_, self.device_
        x = torch.empty((n, width), device=device)
        x[:, g] = torch.randn((n, g.numel()), generator=generator, device=device)
        for idx in self.softmax_groups_:
            x[:, idx] = _draw_one_hot(torch.full((n, idx.shape[0], idx.shape[1]), 1.0 / idx.shape[1], device=device),
                                      generator)
        steps = self._timesteps()
        for k in reversed(range(len(steps))):
            t = steps[k]
            abar_t = self.abar_[t]
            abar_s = self.abar_[steps[k - 1]] if k > 0 else torch.ones((), device=device)
            alpha = abar_t / abar_s
            for start, (w, code) in blocks.items():
                x[:, start:start + w] = F.one_hot(torch.tensor(code, device=device), w).float()
            out = self.denoiser_(x, torch.full((n,), t, device=device, dtype=torch.long))
            x_next = torch.empty_like(x)
            x_next[:, g] = self._numeric_step(x[:, g], out[:, g], abar_t, abar_s, generator)
            for idx in self.softmax_groups_:
                log_probs = _log_posterior(x[:, idx], F.log_softmax(out[:, idx], dim=-1), alpha, abar_s)
                x_next[:, idx] = log_probs if k == 0 else _draw_one_hot(log_probs.exp(), generator)
            x = x_next
        for start, (w, code) in blocks.items():
            x[:, start:start + w] = torch.log(F.one_hot(torch.tensor(code, device=device), w).float()).expand(n, w)
        return x

    def _numeric_step(self, x: torch.Tensor, noise: torch.Tensor, abar_t: torch.Tensor, abar_s: torch.Tensor,
                      generator: torch.Generator) -> torch.Tensor:
        """The numeric blocks at the earlier step s from step t, given the predicted noise: the x_0 it implies
        (clipped to the transform's range), then DDIM's deterministic move or a draw from the posterior."""
        x0 = ((x - (1 - abar_t).sqrt() * noise) / abar_t.sqrt()).clamp(-_Z_MAX, _Z_MAX)
        if self.sampler == "ddim":  # the noise that the clipped x_0 implies, carried to step s
            implied = (x - abar_t.sqrt() * x0) / (1 - abar_t).sqrt()
            return abar_s.sqrt() * x0 + (1 - abar_s).sqrt() * implied
        alpha = abar_t / abar_s
        mean = (abar_s.sqrt() * (1 - alpha) * x0 + alpha.sqrt() * (1 - abar_s) * x) / (1 - abar_t)
        std = ((1 - alpha) * (1 - abar_s) / (1 - abar_t)).sqrt()
        return mean + std * torch.randn(mean.shape, generator=generator, device=x.device)
