"""What a run stores for each batch: the shared per-image pipeline's results as Parquet columns and maps.

The computing is :class:`cemap.pipeline.ImagePipeline` (the one ``cemap explain`` and the demo use);
this module only says which columns a run's rows carry. The CE map is always computed, and named
``"ce"`` like the method, so ``--methods ce`` asks for nothing twice.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import torch

from ..causal import FittedAutoencoder
from ..models.classifier import Classifier
from ..pipeline import CE, ImagePipeline

CE_MAP = CE


def _numpy(values: torch.Tensor) -> np.ndarray:
    return values.detach().cpu().float().numpy()


class RunPipeline:
    """``pipeline(images, seed)`` -> (per-image columns, per-image maps) for one batch of a run."""

    def __init__(
        self,
        classifier: Classifier,
        fitted: FittedAutoencoder,
        *,
        cell: int | None = None,
        stride: int | None = None,
        fill: str | float = "zero",
        value: str | float = "zero",
        methods: Sequence[str] = (),
        attacks: Sequence[str] = (),
        precision: str = "fp32",
        compiled: bool = False,
    ) -> None:
        self.images = ImagePipeline(
            classifier,
            fitted,
            methods=(CE, *methods),
            ce_options={"cell": cell, "stride": stride, "fill": fill, "compiled": compiled},
            value=value,
            attacks=attacks,
            precision=precision,
        )

    @property
    def cemap(self):
        return self.images.cemap

    @property
    def attacks(self) -> list[str]:
        return list(self.images.attacks)

    @property
    def map_names(self) -> list[str]:
        return self.images.map_names

    def attack_budgets(self) -> dict[str, dict]:
        return self.images.attack_budgets()

    def fields(self) -> list[pa.Field]:
        """The Parquet columns this pipeline adds to each image's row."""
        vec = pa.list_(pa.float32())
        fields = [pa.field("probs", vec), pa.field("target", pa.int64()), pa.field("latent_ce", vec)]
        for a in self.attacks:
            fields += [
                pa.field(f"{a}.success", pa.bool_()),
                pa.field(f"{a}.linf", pa.float32()),
                pa.field(f"{a}.l2", pa.float32()),
                pa.field(f"{a}.probs", vec),
                pa.field(f"{a}.latent_ce", vec),
            ]
        return fields

    def __call__(self, images: torch.Tensor, seed: int) -> tuple[dict[str, list], dict[str, np.ndarray]]:
        """Everything for one batch; ``seed`` seeds the attacks' random starts for exactly this batch (no global
        RNG)."""
        for attack in self.images.attacks.values():
            if hasattr(attack, "seed"):
                attack.seed = seed
        out = self.images(images)
        columns: dict[str, list] = {
            "probs": list(_numpy(out.probs)),
            "target": out.targets.tolist(),
            "latent_ce": list(_numpy(out.latent)),
        }
        for name, outcome in out.attacks.items():
            res = outcome.result
            columns[f"{name}.success"] = [bool(s) for s in res.success.tolist()]
            columns[f"{name}.linf"] = _numpy(res.linf).tolist()
            columns[f"{name}.l2"] = _numpy(res.l2).tolist()
            columns[f"{name}.probs"] = list(_numpy(outcome.probs))
            columns[f"{name}.latent_ce"] = list(_numpy(outcome.latent))
        return columns, {name: _numpy(m) for name, m in out.maps.items()}
