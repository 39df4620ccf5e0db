"""CTGAN: the conditional tabular GAN of Xu et al. (NeurIPS 2019), as SDV's `ctgan.CTGAN`, on hpcsynth's shared
transforms and flat parameter buffer.

Mode-specific normalisation, a conditional vector with training-by-sampling, a residual generator with
Gumbel-softmax outputs, and a WGAN-GP critic on PacGAN packs, with SDV's defaults. The hot path is vectorised
(no per-column or per-row Python loop), the gradient penalty's input gradient is written out so a critic step
is first-order, and both steps can be torch.compile'd. Critic, generator and BatchNorm running statistics share
one flat buffer, so FedAvg exchanges them in one Allreduce. `sample(n, conditions={"column": level})`
conditions the generator on the rarest requested level and sets every requested level.

With a survival time and event declared (`survival_aware`), the generator, the critic and the conditional vector
cover the covariates only, and a survival head (`hpcsynth.models.time_head`) after the critic models the event and
the time given the covariates. It is trained by cross-entropy on the critic's real rows, in the critic's step and
by the critic's optimiser, so that under DP-SGD it is clipped and noised in the critic's per-example step: the
critic and the head are the only parts that read rows. Sampling draws the covariates, then the outcome from the
head (`GradientGenerator._with_outcome`).
Design notes and measurements: docs/notes/models.md.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from hpcsynth.data.transforms import CategoricalTransform
from hpcsynth.models.layout import column_order
from hpcsynth.models.protocol import GradHook, GradientGenerator, documents_parameters
from hpcsynth.models.time_head import SurvivalLayout, TimeHead

# under the square root of the gradient penalty's norm: a pack whose dropout silences a whole layer has an input
# gradient of exactly 0, where the norm's derivative is 0/0, and its NaN would poison the critic's whole update (a
# narrow DP critic, one row per example, meets one in a few hundred examples)
NORM_FLOOR = 1e-12


class _Residual(nn.Module):
    """Xu et al.'s generator block: ReLU(BatchNorm(Linear(x))) concatenated with x."""

    def __init__(self, width_in: int, width_out: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width_in, width_out)
        self.bn = nn.BatchNorm1d(width_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(self.bn(self.fc(x))), x], dim=1)


