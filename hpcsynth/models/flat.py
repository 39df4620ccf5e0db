"""One contiguous buffer behind all of a network's parameters (and another behind their gradients).

Federated averaging exchanges the whole model once per round. With every parameter a view into one flat
tensor, that exchange is a single `Allreduce` on one buffer, with no packing or unpacking copies: the strategy
reads and writes `flat.data` and the modules see the result at once. The gradients get the same treatment so
that data-parallel training (the `centralized` strategy across ranks) reduces one buffer per step.
"""
from __future__ import annotations

import torch
from torch import nn


class FlatParameters:
    """Rebinds `params` to views of one flat tensor `data`, and their gradients to views of `grad`."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        if not params:
            raise ValueError("FlatParameters needs at least one parameter")
        first = params[0]
        total = sum(p.numel() for p in params)
        self.data = torch.empty(total, dtype=first.dtype, device=first.device)
        self.grad = torch.zeros(total, dtype=first.dtype, device=first.device)
        self.params = params
        offset = 0
        for p in params:
            n = p.numel()
            self.data[offset:offset + n].copy_(p.data.reshape(-1))
            p.data = self.data[offset:offset + n].view_as(p)
            p.grad = self.grad[offset:offset + n].view_as(p)
            offset += n

    def span(self, tensor: torch.Tensor) -> slice:
        """Where a parameter (a view into `data`) lies in the flat buffer."""
        start = (tensor.data_ptr() - self.data.data_ptr()) // self.data.element_size()
        return slice(start, start + tensor.numel())

    def zero_grad(self) -> None:
        self.grad.zero_()

    def check_bound(self) -> None:
        """Raise if autograd replaced a gradient tensor instead of accumulating into the shared buffer.

        Called after a backward pass: a silent rebinding would make the gradient Allreduce exchange zeros."""
        start = self.grad.data_ptr()
        end = start + self.grad.numel() * self.grad.element_size()
        for p in self.params:
            if p.numel() == 0:  # holds nothing (autograd may hand it a fresh empty gradient)
                continue
            if p.grad is None or not start <= p.grad.data_ptr() < end:
                raise RuntimeError("a gradient left the flat buffer; do not call optimizer.zero_grad(set_to_none=True)")
