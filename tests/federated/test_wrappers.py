"""Wrappers forward every hook of the contract; several ranks per site give one rank's numbers, or are refused."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hpcsynth.comm import SoloComm
from hpcsynth.config import ConfigError, from_dict
from hpcsynth.federated.registry import STRATEGIES
from hpcsynth.federated.secure import MaskedSum
from hpcsynth.federated.strategy import Strategy
from hpcsynth.federated.wrappers import SecureAggregation, SiteParallel, Wrapper, within_site

PROGRAM = Path(__file__).with_name("programs") / "ranks_per_site_matrix.py"
HOOKS = sorted(name for name, value in vars(Strategy).items()
               if not name.startswith("_") and (callable(value) or isinstance(value, property)))


class Recording(Strategy):
    """Records every hook it receives (and says it is phased, shares and pools, so wrappers must say so too)."""

    name = "recording"
    shares_model = pools_prior = phased = True

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __getattribute__(self, name: str):
        if name in HOOKS and name != "batch_rows":
            object.__getattribute__(self, "calls").append(name)
        return object.__getattribute__(self, name)


class Model:
    def finish(self, data, comm) -> None:
        return None

    def fit_counts(self, data, comm) -> float:
        return 0.0


def test_the_wrapper_base_overrides_every_public_hook_of_the_contract():
    assert HOOKS and not [hook for hook in HOOKS if hook not in vars(Wrapper)]
    assert issubclass(SiteParallel, Wrapper) and issubclass(SecureAggregation, Wrapper)


@pytest.mark.parametrize("wrap", [lambda s: SiteParallel(s, SoloComm()), SecureAggregation,
                                  lambda s: SecureAggregation(SiteParallel(s, SoloComm()))],
                         ids=["site_parallel", "secure_aggregation", "both"])
def test_every_hook_and_declaration_reaches_the_wrapped_strategy(wrap):
    inner = Recording()
    outer, comm, params = wrap(inner), SoloComm(), torch.zeros(3)
    assert (outer.name, outer.shares_model, outer.pools_prior, outer.phased) == ("recording", True, True, True)
    outer.setup(10, 4, comm)
    outer.steps_per_round(1)
    outer.exchanges_per_round(1)
    outer.begin_round(params)
    outer.on_gradients(torch.zeros(3), 4, comm)
    outer.aggregate(params, comm)
    outer.attach(Model(), params, comm)
    assert outer.train(Model(), params, comm, 1, 1, 4, lambda m, s: None, Model) is not None
    outer.fit_counts(Model(), np.zeros((4, 1)), comm)
    outer.finish(Model(), params, comm)
    outer.load_state(outer.state())
    forwarded = set(HOOKS) - {"batch_rows", "steps_per_round"}  # SiteParallel counts the site's own steps
    assert forwarded <= set(inner.calls), forwarded - set(inner.calls)


def test_the_wrapped_strategy_learns_its_site_and_the_masked_reducer():
    site, inner = SoloComm(), Recording()
    outer = SecureAggregation(SiteParallel(inner, site))
    assert inner.site is site and outer.site is site
    outer.reducer = MaskedSum(None)
    assert isinstance(inner.reducer, MaskedSum)


def test_several_ranks_per_site_wrap_every_strategy_but_the_data_parallel_one():
    site = SoloComm()
    site.size = 2
    for name, cls in STRATEGIES.items():
        wrapped = within_site(cls(), site)
        assert isinstance(wrapped, SiteParallel) != cls.data_parallel, name
    assert not isinstance(within_site(STRATEGIES["fedavg"](), SoloComm()), SiteParallel)


REFUSED = [name for name, cls in STRATEGIES.items() if cls.site_parallel_gap]


@pytest.mark.parametrize("strategy", REFUSED)
def test_a_strategy_that_several_ranks_per_site_would_change_is_refused_naming_both_keys(strategy):
    job = {"data": {"builtin": "mds"}, "federation": {"strategy": strategy, "ranks_per_site": 2}}
    with pytest.raises(ConfigError) as err:
        from_dict(job, source="job.yaml")
    message = str(err.value)
    assert message.startswith("job.yaml: federation.ranks_per_site: ") and "\n" not in message
    assert f"federation.strategy {strategy}" in message


def test_dp_sgd_with_several_ranks_per_site_is_refused_naming_both_keys():
    job = {"data": {"builtin": "mds"}, "federation": {"ranks_per_site": 2}, "privacy": {"epsilon": 1.0}}
    with pytest.raises(ConfigError, match=r"^job.yaml: privacy: .*federation.ranks_per_site"):
        from_dict(job, source="job.yaml")


@pytest.mark.mpi
def test_every_strategy_with_two_ranks_per_site_equals_one_rank_per_site(mpirun, tmp_path):
    saved = {}
    for per_site in (1, 2):
        out = tmp_path / f"r{per_site}.npz"
        result = mpirun(2 * per_site, [sys.executable, str(PROGRAM), str(per_site), str(out)], timeout=240)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        saved[per_site] = dict(np.load(out))
    one, two = saved[1], saved[2]
    accepted = [name for name, cls in STRATEGIES.items() if not cls.site_parallel_gap]
    assert sorted(one) == sorted(two) == sorted([*accepted, "fedavg+secure"])
    for case in one:
        np.testing.assert_allclose(two[case], one[case], rtol=1e-5, atol=1e-6, err_msg=case)
    assert not np.allclose(one["fedprox"], one["fedavg"])  # the comparisons can tell strategies apart
    assert not np.allclose(one["isolated"][0], one["isolated"][1])
