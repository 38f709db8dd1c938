"""What a run computes for each batch of images: predictions, the latent CE profile, the CE map,
and - only when asked - baseline maps and adversarial attacks with their CE signatures.

Baselines and attacks are imported lazily, so a plain run never loads Captum or
pytorch-grad-cam. Maps always explain the clean prediction (the same target class for the
clean image, every baseline and every adversarial copy), so they can be compared pixel for pixel.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import torch

from ..causal import CEMap, FittedAutoencoder, LatentCE, resolve_targets
from ..errors import CemapError
from ..models.classifier import Classifier

CE_MAP = "cemap"


def adversarial_map_name(attack: str) -> str:
    return f"{CE_MAP}@{attack}"


def _numpy(values) -> np.ndarray:
    if torch.is_tensor(values):
        return values.detach().cpu().float().numpy()
    return np.asarray(values, dtype=np.float32)


class ImagePipeline:
    """``pipeline(images, seed)`` -> (per-image columns, per-image maps) for one batch."""

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
    ) -> None:
        if CE_MAP in methods:
            raise CemapError("'cemap' is always computed", "list only baseline methods in --methods")
        self.classifier = classifier
        self.cemap = CEMap(classifier, cell=cell, stride=stride, fill=fill)
        self.latent = LatentCE(classifier, fitted, value=value)
        self.explainers = self._explainers(methods)
        self.attacks = self._attacks(attacks)

    def _explainers(self, methods: Sequence[str]) -> dict:
        if not methods:
            return {}
        from ..explain import get_explainer

        return {name: get_explainer(name, self.classifier) for name in methods}

    def _attacks(self, attacks: Sequence[str]) -> dict:
        if not attacks:
            return {}
        from ..attacks import get_attack

        return {name: get_attack(name, self.classifier) for name in attacks}

    @property
    def map_names(self) -> list[str]:
        return [CE_MAP, *self.explainers, *(adversarial_map_name(a) for a in self.attacks)]

    def attack_budgets(self) -> dict[str, dict]:
        """Each attack's configuration (norm, eps, steps, ...), for the manifest."""
        return {name: attack.budget() for name, attack in self.attacks.items()}

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
        """Everything for one batch; ``seed`` fixes any randomness (attack starts) for exactly this batch."""
        torch.manual_seed(seed)
        clf = self.classifier
        with torch.inference_mode():
            probs = clf.predict_proba(images)
        targets = resolve_targets(probs, None)
        columns: dict[str, list] = {
            "probs": list(_numpy(probs)),
            "target": targets.tolist(),
            "latent_ce": list(_numpy(self.latent.attribute(images))),
        }
        maps = {CE_MAP: _numpy(self.cemap.attribute(images, targets))}
        for name, explainer in self.explainers.items():
            maps[name] = _numpy(explainer.explain(images, targets))
        for name, attack in self.attacks.items():
            result = attack(images)
            adv = result.adversarial.detach()
            with torch.inference_mode():
                adv_probs = clf.predict_proba(adv)
            columns[f"{name}.success"] = [bool(s) for s in result.success.tolist()]
            columns[f"{name}.linf"] = _numpy(result.linf).tolist()
            columns[f"{name}.l2"] = _numpy(result.l2).tolist()
            columns[f"{name}.probs"] = list(_numpy(adv_probs))
            columns[f"{name}.latent_ce"] = list(_numpy(self.latent.attribute(adv)))
            maps[adversarial_map_name(name)] = _numpy(self.cemap.attribute(adv, targets))
        return columns, maps
