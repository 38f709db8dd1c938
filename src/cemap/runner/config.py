"""What determines a run's results: the one record a resumed run must match, shared by the engine and the
autoencoder."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..causal.batching import autocast
from ..errors import CemapError
from ..models import default_model_for


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's results; a resumed run must match it exactly."""

    dataset: str
    model: str | None = None
    split: str = "test"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    model_inputs: dict[str, Any] = field(default_factory=dict)  # --size, --mean, --std, --normalize, --class-names
    layer: str | None = None
    methods: tuple[str, ...] = ()
    attacks: tuple[str, ...] = ()
    cell: int | None = None
    stride: int | None = None
    fill: str | float = "zero"
    value: str | float = "zero"
    batch_size: int = 16
    shard_size: int = 256
    limit: int | None = None
    seed: int = 0
    ae_dataset: str | None = None
    ae_split: str = "train"
    ae_images: int = 4000
    precision: str = "fp32"
    compiled: bool = False  # CE maps' full passes through torch.compile (GPU only)

    def check(self) -> None:
        if self.batch_size < 1 or self.shard_size < 1:
            raise CemapError(f"batch size {self.batch_size} and shard size {self.shard_size} must be positive")
        if self.limit is not None and self.limit < 1:
            raise CemapError(f"--limit {self.limit} must be positive", "leave it out to run the whole split")
        if self.ae_images < 1:
            raise CemapError(f"--ae-images {self.ae_images} must be positive")
        autocast(self.precision)  # an unknown precision is named before any work

    @property
    def model_name(self) -> str:
        return self.model or default_model_for(self.dataset)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(model=self.model_name, methods=list(self.methods), attacks=list(self.attacks))
        if not self.model_inputs:  # a run without them keeps the config.json it had before they existed (--resume)
            del d["model_inputs"]
        return d
