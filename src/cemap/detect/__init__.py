"""CE-based detection of adversarial inputs: the CE signature, the detector on it, the baselines' features on equal
terms, and the attacker who knows them."""

from .adaptive import AdaptivePGD
from .estimator import CEDetector, load_detector, save_detector, select_detector, signed_log
from .features import BASELINE_METHODS, CE_METHODS, METHODS, DetectorFeatures
from .signature import MAP_STATS, CESignature, SignatureConfig, map_statistics

__all__ = [
    "AdaptivePGD",
    "BASELINE_METHODS",
    "CEDetector",
    "CESignature",
    "CE_METHODS",
    "DetectorFeatures",
    "MAP_STATS",
    "METHODS",
    "SignatureConfig",
    "load_detector",
    "map_statistics",
    "save_detector",
    "select_detector",
    "signed_log",
]
