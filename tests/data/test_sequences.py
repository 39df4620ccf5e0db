"""Raw visits become `Sequences`: the index in days since each patient's first visit whatever it came as, sorted,
the static columns once per patient; each malformed input is one DataError naming the table and the column; the
held-out split takes whole patients; the cross-site check sees shared patients from salted hashes alone."""
import numpy as np
import pandas as pd
import pytest

from hpcsynth.comm import SitesInOneProcess, SoloComm
from hpcsynth.data.schema import DataError
from hpcsynth.data.sequences import (
    Sequences,
    check_one_site_per_patient,
    key_hashes,
    sequences_from_long,
    sequences_from_tables,
    split_patients,
)


def raw(index) -> pd.DataFrame:
    """Two patients, visits out of order, `sex` static, `hb` per visit."""
    return pd.DataFrame({"pid": ["b", "a", "a", "b", "a"], "t": index, "sex": ["M", "F", "F", "M", "F"],
                         "hb": [9.1, 8.0, 8.5, 9.9, 7.2]})


@pytest.mark.parametrize("index", [
    [105, 10, 41, 100, 19],
    [105.0, 10.0, 41.0, 100.0, 19.0],
    ["2021-04-15", "2021-01-10", "2021-02-10", "2021-04-10", "2021-01-19"],
    pd.to_datetime(["2021-04-15", "2021-01-10", "2021-02-10", "2021-04-10", "2021-01-19"]),
    pd.to_datetime(["2021-04-15", "2021-01-10", "2021-02-10", "2021-04-10", "2021-01-19"]).tz_localize("Europe/Rome"),
])
def test_days_or_dates_become_days_since_the_first_visit_sorted_by_patient(index):
    seqs = sequences_from_long(raw(index), "pid", "t", ["sex"], "visits.csv")
    assert seqs.context.to_dict("list") == {"pid": ["a", "b"], "sex": ["F", "M"]}
    assert seqs.visits["pid"].tolist() == ["a", "a", "a", "b", "b"]
    assert seqs.visits["t"].tolist() == [0.0, 9.0, 31.0, 0.0, 5.0]
    assert seqs.visits["hb"].tolist() == [8.0, 7.2, 8.5, 9.9, 9.1]
    assert seqs.visit_columns == ["hb"] and seqs.context_columns == ["sex"]
    assert seqs.lengths().tolist() == [3, 2]


def test_two_tables_give_the_same_sequences_as_the_long_table():
    long = sequences_from_long(raw([105, 10, 41, 100, 19]), "pid", "t", ["sex"])
    frame = raw([105, 10, 41, 100, 19])
    pair = sequences_from_tables(frame[["pid", "sex"]].drop_duplicates(), frame.drop(columns=["sex"]), "pid", "t")
    pd.testing.assert_frame_equal(long.context, pair.context)
    pd.testing.assert_frame_equal(long.visits, pair.visits)


BAD_LONG = {
    "duplicate (key, index)": (raw([105, 10, 10, 100, 19]),
                               "visits.csv: duplicate (key, index) ('pid', 't'): patient 'a' has 2 visits at t = 10"),
    "missing index": (raw([105, 10, None, 100, 19]),
                      "visits.csv: index column 't' (data.sequence.index) is not monotone after sorting: 1 visits "
                      "have no usable time (the first: patient 'a', value nan)"),
    "infinite index": (raw([105, 10, np.inf, 100, 19]), "is not monotone after sorting"),
    "text index": (raw(["3", "1", "soon", "4", "2"]),
                   "neither numbers of days nor dates, such as ['soon']"),
    "varying context": (raw([105, 10, 41, 100, 19]).assign(sex=["M", "F", "M", "M", "F"]),
                        "visits.csv: context column 'sex' (data.context) is not constant within patient 'a' "
                        "(values ['F', 'M'])"),
    "missing key": (raw([105, 10, 41, 100, 19]).assign(pid=["b", None, "a", "b", "a"]),
                    "key column 'pid' (data.sequence.key) has 1 missing values"),
}


@pytest.mark.parametrize("name", list(BAD_LONG))
def test_a_malformed_long_table_is_one_line_naming_the_table_and_column(name):
    frame, message = BAD_LONG[name]
    with pytest.raises(DataError) as err:
        sequences_from_long(frame, "pid", "t", ["sex"], "visits.csv")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_missing_named_column_names_its_option():
    with pytest.raises(DataError, match=r"visits.csv: column 'arm' \(data.context\) not found"):
        sequences_from_long(raw([1, 2, 3, 4, 5]), "pid", "t", ["arm"], "visits.csv")
    with pytest.raises(DataError, match=r"column 'when' \(data.sequence.index\) not found"):
        sequences_from_long(raw([1, 2, 3, 4, 5]), "pid", "when", [], "visits.csv")


