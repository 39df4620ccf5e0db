"""Differential privacy for each site's training: DP-SGD (Abadi et al., CCS 2016) with Opacus's accountants.

Small objects, composed as Opacus composes them:
    Clipper          per-sample gradients g_i scaled to norm at most C and summed:  sum_i g_i * min(1, C / ||g_i||)
    GaussianNoise    N(0, (sigma * C)^2) on every coordinate of the summed clipped gradient (PhiloxNoise: the
                     same from the counter-based stream of hpcsynth.kernels, keyed by seed, rank and step)
    SiteAccountant   the privacy spent, by Opacus's RDP (Mironov 2017) or PRV (Gopi et al. 2021) accountant
    DPSGD            the private step that composes them (`make_dpsgd` calibrates it to a budget)
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from hpcsynth.data.accounting import calibrate, epsilon_of


class SiteAccountant:
    """Opacus's accountant for one site's steps, with a look-ahead for the loop's budget check.

    Parameters
    ----------
    kind : {"rdp", "prv"}
        Opacus's accountant (`privacy.accountant`).
    sigma : float
        The noise multiplier of every step.
    sample_rate : float
        The Poisson sampling rate q of every step.
    delta : float
        The delta at which epsilon is reported.
    budget : float
        The epsilon the site may spend.
    spent : sequence of (noise multiplier, sample rate, steps), default ()
        Releases made before training (the transform statistics'), as accountant history.
    """

    def __init__(self, kind: str, sigma: float, sample_rate: float, delta: float, budget: float,
                 spent: Sequence[tuple[float, float, int]] = ()) -> None:
        from opacus.accountants import create_accountant

        self.accountant = create_accountant(kind)
        self.accountant.history = list(spent)
        self.sigma, self.sample_rate, self.delta, self.budget = sigma, sample_rate, delta, budget

    def step(self) -> None:
        self.accountant.step(noise_multiplier=self.sigma, sample_rate=self.sample_rate)

    def epsilon(self) -> float:
        return epsilon_of(self.accountant, self.delta) if self.accountant.history else 0.0

    def epsilon_after(self, steps: int) -> float:
        """The epsilon spent if `steps` more steps were taken (on a copy: nothing is charged)."""
        ahead = copy.deepcopy(self.accountant)
        for _ in range(steps):
            ahead.step(noise_multiplier=self.sigma, sample_rate=self.sample_rate)
        return epsilon_of(ahead, self.delta)


class Clipper:
    """Per-sample gradients g_i scaled to norm at most `max_norm` and summed: sum_i g_i * min(1, C / ||g_i||).

    The gradients come as blocks, one per parameter tensor in the flat buffer's order, each (examples, *shape)
    as torch.func gives them. The norms are summed block by block and the clipped sum is one weighted sum per
    block: the (examples, parameters) matrix is never built (copying every block into it cost more than the
    per-sample gradients themselves).

    Parameters
    ----------
    max_norm : float
        The clipping norm C (`privacy.max_grad_norm`).
    """

    def __init__(self, max_norm: float) -> None:
        self.max_norm = max_norm

    def scales(self, blocks: Sequence[torch.Tensor]) -> torch.Tensor:
        """Each example's factor min(1, C / ||g_i||), its norm taken over every block."""
        squared = sum(torch.linalg.vector_norm(b, dim=tuple(range(1, b.ndim))) ** 2 for b in blocks)
        return torch.clamp(self.max_norm / (squared.sqrt() + 1e-12), max=1.0)

    def clipped_sum(self, blocks: Sequence[torch.Tensor]) -> torch.Tensor:
        """sum_i clip_C(g_i) as one flat vector, the blocks' parameters in order."""
        scale = self.scales(blocks)
        return torch.cat([torch.tensordot(scale, b, dims=1).reshape(-1) for b in blocks])


class GaussianNoise:
    """Gaussian noise of standard deviation sigma * C from the site's own seeded stream.

    Parameters
    ----------
    sigma : float
        The noise multiplier.
    max_norm : float
        The clipping norm C.
    generator : torch.Generator
        The site's seeded stream.
    """

    def __init__(self, sigma: float, max_norm: float, generator: torch.Generator) -> None:
        self.std = sigma * max_norm
        self.generator = generator

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=self.generator, device=like.device, dtype=like.dtype) * self.std

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def load_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


class PhiloxNoise:
    """Gaussian noise of standard deviation sigma * C from the counter-based stream of (seed, rank, step).

    Step s's noise depends only on (seed, rank, s, coordinate) (:func:`hpcsynth.kernels.gaussian_noise`): the
    stream's whole state is `step` (the calls so far), so a resumed job continues exactly where it stopped,
    and a CPU and a GPU run draw the same float32 numbers.

    Parameters
    ----------
    sigma : float
        The noise multiplier.
    max_norm : float
        The clipping norm C.
    seed, rank : int
        The job's seed and this rank: the stream's key.
    step : int, default 0
        Calls so far (where a resumed job continues).
    """

    def __init__(self, sigma: float, max_norm: float, seed: int, rank: int, step: int = 0) -> None:
        self.std = sigma * max_norm
        self.seed, self.rank, self.step = seed, rank, step

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        from hpcsynth.kernels import gaussian_noise

        flat = torch.empty(like.numel(), dtype=torch.float32, device=like.device)
        gaussian_noise(flat if flat.is_cuda else flat.numpy(), self.std, self.seed, self.rank, self.step)
        self.step += 1
        return flat.reshape(like.shape).to(like.dtype)

    def state(self) -> int:
        return self.step

    def load_state(self, state: int) -> None:
        self.step = int(state)


