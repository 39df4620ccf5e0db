"""The generators, one module each, all `hpcsynth.models.estimator.Generator`s; the registry `MODELS`."""
from collections.abc import Mapping
from typing import Any

from hpcsynth.models.bayesnet import BayesianNetwork
from hpcsynth.models.ctgan import CTGAN
from hpcsynth.models.ddpm import TabDDPM
from hpcsynth.models.estimator import Generator
from hpcsynth.models.protocol import GradientGenerator
from hpcsynth.models.sequence_vae import SequenceVAE
from hpcsynth.models.tvae import TVAE
from hpcsynth.models.vae_bgm import VAEBGM

MODELS: dict[str, type[Generator]] = {cls.name: cls for cls in (TVAE, CTGAN, VAEBGM, TabDDPM, BayesianNetwork)}
# the generators of `Sequences` (patients as visit sequences), apart from the table families
SEQUENCE_MODELS: dict[str, type[Generator]] = {cls.name: cls for cls in (SequenceVAE,)}


def make_model(options: Mapping[str, Any], seed: int, epochs: int) -> Generator:
    """The generator `options["name"]` names (a job's `model:` section as a mapping), with the job's seed; each
    family takes the options its constructor names (so `model:` can hold several families' hyperparameters),
    and `epochs` when it trains by epochs."""
    cls = {**MODELS, **SEQUENCE_MODELS}[options["name"]]
    accepted = cls.param_names()
    params = {k: v for k, v in options.items() if k in accepted and v is not None}
    params["seed"] = seed
    if "epochs" in accepted:
        params["epochs"] = epochs
    return cls(**params)


__all__ = ["Generator", "GradientGenerator", "BayesianNetwork", "CTGAN", "TabDDPM", "TVAE", "VAEBGM", "make_model",
           "MODELS", "SequenceVAE", "SEQUENCE_MODELS"]