def test_a_patient_without_visits_and_visits_without_a_patient_are_refused():
    frame = raw([105, 10, 41, 100, 19])
    context = pd.DataFrame({"pid": ["a", "b", "c", "d"], "sex": ["F", "M", "F", "M"]})
    with pytest.raises(DataError, match="ctx: patient 'c' has no visits \\(2 patients of the context table have "
                                        "none\\)"):
        sequences_from_tables(context, frame.drop(columns=["sex"]), "pid", "t", "ctx")
    with pytest.raises(DataError, match="visits of patient 'b' have no row in the context table"):
        sequences_from_tables(context.iloc[:1], frame.drop(columns=["sex"]), "pid", "t", "ctx")
    with pytest.raises(DataError, match="patient 'a' has 2 rows in the context table"):
        sequences_from_tables(pd.concat([context.iloc[:2], context.iloc[:1]]), frame.drop(columns=["sex"]),
                              "pid", "t", "ctx")


def test_the_held_out_split_takes_whole_patients_reproducibly():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"pid": np.repeat(np.arange(400), 4), "t": np.tile([0, 7, 30, 90], 400),
                          "hb": rng.normal(9, 1, 1600)})
    seqs = sequences_from_long(frame, "pid", "t")
    train, held = split_patients(seqs, 0.25, seed=1, site=0)
    assert set(train.visits["pid"]).isdisjoint(held.visits["pid"])
    assert train.n_patients + held.n_patients == 400 and 70 < held.n_patients < 130
    assert (train.lengths() == 4).all() and (held.lengths() == 4).all()
    again, _ = split_patients(seqs, 0.25, seed=1, site=0)
    other, _ = split_patients(seqs, 0.25, seed=1, site=1)
    assert again.context["pid"].tolist() == train.context["pid"].tolist() != other.context["pid"].tolist()


def test_key_hashes_spell_a_key_one_way_and_depend_on_the_seed():
    assert np.array_equal(key_hashes([17, 17.0, "17", np.int64(17)], seed=3), key_hashes(["17"], seed=3))
    assert key_hashes([1, 2, 3], seed=3).size == 3
    assert not np.array_equal(key_hashes(["17"], seed=3), key_hashes(["17"], seed=4))


def test_every_site_raises_the_same_line_for_patients_on_two_sites_from_hashes_alone():
    keys = [["p1", "p2", "p3"], ["p4", "p2", "p5", "p3"], ["p6", 7]]

    def site(comm):
        try:
            check_one_site_per_patient(keys[comm.rank], comm, seed=9, where="data.sites")
        except DataError as err:
            return str(err), err.everywhere
        return None

    results = SitesInOneProcess(3).run(site)
    assert len(set(results)) == 1
    message, everywhere = results[0]
    assert everywhere and message == ("data.sites: 2 patients have visits on more than one site (sites 0 and 1 share "
                                      "2); all visits of a patient must be on one site (matched by salted hashes of "
                                      "data.sequence.key)")
    assert "p2" not in message and "p3" not in message
    assert SitesInOneProcess(3).run(lambda comm: check_one_site_per_patient(
        [["a"], ["b"], [7.0]][comm.rank], comm, 0, "x")) == [None] * 3
    check_one_site_per_patient(["a", "a", "b"], SoloComm(), 0, "x")  # one site: its own repeats are not shared


def test_patients_with_a_visit_after_an_ending_level_are_found():
    context = pd.DataFrame({"pid": [1, 2, 3]})
    visits = pd.DataFrame({"pid": [1, 1, 2, 2, 2, 3], "day": [0, 5, 0, 4, 9, 0],
                           "state": ["ok", "dead", "ok", "aml", "ok", "dead"], "flag": [0, 0, 1, 0, 0, 1]})
    seqs = Sequences(context, visits, "pid", "day")
    assert list(seqs.ended_early({"state": ["dead"]})) == []  # a last visit may be at an ending level
    assert list(seqs.ended_early({"state": ["dead", "aml"]})) == [2]
    assert list(seqs.ended_early({"flag": [1]})) == [2]
    assert list(seqs.ended_early({})) == []
