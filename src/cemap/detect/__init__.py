"""CE-based detection of adversarial inputs: the CE signature, the detector on it, and the attacker who knows both."""

from .adaptive import AdaptivePGD
from .estimator import CEDetector, select_detector, signed_log
from .signature import MAP_STATS, CESignature, SignatureConfig, map_statistics

__all__ = ["AdaptivePGD", "CEDetector", "CESignature", "MAP_STATS", "SignatureConfig", "map_statistics", "select_detector", "signed_log"]
