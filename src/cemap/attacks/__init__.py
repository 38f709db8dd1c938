"""Adversarial interventions do(X = x + delta) in [0, 1] pixel space: FGSM, BIM, PGD (Linf, L2), C&W-L2.

from cemap.attacks import PGD
result = PGD(classifier, eps=0.3, steps=20)(images)   # -> AttackResult
result.adversarial, result.success, result.linf, result.l2
"""

from __future__ import annotations

from ..errors import unknown_name
from .base import Attack, AttackResult, perturbation_norms
from .carlini_wagner import CarliniWagnerL2
from .gradient import BIM, FGSM, PGD, ConfidenceMatchedPGD, MinimalPGD

ATTACKS: dict[str, type[Attack]] = {
    "fgsm": FGSM,
    "bim": BIM,
    "pgd": PGD,
    "cw": CarliniWagnerL2,
    "pgd-minimal": MinimalPGD,
    "pgd-confidence-matched": ConfidenceMatchedPGD,
}


def list_attacks() -> list[str]:
    return sorted(ATTACKS)


def get_attack(name: str, classifier, **kwargs) -> Attack:
    """An attack by name ('fgsm', 'bim', 'pgd', 'cw'), configured with ``kwargs``."""
    if name.lower() not in ATTACKS:
        raise unknown_name("attack", name, list(ATTACKS))
    return ATTACKS[name.lower()](classifier, **kwargs)


__all__ = [
    "ATTACKS",
    "Attack",
    "AttackResult",
    "BIM",
    "CarliniWagnerL2",
    "ConfidenceMatchedPGD",
    "FGSM",
    "MinimalPGD",
    "PGD",
    "get_attack",
    "list_attacks",
    "perturbation_norms",
]
