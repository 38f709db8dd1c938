"""The one per-image pipeline behind ``cemap run``, ``cemap explain`` and the demo: every map computed once.

For a batch of images it returns the predicted probabilities, the explained targets, one map
per requested method (the CE map under ``"ce"``, each baseline under its name), the latent CE
profile when an autoencoder is given, and - only when asked - adversarial copies with their
probabilities, profiles and CE maps. Maps always explain the clean prediction's target, for
the clean image, every baseline and every adversarial copy, so they compare pixel for pixel.

Baselines and attacks are imported only when asked for: a plain CE run never loads Captum or
pytorch-grad-cam.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from .causal import CEMap, FittedAutoencoder, LatentCE, resolve_targets
from .models.classifier import Classifier

CE = "ce"


def adversarial_map_name(attack: str) -> str:
    """The CE map of an attack's adversarial copy: ``ce@<attack>``."""
    return f"{CE}@{attack}"


@dataclass
class AttackOutcome:
    """One attack on one batch: the attack's result, the adversarials' probabilities and latent profiles."""

    result: object  # cemap.attacks.AttackResult
    probs: torch.Tensor  # B x K
    latent: torch.Tensor | None  # B x k


@dataclass
class BatchResult:
    """Everything the pipeline computed for one batch of B images."""

    probs: torch.Tensor  # B x K
    targets: torch.Tensor  # B
    maps: dict[str, torch.Tensor]  # name -> B x H x W
    latent: torch.Tensor | None = None  # B x k
    attacks: dict[str, AttackOutcome] = field(default_factory=dict)


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


class ImagePipeline:
    """``pipeline(images, targets=None)`` -> :class:`BatchResult`.

    Args:
        classifier: the model explained.
        fitted: latent autoencoder for the CE profile (None: no profile).
        methods: map methods, each computed once however often it is named; ``"ce"`` is the CE map.
        ce_options: CEMap settings (``cell``, ``stride``, ``fill``, ...).
        value: the latent intervention's value (``"zero"``, ``"mean"`` or a number).
        attacks: attack names (``cemap.attacks.list_attacks()``); each adds an adversarial copy per image.
        precision: "fp32" or "bf16" for the CE maps and latent profiles (bf16 autocast; attacks and baselines stay
        fp32).
    """

    def __init__(
        self,
        classifier: Classifier,
        fitted: FittedAutoencoder | None = None,
        *,
        methods: Sequence[str] = (CE,),
        ce_options: dict | None = None,
        value: str | float = "zero",
        attacks: Sequence[str] = (),
        precision: str = "fp32",
    ) -> None:
        self.classifier = classifier
        self.methods = _unique(methods)
        self.cemap = (
            CEMap(classifier, **{"precision": precision, **(ce_options or {})})
            if CE in self.methods or attacks
            else None
        )
        self.latent = LatentCE(classifier, fitted, value=value, precision=precision) if fitted is not None else None
        self.explainers = self._explainers([m for m in self.methods if m != CE])
        self.attacks = self._attacks(_unique(attacks))

    def _explainers(self, methods: list[str]) -> dict:
        if not methods:
            return {}
        from .explain import get_explainer

        return {name: get_explainer(name, self.classifier) for name in methods}

    def _attacks(self, attacks: list[str]) -> dict:
        if not attacks:
            return {}
        from .attacks import get_attack

        return {name: get_attack(name, self.classifier) for name in attacks}

    @property
    def map_names(self) -> list[str]:
        """The maps each image gets, in order: the methods, then the CE map of each adversarial copy."""
        return [*self.methods, *(adversarial_map_name(a) for a in self.attacks)]

    def attack_budgets(self) -> dict[str, dict]:
        """Each attack's configuration (norm, eps, steps, ...), for manifests."""
        return {name: attack.budget() for name, attack in self.attacks.items()}

    def _map(self, name: str, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if name == CE:
            return self.cemap.attribute(images, targets)
        return self.explainers[name].attribute(images, targets)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> BatchResult:
        """Everything for one batch.

        Args:
            images: B x C x H x W in [0, 1].
            targets: B classes / findings to explain; None = the model's choice on the clean image.
        Returns:
            BatchResult with probs (B x K), targets (B), maps (name -> B x H x W), latent (B x k or None), attacks.
        """
        images = self.classifier.check_images(images)
        with torch.inference_mode():
            probs = self.classifier.predict_proba(images)
        targets = resolve_targets(probs, targets)
        result = BatchResult(probs, targets, {name: self._map(name, images, targets) for name in self.methods})
        result.latent = self.latent.attribute(images) if self.latent is not None else None
        for name, attack in self.attacks.items():
            outcome = attack(images)
            adv = outcome.adversarial.detach()
            with torch.inference_mode():
                adv_probs = self.classifier.predict_proba(adv)
            result.attacks[name] = AttackOutcome(
                outcome, adv_probs, self.latent.attribute(adv) if self.latent is not None else None
            )
            result.maps[adversarial_map_name(name)] = self.cemap.attribute(adv, targets)
        return result
