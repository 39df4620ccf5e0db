"""The survival head: the event and the time given the covariates, as a distribution over (event level, time bin).

Why. A generic tabular generator treats a survival time and its event indicator as two ordinary columns: it
learns each column's shape and weak pairwise trends, and the synthetic events end up spread evenly over follow-up
(on flchain the correlation of time with event fell from -0.64 to -0.07, and the Kaplan-Meier curves drifted 0.68
apart; docs/survival.md). SurvivalGAN (Norcliffe et al., AISTATS 2023) repairs that by generating the time last,
from a time-to-event model. This module is that model for the gradient families (TVAE, VAE-BGM, CTGAN, TabDDPM):

* The family's networks model the covariates: every column but the time and the event.
* `TimeHead` models the outcome given the covariates as a categorical distribution over (event level, time bin)
  classes, `TIME_BINS` bins of the time's quantiles per level. The shared transform already maps the time to
  u = F(time), its merged marginal CDF (fitted from every site's histogram, never from pooled rows), so the
  quantile bins are the equal-width bins of u and a row's bin is read off its encoded value z = Phi^-1(u). The
  head is trained by cross-entropy on the site's own rows. Event times and censoring times (and each cause of a
  competing-risk event) have classes of their own, so censoring patterns (administrative end of follow-up,
  losses) survive.
* Sampling draws the covariates from the family (each categorical block drawn here, so that the head sees what
  will be decoded), then an (event, bin) class from the head, then u uniform within the bin, and writes
  z = Phi^-1(u) into the time's column. Decoding maps it back through the transform's inverse CDF: within a bin
  the time follows the real marginal's shape (atoms such as an administrative censoring date included).

What it guarantees, by construction rather than by a clean-up: every time lies within the transform's range
[min, max] (positive when the data's times are, which the loader's zero-time rule ensures, and never beyond the
longest follow-up), and the event is one of its levels. The head's parameters are modules of the family, so they
sit in the same flat parameter buffer as the rest: every federated strategy averages them, DP-SGD clips and noises
their per-sample gradients (the loss is a sum over rows), checkpoints and saved models keep them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import CategoricalTransform, DatetimeTransform, NumericTransform

TIME_BINS = 50  # quantile bins of the time: 2% of the rows each, fine enough for a Kaplan-Meier gap well below 0.05
TIME_HIDDEN = (64, 64)
_U_EPS = 1e-6  # the transform clips u to [eps, 1 - eps] before Phi^-1
NEVER = -1e4  # the logit of a level not drawn: exp(-1e4) is 0, so decoding keeps the drawn level exactly


@dataclass(frozen=True)
class SurvivalLayout:
    """Where the survival columns sit in a fitted transform's encoded layout: the time's value column (a quantile
    Gaussian), the event's one-hot block, every column but the time (`base`) and every column but the time and
    the event (`covariates`), with their spans."""

    time: int
    event: list[int]
    base: list[int]
    base_spans: list[tuple[str, int]]
    covariates: list[int]
    covariate_spans: list[tuple[str, int]]
    spans: list[tuple[str, int]]

    @classmethod
    def of(cls, transformer: TableTransformer) -> SurvivalLayout | None:
        """The layout when the transform declares a time (quantile-encoded, whatever `numeric` says: the
        transformer keeps a declared survival time in quantile form) and an event (one-hot), else None."""
        if transformer.time is None or transformer.event is None:
            return None
        time_t, event_t = transformer.transform_of(transformer.time), transformer.transform_of(transformer.event)
        if type(time_t) is not NumericTransform or not isinstance(event_t, CategoricalTransform) \
                or isinstance(time_t, DatetimeTransform) or time_t.max_ <= time_t.min_:
            return None
        starts, start = {}, 0
        for t in transformer.transforms_:
            starts[t.spec.name] = start
            start += t.width
        time, event = starts[transformer.time], starts[transformer.event]
        event_cols = list(range(event, event + event_t.width))
        base_spans, covariate_spans, position = [], [], 0
        for kind, width in transformer.spans:
            if position != time:
                base_spans.append((kind, width))
                if position != event:
                    covariate_spans.append((kind, width))
            position += width
        return cls(time, event_cols, [c for c in range(transformer.width) if c != time], base_spans,
                   [c for c in range(transformer.width) if c != time and c not in event_cols], covariate_spans,
                   list(transformer.spans))


class TimeHead(nn.Module):
    """The joint distribution of the event level and the time's bin given the covariates: logits over
    (event levels x `bins`) classes, a discrete-time model of the observed outcome that keeps event times and
    censoring times apart.

    It reads the columns of a matrix laid out as its family trains (`inputs` the covariates, the `event` block and
    the `time` value are positions in that layout), so a family may keep its data in its own column order."""

    def __init__(self, inputs: torch.Tensor, event: torch.Tensor, time: int, bins: int = TIME_BINS,
                 hidden: tuple[int, ...] = TIME_HIDDEN) -> None:
        super().__init__()
        self.inputs, self.event, self.time, self.bins = inputs, event, time, bins
        sizes = [len(inputs), *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*layers, nn.Linear(sizes[-1], len(event) * bins))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, event levels x bins) logits of the outcome given each row's covariates."""
        return self.body(x[:, self.inputs]).float()

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """The cross-entropy of every row's (event, time bin), summed over rows (a per-row sum: DP-SGD vmaps it)."""
        logits = self.logits(x)
        u = torch.special.ndtr(x[:, self.time].float())[:, None]
        k = torch.arange(self.bins, device=x.device, dtype=u.dtype)
        in_bin = (u >= k / self.bins) & ((u < (k + 1) / self.bins) | (k == self.bins - 1))
        target = (x[:, self.event, None].float() * in_bin[:, None, :]).reshape(x.shape[0], -1)
        return (torch.logsumexp(logits, 1) - (logits * target).sum(1)).sum()

    def sample(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's event level and encoded time z = Phi^-1(u): an (event, bin) class from the head, then u
        uniform within the bin."""
        probabilities = torch.softmax(self.logits(x), 1)
        drawn = torch.multinomial(probabilities, 1, generator=generator)[:, 0]
        level, k = drawn // self.bins, (drawn % self.bins).to(probabilities.dtype)
        jitter = torch.rand(k.shape, generator=generator, device=k.device, dtype=k.dtype)
        u = ((k + jitter) / self.bins).clamp(_U_EPS, 1 - _U_EPS)
        return level, torch.special.ndtri(u.double()).float()


def draw_levels(out: torch.Tensor, spans: list[tuple[str, int]], generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw every softmax block of generator output `out` (transform layout) in torch. Returns the output with
    each block's logits made certain of the drawn level (decoding keeps it) and the rows with each block one-hot,
    as the head was trained on; Gaussian values pass through both."""
    certain, onehot, start = out.clone(), out.clone(), 0
    for kind, width in spans:
        if kind == "softmax":
            block = out[:, start:start + width].float()
            level = torch.multinomial(torch.softmax(block, 1), 1, generator=generator)[:, 0]
            hot = torch.nn.functional.one_hot(level, width).to(out.dtype)
            onehot[:, start:start + width] = hot
            certain[:, start:start + width] = (1 - hot) * NEVER
        start += width
    return certain, onehot
