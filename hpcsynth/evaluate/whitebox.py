"""White-box membership inference on a run's trained weights: Yeom et al. (2018)'s loss-threshold attack.

An insider holding `/checkpoint/params` can rebuild the generator and ask how well it fits each candidate row:
a model that memorised its training rows gives them a lower training loss than rows it never saw. The score is
the AUROC of minus the per-row loss, the site's training rows (members, as many as its held-out rows, drawn with
the seed) against its held-out rows (non-members); 0.5 is chance, and the consortium figure is the mean over
sites weighted by held-out rows. It measures what releasing the weights would leak, which is why
`hpcsynth release` ships rows only (docs/release.md).

The per-row loss is, for each family registered in `ROW_LOSSES`:
* TVAE and VAE-BGM: the negative ELBO, loss_factor * reconstruction + KL, on a batch of one row
  (`loss(row[None], draws)`, mapped over the rows with `torch.func.vmap`), the reparameterisation noise drawn
  from the seed, averaged over `DRAWS` draws;
* TabDDPM: likewise its denoising loss at the fixed timesteps `DDPM_TIMESTEPS` (shares of the diffusion steps);
* CTGAN: minus the trained critic's score of the row (`CTGAN.row_scores`, dropout off), the discriminator
  attack of Hayes et al. (LOGAN, PETS 2019): a critic that memorised its training rows scores them higher.
The Bayesian network has no gradient loss; it scores NaN with a note saying why.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from hpcsynth.comm import Communicator
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.pooling import weighted_mean
from hpcsynth.models import CTGAN, TVAE, Generator, GradientGenerator, TabDDPM, make_model

DRAWS = 4  # random draws of the loss averaged per row
DDPM_TIMESTEPS = (0.05, 0.25, 0.5)  # TabDDPM's fixed timesteps, as shares of its diffusion steps
SCORE = "whitebox_membership_auroc"

Draws = Callable[[GradientGenerator, int, int], torch.Tensor]
RowLoss = Callable[[GradientGenerator, torch.Tensor, int, int], np.ndarray]


def _reparameterisation(model: GradientGenerator, n: int, draw: int) -> torch.Tensor:
    """TVAE's (and VAE-BGM's) reparameterisation noise of `n` rows, as its training draws it."""
    return model.loss_noise(n)


def _fixed_timestep(model: GradientGenerator, n: int, draw: int) -> torch.Tensor:
    """TabDDPM's draws of `n` rows with the timestep (their first column) fixed by the draw's number."""
    draws = model.loss_noise(n)
    share = DDPM_TIMESTEPS[draw % len(DDPM_TIMESTEPS)]
    draws[:, 0] = float(min(int(share * model.diffusion_steps), model.diffusion_steps - 1))
    return draws


def _training_loss(make_draws: Draws) -> RowLoss:
    """The family's training loss of each row alone, its draws made by `make_draws`, averaged over draws."""

    def losses(model: GradientGenerator, data: torch.Tensor, seed: int, draws: int) -> np.ndarray:
        one = torch.func.vmap(lambda row, noise: model.loss(row[None], noise[None]), randomness="error")
        total = np.zeros(data.shape[0])
        with torch.no_grad():
            for d in range(draws):
                model.train_generator_.manual_seed(seed * 1000 + d)
                total += one(data, make_draws(model, data.shape[0], d)).double().cpu().numpy()
        return total / draws

    return losses


def _critic_loss(model: CTGAN, data: torch.Tensor, seed: int, draws: int) -> np.ndarray:
    """Minus the critic's score of each row (deterministic: no draws)."""
    return -model.row_scores(data).double().cpu().numpy()


ROW_LOSSES: dict[type[GradientGenerator], RowLoss] = {TVAE: _training_loss(_reparameterisation),
                                                      TabDDPM: _training_loss(_fixed_timestep), CTGAN: _critic_loss}
"""The families with a per-row loss to threshold, and how to compute it from the encoded rows, a seed and the
number of draws."""


def _row_loss_of(model: Generator) -> RowLoss | None:
    for family in type(model).__mro__:
        if family in ROW_LOSSES:
            return ROW_LOSSES[family]
    return None


def rebuild(options: Mapping[str, Any], seed: int, transformer: TableTransformer,
            params: np.ndarray) -> Generator:
    """The run's generator with its trained weights: the family and options of the job's `model:` section, set
    up for the run's stored transform, its flat parameter buffer overwritten with `params` (one row of
    `/checkpoint/params`). A family that does not train by gradients is returned built but untrained."""
    model = make_model(options, seed, 1)
    if not isinstance(model, GradientGenerator):
        return model
    model.setup(transformer)
    flat = model.shared_parameters()
    if params.size < flat.numel():
        raise ValueError(f"/checkpoint/params: {params.size} values, the {model.name} of /config has {flat.numel()}")
    flat.copy_(torch.as_tensor(np.asarray(params[:flat.numel()], dtype=np.float32), device=flat.device))
    return model


def row_losses(model: GradientGenerator, frame: pd.DataFrame, seed: int, draws: int = DRAWS) -> np.ndarray:
    """Every row's training loss (the family's loss on a batch of one row), averaged over `draws` draws seeded by
    `seed`: the same rows and seed give the same losses. It reseeds the model's training stream (the draws come
    from it, as in training), so it is meant for a rebuilt model, not one still training."""
    row_loss = _row_loss_of(model)
    if row_loss is None:
        raise ValueError(f"{model.name}: no per-row training loss (see hpcsynth.evaluate.whitebox.ROW_LOSSES)")
    return row_loss(model, model.to_device(model.transformer_.encode(frame)), seed, draws)


def site_whitebox_auroc(model: Generator, train: pd.DataFrame, holdout: pd.DataFrame, seed: int = 0) -> float:
    """AUROC of minus the per-row loss, as many of the site's training rows (drawn with `seed`) as its held-out
    rows; NaN without held-out rows or without a per-row loss for the family."""
    from sklearn.metrics import roc_auc_score

    n = min(len(train), len(holdout))
    if n == 0 or not isinstance(model, GradientGenerator) or _row_loss_of(model) is None:
        return float("nan")
    members = train.iloc[np.random.default_rng(seed).choice(len(train), n, replace=False)]
    loss_in, loss_out = row_losses(model, members, seed), row_losses(model, holdout.iloc[:n], seed)
    return float(roc_auc_score(np.r_[np.ones(n), np.zeros(n)], -np.r_[loss_in, loss_out]))


def whitebox_note(model: Generator) -> str | None:
    """Why a family scores NaN (None when it has a per-row loss)."""
    if isinstance(model, GradientGenerator) and _row_loss_of(model) is not None:
        return None
    return f"{model.name}: no per-row training loss to threshold; the white-box attack is not run"


def whitebox_membership_auroc(model: Generator, train: pd.DataFrame, holdout: pd.DataFrame, comm: Communicator,
                              seed: int = 0) -> float:
    """The consortium's white-box membership AUROC (collective): each site attacks the weights its release came
    from with its own rows, and the AUROCs are averaged weighted by held-out rows (a site without any, or NaN, is
    left out)."""
    local = site_whitebox_auroc(model, train, holdout, seed)
    return weighted_mean({SCORE: local}, float(len(holdout)), comm)[SCORE]
