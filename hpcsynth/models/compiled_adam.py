"""A whole training step, Adam's update included, as one torch.compile'd graph.

For a family whose parameters all train, with nothing between its gradient and its update (no gradient hook,
no privacy), `CompiledAdamStep` computes the loss, writes its gradient to the flat gradient buffer and applies
torch.optim.Adam's update (L2 weight decay, bias corrections) to the flat parameter buffer, on that optimiser's
own state, read anew at every step: a checkpoint and an eager step see the same moments.
"""
from __future__ import annotations

import contextlib
import math

import torch

from hpcsynth.models.compiled import CompiledFunction, ModuleCall, Trainable


class CompiledAdamStep(CompiledFunction):
    """`step(data, size)` draws the next batch and its noise, steps, and returns the loss and the batch rows."""

    def __init__(self, model: Trainable) -> None:
        from torch.func import functional_call, grad_and_value

        container = ModuleCall(model.modules_, model._autocast_loss)
        names, shapes = zip(*[(name, p.shape) for name, p in container.named_parameters()])
        sizes = [shape.numel() for shape in shapes]
        optimizer, flat_grad = model.optimizer_, model.flat_.grad

        def step(data: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, count: torch.Tensor,
                 corrections: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
            group = optimizer.param_groups[0]  # its constants are part of the key (`_key`)
            (beta1, beta2), eps, decay = group["betas"], group["eps"], group["weight_decay"]
            with torch.no_grad():
                params = {name: t.view(shape) for name, t, shape in zip(names, data.split(sizes), shapes)}
                grads, value = grad_and_value(lambda p: functional_call(container, p, inputs))(params)
                gradient = torch.cat([grads[name].reshape(-1) for name in names])
                flat_grad.copy_(gradient)
                gradient = gradient + decay * data
                count.add_(1)
                exp_avg.lerp_(gradient, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
                data.sub_(exp_avg / (exp_avg_sq.sqrt() / corrections[1] + eps) * corrections[0])
            return value

        super().__init__(model, step)

    def _state(self) -> dict:
        """Adam's state of the flat buffer, made as torch.optim.Adam's first step makes it when there is none."""
        model = self.model
        state = model.optimizer_.state[model.optimizer_.param_groups[0]["params"][0]]
        if not state:
            state.update(step=torch.zeros((), dtype=torch.float32, device=model.device_),
                         exp_avg=torch.zeros_like(model.flat_.data), exp_avg_sq=torch.zeros_like(model.flat_.data))
        return state

    def _arguments(self) -> tuple:
        state = self._state()
        return self.model.flat_.data, state["exp_avg"], state["exp_avg_sq"], state["step"]

    def _key(self) -> tuple:
        group = self.model.optimizer_.param_groups[0]
        return self.model._compile_key(), tuple(group["betas"]), group["eps"], group["weight_decay"]

    def __call__(self, data: torch.Tensor, size: int) -> tuple[float, int]:
        """The bias corrections of this step go in as a tensor, computed here once (in the compiled loop they
        would be recomputed, powers and all, for every vector of parameters); the learning rate with them, so
        that a schedule needs no new compile."""
        model = self.model
        batch = model._next_batch(model._train_rows(data), size)
        group = model.optimizer_.param_groups[0]
        (beta1, beta2), t = group["betas"], float(self._state()["step"]) + 1
        corrections = torch.tensor([group["lr"] / (1 - beta1**t), math.sqrt(1 - beta2**t)])
        return float(super().__call__(corrections, batch, model.loss_noise(batch.shape[0]))), batch.shape[0]

    def unguarded(self) -> contextlib.AbstractContextManager:
        """A context for a run of steps in which dynamo checks no guards. Each compiled copy of the step has one
        graph, for one key (see `CompiledFunction`), and checking its several hundred guards (one per module
        attribute the loss reads) would cost every step about a twentieth of its time."""
        return torch.compiler.set_stance("default", skip_guard_eval_unsafe=True)