class _Loss(nn.Module):
    """The model's loss as a module over its networks, so torch.func can swap in parameters per sample."""

    def __init__(self, model) -> None:
        super().__init__()
        self.parts = nn.ModuleList(model.modules_)
        object.__setattr__(self, "model", model)

    def forward(self, batch: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.model.loss(batch, noise)


def make_dpsgd(epsilon: float, delta: float, max_grad_norm: float, accountant: str, sample_rate: float,
               steps: int, generator: torch.Generator | tuple[int, int],
               spent: Sequence[tuple[float, float, int]] = ()) -> DPSGD:
    """DP-SGD calibrated to spend exactly (epsilon, delta) in `steps` steps at `sample_rate`, together with what
    `spent` (accountant history, such as the transform statistics' releases) spent before; its noise from
    `generator`, or from the counter-based stream when given `(seed, rank)` instead (PhiloxNoise)."""
    sigma = calibrate(epsilon, delta, sample_rate, steps, accountant, spent)
    noise = (PhiloxNoise(sigma, max_grad_norm, *generator) if isinstance(generator, tuple)
             else GaussianNoise(sigma, max_grad_norm, generator))
    return DPSGD(sample_rate, Clipper(max_grad_norm), noise,
                 SiteAccountant(accountant, sigma, sample_rate, delta, epsilon, spent))


@dataclass
class DPSGD:
    """One private gradient per step, written into the model's flat gradient buffer.

    The step: a Poisson sample of the site's rows (each row with probability q, the subsampling the
    accountants assume), per-sample gradients by torch.func (vmap of grad of the model's own loss), clipping,
    noise, divided by the expected batch size q * n:

        g = (sum_i clip_C(g_i) + N(0, sigma^2 C^2 I)) / (q n)

    Each site is private with respect to its own rows: it calibrates its noise multiplier sigma for its own sample
    rate and planned number of steps so that the whole run spends exactly the budget (epsilon, delta), refuses to
    start when no sigma can meet it, and the round loop stops before a round that would exceed it. Whatever is
    aggregated afterwards (FedAvg, secure sums) is post-processing and spends nothing more.
    """

    sample_rate: float
    clipper: Clipper
    noise: GaussianNoise | PhiloxNoise
    accountant: SiteAccountant

    def attach(self, model) -> DPSGD:
        self.model = model
        self.loss_module = _Loss(model)
        self.names = [name for name, _ in self.loss_module.named_parameters()]

        def one_row(params: dict, row: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
            return functional_call(self.loss_module, params, (row[None], noise[None]))

        self.per_sample_grad = vmap(grad(one_row), in_dims=(None, 0, 0))
        return self

    def per_sample_gradients(self, batch: torch.Tensor, noise: torch.Tensor) -> list[torch.Tensor]:
        """The per-sample gradients, one (batch, *shape) block per parameter in the flat buffer's order."""
        params = {n: p.detach() for n, p in self.loss_module.named_parameters()}
        grads = self.per_sample_grad(params, batch, noise)
        return [grads[n] for n in self.names]

    def state(self) -> dict:
        """The privacy spent so far and the noise stream's position, for checkpoints."""
        return {"history": list(self.accountant.accountant.history), "noise": self.noise.state()}

    def load_state(self, state: dict) -> None:
        self.accountant.accountant.history = list(state["history"])
        self.noise.load_state(state["noise"])

    def poisson_sample(self, data: torch.Tensor) -> torch.Tensor:
        """This step's rows: each row of `data` kept with probability q, from the model's training stream."""
        chosen = torch.rand(data.shape[0], generator=self.model.train_generator_, device=data.device)
        return data[chosen < self.sample_rate]

    def release(self, per_sample: Sequence[torch.Tensor], out: torch.Tensor, n_rows: int) -> float:
        """The private step's gradient from the sample's per-sample gradient blocks (`per_sample_gradients`;
        none for an empty sample), written into `out`: clipped, summed, noised, over the expected batch q * n of
        a site of `n_rows` rows, and charged to the accountant; returns that expected batch."""
        expected = self.sample_rate * n_rows
        summed = self.clipper.clipped_sum(per_sample) if per_sample else 0.0
        out.copy_((summed + self.noise(out)) / expected)
        self.accountant.step()
        return expected

    def gradient(self, data: torch.Tensor) -> tuple[float, float]:
        """Fill the flat gradient for one step; return (the batch's mean loss, the expected batch rows)."""
        model = self.model
        batch = self.poisson_sample(data)
        noise = model.loss_noise(batch.shape[0])
        per_sample = self.per_sample_gradients(batch, noise) if len(batch) else []
        expected = self.release(per_sample, model.shared_gradients(), data.shape[0])
        with torch.no_grad():
            loss = float(model.loss(batch, noise)) if len(batch) else float("nan")
        return loss, expected
