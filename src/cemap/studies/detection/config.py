"""The detection study's settings: sizes, the attack mix detectors are fitted on, the hyper-parameter grids."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ...detect import BASELINE_METHODS, SignatureConfig
from ...errors import CemapError

METHODS = ("ce",) + BASELINE_METHODS  # "ce" = the CE detector with its effect scale chosen on fit data
LOG_SCALES = (
    None,
    1e-4,
    1e-3,
    1e-2,
    1.0,
)  # candidate units of the signed-log transform, chosen on fit data for every detector
CS = (0.01, 0.1, 1.0, 10.0)
MIX = ("fgsm_high", "pgd_low", "pgd_high")
SINGLE = "pgd_high"
SATURATED = 1e-6  # an output probability within this of 0 or 1 (float32) is saturated
SIZES = ("quick", "demo", "full")
# C&W's Adam steps per search step and binary-search steps over c, at the least, in the demo and full studies:
# 30 x 4 stopped short of the boundary (mnist5k: 70% success; synthcxr: margin -0.32 logits at kappa 0), while
# 100 x 2 reaches every digit of a small MNIST model (tests/test_attacks.py); abort_early ends stalled steps sooner.
CW_MIN_STEPS, CW_MIN_SEARCH_STEPS = 100, 2
# Validation AUROCs of the CE detector's two effect scales closer than this are a tie (an AUROC of 80 images moves
# by 1/6400 per swapped pair; 0.005 is some 30 pairs), broken towards PREFERRED_SCALE, fixed in advance: log-odds
# effects do not vanish on saturated outputs, where a float32 probability of 1.0 moves under no mask.
SCALE_TIE = 0.005
PREFERRED_SCALE = "ce_log_odds"


@dataclass
class DetectionConfig:
    """Sizes of the study. The defaults ("full", what ``cemap detect`` runs) are what 2 shared CPU cores finish in well
    under an hour per dataset; the adaptive sweep in particular is CPU-bound (a CE signature's gradient costs some 35
    forward-backward passes per image), so raise ``adaptive_steps`` / ``adaptive_restarts`` on a bigger
    machine."""

    n_fit: int = 80
    n_eval: int = 80
    n_reference: int = 200
    pgd_steps: int = 10
    minimal_steps: int = 50
    matched_steps: int = 50
    cw_steps: int = 100
    cw_search_steps: int = 4
    n_adaptive: int = 16
    adaptive_steps: int = 40
    adaptive_checkpoints: tuple[int, ...] = (10, 40)
    adaptive_weights: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
    adaptive_restarts: int = 1
    lid_k: int = 20
    n_boot: int = 2000
    adaptive_methods: tuple[str, ...] | None = None  # None: every detector
    seen_rows: bool = True  # also fit one detector per attack and score it on that attack (the "seen" rows)
    seed: int = 0
    signature: SignatureConfig = field(default_factory=SignatureConfig)
    size: str = "custom"  # the preset it was made from: "quick", "demo", "full" (SIZES), else "custom"
    resume: bool = False  # reuse the attack outcomes an interrupted run of the same settings saved in the run folder

    @classmethod
    def quick(cls, seed: int = 0) -> "DetectionConfig":
        """A smoke-sized study: every attack, detector and table of the transfer protocol on a handful of images (its
        C&W runs fewer steps than CW_MIN_STEPS: its numbers are a smoke test's, never reported)."""
        return cls(
            n_fit=16,
            n_eval=16,
            n_reference=60,
            pgd_steps=5,
            minimal_steps=20,
            matched_steps=20,
            cw_steps=10,
            cw_search_steps=2,
            n_adaptive=6,
            adaptive_steps=5,
            adaptive_checkpoints=(5,),
            adaptive_weights=(1.0,),
            adaptive_restarts=1,
            lid_k=10,
            n_boot=200,
            seen_rows=False,
            seed=seed,
            size="quick",
        )

    @classmethod
    def demo(cls, seed: int = 0) -> "DetectionConfig":
        """The size ``cemap demo`` runs (about a minute on 2 free cores): the transfer protocol on fewer images, a
        short sweep."""
        return cls(
            n_fit=32,
            n_eval=32,
            n_reference=100,
            pgd_steps=10,
            minimal_steps=30,
            matched_steps=30,
            cw_steps=CW_MIN_STEPS,
            cw_search_steps=CW_MIN_SEARCH_STEPS,
            n_adaptive=8,
            adaptive_steps=10,
            adaptive_checkpoints=(5, 10),
            adaptive_weights=(0.1, 1.0),
            adaptive_restarts=1,
            lid_k=15,
            n_boot=1000,
            seen_rows=False,
            seed=seed,
            size="demo",
        )

    @classmethod
    def sized(cls, size: str, seed: int = 0, resume: bool = False) -> "DetectionConfig":
        """The preset ``size`` ("quick", "demo" or "full")."""
        if size not in SIZES:
            raise CemapError(f"unknown study size {size!r}", f"use one of {', '.join(SIZES)}")
        preset = cls(seed=seed, size="full") if size == "full" else getattr(cls, size)(seed)
        return replace(preset, resume=resume)

    def to_json(self) -> dict:
        """What fixes the numbers (study_config in detection.json): every size, not the preset's name nor --resume."""
        skip = ("signature", "size", "resume")
        return {**{k: v for k, v in asdict(self).items() if k not in skip}, "signature": self.signature.as_dict()}
