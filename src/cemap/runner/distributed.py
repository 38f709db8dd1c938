"""Process groups under torchrun: one rank per process, gloo on CPU and nccl on GPU.

Without torchrun's environment (WORLD_SIZE/RANK) everything here degrades to a single rank,
so the same runner code serves one process and many. Rank-0-only steps share their result -
or their CemapError - with every rank, so a user mistake stops all ranks with the same
message instead of leaving the others blocked in a barrier.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.distributed as dist

from ..errors import CemapError

T = TypeVar("T")

# Rank 0 may train a classifier and an autoencoder while the others wait.
SETUP_TIMEOUT = timedelta(hours=6)


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier(device_ids=[self.local_rank] if self.backend == "nccl" else None)

    def share_from_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only; every rank returns its (picklable) result or raises its CemapError."""
        payload: list[Any] = [None]
        if self.is_main:
            try:
                payload = [("ok", fn())]
            except CemapError as exc:
                payload = [("error", (exc.message, exc.hint))]
        if self.world_size > 1:
            dist.broadcast_object_list(payload, src=0)
        status, value = payload[0]
        if status == "error":
            raise CemapError(*value)
        return value

    def main_first(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0, then on the others (so caches rank 0 fills are only loaded by the rest)."""
        made: dict[str, T] = {}

        def on_main() -> None:
            made["value"] = fn()

        self.share_from_main(on_main)
        return made["value"] if self.is_main else fn()

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order (on every rank)."""
        if self.world_size == 1:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@contextmanager
def process_group(device: torch.device) -> Iterator[Ranks]:
    """Join torchrun's process group if launched by it (gloo for CPU, nccl for CUDA); yield this process's Ranks."""
    if dist.is_initialized():  # the caller owns the group
        yield Ranks(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0), dist.get_backend())
        return
    if _env_int("WORLD_SIZE", 1) == 1:
        yield Ranks()
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    local_rank = _env_int("LOCAL_RANK", 0)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, timeout=SETUP_TIMEOUT)
    try:
        yield Ranks(dist.get_rank(), dist.get_world_size(), local_rank, backend)
    finally:
        dist.destroy_process_group()
