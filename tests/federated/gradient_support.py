"""A strategy's gradient hook against autograd: the hooked gradient of a model's loss must equal the gradient of
the loss plus the strategy's local term, which FedProx and FedDyn both promise."""
from collections.abc import Callable

import torch

from hpcsynth.comm import SoloComm


def hooked_and_autograd(strategy, model, data: torch.Tensor,
                        term: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """(the hooked gradient, autograd's gradient of loss + term(theta, anchor), the moved parameters, the anchor):
    the round starts at the model's parameters (the anchor), which then move by a seeded step so the term is not
    zero."""
    params = model.shared_parameters()
    strategy.begin_round(params)
    anchor = params.clone()
    with torch.no_grad():
        params.add_(torch.randn(params.shape, generator=torch.Generator().manual_seed(1)), alpha=0.1)
    noise = torch.randn((len(data), 2), generator=torch.Generator().manual_seed(2))
    model.flat_.zero_grad()
    model.loss(data, noise).backward()
    strategy.on_gradients(model.shared_gradients(), len(data), SoloComm())
    hooked = model.shared_gradients().clone()
    model.flat_.zero_grad()
    theta = torch.cat([p.reshape(-1) for p in model.flat_.params])
    (model.loss(data, noise) + term(theta, anchor)).backward()
    return hooked, model.shared_gradients().clone(), params, anchor
