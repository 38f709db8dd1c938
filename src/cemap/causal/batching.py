"""Chunked evaluation: many interventions per input, never one forward pass each, never one giant batch.

Batches of about 8-64 keep CPU caches warm and fit GPU memory; ``precision='bf16'`` runs the
model under bfloat16 autocast (fast on AVX-512-BF16 CPUs and on GPUs; never fp16 on a CPU).

Two CPU habits measured with DenseNet-121 at 224 x 224 (see ``cemap bench``):

* glibc serves every allocation above its mmap threshold (at most 32 MiB by default) with fresh
  pages that the kernel must zero on first touch: about 0.9 million page faults per batch-32 forward, which halves the
  throughput. ``tune_allocator`` (called by the ``cemap`` command, never at import: a library does not retune its host
  process's allocator) raises the threshold so that freed activations are reused from the heap, for every part of cemap
  alike (maps, latent sweeps, attacks); ``CEMAP_NO_MALLOPT=1`` opts out.
* channels-last inputs let oneDNN keep the whole network in its preferred layout (+5% fp32,
  +30% bf16); ``as_model_input`` applies it where it pays.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
from typing import Callable, Iterator

import torch

from ..errors import CemapError

PRECISIONS = ("fp32", "bf16")

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 256 << 20
_TRIM_THRESHOLD = 1 << 30
_allocator_tuned: bool | None = None


def autocast(precision: str, device: torch.device | str = "cpu") -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    raise CemapError(f"unknown precision {precision!r}", f"use one of {', '.join(PRECISIONS)}")


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they are in effect.

    Skipped off Linux/glibc, when the user set ``MALLOC_MMAP_THRESHOLD_`` themselves, or when
    ``CEMAP_NO_MALLOPT=1``. Costs memory only up to the largest batch's working set.
    """
    global _allocator_tuned
    if _allocator_tuned is not None:
        return _allocator_tuned
    _allocator_tuned = False
    if sys.platform != "linux" or os.environ.get("CEMAP_NO_MALLOPT") == "1" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _allocator_tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
        )
    except (OSError, AttributeError):  # musl or another libc without mallopt
        _allocator_tuned = False
    return _allocator_tuned


def allocator_tuned() -> bool:
    return bool(_allocator_tuned)


def chunks(total: int, size: int) -> Iterator[slice]:
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def balanced_chunks(total: int, size: int) -> Iterator[slice]:
    """Slices of at most ``size`` items and near-equal length (50 items at size 8: 7 x ~7, not 6 x 8 + 2)."""
    if total <= 0:
        return
    n = -(-total // size)
    base, extra = divmod(total, n)
    start = 0
    for i in range(n):
        stop = start + base + (1 if i < extra else 0)
        yield slice(start, stop)
        start = stop


def map_chunks(
    fn: Callable[[slice], torch.Tensor], total: int, size: int, precision: str = "fp32", device="cpu"
) -> torch.Tensor:
    """Concatenate ``fn(s)`` over consecutive slices of ``range(total)``, results in float32."""
    out = []
    with autocast(precision, device):
        for s in chunks(total, size):
            out.append(fn(s).float())
    return torch.cat(out)


def default_chunk(input_shape: tuple[int, ...], device: torch.device | str = "cpu", precision: str = "fp32") -> int:
    """Interventions per forward pass: ~8 for ImageNet-sized inputs on CPU (measured best for DenseNet-121), more for
    small
    ones and on GPUs; twice as many in bf16, whose activations take half the memory (DenseNet-121 CE map: ~10% faster
    at 16)."""
    pixels = input_shape[-1] * input_shape[-2]
    scale = (8 if torch.device(device).type == "cuda" else 1) * (2 if precision == "bf16" else 1)
    if pixels >= 160 * 160:
        return 8 * scale
    if pixels >= 96 * 96:
        return 32 * scale
    return 128 * scale


def prefers_channels_last(input_shape: tuple[int, ...]) -> bool:
    """Channels-last pays for multi-channel images of at least 64 x 64 (oneDNN / cuDNN convolutions)."""
    return len(input_shape) == 3 and input_shape[0] > 1 and min(input_shape[-2:]) >= 64


def as_model_input(batch: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch
