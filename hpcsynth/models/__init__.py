"""The generators, one module each, behind one protocol (`hpcsynth.models.base.Generator`)."""
import inspect
from typing import Any, Mapping

from hpcsynth.models.base import Generator
from hpcsynth.models.bayesnet import BayesianNetwork
from hpcsynth.models.ctgan import CTGAN
from hpcsynth.models.ddpm import TabDDPM
from hpcsynth.models.tvae import TVAE
from hpcsynth.models.vae_bgm import VAEBGM

MODELS: dict[str, type] = {cls.name: cls for cls in (TVAE, CTGAN, VAEBGM, TabDDPM, BayesianNetwork)}


def _accepted(cls: type) -> set[str]:
    """Keyword arguments a generator's constructor takes (its own and the shared ones of `Generator`)."""
    names = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names |= set(inspect.signature(klass.__init__).parameters) - {"self", "kwargs"}
    return names


def make_model(options: Mapping[str, Any], seed: int, epochs: int) -> Generator | BayesianNetwork:
    """The generator `options["name"]` names (a job's `model:` section as a mapping), with the job's seed; each
    family takes the options that its constructor accepts (so `model:` can hold one family's hyperparameters)."""
    cls = MODELS[options["name"]]
    options = {k: v for k, v in options.items() if k in _accepted(cls) and v is not None}
    options["seed"] = seed
    if "epochs" in _accepted(cls):  # families that train by epochs (not the count-based Bayesian network)
        options["epochs"] = epochs
    return cls(**options)


__all__ = ["Generator", "BayesianNetwork", "CTGAN", "TabDDPM", "TVAE", "VAEBGM", "make_model", "MODELS"]
