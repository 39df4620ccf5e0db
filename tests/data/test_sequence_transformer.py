"""The patient-row encoding of sequences (hpcsynth.data.sequence_transformer): encode then decode returns the
sequences up to T_max truncation, T_max is the quantile of the merged lengths, the state round-trips, and bad
input is named. The merged (three-site) fit equals the pooled one: tests/federated/test_sequence_federated.py."""
import numpy as np
import pandas as pd
import pytest

from hpcsynth.data.schema import DataError
from hpcsynth.data.sequence_transformer import SequenceTransformer, hard_logits
from hpcsynth.data.sequences import Sequences
from models.sequence_support import cohort


def as_output(transformer: SequenceTransformer, matrix: np.ndarray) -> np.ndarray:
    """Encoded rows as generator output that decodes to themselves: every softmax block as hard logits."""
    out, start = matrix.copy(), 0
    for kind, width in transformer.spans:
        if kind == "softmax":
            out[:, start:start + width] = hard_logits(matrix[:, start:start + width])
        start += width
    return out


def truncated(sequences: Sequences, t_max: int) -> pd.DataFrame:
    visits = sequences.visits
    return visits[visits.groupby(sequences.key).cumcount() < t_max].reset_index(drop=True)


@pytest.fixture(scope="module")
def sequences():
    return cohort(150, seed=1)


@pytest.fixture(scope="module")
def fitted(sequences):
    return SequenceTransformer(quantile=0.9).fit(sequences)


def test_encode_then_decode_returns_the_sequences_up_to_t_max(sequences, fitted):
    matrix = fitted.encode(sequences)
    assert matrix.shape == (150, fitted.width) and matrix.dtype == np.float32
    keys = sequences.context[sequences.key].to_numpy()
    back = fitted.decode(as_output(fitted, matrix), np.random.default_rng(0), keys=keys)
    assert (sequences.lengths() > fitted.t_max_).any()  # some records are cut
    pd.testing.assert_frame_equal(back.context.drop(columns="age"), sequences.context.drop(columns="age"),
                                  check_dtype=False)
    np.testing.assert_allclose(back.context["age"], sequences.context["age"], atol=0.05)
    want = truncated(sequences, fitted.t_max_)
    assert list(back.visits.columns) == list(want.columns)
    assert back.visits[sequences.key].tolist() == want[sequences.key].tolist()
    assert back.visits["progression"].tolist() == want["progression"].tolist()
    assert back.visits["plt"].isna().tolist() == want["plt"].isna().tolist()  # missing where it was missing
    np.testing.assert_allclose(back.visits["plt"].dropna(), want["plt"].dropna(), rtol=0.01)
    np.testing.assert_allclose(back.visits["hb"], want["hb"], atol=0.02)
    # the index is the running sum of the decoded intervals: within a fraction of a day over a year's record
    np.testing.assert_allclose(back.visits[sequences.index], want[sequences.index], atol=1.0, rtol=0.005)


def test_t_max_is_the_quantile_of_the_lengths_and_longer_records_keep_their_first_visits(sequences, fitted):
    lengths = sequences.lengths()
    assert (lengths <= fitted.t_max_).mean() >= 0.9 > (lengths <= fitted.t_max_ - 1).mean()
    assert SequenceTransformer(quantile=1.0).fit(sequences).t_max_ == lengths.max()
    assert SequenceTransformer(max_visits=4).fit(sequences).t_max_ == 4
    _, length_block, visits = fitted.split(fitted.encode(sequences))
    np.testing.assert_array_equal(length_block.argmax(1) + 1, np.minimum(lengths, fitted.t_max_))
    np.testing.assert_array_equal(visits[..., -1].sum(1), np.minimum(lengths, fitted.t_max_))


def test_the_fitted_state_round_trips_to_the_same_encoding(sequences, fitted):
    again = SequenceTransformer.from_state(fitted.state())
    assert again.t_max_ == fitted.t_max_ and again.spans == fitted.spans
    np.testing.assert_array_equal(again.encode(sequences), fitted.encode(sequences))


def test_a_patient_without_visits_is_named(sequences, fitted):
    visits = sequences.visits[sequences.visits[sequences.key] != 7]
    with pytest.raises(DataError, match="patient 7 has no visits"):
        fitted.encode(Sequences(sequences.context, visits, sequences.key, sequences.index))


def test_records_of_one_visit_only_and_a_cap_below_two_are_refused(sequences):
    first = sequences.visits.groupby(sequences.key).head(1)
    with pytest.raises(DataError, match="no patient on any site has a second visit"):
        SequenceTransformer().fit(Sequences(sequences.context, first, sequences.key, sequences.index))
    with pytest.raises(ValueError, match="max_visits: expected at least 2"):
        SequenceTransformer(max_visits=1).fit(sequences)