def _generator(width_in: int, hidden: list[int], width_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers.append(_Residual(width_in, h))
        width_in += h
    return nn.Sequential(*layers, nn.Linear(width_in, width_out))


class _Critic(nn.Module):
    """Xu et al.'s critic on PacGAN packs: (Linear, LeakyReLU 0.2, Dropout 0.5) per hidden layer, then a Linear
    to one score.

    A pack's input is its rows' values then their conditional vectors (`data`: packs x pac * width, `cond`:
    packs x pac * levels), an order of the inputs that lets the first layer split into a data product and a
    conditional product: the real, fake and interpolated packs of a critic step share their conditional
    vectors, so that product is computed once for the three, and no pack is ever concatenated.

    `scores(..., tail)` also returns the gradient of the last `tail` packs' scores with respect to their inputs,
    written out as the chain rule gives it (W_1^T D_1 W_2^T D_2 ... w_out, with D_i the LeakyReLU slopes times
    the dropout factors of layer i): the gradient penalty's double backward becomes an ordinary first-order
    graph of the same function (the slopes are piecewise constant, so autograd's double backward treats them as
    constants too), which torch.compile can take whole."""

    def __init__(self, data_width: int, cond_width: int, hidden: list[int], slope: float = 0.2,
                 p: float = 0.5) -> None:
        super().__init__()
        sizes = [data_width + cond_width, *hidden, 1]
        first = nn.Linear(sizes[0], sizes[1])  # initialised as one layer over the whole pack
        self.weight_data = nn.Parameter(first.weight.data[:, :data_width].clone())
        self.weight_cond = nn.Parameter(first.weight.data[:, data_width:].clone())
        self.bias = nn.Parameter(first.bias.data.clone())
        self.rest = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[1:-1], sizes[2:]))
        self.hidden = list(hidden)
        self.slope, self.p = slope, p

    def keep_masks(self, rows: int, device: torch.device) -> list[torch.Tensor] | None:
        """Dropout's factors for `rows` packs, one (rows, width) float tensor per hidden layer: 0, or 1 / (1 - p)
        with probability 1 - p (None outside training). Drawn outside the scores, so that a compiled caller
        needs no random numbers of its own."""
        if not self.training:
            return None
        return [torch.rand((rows, width), device=device).ge_(self.p).mul_(1.0 / (1.0 - self.p))
                for width in self.hidden]

    def forward(self, data: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.scores(data, cond, keep=self.keep_masks(data.shape[0], data.device))[0]

    def scores(self, data: torch.Tensor, cond: torch.Tensor, tail: int = 0, keep: list[torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """The scores of the packs `data` (a whole number of groups of `cond`'s packs, every group conditioned
        on `cond`) under the dropout factors `keep`, and, when `tail`, the gradient of the last `tail` packs'
        scores with respect to their data and conditional inputs."""
        a = F.linear(data, self.weight_data)
        shared = F.linear(cond, self.weight_cond, self.bias) if cond.shape[1] else self.bias.expand(cond.shape[0], -1)
        a = (a.view(-1, *shared.shape) + shared).view(a.shape)
        factors = []
        for i, layer in enumerate(self.rest):
            # LeakyReLU then dropout multiply each unit by one factor: its slope (from the sign: a float, where
            # a comparison would leave a boolean tensor, which compiled CPU kernels load and store slowly),
            # times the dropout factor in training
            d = torch.sign(a.detach().float()) * (0.5 * (1.0 - self.slope)) + 0.5 * (1.0 + self.slope)
            if keep is not None:
                d = d * keep[i]
            a = layer(a * d)
            factors.append(d[-tail:] if tail else None)
        if not tail:
            return a, None
        if not factors:
            return a, (self.weight_data.expand(tail, -1), self.weight_cond.expand(tail, -1))
        g = self.rest[-1].weight * factors[-1]
        for layer, d in zip(reversed(self.rest[:-1]), reversed(factors[:-1])):
            g = (g @ layer.weight) * d
        return a, (g @ self.weight_data, g @ self.weight_cond)


class _ExampleLoss(nn.Module):
    """One DP-SGD example's loss as a module's forward, so torch.func can call it with per-example parameters:
    the WGAN-GP critic loss of its real row's covariates, its generated row and their interpolate's penalty,
    plus, with a survival head, the head's cross-entropy of the real row's outcome."""

    def __init__(self, critic: _Critic, head: TimeHead | None, gp_lambda: float) -> None:
        super().__init__()
        self.critic, self.head, self.gp_lambda = critic, head, gp_lambda

    def forward(self, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor, cond: torch.Tensor,
                keep: list[torch.Tensor]) -> torch.Tensor:
        covariates = real[:fake.shape[0]]
        rows = torch.stack([covariates, fake, alpha * covariates + (1.0 - alpha) * fake])
        scores, (by_data, by_cond) = self.critic.scores(rows, cond[None], tail=1, keep=keep)
        norm = (by_data.square().sum() + by_cond.square().sum() + NORM_FLOOR).sqrt()
        loss = scores[1, 0] - scores[0, 0] + self.gp_lambda * (norm - 1.0) ** 2
        return loss if self.head is None else loss + self.head.loss(real[None])


def _share_running_statistics(module: nn.Module) -> None:
    """Turn BatchNorm running statistics into gradient-free parameters, so they live in the flat buffer."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean = nn.Parameter(m.running_mean, requires_grad=False)
            m.running_var = nn.Parameter(m.running_var, requires_grad=False)


class _Optimisers:
    """The generator's and the critic's Adam, saved and restored together (the base's `optimizer_`)."""

    def __init__(self, generator: torch.optim.Optimizer, critic: torch.optim.Optimizer) -> None:
        self.generator = generator
        self.critic = critic

    def state_dict(self) -> dict:
        return {"generator": self.generator.state_dict(), "critic": self.critic.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.critic.load_state_dict(state["critic"])


class _LevelSampler:
    """Draws (discrete column, level) pairs as flat level indices: the column uniformly, then a level from that
    column's probabilities, for a whole batch with one `searchsorted`.

    The cumulative probabilities of all columns are concatenated, column c's shifted by c, so they increase
    across the whole array and a draw c + u (u uniform) lands in column c's segment. Memory is one number per
    level."""

    def __init__(self, weights: torch.Tensor, column_of: torch.Tensor, n_columns: int) -> None:
        weights = weights.double()
        totals = torch.zeros(n_columns, dtype=torch.float64, device=weights.device).index_add_(0, column_of, weights)
        edges = torch.cumsum(weights / totals[column_of], 0)  # column c's levels end at c + 1
        last = torch.ones_like(edges, dtype=torch.bool)
        last[:-1] = column_of[1:] != column_of[:-1]
        self.edges = torch.where(last, column_of.double() + 1.0, edges)  # exact segment ends despite rounding
        self.n_columns = n_columns

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = self.edges.device
        column = torch.randint(self.n_columns, (n,), device=device, generator=generator)
        u = torch.rand(n, device=device, dtype=torch.float64, generator=generator)
        return torch.searchsorted(self.edges, column + u, right=True)


class _RowIndex:
    """This site's row ids grouped by level, for training-by-sampling: rows of flat level g are
    `rows[start[g]:start[g] + count[g]]`, so a batch of levels becomes a batch of matching rows in one gather.
    Memory: one int32 per row and discrete column."""

    def __init__(self, codes: torch.Tensor, n_levels: int) -> None:
        n = codes.shape[0]
        keys = codes.t().reshape(-1)  # column by column, so position // n is the column and % n the row
        self.count = torch.bincount(keys, minlength=n_levels)
        self.start = torch.cumsum(self.count, 0) - self.count
        order = torch.argsort(keys, stable=True)
        self.rows = (order % n).to(torch.int32)

    def sample(self, levels: torch.Tensor) -> torch.Tensor:
        u = torch.rand(levels.shape, device=levels.device)
        offset = (u * self.count[levels]).long().clamp_max_(self.count[levels] - 1)
        return self.rows[self.start[levels] + offset].long()


@documents_parameters()
class CTGAN(GradientGenerator):
    """Conditional tabular GAN: `CTGAN(epochs=300).fit(df).sample(1000, conditions={"sex": "F"})`.

    Parameters
    ----------
    embedding_dim : int, default 128
        Dimension of the generator's input noise.
    generator_dim : list of int, default (256, 256)
        Widths of the generator's residual blocks.
    discriminator_dim : list of int, default (256, 256)
        Widths of the critic's hidden layers.
    generator_lr, discriminator_lr : float, default 2e-4
        Adam's learning rates (betas 0.5, 0.9) of the generator and of the critic.
    generator_decay, discriminator_decay : float, default 1e-6
        Their L2 weight decays.
    discriminator_steps : int, default 1
        Critic updates per generator update.
    pac : int, default 10
        Rows per PacGAN pack the critic scores together.
    gp_lambda : float, default 10.0
        Weight of the gradient penalty.
    tau : float, default 0.2
        Temperature of the Gumbel-softmax outputs.
    """

    one_lr = False  # the generator and the critic train at their own rates
    name = "ctgan"
    dp_sgd = True  # DP-SGD on the critic (with pac 1); the generator never reads a row
    normalised = True  # BatchNorm in the generator's residual blocks
    supports_privacy = True
    batch_coupled = True  # BatchNorm in the generator and the critic's pac groups
    default_numeric = "mode_specific"
    native_conditions = True
    survival_aware = True
    compile_min_steps = 4000  # `compile="auto"`: a step saves about 6 ms compiled (MDS cohort, one CPU thread)

    def __init__(self, *, epochs: int = 300, batch_size: int = 500, embedding_dim: int = 128,
                 generator_dim: list[int] = (256, 256), discriminator_dim: list[int] = (256, 256),
                 generator_lr: float = 2e-4, generator_decay: float = 1e-6, discriminator_lr: float = 2e-4,
                 discriminator_decay: float = 1e-6, discriminator_steps: int = 1, pac: int = 10,
                 gp_lambda: float = 10.0, tau: float = 0.2, device: str = "auto", seed: int = 0,
                 categorical: list[str] = (), time: str | None = None, event: str | None = None,
                 numeric: str | None = None, precision: str = "auto", compile: str | bool = "auto",
                 progress: bool = False) -> None:
        super().__init__(epochs=epochs, batch_size=batch_size, device=device, seed=seed, categorical=categorical,
                         time=time, event=event, numeric=numeric, precision=precision, compile=compile,
                         progress=progress)
        self.embedding_dim = embedding_dim
        self.generator_dim = generator_dim
        self.discriminator_dim = discriminator_dim
        self.generator_lr = generator_lr
        self.generator_decay = generator_decay
        self.discriminator_lr = discriminator_lr
        self.discriminator_decay = discriminator_decay
        self.discriminator_steps = discriminator_steps
        self.pac = pac
        self.gp_lambda = gp_lambda
        self.tau = tau

    # -- networks and layout --------------------------------------------------------------------------------
    def _build(self, spans: list[tuple[str, int]]) -> list[nn.Module]:
        """The generator and the critic over the encoded columns. With a survival time and event
        (`survival_layout_`) they cover the covariates only, and the survival head after them models the event
        and the time given the covariates."""
        survival = self.survival_layout_
        self._layout(survival.covariate_spans if survival else spans, survival)
        cond = int(self.level_column_.numel())
        self.generator_ = _generator(self.embedding_dim + cond, list(self.generator_dim), self.width_)
        _share_running_statistics(self.generator_)
        self.critic_ = _Critic(self.width_ * self.pac, cond * self.pac, list(self.discriminator_dim))
        if survival is None:
            self.time_head_ = None
            return [self.generator_, self.critic_]
        self.time_head_ = self._time_head(self.order_)
        return [self.generator_, self.critic_, self.time_head_]

    def _layout(self, spans: list[tuple[str, int]], survival: SurvivalLayout | None) -> None:
        """Index tensors for the vectorised hot path, from the networks' spans (the covariates' with a survival
        layout, else the transformer's) and the transformer's discrete columns."""
        self.width_ = sum(w for _, w in spans)
        # the networks' column order (`column_order`), so that the softmax of every block of a group is one
        # reduction over the levels of a (rows, width, blocks) view, contiguous in blocks; `perm_` maps it to
        # the transform's columns, `order_` is the training matrix's: the networks' columns, then the event's
        # block and the time's value, which the survival head reads
        order, self.n_gaussian_, self.softmax_groups_ = column_order(spans)
        self.perm_, self.order_ = order, order
        if survival:
            self.perm_ = torch.tensor(survival.covariates)[order]
            self.order_ = torch.cat([self.perm_, torch.tensor(survival.event), torch.tensor([survival.time])])
        position = torch.zeros(self.transformer_.width, dtype=torch.long)
        position[self.perm_] = torch.arange(self.width_)
        # the discrete columns the conditional vector covers: every categorical (and binary) covariate
        event = self.transformer_.event if survival else None
        starts, widths, counts, start = [], [], [], 0
        self.block_of_column_ = {}
        for index, transform in enumerate(self.transformer_.transforms_):
            if isinstance(transform, CategoricalTransform) and transform.spec.name != event:
                self.block_of_column_[index] = len(starts)
                starts.append(start)
                widths.append(transform.width)
                counts.append(torch.as_tensor(transform.counts_[:transform.width], dtype=torch.float64))
            start += transform.width
        self.block_start_ = torch.tensor(starts, dtype=torch.long)
        self.block_width_ = torch.tensor(widths, dtype=torch.long)
        self.level_offset_ = torch.cumsum(self.block_width_, 0) - self.block_width_
        self.level_column_ = torch.repeat_interleave(torch.arange(len(widths)), self.block_width_)
        self.level_counts_ = torch.cat(counts) if counts else torch.zeros(0, dtype=torch.float64)
        steps = torch.arange(int(self.block_width_.max()) if widths else 1)
        pad = steps[None, :] >= self.block_width_[:, None]  # (columns, widest block)
        index = self.block_start_[:, None] + torch.where(pad, 0, steps[None, :])
        self.block_index_ = position[index]  # in the networks' column order
        # -inf on the padding of narrower blocks (added, not masked: no boolean tensor in the compiled graphs,
        # whose boolean loads and stores inductor vectorises poorly on CPU)
        self.block_pad_ = torch.zeros(pad.shape).masked_fill_(pad, -torch.inf)

    def setup(self, transformer, stream: int = 0, local_rank: int = 0) -> CTGAN:
        super().setup(transformer, stream, local_rank)
        for name in ("perm_", "order_", "block_start_", "level_offset_", "level_column_", "level_counts_",
                     "block_index_", "block_pad_"):
            setattr(self, name, getattr(self, name).to(self.device_))
        n_columns = int(self.block_start_.numel())
        self.original_levels_ = (_LevelSampler(self.level_counts_, self.level_column_, n_columns)
                                 if n_columns else None)
        self._rows_for, self._data, self._rows_index, self._levels = None, None, None, None
        self._generator_size = sum(p.numel() for p in self.generator_.parameters())
        return self

    def _make_optimizer(self) -> _Optimisers:
        """SDV's Adam settings; fused (one kernel per network instead of a dozen small ops per tensor). The
        survival head trains with the critic, in the same step on the same real rows, so the critic's Adam
        steps it too."""
        generator = [p for p in self.generator_.parameters() if p.requires_grad]
        return _Optimisers(
            torch.optim.Adam(generator, lr=self.generator_lr, betas=(0.5, 0.9), weight_decay=self.generator_decay,
                             fused=True),
            torch.optim.Adam([p for m in self._critic_modules() for p in m.parameters()], lr=self.discriminator_lr,
                             betas=(0.5, 0.9), weight_decay=self.discriminator_decay, fused=True))

    def _critic_modules(self) -> list[nn.Module]:
        """What the critic's step trains: the critic, then the survival head (consecutive in the flat buffer,
        after the generator), the parts of the model that read rows."""
        return [self.critic_] if self.time_head_ is None else [self.critic_, self.time_head_]

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer_.generator, self.optimizer_.critic]

    # -- the vectorised pieces -------------------------------------------------------------------------------
    def _activate(self, raw: torch.Tensor) -> torch.Tensor:
        """Gumbel-softmax (tau) of every softmax block, one batched softmax per block width (the networks'
        column order keeps equal widths adjacent); Gaussian outputs pass unchanged."""
        n, start = raw.shape[0], self.n_gaussian_
        logits = raw[:, start:]
        u = torch.rand(logits.shape, device=raw.device).clamp_(1e-10, 1.0 - 1e-7)
        z = (logits - torch.log(-torch.log(u))) / self.tau
        parts, offset = [raw[:, :start]], 0
        for width, count in self.softmax_groups_:
            block = z[:, offset:offset + width * count].reshape(n, width, count)
            parts.append(torch.softmax(block, dim=1).reshape(n, width * count))
            offset += width * count
        return torch.cat(parts, dim=1)

    def _condition(self, levels: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Write the one-hot conditional vectors of `levels` into `out` (preallocated, reused every step)."""
        out.zero_()
        return out.scatter_(1, levels[:, None], 1.0)

    def _condition_loss(self, raw: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of each row's conditioned block against its conditioned level (Xu et al.)."""
        column = self.level_column_[levels]
        logits = raw.gather(1, self.block_index_[column]) + self.block_pad_[column]
        chosen = logits.gather(1, (levels - self.level_offset_[column])[:, None])[:, 0]
        return (torch.logsumexp(logits, dim=1) - chosen).mean()

    def _row_index(self, data: torch.Tensor) -> _RowIndex | None:
        """The by-level index of `data`'s rows (built once per data tensor, from its one-hot blocks). A private
        model keeps each row's flat levels instead, and draws the generator's levels from the transform's
        counts, never from the rows."""
        if self._rows_for is not data:
            self._rows_for, self._data = data, data[:, self.order_]
            if self.block_start_.numel():
                self._codes = self._level_codes(data)
                if self.privacy_ is not None:
                    self._levels = self.original_levels_
                    return None
                self._rows_index = _RowIndex(self._codes, int(self.level_column_.numel()))
                self._levels = _LevelSampler(torch.log1p(self._rows_index.count.double()), self.level_column_,
                                             int(self.block_start_.numel()))
        return self._rows_index

    def _level_codes(self, data: torch.Tensor) -> torch.Tensor:
        """Each row's flat level index in every discrete column, (rows, discrete columns), from its one-hot blocks."""
        codes = torch.stack([data[:, s:s + w].argmax(dim=1) for s, w in
                             zip(self.block_start_.tolist(), self.block_width_.tolist())], dim=1)
        return codes + self.level_offset_

    def row_scores(self, data: torch.Tensor) -> torch.Tensor:
        """The trained critic's score of every encoded row, dropout off: the row repeated to a whole pack,
        conditioned on each of its own discrete levels in turn, the scores averaged. A critic that memorised
        its training rows scores them above rows it never saw (Hayes et al.'s white-box attack, PETS 2019)."""
        self.critic_.eval()
        rows = data[:, self.perm_].repeat(1, self.pac)
        n, levels = data.shape[0], int(self.level_column_.numel())
        with torch.no_grad():
            if not levels:
                return self.critic_(rows, data.new_zeros((n, 0)))[:, 0]
            codes, cond = self._level_codes(data), data.new_zeros((n, levels))
            total = data.new_zeros(n)
            for column in range(codes.shape[1]):
                self._condition(codes[:, column], cond)
                total += self.critic_(rows, cond.repeat(1, self.pac))[:, 0]
        return total / codes.shape[1]

    # -- training ---------------------------------------------------------------------------------------------
    def steps_per_epoch(self, n_rows: int, batch_size: int | None = None) -> int:
        """SDV's count for CTGAN: whole batches per pass over the rows (at least one)."""
        return max(1, n_rows // (batch_size or self.batch_size))

    def local_update(self, data: torch.Tensor, steps: int, batch_size: int | None = None,
                     grad_hook: GradHook | None = None) -> float:
        """`steps` generator updates, each after `discriminator_steps` critic updates; returns the mean generator
        loss. `grad_hook` runs after every backward pass (the data-parallel strategy averages gradients there),
        weighted by this site's batch share `batch_size`; the batch itself is rounded up to whole PacGAN packs."""
        for m in self.modules_:
            m.train()
        share = min(batch_size or self.batch_size, data.shape[0])
        size = max(self.pac, -(-share // self.pac) * self.pac)
        packs = size // self.pac
        rows = self._row_index(data)
        cond = torch.zeros((size, int(self.level_column_.numel())), device=self.device_)
        noise = torch.empty((size, self.embedding_dim), device=self.device_)
        critic_params = list(self.critic_.parameters())
        g_total = torch.zeros((), device=self.device_)
        self.steps_taken_ += steps
        critic_gradient = (self._gradient_function("critic", self._critic_loss, self._critic_modules())
                           if self.privacy_ is None else None)
        generator_gradient = self._gradient_function("generator", self._generator_loss, [self.generator_])
        devices = [self.device_] if self.device_.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            seed = torch.randint(2**62, (1,), generator=self.train_generator_, device=self.device_)
            torch.manual_seed(int(seed))
            for _ in range(steps):
                for _ in range(self.discriminator_steps):
                    if self.privacy_ is not None:
                        self._step(self.optimizer_.critic, self._private_critic_gradient(), grad_hook)
                        continue
                    levels = self._draw(size, cond, noise)
                    if levels is None:
                        real = torch.randint(data.shape[0], (size,), device=self.device_)
                    else:
                        real = rows.sample(levels)
                    critic_gradient(noise, cond, self._data, real, self.critic_.keep_masks(3 * packs, self.device_))
                    self._step(self.optimizer_.critic, share, grad_hook)
                for p in critic_params:
                    p.requires_grad_(False)
                levels = self._draw(size, cond, noise)
                g_total += generator_gradient(noise, cond, levels, self.critic_.keep_masks(packs, self.device_))
                self._step(self.optimizer_.generator, share, grad_hook)
                for p in critic_params:
                    p.requires_grad_(True)
        return float(g_total) / max(steps, 1)

    def _draw(self, size: int, cond: torch.Tensor, noise: torch.Tensor) -> torch.Tensor | None:
        """A batch's noise and levels (training-by-sampling; None without discrete columns), and their
        conditional vectors in `cond`."""
        noise.normal_()
        if cond.shape[1] == 0:
            return None
        levels = self._levels.sample(size)
        self._condition(levels, cond)
        return levels

    def _critic_loss(self, noise: torch.Tensor, cond: torch.Tensor, data: torch.Tensor, rows: torch.Tensor,
                     keep: list[torch.Tensor] | None) -> torch.Tensor:
        """The WGAN-GP critic loss of one batch (the generator's `noise` and `cond`, the real `data[rows]`
        drawn with the same levels): fake, real and interpolated packs scored in one pass, which also gives
        the gradient penalty's input gradient. With a survival head, plus its mean cross-entropy of the real
        rows' outcomes (`data` holds the event and the time after the covariates)."""
        packs = noise.shape[0] // self.pac
        with torch.no_grad(), self._autocast():
            fake = self._activate(self.generator_(torch.cat([noise, cond], dim=1))).float()
        chosen = data[rows]
        fake, real = fake.reshape(packs, -1), chosen[:, :self.width_].reshape(packs, -1)
        alpha = torch.rand((packs, 1), device=noise.device)
        mixed = alpha * real + (1.0 - alpha) * fake
        shared = cond.reshape(packs, self.pac * cond.shape[1])  # the packs' conditional vectors
        with self._autocast():
            scores, (by_data, by_cond) = self.critic_.scores(torch.cat([real, fake, mixed], dim=0), shared,
                                                              tail=packs, keep=keep)
        scores = scores.float().view(3, packs)
        norm = (by_data.float().square().sum(dim=1) + by_cond.float().square().sum(dim=1) + NORM_FLOOR).sqrt()
        penalty = ((norm - 1.0) ** 2).mean() * self.gp_lambda
        loss = scores[1].mean() - scores[0].mean() + penalty
        return loss if self.time_head_ is None else loss + self.time_head_.loss(chosen) / chosen.shape[0]

    def _generator_loss(self, noise: torch.Tensor, cond: torch.Tensor, levels: torch.Tensor | None,
                        keep: list[torch.Tensor] | None) -> torch.Tensor:
        """The generator loss of one batch: fool the critic and produce the conditioned levels."""
        packs = noise.shape[0] // self.pac
        with self._autocast():
            raw = self.generator_(torch.cat([noise, cond], dim=1)).float()
            fake = self._activate(raw)
            shared = cond.reshape(packs, self.pac * cond.shape[1])
            loss = -self.critic_.scores(fake.reshape(packs, -1), shared, keep=keep)[0].float().mean()
        return loss if levels is None else loss + self._condition_loss(raw, levels)

    # -- differential privacy ---------------------------------------------------------------------------------
    @property
    def private_steps_per_step(self) -> int:
        """Every critic update reads a Poisson sample of the rows; the generator's never reads one."""
        return self.discriminator_steps

    def make_private(self, mechanism) -> CTGAN:
        """DP-SGD on the critic, the only network that reads rows. The critic then scores rows one at a time
        (`pac` 1): a pack would mix rows, and a clipped pack's gradient bounds no single row's influence."""
        if self.pac != 1:
            raise ValueError(f"model.pac: DP-CTGAN's critic scores one row at a time; set pac: 1 (got {self.pac})")
        super().make_private(mechanism)
        self._example = _ExampleLoss(self.critic_, self.time_head_, self.gp_lambda)
        self._example_names = [name for name, _ in self._example.named_parameters()]
        self._per_example = vmap(grad(self._example_loss), in_dims=(None, 0, 0, 0, 0, 0))
        return self

    def _private_critic_gradient(self) -> float:
        """One DP-SGD critic step into the critic's part of the gradient buffer; returns the expected batch.

        Each row of the Poisson sample is one example: it conditions on the level of one of its own discrete
        columns (drawn uniformly), and is paired with a generated row of that condition, from the generator with
        its BatchNorm in inference mode (running statistics), so the fake row depends on that example and public
        draws only. The example's loss, the WGAN-GP critic loss of that pair (plus the survival head's
        cross-entropy of the row's outcome), is clipped per example."""
        data = self._data
        chosen = self.privacy_.poisson_sample(torch.arange(data.shape[0], device=self.device_))
        m, levels = chosen.shape[0], int(self.level_column_.numel())
        cond = torch.zeros((m, levels), device=self.device_)
        if levels:
            column = torch.randint(int(self.block_start_.numel()), (m, 1), device=self.device_)
            self._condition(self._codes[chosen].gather(1, column)[:, 0], cond)
        self.generator_.eval()
        with torch.no_grad():
            noise = torch.randn((m, self.embedding_dim), device=self.device_)
            fake = self._activate(self.generator_(torch.cat([noise, cond], dim=1)))
        self.generator_.train()
        alpha = torch.rand((m, 1), device=self.device_)
        keep = [k.view(m, 3, -1) for k in self.critic_.keep_masks(3 * m, self.device_)]
        per_example = []
        if m:
            params = {n: p.detach() for n, p in self._example.named_parameters()}
            grads = self._per_example(params, data[chosen], fake, alpha, cond, keep)
            per_example = [grads[n] for n in self._example_names]
        region = self._gradient_region([p for module in self._critic_modules() for p in module.parameters()])
        return self.privacy_.release(per_example, region, data.shape[0])

    def _example_loss(self, params: dict, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor,
                      cond: torch.Tensor, keep: list[torch.Tensor]) -> torch.Tensor:
        """One example's loss (`_ExampleLoss`) under the parameters `params`."""
        return functional_call(self._example, params, (real, fake, alpha, cond, keep))

    def _step(self, optimizer: torch.optim.Optimizer, share: int, grad_hook: GradHook | None) -> None:
        """The update of one network from its part of the gradient buffer (the other part is left as it is;
        the other network's optimiser never reads it here)."""
        if grad_hook is not None:
            grad_hook(self.flat_.grad, share)
        optimizer.step()

    # -- sampling ---------------------------------------------------------------------------------------------
    def _generate(self, n: int, generator: torch.Generator, codes: dict[int, int]) -> torch.Tensor:
        """Generator output (values, and logits for softmax blocks) for `n` rows: conditional vectors drawn from
        the levels' frequencies in the data (SDV's `sample_original_condvec`), or fixed by `codes` (the rarest
        requested level conditions the generator; every requested level is set). With a survival head, the
        event and the time are then drawn from it given the covariates."""
        self._check_conditions(codes)
        noise = torch.randn((n, self.embedding_dim), generator=generator, device=self.device_)
        inputs = noise
        if self.original_levels_ is not None:
            if codes:
                flat = [int(self.level_offset_[self.block_of_column_[c]]) + code for c, code in codes.items()]
                rarest = min(flat, key=lambda g: float(self.level_counts_[g]))
                levels = torch.full((n,), rarest, dtype=torch.long, device=self.device_)
            else:
                levels = self.original_levels_.sample(n, generator)
            cond = torch.zeros((n, int(self.level_column_.numel())), device=self.device_)
            inputs = torch.cat([noise, self._condition(levels, cond)], dim=1)
        out = self._to_transform(self.generator_(inputs))
        for column, code in codes.items():
            block = self.block_of_column_[column]
            start, width = int(self.block_start_[block]), int(self.block_width_[block])
            out[:, start:start + width] = -1e4
            out[:, start + code] = 1e4
        return out if self.time_head_ is None else self._with_outcome(out, generator, self.order_)

    def _to_transform(self, out: torch.Tensor) -> torch.Tensor:
        """Generator output (the networks' column order) in the transform's layout; the survival columns, which
        the head writes, are left 0."""
        full = out.new_zeros((out.shape[0], self.transformer_.width))
        full[:, self.perm_] = out
        return full

    def _check_conditions(self, codes: dict[int, int]) -> None:
        """A condition on the event is refused: the survival head draws it given the covariates, so fixing it
        would leave the covariates drawn as if it were not (rows of the wrong population)."""
        event = self.transformer_.event
        if self.time_head_ is not None and self.transformer_.columns.index(event) in codes:
            raise ValueError(f"conditions: {event!r} is the survival event, which CTGAN draws from its survival "
                             f"head given the covariates; condition on covariates, or filter the sampled rows")
