"""SequenceVAE in one process: sampled sequences keep the Sequences contract, lengths (the pooled histogram),
intervals, missingness and within-patient autocorrelation come back after a short fit, conditions on the context
hold, a seed repeats, and the DP-SGD path (the written-out GRU under per-sample gradients) computes the same loss
and exact gradients.
Under mpiexec with the round loop: tests/federated/test_sequence_federated.py."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import ks_2samp

from hpcsynth.data.sequences import Sequences
from hpcsynth.federated.privacy import make_dpsgd
from hpcsynth.models import MODELS, SEQUENCE_MODELS, SequenceVAE
from model_support import per_sample_matrix
from models.sequence_support import cohort

SMALL = {"batch_size": 100, "hidden": [64], "latent_dim": 16, "gru_dim": 32, "lr": 3e-3, "max_visits": 12,
         "compile": "off"}


@pytest.fixture(scope="module")
def real():
    return cohort(300, seed=2)


@pytest.fixture(scope="module")
def fitted(real, one_thread):
    return SequenceVAE(epochs=60, seed=0, **SMALL).fit(real)


@pytest.fixture(scope="module")
def synthetic(fitted):
    return fitted.sample(400)


def log_gaps(s: Sequences) -> pd.Series:
    return np.log(s.visits.groupby(s.key)[s.index].diff().dropna())


def test_sampled_sequences_keep_the_contract(fitted, synthetic, real):
    assert synthetic.key == real.key and synthetic.index == real.index
    assert synthetic.context[real.key].tolist() == list(range(400))
    assert list(synthetic.context.columns) == list(real.context.columns)
    assert list(synthetic.visits.columns) == list(real.visits.columns)
    visits = synthetic.visits
    assert visits[real.key].is_monotonic_increasing
    first = visits.groupby(real.key)[real.index].first()
    assert (first == 0).all()
    assert (visits.groupby(real.key)[real.index].diff().dropna() > 0).all()
    lengths = synthetic.lengths()
    assert lengths.min() >= 1 and lengths.max() <= fitted.transformer_.t_max_ == 12
    assert set(visits["progression"]) <= {0, 1} and set(synthetic.context["arm"]) <= {"A", "B"}


def test_lengths_and_intervals_are_reproduced(fitted, synthetic, real):
    real_lengths = np.minimum(real.lengths(), fitted.transformer_.t_max_)
    assert ks_2samp(real_lengths, synthetic.lengths()).statistic < 0.15
    assert ks_2samp(log_gaps(real), log_gaps(synthetic)).statistic < 0.25  # 0.18 at seeds 0 and 1


def test_a_release_follows_the_merged_length_histogram(fitted, monkeypatch):
    """Sampling accepts each drawn length by p(L) / q(L): the release's lengths follow the pooled histogram (folded
    at T_max) where the length head alone, decoded from the prior, drifts from it."""
    t = fitted.transformer_
    counts = t.length_counts_[1:]
    p = np.r_[counts[:t.t_max_ - 1], counts[t.t_max_ - 1:].sum()] / counts.sum()

    def distance(release: Sequences) -> float:
        h = np.bincount(release.lengths(), minlength=t.t_max_ + 1)[1:]
        return 0.5 * np.abs(h / h.sum() - p).sum()

    corrected = distance(fitted.sample(2000, seed=3))  # 0.028
    monkeypatch.setattr(SequenceVAE, "_length_acceptance", lambda self, generator: np.ones(t.t_max_))
    head_alone = distance(fitted.sample(2000, seed=3))  # 0.089
    assert corrected < 0.05 and corrected < head_alone / 2


def test_missingness_is_reproduced_and_complete_columns_stay_complete(synthetic, real):
    assert abs(synthetic.visits["plt"].isna().mean() - real.visits["plt"].isna().mean()) < 0.05
    assert synthetic.visits["hb"].notna().all()


def test_haemoglobin_keeps_its_within_patient_autocorrelation(synthetic):
    visits = synthetic.visits
    previous = visits.groupby(synthetic.key)["hb"].shift()
    kept = previous.notna()
    assert np.corrcoef(visits["hb"][kept], previous[kept])[0, 1] > 0.5  # 0.8 in the real cohort


def test_conditions_on_the_context_hold_and_carry_the_arms_shorter_intervals(fitted):
    arm_b = fitted.sample(200, conditions={"arm": "B"}, seed=5)
    arm_a = fitted.sample(200, conditions={"arm": "A"}, seed=5)
    assert (arm_b.context["arm"] == "B").all() and (arm_a.context["arm"] == "A").all()
    assert arm_b.n_patients == arm_a.n_patients == 200
    assert np.median(log_gaps(arm_b)) < np.median(log_gaps(arm_a)) - np.log(1.3)  # real: 30 days against 90
    with pytest.raises(ValueError, match="'arm' has no level 'C'"):
        fitted.sample(10, conditions={"arm": "C"})
    with pytest.raises(ValueError, match="column 'age' is numeric"):
        fitted.sample(10, conditions={"age": 60})


def test_the_same_seed_gives_the_same_patients_and_the_same_fit(real, fitted, one_thread):
    a, b = fitted.sample(50, seed=3), fitted.sample(50, seed=3)
    pd.testing.assert_frame_equal(a.visits, b.visits)
    pd.testing.assert_frame_equal(a.context, b.context)
    assert not fitted.sample(50, seed=4).visits.equals(a.visits)
    small = real.context.iloc[:60]
    subset = Sequences(small, real.visits[real.visits[real.key].isin(small[real.key])], real.key, real.index)
    first, second = (SequenceVAE(epochs=2, seed=1, **SMALL).fit(subset) for _ in range(2))
    assert torch.equal(first.shared_parameters(), second.shared_parameters())


def test_a_saved_model_loads_and_samples_the_same_patients(fitted, tmp_path):
    fitted.save(tmp_path / "model.h5")
    loaded = SequenceVAE.load(tmp_path / "model.h5")
    assert repr(loaded) == repr(fitted) and loaded.transformer_.t_max_ == fitted.transformer_.t_max_
    a, b = fitted.sample(30, seed=9), loaded.sample(30, seed=9)
    pd.testing.assert_frame_equal(a.visits, b.visits)
    pd.testing.assert_frame_equal(a.context, b.context)


def test_the_private_path_computes_the_same_loss_and_exact_per_patient_gradients(real, one_thread):
    model = SequenceVAE(seed=0, **SMALL)
    transformer = model.make_transformer().fit(real)
    model.setup(transformer)
    batch = model.to_device(transformer.encode(real))[:5]
    noise = model.loss_noise(5)
    fused = model.loss(batch, noise)
    model.make_private(make_dpsgd(2.0, 1e-5, 1.0, "rdp", 0.1, 100, torch.Generator()))
    unrolled = model.loss(batch, noise)  # private: the written-out GRU, which torch.func batches per sample
    assert float(unrolled.detach()) == pytest.approx(float(fused.detach()), rel=1e-5)
    per_patient = per_sample_matrix(model.privacy_, batch, noise)
    model.flat_.zero_grad()
    (model.loss(batch, noise) * 5).backward()
    torch.testing.assert_close(per_patient.sum(0), model.shared_gradients(), rtol=1e-4, atol=1e-4)
    assert float(per_patient.norm(dim=1).min()) > 0


def test_a_level_that_ends_follow_up_ends_every_synthetic_patient_there(real, one_thread):
    """The data end a record at progression; a barely trained model draws progression anywhere, unless the level
    is declared to end follow-up: then each patient ends at the first visit drawn there."""
    ends = {"progression": [1]}
    free = SequenceVAE(epochs=2, seed=0, **SMALL).fit(real).sample(300)
    assert len(free.ended_early(ends)) > 10
    model = SequenceVAE(epochs=2, seed=0, ends=ends, **SMALL).fit(real)
    release = model.sample(300)
    assert len(release.ended_early(ends)) == 0 and release.visits["progression"].sum() > 10
    assert release.lengths().mean() < free.lengths().mean()  # the same draws, cut at the progression
    again = type(model.transformer_).from_state(model.transformer_.state())
    assert again.ends == ends and np.array_equal(again.end_positions_, model.transformer_.end_positions_)


def test_an_ending_column_must_be_categorical(real, one_thread):
    from hpcsynth.data.schema import DataError

    with pytest.raises(DataError, match=r"data.sequence.ends.hb: 'hb' is not categorical or binary"):
        SequenceVAE(epochs=1, ends={"hb": [12.0]}, **SMALL).fit(real)


def test_registered_as_a_sequence_family_with_its_declarations():
    assert SEQUENCE_MODELS["sequence_vae"] is SequenceVAE and "sequence_vae" not in MODELS
    assert SequenceVAE.trains_by == "gradients" and SequenceVAE.dp_sgd and SequenceVAE.supports_privacy
    assert SequenceVAE.has_latent and SequenceVAE.compilable and not SequenceVAE.survival_aware
    assert "max_visits" in SequenceVAE.param_names() and "time" not in SequenceVAE.param_names()
    for name in SequenceVAE.param_names():
        assert f"\n    {name} :" in SequenceVAE.__doc__, name
