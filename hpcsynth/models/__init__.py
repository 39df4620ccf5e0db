"""The generators, one module each, behind one protocol (`hpcsynth.models.base.Generator`)."""
from hpcsynth.config import ModelConfig
from hpcsynth.models.base import Generator
from hpcsynth.models.tvae import TVAE

MODELS = {"tvae": TVAE}


def make_model(cfg: ModelConfig, seed: int, epochs: int) -> Generator:
    """The generator a job's `model:` section names, with the job's seed."""
    cls = MODELS[cfg.name]
    return cls(epochs=epochs, batch_size=cfg.batch_size, hidden=list(cfg.hidden), latent_dim=cfg.latent_dim,
               loss_factor=cfg.loss_factor, lr=cfg.lr, weight_decay=cfg.weight_decay, device=cfg.device, seed=seed)


__all__ = ["Generator", "TVAE", "make_model", "MODELS"]
