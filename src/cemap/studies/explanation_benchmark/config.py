"""What fixes the explanation benchmark v3's numbers: the configuration, the methods, and every method's tuning
candidates."""

from __future__ import annotations

from dataclasses import dataclass, replace

HELDOUT_SEED = 20261130  # the held-out synthcxr generator seed: used for no choice, only for the reported figures
# synthcxr's validation split of this generator seed: drawn like train, never trained on; every choice is made there
TUNE_SEED = 0
TUNED = ("ce", "gradcam", "gradcam++", "occlusion", "integrated-gradients", "rise", "kernelshap")
PEERS = ("gradcam", "gradcam++", "occlusion", "integrated-gradients", "rise", "kernelshap")
CE_VARIANTS = (
    "ce-paper",
    "ce-oracle",
    "ce-inpaint",
)  # reported beside the tuned CE map; oracle / inpainter: its settings, another fill
FLOORS = ("random", "centre", "edge", "contrast")
IMPUTERS = ("noisy-linear", "blur", "counterfactual")
IOBB_TS = (0.1, 0.25, 0.5, 0.75, 0.9)  # Wang et al. 2017
SELECTION = (
    "pointing_game",
    "gt_top1",
)  # the one rule: the candidate with the highest sum of these two means on validation


@dataclass
class BenchmarkConfig:
    """Everything that fixes the numbers of one run (written into the run's JSON).

    A run is one model, one image size and one training seed; ``cemap evaluate --benchmark``
    runs one, and ``docs/results/merge_benchmark.py`` merges several trainings into the
    hierarchical verdicts.
    """

    model: str | None = "cxr-cnn"  # None: the context's classifier (the demo's own model) at its size
    size: int = 64
    train_seed: int = 0
    heldout_seed: int = HELDOUT_SEED
    tune_seed: int = TUNE_SEED
    n_images: int = 300  # held-out test images with lesions
    tune_images: int = 50  # validation images every method is tuned on
    n_candidates: int = 6  # candidates per tuned method (the first n of each list)
    n_sanity: int = 30  # pairs per seed for the randomisation tests
    sanity_seeds: tuple[int, ...] = (0, 1, 2)
    sanity_methods: tuple[str, ...] = ("ce", "ce-paper", *PEERS, "random", "edge")
    independent: bool = (
        False  # independent (block-by-block) randomisation with seed 0 beside the cascade (one map set per block)
    )
    smooth_samples: int = (
        3  # Smooth MPRT: noisy copies per map (Quantus's default is 50; CE costs a map per copy); 0 = skipped
    )
    data_randomisation: bool = True  # retrain on permuted labels (cxr-cnn only) and compare maps
    methods: tuple[str, ...] = ("ce", *CE_VARIANTS, *PEERS, *FLOORS)
    peers: tuple[str, ...] = PEERS
    imputers: tuple[str, ...] = IMPUTERS
    road_fractions: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    n_noisy: int | None = (
        100  # pairs for the noisy-linear imputer (its sparse solves are the slowest metric); None = all
    )
    seed: int = 0  # subsets, tie-breaking, imputation noise, RISE masks, Smooth-MPRT noise
    device: str = "cpu"
    n_boot: int = 2000

    def scaled(self, **changes) -> "BenchmarkConfig":
        return replace(self, **changes)


def demo_config(**changes) -> BenchmarkConfig:
    """The same protocol at demo size: the demo's own model, 8 held-out and 4 validation images, two candidates per
    method, the cheap peers (Grad-CAM, Integrated Gradients), no inpainter (it trains for minutes on first use), no
    noisy-linear imputer, one sanity seed without Smooth MPRT, no retraining on permuted labels; about a minute on 2
    cores."""
    base = BenchmarkConfig(
        model=None,
        n_images=8,
        tune_images=4,
        n_candidates=2,
        n_sanity=4,
        sanity_seeds=(0,),
        independent=False,
        smooth_samples=0,
        data_randomisation=False,
        sanity_methods=("ce", "gradcam"),
        imputers=("blur", "counterfactual"),
        methods=("ce", "ce-paper", "ce-oracle", "gradcam", "integrated-gradients", "random", "centre", "edge"),
        peers=("gradcam", "integrated-gradients"),
        road_fractions=(0.2, 0.5, 0.8),
        n_boot=1000,
    )
    return replace(base, **changes)


def cam_candidates(layers: list[tuple[str, tuple[int, int]]]) -> list[dict]:
    """The last layer at each of the four deepest resolutions, deepest first, then the two deepest and three deepest
    averaged:
    a 2 x 2 map is never the only choice."""
    last_at: dict[tuple[int, int], str] = {}
    for name, shape in layers:
        last_at[shape] = name  # execution order: the last module at each resolution wins
    deepest = [last_at[s] for s in sorted(last_at, key=lambda s: s[0] * s[1])][:4]
    out = [{"layer": n} for n in deepest]
    if len(deepest) >= 2:
        out.append({"layer": "+".join(deepest[:2])})
    if len(deepest) >= 3:
        out.append({"layer": "+".join(deepest[:3])})
    return out


def candidates(method: str, size: int, cam_layers: list | None = None) -> list[dict]:
    """Every tuned method's candidate settings, in a fixed order (the first two are the demo's)."""
    w10, w7, w5 = (max(2, round(size / d)) for d in (10, 7, 5))
    table = {
        "ce": [{"effect_scale": s, "fill": f} for f in ("blur", "mean", "zero") for s in ("probability", "log_odds")],
        "occlusion": [
            {"window": w, "stride": st, "fill": f}
            for w, st in ((w10, max(1, w10 // 2)), (w5, max(1, w5 // 2)), (w7, w7))
            for f in ("blur", 0.0)
        ],
        "integrated-gradients": [{"n_steps": n, "baseline": b} for b in (0.0, "blur", "mean") for n in (32, 128)],
        "rise": [
            {"n_masks": 4000, "grid": 8, "p": 0.5},
            {"n_masks": 2000, "grid": 8, "p": 0.5},
            {"n_masks": 8000, "grid": 8, "p": 0.5},
            {"n_masks": 4000, "grid": 5, "p": 0.5},
            {"n_masks": 4000, "grid": 12, "p": 0.5},
            {"n_masks": 4000, "grid": 8, "p": 0.25},
        ],
        "kernelshap": [{"n_segments": s, "n_samples": n} for n in (200, 800) for s in (24, 48, 96)],
    }
    if method in ("gradcam", "gradcam++"):
        return cam_candidates(cam_layers or [])
    return table[method]
