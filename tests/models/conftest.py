"""Fixtures the generator tests share."""
import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: the fits are small, and on a shared two-core machine a second thread only waits (a
    centralized CTGAN fit took 13 s on one thread, over 90 s on two beside other work)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
