"""What the strategy tests share: a tiny TVAE on 30 rows, and a strategy's gradient hook against autograd (the
hooked gradient of a model's loss must equal the gradient of the loss plus the strategy's local term, which
FedProx and FedDyn both promise)."""
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


def tiny_tvae(**options):
    """(model, encoded rows): a TVAE of 8 hidden units and 2 latent dimensions set up on 30 rows of one number and
    one category; `options` go to the constructor (e.g. optimizer="sgd", lr=0.01 for a model without state)."""
    import numpy as np
    import pandas as pd

    from hpcsynth.data.transformer import TableTransformer
    from hpcsynth.models import TVAE

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=30), "c": rng.choice(["a", "b"], 30)})
    transformer = TableTransformer().fit(frame)
    model = TVAE(hidden=[8], latent_dim=2, seed=0, **options).setup(transformer)
    return model, model.to_device(transformer.encode(frame))
