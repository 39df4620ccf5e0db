"""IORBO: a rank-based multi-metric Bayesian optimisation (`sampler: iorbo`).

Every completed trial is scored by its mean rank over all objectives (rank 1 the best on an objective, by that
objective's direction; ties share their average rank), and TPE optimises that single number. The ranks change as
trials accrue (a new trial can push every older one down), so the scalarised values are recomputed before every
suggestion. Optuna cannot change the values a study has recorded, so the study itself stays multi-objective and
keeps each trial's real objectives; `IORBOSampler` is the real study's sampler: before each trial it builds an
in-memory single-objective study of the completed trials (their parameters and distributions, value = their
mean rank now), asks a TPE sampler there for the next parameters and hands them to the real trial as its
relative parameters. Workers sharing a journal each do this from the trials the journal holds at that moment.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import rankdata

from hpcsynth.tune.study_file import Param


def mean_ranks(values: Sequence[Sequence[float]], higher: Sequence[bool]) -> np.ndarray:
    """Each trial's mean rank over the objectives.

    Parameters
    ----------
    values : array-like, shape (trials, objectives)
        The trials' objectives.
    higher : sequence of bool
        Per objective, whether a higher value is better.

    Returns
    -------
    numpy.ndarray, shape (trials,)
        The mean over the objectives of the trial's rank on each (1 the best, ties their average rank); lower
        is better.
    """
    table = np.asarray(values, dtype=float).reshape(-1, len(higher))
    if len(table) == 0:
        return np.zeros(0)
    signed = np.where(np.asarray(higher, dtype=bool), -table, table)  # smaller is better in every column
    return np.column_stack([rankdata(signed[:, j], method="average") for j in range(len(higher))]).mean(axis=1)


def distribution(param: Param) -> BaseDistribution:
    """The Optuna distribution `hpcsynth.tune.search.suggest` draws `param` from."""
    if param.kind == "choice":
        return CategoricalDistribution(param.values)
    low, high = param.values
    if param.kind == "int":
        return IntDistribution(int(low), int(high))
    return FloatDistribution(float(low), float(high), log=param.kind == "log_float")


class IORBOSampler(BaseSampler):
    """The real (multi-objective) study's sampler: TPE on the completed trials' current mean ranks.

    Parameters
    ----------
    params : list of Param
        The search space.
    higher : sequence of bool
        Per objective, whether higher is better (the study's directions).
    seed : int
        Seeds the TPE of each suggestion together with the trial's number (a fixed seed alone would repeat
        TPE's random start-up draws, since each suggestion starts a fresh TPE).
    """

    def __init__(self, params: list[Param], higher: Sequence[bool], seed: int = 0) -> None:
        self._space = {p.key: distribution(p) for p in params}
        self._higher = list(higher)
        self._seed = seed
        self._random = RandomSampler(seed=seed)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self._space)

    def scalarised(self, study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
        """The completed trials as single-objective trials whose value is their mean rank now."""
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values is not None and all(k in t.params for k in self._space)]
        ranks = mean_ranks([t.values for t in done], self._higher)
        return [optuna.trial.create_trial(params={k: t.params[k] for k in self._space},
                                          distributions={k: t.distributions[k] for k in self._space},
                                          value=float(rank))
                for t, rank in zip(done, ranks)]

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, object]:
        if not search_space:
            return {}
        seed = int(np.random.SeedSequence([self._seed, trial.number]).generate_state(1)[0])
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "a new study created" per suggestion
        try:
            inner = optuna.create_study(direction="minimize", sampler=TPESampler(seed=seed))
            inner.add_trials(self.scalarised(study))
            return inner.ask(dict(search_space)).params
        finally:
            optuna.logging.set_verbosity(verbosity)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> object:
        return self._random.sample_independent(study, trial, param_name, param_distribution)
