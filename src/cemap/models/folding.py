"""Fold eval-mode batch-norm into the convolution before it: one pass over memory instead of two;
or, where no convolution precedes it (DenseNet's pre-activation layers), into one multiply-add.

A frozen BatchNorm2d is an affine map per channel, so ``bn(conv(x))`` equals a convolution with
scaled weights and a bias (to float32 rounding, ~1e-6 relative). On the small built-in CNNs,
where batch-norm is a memory-bound pass of its own, this saves about a sixth of the forward time
and a third of the forward+backward time (cxr-cnn, batch 64 / 32, 2 cores).
The folded BatchNorm becomes ``nn.Identity`` so layer names and indices stay as trained.
"""

from __future__ import annotations

import copy

import torch

from torch import nn


@torch.no_grad()
def fold_conv_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Rewrite ``conv`` in place as conv followed by ``bn`` in eval mode (``bn`` is left untouched)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.mul_(scale.view(-1, 1, 1, 1))
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias, requires_grad=conv.weight.requires_grad)


def fold_batchnorm(sequential: nn.Sequential) -> None:
    """Fold every Conv2d -> BatchNorm2d pair among the direct children of ``sequential``."""
    layers = list(sequential)
    for i, (conv, bn) in enumerate(zip(layers, layers[1:])):
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats and bn.affine:
            fold_conv_batchnorm(conv, bn)
            sequential[i + 1] = nn.Identity()


class ScaleShift(nn.Module):
    """An eval-mode BatchNorm2d as ``x * scale + shift`` in the activation's own dtype.

    Under bf16 autocast a native batch-norm keeps float32 parameters and its backward is a slower
    mixed-precision kernel; one ``addcmul`` forward and one multiply backward make DenseNet-121's bf16
    PGD about 4% faster. Rounding ``scale`` and ``shift`` to bf16 adds an error of the size bf16 already
    gives the activation itself.
    """

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        with torch.no_grad():
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.affine:
                scale = scale * bn.weight
            shift = -bn.running_mean * scale + (bn.bias if bn.affine else 0)
        self.register_buffer("scale", scale.view(1, -1, 1, 1))
        self.register_buffer("shift", shift.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift.to(x.dtype), x, self.scale.to(x.dtype))


def with_scale_shift_batchnorm(module: nn.Module) -> nn.Module:
    """A copy of ``module``'s tree sharing every parameter and buffer, each frozen BatchNorm2d (eval mode, running
    statistics, exactly that class) replaced by :class:`ScaleShift`; ``module`` itself is untouched. Cheap (no
    tensor is copied), so callers build it per use and never hold statistics that have since changed."""
    if type(module) is nn.BatchNorm2d and not module.training and module.track_running_stats:
        return ScaleShift(module)
    clone = copy.copy(module)
    clone._modules = {
        name: None if child is None else with_scale_shift_batchnorm(child) for name, child in module._modules.items()
    }
    return clone
