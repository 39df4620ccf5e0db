"""The flat buffer: parameters and gradients are views of one contiguous tensor each."""
import pytest
import torch
from torch import nn

from hpcsynth.models.flat import FlatParameters


def test_parameters_are_views_of_one_buffer():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    before = [p.detach().clone() for p in net.parameters()]
    flat = FlatParameters(list(net.parameters()))
    assert flat.data.numel() == sum(p.numel() for p in before)
    for p, old in zip(net.parameters(), before):
        assert torch.equal(p, old)
    flat.data.zero_()
    assert all(float(p.detach().abs().sum()) == 0.0 for p in net.parameters())


def test_backward_accumulates_into_the_flat_gradient():
    net = nn.Linear(3, 2)
    flat = FlatParameters(list(net.parameters()))
    net(torch.ones(5, 3)).sum().backward()
    flat.check_bound()
    assert torch.equal(flat.grad[:6].view(2, 3), torch.full((2, 3), 5.0))
    assert torch.equal(flat.grad[6:], torch.full((2,), 5.0))


def test_a_rebound_gradient_is_detected():
    net = nn.Linear(3, 2)
    flat = FlatParameters(list(net.parameters()))
    net.weight.grad = None
    net(torch.ones(1, 3)).sum().backward()
    with pytest.raises(RuntimeError, match="left the flat buffer"):
        flat.check_bound()


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_an_empty_parameter_is_no_rebound_gradient():
    # a layer over zero inputs (CTGAN's critic on a table without discrete columns) has an empty weight
    net = nn.Linear(0, 2)
    flat = FlatParameters(list(net.parameters()))
    net(torch.ones(3, 0)).sum().backward()
    flat.check_bound()
    assert torch.equal(flat.grad, torch.full((2,), 3.0))
