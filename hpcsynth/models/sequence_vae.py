"""SequenceVAE: a temporal conditional VAE over patients' visit sequences, trained through the same federated
protocol, compile path and DP-SGD as the table generators.

Each patient is one row of `hpcsynth.data.sequence_transformer` (context, length, T_max visits of interval,
per-visit values with missingness flags and a visit-present mask), so the round loop's batches, DP-SGD's
per-sample clipping (per patient), secure aggregation and the strategies apply unchanged.

    encoder   a GRU over the present visits (absent ones leave its state unchanged), its last state with the
              context and the length into the latent mean and log-variance
    decoder   from the latent: the context and the length (one MLP); then a GRU that generates visit after visit,
              conditioned on the latent, the context and the length, fed the previous visit (teacher forcing in
              training, its own draws in sampling): the interval, each value and its missingness flag

The loss is TVAE's (loss_factor * reconstruction + KL, averaged over patients): Gaussian terms with a learned
scale per column, cross-entropy for every softmax block; a visit's terms count up to the patient's length, an
interval from the second visit on, and a value only where it was measured. The GRU cell is written out (no
cuDNN kernel), so torch.compile and torch.func's per-sample gradients take the whole step. Conditions on
context columns are met by rejection on the context the decoder draws first, before any visit is generated.

Sampling keeps the pooled length histogram. Decoded from the prior, the length head drew patients too short
(pbcseq: 4.6 visits against 6.3, a quarter more one-visit patients than real), a hole between the prior and the
encoder's aggregate posterior. So each drawn (latent, context, length) is accepted with probability proportional
to p(L) / q(L). Here p is the merged length histogram the shared transform already holds (`length_counts_`),
and q the model's own length distribution under the prior (its length softmax averaged over `LENGTH_PROBE`
prior draws). The lengths of a release then follow p, while the context and the visits keep the model's
conditional given the length. The ratio is capped at `MAX_LENGTH_WEIGHT`, which bounds the draws a patient costs.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from hpcsynth.data.sequence_transformer import SequenceTransformer, hard_logits
from hpcsynth.data.sequences import Sequences
from hpcsynth.models.conditions import condition_codes, rejection_sample
from hpcsynth.models.device import seeded_generator
from hpcsynth.models.layout import span_indices
from hpcsynth.models.tvae import TVAE, _mlp


class _GRU(nn.Module):
    """A one-layer GRU (PyTorch's gate order and equations) over its own parameters: ATen's fused kernel for
    whole sequences, or the cell written out step by step (`unrolled`), which torch.func's per-sample gradients
    can batch (DP-SGD) and sampling feeds one drawn visit at a time."""

    def __init__(self, inputs: int, hidden: int) -> None:
        super().__init__()
        self.inputs = nn.Linear(inputs, 3 * hidden)
        self.state = nn.Linear(hidden, 3 * hidden)

    def step(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step from inputs `x` (rows, inputs) and state `h` (rows, hidden)."""
        xr, xz, xn = self.inputs(x).chunk(3, dim=-1)
        hr, hz, hn = self.state(h).chunk(3, dim=-1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        return (1 - z) * torch.tanh(xn + r * hn) + z * h

    def run(self, x: torch.Tensor, h: torch.Tensor, unrolled: bool = False) -> torch.Tensor:
        """Every step's state (rows, steps, hidden) from inputs (rows, steps, inputs) and the first state."""
        if not unrolled:
            weights = [self.inputs.weight, self.state.weight, self.inputs.bias, self.state.bias]
            return torch.gru(x, h[None].contiguous(), weights, True, 1, 0.0, self.training, False, True)[0]
        states = []
        for t in range(x.shape[1]):
            h = self.step(x[:, t], h)
            states.append(h)
        return torch.stack(states, dim=1)


class _Layout:
    """Where the Gaussian values, their present flags and the softmax blocks of an output block lie."""

    def __init__(self, spans: list[tuple[str, int]], flags: list[int]) -> None:
        self.gaussian, self.groups = span_indices(spans)
        self.width = sum(w for _, w in spans)
        flags_t = torch.tensor(flags, dtype=torch.long)
        self.flagged = (flags_t >= 0).float()
        self.flags = flags_t.clamp(min=0)

    def to(self, device: torch.device) -> _Layout:
        for name in ("gaussian", "flagged", "flags"):
            setattr(self, name, getattr(self, name).to(device))
        self.groups = [g.to(device) for g in self.groups]
        return self

    def loss(self, target: torch.Tensor, out: torch.Tensor, sigma: torch.Tensor, weight: torch.Tensor,
             gaussian_weight: torch.Tensor | None = None) -> torch.Tensor:
        """The summed reconstruction loss of rows `target` (N, width) given outputs `out`, each row weighted by
        `weight` (N,), each Gaussian value also by its present flag and by `gaussian_weight` (N, Gaussians)."""
        total = out.new_zeros(())
        if len(self.gaussian):
            present = target[:, self.flags] * self.flagged + (1 - self.flagged)
            w = weight[:, None] * present * (1 if gaussian_weight is None else gaussian_weight)
            d = target[:, self.gaussian] - out[:, self.gaussian]
            total = total + (w * (d**2 * (0.5 / sigma**2) + torch.log(sigma))).sum()
        for group in self.groups:
            logits, onehot = out[:, group], target[:, group]
            cross = torch.logsumexp(logits, dim=-1) - (onehot * logits).sum(-1)
            total = total + (weight[:, None] * cross).sum()
        return total

    def draw(self, out: torch.Tensor, sigma: torch.Tensor,
             generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A draw from outputs `out`: (the drawn rows as encoded rows are, the same with each softmax block as
        logits of its drawn level, as the transforms decode them). A value whose flag came out missing is 0, as
        the encoding writes it."""
        drawn, logits = out.clone(), out.clone()
        if len(self.gaussian):
            noise = torch.randn((out.shape[0], len(self.gaussian)), generator=generator, device=out.device)
            drawn[:, self.gaussian] = out[:, self.gaussian] + noise * sigma
        for group in self.groups:
            k, width = group.shape
            p = torch.softmax(out[:, group].reshape(-1, width).float(), dim=-1)
            level = torch.multinomial(p, 1, generator=generator).reshape(-1, k)
            onehot = nn.functional.one_hot(level, width).to(out.dtype)
            drawn[:, group] = onehot
            logits[:, group] = hard_logits(onehot)
        if len(self.gaussian):
            present = drawn[:, self.flags] * self.flagged + (1 - self.flagged)
            drawn[:, self.gaussian] = drawn[:, self.gaussian] * present
            logits[:, self.gaussian] = drawn[:, self.gaussian]
        return drawn, logits


class _Encoder(nn.Module):
    """Encoded patient rows -> (latent mean, log-variance): a GRU over the visits, then an MLP."""

    def __init__(self, transformer: SequenceTransformer, hidden: list[int], gru_dim: int, latent: int) -> None:
        super().__init__()
        self.transformer = transformer
        static = transformer.context_.width + transformer.t_max_
        self.gru = _GRU(transformer.visit_width, gru_dim)
        self.body = _mlp([static + gru_dim, *hidden])
        self.head = nn.Linear(hidden[-1], 2 * latent)
        self.gru_dim = gru_dim

    def forward(self, x: torch.Tensor, unrolled: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The latent mean and log-variance of encoded rows `x`; the GRU's state after each patient's last visit
        (visits are left-aligned, so the steps after it do not change that state)."""
        static, visits = _parts(x, self.transformer)
        states = self.gru.run(visits, x.new_zeros((x.shape[0], self.gru_dim)), unrolled)
        last = (states * _last_visit(visits)[..., None]).sum(1)
        return self.head(self.body(torch.cat([static, last], dim=1))).chunk(2, dim=1)


class _Decoder(nn.Module):
    """Latent -> context and length outputs (`static`); latent, context and length -> visit outputs, one GRU step
    per visit (`visits` in training, fed the true previous visits; `generate` in sampling, fed its own draws)."""

    def __init__(self, transformer: SequenceTransformer, hidden: list[int], gru_dim: int, latent: int,
                 n_context_gaussian: int, n_visit_gaussian: int) -> None:
        super().__init__()
        self.transformer = transformer
        static = transformer.context_.width + transformer.t_max_
        self.static = nn.Sequential(_mlp([latent, *hidden]), nn.Linear(hidden[-1], static))
        self.start = nn.Linear(latent + static, gru_dim)
        self.gru = _GRU(transformer.visit_width + latent + static, gru_dim)
        self.out = nn.Linear(gru_dim, transformer.visit_width - 1)
        self.context_sigma = nn.Parameter(torch.ones(n_context_gaussian) * 0.1)
        self.visit_sigma = nn.Parameter(torch.ones(n_visit_gaussian) * 0.1)

    def visits(self, z: torch.Tensor, static: torch.Tensor, visits: torch.Tensor,
               unrolled: bool = False) -> torch.Tensor:
        """Visit outputs (rows, T_max, visit width - 1), each step fed the true previous visit with the latent,
        the context and the length."""
        given = torch.cat([z, static], dim=1)
        previous = torch.cat([torch.zeros_like(visits[:, :1]), visits[:, :-1]], dim=1)
        x = torch.cat([previous, given[:, None].expand(-1, visits.shape[1], -1)], dim=2)
        return self.out(self.gru.run(x, torch.tanh(self.start(given)), unrolled))

    def generate(self, z: torch.Tensor, static: torch.Tensor, lengths: torch.Tensor, layout: _Layout,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Visits drawn step by step (rows, T_max, visit width), softmax blocks as logits of the drawn levels,
        and the lengths: a patient ends at the first visit drawn at a level that ends follow-up (the
        transformer's `end_positions_`), as in the data, where such a visit is the last."""
        given = torch.cat([z, static], dim=1)
        h = torch.tanh(self.start(given))
        previous = z.new_zeros((z.shape[0], self.transformer.visit_width))
        ends = torch.as_tensor(self.transformer.end_positions_, device=z.device)
        steps = []
        for t in range(self.transformer.t_max_):
            h = self.gru.step(torch.cat([previous, given], dim=1), h)
            drawn, logits = layout.draw(self.out(h), self.visit_sigma, generator)
            if t == 0:  # a first visit has no interval: 0, as the encoding writes it (and training never scores it)
                drawn[:, 0] = 0.0
            present = (lengths > t).to(z.dtype)[:, None]
            if len(ends):
                lengths = torch.where((drawn[:, ends].sum(1) > 0) & (lengths > t), t + 1, lengths)
            previous = torch.cat([drawn, present], dim=1) * present
            steps.append(torch.cat([logits, present], dim=1))
        return torch.stack(steps, dim=1), lengths


def _last_visit(visits: torch.Tensor) -> torch.Tensor:
    """(rows, T_max) one-hot of each patient's last present visit, from the visit-present masks."""
    mask = visits[..., -1]
    return mask - torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)


def _parts(x: torch.Tensor, transformer: SequenceTransformer) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoded rows split into the static part (context and length) and the visits (rows, T_max, visit width)."""
    static = transformer.context_.width + transformer.t_max_
    return x[:, :static], x[:, static:].reshape(x.shape[0], transformer.t_max_, transformer.visit_width)


class SequenceVAE(TVAE):
    """A temporal conditional VAE: `SequenceVAE(epochs=100).fit(sequences).sample(500, conditions={"arm": "B"})`
    in one process, returning `Sequences`; federated through the protocol on `SequenceTransformer` rows.

    T_max, the visits a patient's row holds, is the `quantile` (default the 98th percentile) of the pooled
    sequence lengths, merged across sites as a histogram, capped by `max_visits`; longer records keep their first
    T_max visits, which bounds the row width and the GRUs' unrolled steps.

    Parameters
    ----------
    epochs : int, default 300
        Passes over the patients in `fit`.
    batch_size : int, default 500
        Patients per optimiser step.
    hidden : list of int, default (128, 128)
        Widths of the MLPs of the encoder (after the GRU) and of the decoder's context and length head.
    latent_dim : int, default 64
        Dimension of the latent space.
    gru_dim : int, default 64
        State width of the encoder's and the decoder's GRU.
    loss_factor : float, default 2.0
        Weight of the reconstruction term against the KL term.
    quantile : float, default 0.98
        T_max is the smallest length that this share of the pooled patients does not exceed.
    max_visits : int or None, default None
        An upper bound on T_max.
    lr : float, default 1e-3
        Learning rate.
    weight_decay : float, default 1e-5
        L2 weight decay.
    optimizer : {"adam", "sgd"}, default "adam"
        The optimiser over the flat parameter buffer.
    device : str, default "auto"
        "cpu", "cuda", "cuda:N", or "auto": this rank's GPU when CUDA is present, else the CPU.
    seed : int, default 0
        Seeds the networks' initialisation, the training batches and (unless `sample` is given one) sampling.
    categorical : list of str, default ()
        Context or per-visit columns to treat as categorical whatever their dtype.
    ends : dict of str to list or None, default None
        {categorical visit column: its levels that end follow-up} (data.sequence.ends; a job passes its data's
        declaration): absorbing states such as progression or death. Sampling ends a patient at the first visit
        drawn at one of them, so no release has a visit after one.
    precision : {"auto", "bf16", "fp32"}, default "fp32"
        bfloat16 matrix products where the hardware has them ("auto"), always, or never.
    compile : {"auto", "on", "off"} or bool, default "auto"
        Train through torch.compile'd steps; "auto" compiles on a CPU with a C++ compiler for long runs.
    progress : bool, default False
        Show a progress bar over the epochs of `fit`.
    """

    name = "sequence_vae"
    has_latent = True
    dp_sgd = True
    supports_privacy = True
    compilable = True
    survival_aware = False
    transformer_type = SequenceTransformer
    compile_min_steps = 40000  # `compile="auto"`: compiling the unrolled GRUs takes minutes; a step then saves ~60%

    def __init__(self, *, epochs: int = 300, batch_size: int = 500, hidden: list[int] = (128, 128),
                 latent_dim: int = 64, gru_dim: int = 64, loss_factor: float = 2.0, quantile: float = 0.98,
                 max_visits: int | None = None, lr: float = 1e-3, weight_decay: float = 1e-5,
                 optimizer: str = "adam", device: str = "auto", seed: int = 0, categorical: list[str] = (),
                 ends: dict[str, list] | None = None, precision: str = "fp32", compile: str | bool = "auto",
                 progress: bool = False) -> None:
        super().__init__(epochs=epochs, batch_size=batch_size, hidden=hidden, latent_dim=latent_dim,
                         loss_factor=loss_factor, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
                         device=device, seed=seed, categorical=categorical, precision=precision, compile=compile,
                         progress=progress)
        self.gru_dim = gru_dim
        self.quantile = quantile
        self.max_visits = max_visits
        self.ends = ends

    # -- the estimator ------------------------------------------------------------------------------------------
    def make_transformer(self) -> SequenceTransformer:
        """The unfitted patient-row transform (`fit` it collectively with every site's `Sequences`)."""
        return SequenceTransformer(list(self.categorical), self.quantile, self.max_visits, self.ends)

    def fit(self, sequences: Sequences) -> SequenceVAE:
        """Fit the patient-row transform and the model on `sequences` (one process, no MPI)."""
        transformer = self.make_transformer().fit(sequences)
        self.setup(transformer)
        self._fit_rows(transformer.encode(sequences))
        return self

    def sample(self, n: int, *, seed: int | None = None, conditions: dict[str, Any] | None = None) -> Sequences:
        """`n` synthetic patients as `Sequences` (keys 0..n-1). The same `seed` (default: the constructor's)
        gives the same patients. `conditions={"column": level}` on categorical or binary context columns gives
        patients with those levels (rejection on the drawn context; an error when fewer than 1 in 100 meet
        them)."""
        self._check_fitted("sample")
        codes = condition_codes(self.transformer_.context_, conditions)
        return self._sampler(self.seed if seed is None else seed)(n, codes)

    # -- the networks -------------------------------------------------------------------------------------------
    def _build(self, spans: list[tuple[str, int]]) -> list[nn.Module]:
        """The encoder (first in the flat buffer, as latent alignment reads it) and the decoder."""
        t = self.transformer_
        self.context_layout_ = _Layout(t.context_.spans, t.gaussian_flags(t.context_)).to(self.device_)
        visit_flags = [-1] + [1 + f if f >= 0 else -1 for f in t.gaussian_flags(t.visit_)]
        self.visit_layout_ = _Layout([("gaussian", 1), *t.visit_.spans], visit_flags).to(self.device_)
        self.length_layout_ = _Layout([("softmax", t.t_max_)], []).to(self.device_)
        # the interval's loss counts from the second visit on
        first = torch.zeros((t.t_max_, len(self.visit_layout_.gaussian)), device=self.device_)
        first[1:] = 1.0
        first[:, 1:] = 1.0
        self.interval_weight_ = first
        self.latent_target_ = None
        self.encoder_ = _Encoder(t, list(self.hidden), self.gru_dim, self.latent_dim)
        self.decoder_ = _Decoder(t, list(self.hidden), self.gru_dim, self.latent_dim,
                                 len(self.context_layout_.gaussian), len(self.visit_layout_.gaussian))
        self.time_head_ = None
        return [self.encoder_, self.decoder_]

    def loss(self, batch: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over patients of loss_factor * reconstruction + KL; `noise` is the reparameterisation draw."""
        if noise is None:
            noise = self.loss_noise(batch.shape[0])
        t = self.transformer_
        n, c = batch.shape[0], t.context_.width
        unrolled = self.privacy_ is not None  # per-sample gradients batch the written-out cell, not ATen's kernel
        mu, logvar = self.encoder_(batch, unrolled)
        std = torch.exp(0.5 * logvar)
        z = noise * std + mu
        static, visits = _parts(batch, t)
        decoder = self.decoder_
        out_static = decoder.static(z).float()
        out_visits = decoder.visits(z, static, visits, unrolled).float()
        ones = batch.new_ones(n)
        reconstruction = (self.context_layout_.loss(batch[:, :c], out_static[:, :c], decoder.context_sigma, ones)
                          + self.length_layout_.loss(static[:, c:], out_static[:, c:], decoder.context_sigma, ones))
        steps = t.t_max_
        reconstruction = reconstruction + self.visit_layout_.loss(
            visits[..., :-1].reshape(n * steps, -1), out_visits.reshape(n * steps, -1), decoder.visit_sigma,
            visits[..., -1].reshape(-1), self.interval_weight_.repeat(n, 1))
        mu, logvar, std = mu.float(), logvar.float(), std.float()
        kl = -0.5 * torch.sum(1 + logvar - mu**2 - std * std)
        return (self.loss_factor * reconstruction + kl) / n + self._alignment(mu)

    def _train_rows(self, data: torch.Tensor) -> torch.Tensor:
        return data

    def _train_loss(self, batch: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.loss(batch, noise)

    def _after_step(self) -> None:
        self.decoder_.context_sigma.data.clamp_(0.01, 1.0)
        self.decoder_.visit_sigma.data.clamp_(0.01, 1.0)

    # -- sampling -----------------------------------------------------------------------------------------------
    def _sampler(self, seed: int):
        """A function (patients, {context column: level code}) -> `Sequences` drawing from streams keyed by `seed`
        and the site: the latent, the context and the length first (rejected until they meet the conditions),
        then the visits given them."""
        generator = seeded_generator(seed, self.stream_, self._SAMPLE, device=self.device_)
        rng = np.random.default_rng([seed, self.stream_, self._SAMPLE])
        t = self.transformer_
        c = t.context_.width

        def draw_static(m: int, latents: list[torch.Tensor], acceptance: np.ndarray) -> pd.DataFrame:
            """m drawn statics, of which those whose length is accepted (`acceptance` by length: a length's share
            follows p(L))."""
            z = self._latent(m, generator)
            out = self.decoder_.static(z).float()
            _, context = self.context_layout_.draw(out[:, :c], self.decoder_.context_sigma, generator)
            frame = t.context_.decode(context.cpu().numpy(), rng)
            frame[_LENGTH] = t.context_lengths(out[:, c:].cpu().numpy(), rng)
            frame[_DRAW] = np.arange(m) + sum(len(x) for x in latents)
            latents.append(z)
            kept = rng.random(m) < acceptance[frame[_LENGTH].to_numpy() - 1]
            return frame[kept].reset_index(drop=True)

        def draw(n: int, codes: dict[int, int]) -> Sequences:
            for m in self.modules_:
                m.eval()
            latents: list[torch.Tensor] = []
            with torch.no_grad():
                acceptance = self._length_acceptance(generator)
                frame = rejection_sample(lambda m: draw_static(m, latents, acceptance), n, codes, t.context_)
                z = torch.cat(latents)[torch.as_tensor(frame[_DRAW].to_numpy(), device=self.device_)]
                lengths = frame[_LENGTH].to_numpy()
                context = frame.drop(columns=[_LENGTH, _DRAW])
                static = torch.cat([self.to_device(t.context_.encode(context)), self.to_device(
                    np.eye(t.t_max_, dtype=np.float32)[lengths - 1])], dim=1)
                visits, ended = self.decoder_.generate(z, static, torch.as_tensor(lengths, device=self.device_),
                                                       self.visit_layout_, generator)
            return t.assemble(context, ended.cpu().numpy(), visits.float().cpu().numpy(), rng)

        return draw

    def _length_acceptance(self, generator: torch.Generator) -> np.ndarray:
        """Each length's acceptance probability, p(L) / q(L) scaled to at most 1 (module docstring): p the merged
        histogram with every length beyond T_max counted at T_max (a row holds the first T_max visits), q the
        length softmax averaged over `LENGTH_PROBE` prior draws."""
        t = self.transformer_
        counts = t.length_counts_[1:]
        p = np.r_[counts[:t.t_max_ - 1], counts[t.t_max_ - 1:].sum()]
        p = p / p.sum()
        out = self.decoder_.static(self._latent(LENGTH_PROBE, generator)).float()[:, t.context_.width:]
        q = torch.softmax(out, dim=1).mean(0).cpu().numpy().astype(np.float64)
        ratio = p / np.maximum(q, 1e-12)
        ratio = np.minimum(ratio, MAX_LENGTH_WEIGHT * ratio[ratio > 0].min())
        return ratio / ratio.max()

    def _generate(self, n: int, generator: torch.Generator, codes: dict[int, int]) -> torch.Tensor:
        raise NotImplementedError("SequenceVAE draws Sequences through sample(), not encoded table rows")


_LENGTH, _DRAW = "__length__", "__draw__"  # the columns that carry a drawn context's length and latent
LENGTH_PROBE = 4096  # prior draws that estimate the model's length distribution, once per sample() call
MAX_LENGTH_WEIGHT = 20.0  # the largest p(L) / q(L) a length is accepted with, relative to the smallest
