"""Survival-aware CTGAN: with a time and an event declared, the generator, the critic and the
conditional vector cover the covariates, and a survival head trained in the critic's step draws the event and the
time given them. On the simulated cohort of `survival_support` the synthetic rows recover the hazard ratio and the
Kaplan-Meier curve; the head lives in the flat buffer, so local training, checkpoints, saved models and federated
averaging all carry it."""
import threading

import numpy as np
import pytest
import torch

from comm_support import ThreadSumComm
from hpcsynth.data.mode_specific import ModeSpecificTransform
from hpcsynth.data.transforms import NumericTransform
from hpcsynth.federated.strategies import FedAvg
from hpcsynth.models import CTGAN
from model_support import assert_local_state_resumes
from survival_support import assert_a_saved_model_keeps_the_head, check_survival, simulate

TINY = dict(batch_size=100, embedding_dim=8, generator_dim=[16], discriminator_dim=[16], seed=0,
            categorical=["group"], time="time", event="event", compile="off")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cohort():
    """Seed 4: its own rows estimate a hazard ratio of 2.01 (as in tests/test_survival_synthesis.py)."""
    return simulate(seed=4)


@pytest.fixture(scope="module")
def tiny(cohort):
    return CTGAN(epochs=1, **TINY).fit(cohort)


def head_span(model: CTGAN) -> slice:
    """Where the survival head's parameters lie in the flat buffer."""
    params = list(model.time_head_.parameters())
    return slice(model.flat_.span(params[0]).start, model.flat_.span(params[-1]).stop)


def test_centralized_ctgan_recovers_the_hazard_ratio_and_the_survival_curve(cohort):
    # 1500 steps of 100 rows; the head trains at the critic's rate (seeds 0, 1, 2: hazard ratios 2.07, 1.91, 2.12)
    model = CTGAN(epochs=100, batch_size=100, embedding_dim=32, generator_dim=[64, 64], discriminator_dim=[64, 64],
                  seed=0, categorical=["group"], time="time", event="event", compile="off").fit(cohort)
    check_survival(model.sample(6000), cohort)


def test_the_time_is_quantile_encoded_and_the_networks_cover_the_covariates_only(tiny):
    transformer = tiny.transformer_
    assert type(transformer.transform_of("time")) is NumericTransform  # whatever `numeric` (mode_specific) says
    assert isinstance(transformer.transform_of("age"), ModeSpecificTransform)
    layout = tiny.survival_layout_
    assert tiny.width_ == len(layout.covariates) == transformer.width - 1 - len(layout.event)
    assert sorted(tiny.perm_.tolist()) == layout.covariates
    assert tiny.generator_[-1].out_features == tiny.width_
    assert tiny.critic_.weight_data.shape[1] == tiny.width_ * tiny.pac
    conditioned = {transformer.columns[c] for c in tiny.block_of_column_}
    assert conditioned == {"treated", "group"}  # the event is no level of the conditional vector


def test_the_head_is_in_the_flat_buffer_and_a_local_update_trains_it(tiny, cohort):
    flat = tiny.shared_parameters()
    modules = (tiny.generator_, tiny.critic_, tiny.time_head_)
    assert flat.numel() == sum(p.numel() for m in modules for p in m.parameters())
    span = head_span(tiny)
    assert span.stop == flat.numel()  # after the critic: the critic's step trains one consecutive region
    before = flat[span].clone()
    tiny.local_update(tiny.to_device(tiny.transformer_.encode(cohort)), 2)
    assert not torch.equal(before, flat[span])


def test_local_state_resumes_exactly(tiny, cohort):
    model = CTGAN(**TINY).setup(tiny.transformer_)
    assert_local_state_resumes(model, model.to_device(tiny.transformer_.encode(cohort)), 3)


def test_fedavg_averages_the_head_with_the_networks(tiny, cohort):
    # two sites: after a local update on its own rows each, FedAvg (the sites as threads, for its collectives)
    # leaves both with the size-weighted mean of their buffers, head included
    parts = [cohort.iloc[:900], cohort.iloc[900:]]
    shared = {"size": 2, "slots": [None] * 2, "barrier": threading.Barrier(2)}
    models, trained, averaged = [], [], [None, None]
    for k in range(2):  # in turn: the training streams draw from torch's global generator too
        models.append(CTGAN(**TINY).setup(tiny.transformer_, stream=k))
        models[k].local_update(models[k].to_device(tiny.transformer_.encode(parts[k])), 3)
        trained.append(models[k].shared_parameters().clone())

    def site(k: int) -> None:
        comm, strategy = ThreadSumComm(k, shared), FedAvg()
        strategy.setup(len(parts[k]), 100, comm)
        strategy.aggregate(models[k].shared_parameters(), comm)
        averaged[k] = models[k].shared_parameters().clone()

    threads = [threading.Thread(target=site, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    span = head_span(models[0])
    assert not torch.equal(trained[0][span], trained[1][span])
    expected = (900 * trained[0] + 600 * trained[1]) / 1500
    for k in range(2):
        torch.testing.assert_close(averaged[k][span], expected[span])


def test_a_saved_model_keeps_the_head(tiny, tmp_path):
    assert_a_saved_model_keeps_the_head(tiny, tmp_path / "ctgan.h5")


def test_a_covariate_condition_holds_and_an_event_condition_is_refused(tiny):
    sample = tiny.sample(100, conditions={"group": "b", "treated": 1})
    assert (sample["group"] == "b").all() and (sample["treated"] == 1).all()
    assert sample["event"].isin([0, 1]).all() and np.isfinite(sample["time"]).all()
    with pytest.raises(ValueError, match="survival event"):
        tiny.sample(10, conditions={"event": 1})


def test_without_an_event_the_time_is_an_ordinary_column(cohort):
    model = CTGAN(epochs=1, **{**TINY, "event": None, "numeric": "quantile"}).fit(cohort.drop(columns="event"))
    assert model.time_head_ is None and model.survival_layout_ is None
    assert model.width_ == model.transformer_.width and len(model.sample(10)) == 10
