"""The epsilon of an accountant's history: Opacus's own figure, with the one-step RDP kept between calls."""
from opacus.accountants import RDPAccountant, create_accountant

from hpcsynth.data.accounting import RDP_ORDERS, epsilon_of


def test_the_rdp_epsilon_is_opacus_own_for_a_mixed_history_and_again_when_asked_twice():
    accountant = RDPAccountant()
    accountant.history = [(1.3, 0.01, 1), (0.9, 0.08, 1200), (0.9, 0.08, 30), (2.5, 1.0, 3)]
    expected = float(accountant.get_epsilon(1e-5, alphas=RDP_ORDERS))
    assert epsilon_of(accountant, 1e-5) == expected and epsilon_of(accountant, 1e-5) == expected
    accountant.history.append((0.9, 0.08, 50))  # more steps of a pair already seen
    assert epsilon_of(accountant, 1e-5) == float(accountant.get_epsilon(1e-5, alphas=RDP_ORDERS)) > expected


def test_an_empty_history_has_spent_nothing_and_prv_is_opacus_own():
    assert epsilon_of(RDPAccountant(), 1e-5) == 0.0
    prv = create_accountant("prv")
    prv.history = [(1.1, 0.05, 200)]
    assert epsilon_of(prv, 1e-5) == float(prv.get_epsilon(1e-5))
