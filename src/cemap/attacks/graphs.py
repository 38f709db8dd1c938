"""CUDA graphs for attack steps: one replay instead of a thousand kernel launches per forward and backward.

An attack step at the batch sizes attacks run at (a few DenseNet-121 images) is bound by Python and kernel
launches, not by arithmetic: on an H200 a plain loop keeps the GPU mostly idle. The first step of a batch
shape records the whole step - forward, objective, backward - as a CUDA graph; every later step copies its
inputs into the recorded tensors and replays it. The numbers are those of the same kernels run one by one.

A graph reads the network's weights where they were when it was recorded, so it is kept only for a network
that stays the same object (the frozen Classifier of an fp32 attack); a shape whose recording fails runs eagerly.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch

log = logging.getLogger(__name__)

Step = Callable[
    [torch.Tensor, torch.Tensor, "torch.Tensor | None", "torch.Tensor | None"],
    "tuple[torch.Tensor, torch.Tensor | None]",
]
WARMUP_STEPS = 3  # eager steps on a side stream before recording (cuDNN and the allocator settle there)
MAX_SHAPES = 4  # recorded input shapes kept per attack (a batch and its last, smaller chunk, with room to spare)


class _Recorded:
    """One recorded step: its input tensors, its outputs and the graph that maps one to the other."""

    def __init__(
        self,
        step: Step,
        x: torch.Tensor,
        labels: torch.Tensor,
        target: torch.Tensor | None,
        original: torch.Tensor | None,
    ) -> None:
        self.x, self.labels = x.clone(), labels.clone()
        self.target = None if target is None else target.clone()
        self.original = None if original is None else original.clone()
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                step(self.x, self.labels, self.target, self.original)
        torch.cuda.current_stream(x.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.grad, self.original_out = step(self.x, self.labels, self.target, self.original)

    def __call__(self, x, labels, target, original):
        self.x.copy_(x)
        self.labels.copy_(labels)
        if target is not None:
            self.target.copy_(target)
        if original is not None:
            self.original.copy_(original)
        self.graph.replay()
        out = None if self.original_out is None else self.original_out.clone()
        return self.grad.clone(), out


class GraphedSteps:
    """``steps(x, labels, target, original)`` -> ``step(...)``'s result, replayed from a CUDA graph per input shape.

    Args:
        step: the eager step: (images, labels, target or None, clean decision or None) -> (gradient, clean decision).
        device: the CUDA device the step's network lives on; inputs are moved there and results moved back.
    """

    def __init__(self, step: Step, device: torch.device) -> None:
        self.step, self.device = step, device
        self._recorded: dict[tuple, _Recorded | None] = {}

    def __call__(self, x, labels, target, original):
        home = x.device
        moved = [None if t is None else t.to(self.device) for t in (x, labels, target, original)]
        key = tuple(None if t is None else (tuple(t.shape), t.dtype) for t in moved)
        if key not in self._recorded:
            if len(self._recorded) >= MAX_SHAPES:  # each graph keeps its own memory: the oldest shape goes
                self._recorded.pop(next(iter(self._recorded)))
            try:
                self._recorded[key] = _Recorded(self.step, *moved)
            except RuntimeError as exc:  # an operation that cannot be recorded: this shape runs eagerly
                log.info("attack step not recorded as a CUDA graph (%s); running it eagerly", exc)
                self._recorded[key] = None
        recorded = self._recorded[key]
        grad, out = recorded(*moved) if recorded is not None else self.step(*moved)
        return grad.to(home), None if out is None else out.to(home)
