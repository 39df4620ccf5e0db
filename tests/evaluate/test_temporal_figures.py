"""The temporal figures: PNG bytes the report can embed, the histograms from counts merged over sites equal to the
pooled patients', the spaghetti plot drawing the asked number of patients per side."""
import numpy as np
import sequence_cases as cases

from hpcsynth.evaluate.temporal import time_profiles
from hpcsynth.evaluate.temporal_figures import length_interval_counts, spaghetti_figure, temporal_figures

PNG = b"\x89PNG\r\n\x1a\n"


def test_the_three_figures_are_png_bytes():
    real = cases.real_cohort(30, 0)
    synthetic = cases.faithful(real)
    figures = temporal_figures(real, synthetic, time_profiles(real, synthetic, list(cases.LABS)), list(cases.LABS))
    assert set(figures) == {"spaghetti", "profiles", "lengths_intervals"}
    assert all(b.startswith(PNG) and len(b) > 2000 for b in figures.values())


def test_the_spaghetti_plot_draws_the_asked_patients_on_one_value_axis():
    real = cases.real_cohort(30, 0)
    fig = spaghetti_figure(real, cases.iid_labs(real), ["hb"], n_patients=7)
    left, right = fig.axes
    assert len(left.lines) == len(right.lines) == 7 and left.get_ylim() == right.get_ylim()


def test_histogram_counts_merged_over_sites_equal_the_pooled_patients(sites):
    real = cases.real_cohort(60, 0)
    synthetic = cases.wrong_lengths(real)
    pooled = length_interval_counts(real, synthetic)
    parts = cases.split_sites(real, 3)
    for each in sites(lambda comm, k: length_interval_counts(parts[k], synthetic, comm), 3):
        for name in ("length", "interval"):
            for got, want in zip(each[name], pooled[name]):
                np.testing.assert_array_equal(got, want)
    assert pooled["length"][1].sum() == 60 and pooled["length"][2][1] == 60  # every synthetic patient has 2 visits
