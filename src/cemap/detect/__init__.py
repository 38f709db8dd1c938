"""CE-based detection of adversarial inputs: the CE signature, the detector on it, the baselines' features on equal
terms, and the attacker who knows them."""

from .adaptive import AdaptivePGD
from .estimator import CEDetector, select_detector, signed_log
from .features import BASELINE_METHODS, CE_METHODS, METHODS, DetectorFeatures
from .signature import EFFECT_SCALES, MAP_STATS, CESignature, SignatureConfig, log_odds, log_odds_view, map_statistics

__all__ = ["AdaptivePGD", "BASELINE_METHODS", "CEDetector", "CESignature", "CE_METHODS", "DetectorFeatures", "EFFECT_SCALES", "MAP_STATS", "METHODS",
           "SignatureConfig", "log_odds", "log_odds_view", "map_statistics", "select_detector", "signed_log"]
