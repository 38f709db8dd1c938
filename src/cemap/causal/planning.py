"""How a CE map evaluates its masked images on this device: chunk size, memory layout, windows or full passes.

On the CPU the rules are fixed and were measured (DenseNet-121 at 224 px, 2 cores): about 8 masked
images per full pass keeps the caches warm (:func:`cemap.causal.batching.default_chunk`), windows
(:mod:`.incremental`) wherever the cost estimate saves 40% of the multiply-adds, channels-last for
multi-channel images of at least 64 px. Those rules do not transfer to a GPU: a pass is launch-bound
until it holds hundreds of images, and whether windows, channels-last or plain full passes win depends
on the architecture, the precision and the chip (on an H200 in fp32, cache-sized chunks made the dense
DenseNet-121 map 4.5x slower than Captum's one-batch Occlusion). So on a GPU the first map of a
(classifier, set of masks, precision) *times* each way on the call's own inputs, chunks sized from the
free device memory, and keeps the fastest; the plan, with every candidate's time, is kept per
classifier and can be read back (``cemap bench`` records it).

Every candidate computes the same numbers up to float rounding: windows and full passes agree to about
1e-6 in float32 (1e-4 where the GPU's convolutions use TF32, as PyTorch's cuDNN default allows).

Measured on one H200 (docs/results/gpu/gpu_check_h200_v2.json, DenseNet-121, 32 images): full passes in channels-last
at 512 masked images won every plan (0.15 ms per masked image in fp32, 0.10 in bf16); windows cost 1.4-6x more there,
since their gathers and pastes are memory-bound small kernels. cuDNN's per-shape algorithm search is not switched on:
it gained nothing for Captum's Occlusion (111.7 vs 111.7 maps/s at its best setting) and took tens of seconds per new
chunk shape.
"""

from __future__ import annotations

import os
import time
import weakref
from dataclasses import dataclass, field
from typing import Callable

import torch

from .batching import default_chunk, prefers_channels_last

GPU_FULL_CHUNK = 512  # masked images per full pass tried first on a GPU (DenseNet-121 224 px: ~15 GB in fp32)
GPU_WINDOW_FACTOR = 4  # windows are a fraction of the image: this many times the full-pass chunk per windowed pass
MEMORY_SHARE = 0.5  # of the device's free memory one chunk may take


@dataclass(frozen=True)
class MaskPlan:
    """One way to evaluate masked images.

    Args:
        chunk: masked images per full forward pass (per windowed pass with ``windows``).
        windows: recompute only the windows each mask changes (:mod:`.incremental`).
        channels_last: feed full passes in channels-last layout.
        source: "cpu rules", "given" (the caller fixed ``chunk_size``) or "measured on <device name>".
        seconds_per_image: per candidate name, the measured seconds per masked image (GPU plans only).
    """

    chunk: int
    windows: bool
    channels_last: bool
    source: str
    seconds_per_image: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return candidate_name(self.windows, self.channels_last, self.chunk)

    def as_json(self) -> dict:
        return {
            "chunk": self.chunk,
            "windows": self.windows,
            "channels_last": self.channels_last,
            "source": self.source,
            "name": self.name,
            "seconds_per_image": dict(self.seconds_per_image),
        }


def candidate_name(windows: bool, channels_last: bool, chunk: int) -> str:
    return f"{'windows' if windows else 'full'}/{'nhwc' if channels_last else 'nchw'}/{chunk}"


def on_gpu(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def cpu_plan(input_shape: tuple[int, ...], precision: str, windows: bool, chunk_size: int | None) -> MaskPlan:
    """The measured CPU rules (also used for a caller-given ``chunk_size`` on any device)."""
    chunk = chunk_size or default_chunk(input_shape, "cpu", precision)
    return MaskPlan(chunk, windows, prefers_channels_last(input_shape), "given" if chunk_size else "cpu rules")


def sync(device: torch.device | str) -> None:
    if on_gpu(device):
        torch.cuda.synchronize(device)


def free_memory(device: torch.device | str) -> int:
    """Bytes free on ``device``: the GPU's own count, or the host's available memory."""
    if on_gpu(device):
        return torch.cuda.mem_get_info(torch.device(device))[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def device_name(device: torch.device | str) -> str:
    return torch.cuda.get_device_name(torch.device(device)) if on_gpu(device) else str(device)


def memory_cap(bytes_per_image: float, device: torch.device | str) -> int:
    """Masked images one chunk may hold: ``MEMORY_SHARE`` of the free memory over the per-image activations."""
    return max(8, int(MEMORY_SHARE * free_memory(device) / max(bytes_per_image, 1.0)))


def activation_bytes(
    forward: Callable[[torch.Tensor], object], modules: list[torch.nn.Module], image: torch.Tensor
) -> float:
    """Bytes of activations one image's forward pass holds: on a GPU the allocator's peak as each leaf module returns
    (no global statistics are reset); elsewhere the sum of every leaf's output (an upper bound). At least the input's
    size."""
    gpu = on_gpu(image.device)
    base = torch.cuda.memory_allocated(image.device) if gpu else 0
    seen = [0]

    def note(_module, _inputs, output):
        if gpu:
            seen[0] = max(seen[0], torch.cuda.memory_allocated(image.device) - base)
        elif torch.is_tensor(output):
            seen[0] += output.numel() * output.element_size()

    hooks = [m.register_forward_hook(note) for m in modules if not list(m.children())]
    try:
        with torch.inference_mode():
            forward(image.expand(4, *image.shape[1:]).contiguous())
    finally:
        for h in hooks:
            h.remove()
    return max(seen[0] / 4, float(image.numel() * image.element_size()))


def measure(
    candidates: dict[str, Callable[[], object]], device: torch.device | str, repeats: int = 2
) -> dict[str, float]:
    """Seconds of each candidate (the best of ``repeats`` after one warm-up; inf where the device ran out of memory)."""
    out: dict[str, float] = {}
    for name, run in candidates.items():
        try:
            run()
            sync(device)
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                sync(device)
                best = min(best, time.perf_counter() - start)
            out[name] = best
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            out[name] = float("inf")
    return out


class PlanCache:
    """Plans per classifier (weakly held) and per (device, precision, mask set, fill, workload size)."""

    def __init__(self) -> None:
        self._plans: "weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple, MaskPlan]]" = weakref.WeakKeyDictionary()

    def get(self, classifier: torch.nn.Module, key: tuple) -> MaskPlan | None:
        return self._plans.get(classifier, {}).get(key)

    def put(self, classifier: torch.nn.Module, key: tuple, plan: MaskPlan) -> None:
        self._plans.setdefault(classifier, {})[key] = plan

    def all_for(self, classifier: torch.nn.Module) -> list[MaskPlan]:
        return list(self._plans.get(classifier, {}).values())


PLANS = PlanCache()


def workload_bucket(pairs: int) -> int:
    """Calls of similar size share a plan: the power of two at or above the number of masked images (at most 4096)."""
    return min(4096, 1 << max(0, (pairs - 1).bit_length()))
