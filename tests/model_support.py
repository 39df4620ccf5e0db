"""What the generator tests share: the check that a site's local state resumes its training exactly."""
import torch


def assert_local_state_resumes(model, data: torch.Tensor, steps: int) -> None:
    """Saving `local_state`, training `steps`, rewinding the parameters and loading the state back must repeat
    the same steps bit for bit (the optimiser moments, random streams and anything else the site keeps)."""
    blob, params = model.local_state(), model.shared_parameters().clone()
    model.local_update(data, steps)
    after = model.shared_parameters().clone()
    with torch.no_grad():
        model.shared_parameters().copy_(params)
    model.load_local_state(blob)
    model.local_update(data, steps)
    assert torch.equal(model.shared_parameters(), after)
