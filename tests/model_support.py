"""What the generator tests share: the check that a site's local state resumes its training exactly, and the
per-sample gradients of DP-SGD as one matrix."""
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


def per_sample_matrix(mechanism, batch: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """DP-SGD's per-sample gradients as one (examples, parameters) matrix, columns in the flat buffer's order."""
    return torch.cat([b.reshape(b.shape[0], -1) for b in mechanism.per_sample_gradients(batch, noise)], dim=1)
