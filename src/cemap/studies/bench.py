"""``cemap bench``: cemap's hot paths against the tools people would otherwise use, as ratios from one run.

Every figure is the median of ``repeats`` timed runs after ``warmup`` untimed ones, on the
same inputs. The anchors (Captum ``Occlusion``, torchattacks ``PGD`` and the one-forward-per-
intervention latent loop) run by default in a fresh process with the allocator they ship with,
because importing cemap raises glibc's mmap threshold for its process (see ``causal.batching``);
``anchors_in_process=True`` runs them beside cemap instead, which isolates the algorithmic gain.
Timings on a shared machine are noisy: quote figures from a quiet one.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from ..causal.adaptive import DEFAULT_REFINE, AdaptiveCEMap
from ..causal.autoencoder import AEConfig, FittedAutoencoder, LatentAutoencoder
from ..causal.batching import allocator_tuned, tune_allocator
from ..causal.cemap_map import CEMap
from ..causal.effects import expected_effect, resolve_targets
from ..causal.latent import LatentCE
from ..causal.split import split_classifier
from ..errors import CemapError
from ..models.classifier import Classifier

DEFAULT_MODEL = "chexnet"  # DenseNet-121, 14 sigmoid findings, 224 x 224; random weights unless --weights
LATENT_LAYERS = ("features.denseblock2",)  # the reference cut for DenseNet-121
LATENT_K = 16
PGD_QUALITY_EPS = tuple(e / 255 for e in (0.125, 0.25, 0.5, 1, 2, 8))  # up to the bench's budget; cxr-cnn flips at tiny ones


@dataclass(frozen=True)
class BenchConfig:
    model: str = DEFAULT_MODEL
    weights: str | None = "random"
    images: int = 2
    pgd_batch: int = 8
    repeats: int = 5
    warmup: int = 1
    threads: int = 0
    seed: int = 0
    cell: int | None = None  # default: about a 7 x 7 grid
    adaptive_refine: float = DEFAULT_REFINE
    pgd_steps: int = 10
    quality_images: int = 32
    pgd_quality_images: int = 256
    anchors_in_process: bool = False
    device: str = "cpu"  # 'cuda': every figure, anchors included, on the GPU (anchors then run in this process)
    compare_resnet50: bool = True  # also time ResNet-50 (random weights) CE maps with and without windows

    @classmethod
    def quick(cls, **kw) -> "BenchConfig":
        """About a minute or two on 2 cores: one image, three repeats, a small PGD batch."""
        return cls(**{"images": 1, "pgd_batch": 2, "repeats": 3, "quality_images": 8, "pgd_quality_images": 32, **kw})


# -- timing ---------------------------------------------------------------------------------------


def timed(fn: Callable[[], object], repeats: int, warmup: int) -> dict:
    """Median wall and CPU seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    _sync_all()
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        _sync_all()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return {"median_s": statistics.median(wall), "cpu_median_s": statistics.median(cpu), "runs_s": wall}


def _sync_all() -> None:
    """Wait for queued GPU work, so that timings cover it (a no-op without CUDA)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _per_image(t: dict, n: int) -> float:
    return t["median_s"] / n


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _gflops(flops: float, fn: Callable[[], object], repeats: int, device) -> float:
    """GFLOP/s of ``fn`` (``flops`` per call): median of ``repeats`` timed calls after one warm-up, synchronised on GPUs."""
    def run():
        fn()
        _sync(device)

    return flops / timed(run, repeats, 1)["median_s"] / 1e9


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5, device="cpu") -> float:
    """GFLOP/s of an n x n x n torch.mm in ``dtype`` (one GEMM shape; :func:`measured_peak` takes the best of many)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g).to(device, dtype), torch.randn(n, n, generator=g).to(device, dtype)
    return _gflops(2 * n**3, lambda: torch.mm(a, b), repeats, device)


PEAK_GEMMS = ((1024, 1024, 1024), (2048, 2048, 2048), (4096, 4096, 1024), (3136, 256, 2304), (12544, 64, 576), (8192, 1024, 512))
PEAK_CONVS = ((8, 256, 256, 56, 3), (8, 128, 128, 56, 3), (32, 64, 64, 56, 3), (8, 512, 512, 28, 1))  # batch, in, out, size, kernel


def _concurrent_gemms(m: int, n: int, k: int, dtype, workers: int, repeats: int) -> float:
    """GFLOP/s of ``workers`` single-threaded GEMMs at once, one per core (torch.mm releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    g = torch.Generator().manual_seed(1)
    pairs = [(torch.randn(m, k, generator=g).to(dtype), torch.randn(k, n, generator=g).to(dtype)) for _ in range(workers)]
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            return _gflops(2 * m * n * k * workers, lambda: list(pool.map(lambda ab: torch.mm(*ab), pairs)), repeats, "cpu")
    finally:
        torch.set_num_threads(saved)


def measured_peak(dtype: torch.dtype, repeats: int = 3, device="cpu") -> dict:
    """The machine's practical peak in ``dtype``: the best of several GEMM shapes (square, wide, and the tall-skinny
    im2col shapes of DenseNet's convolutions), two thread layouts on a CPU (one GEMM on every thread; one single-threaded
    GEMM per core at once) and a convolution micro-benchmark (channels-last, as the CE maps run). Returns the peak and
    every measurement it was chosen from, so a reader can see how it was found."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    trials = []
    for m, n, k in PEAK_GEMMS:
        a, b = torch.randn(m, k, generator=g).to(device, dtype), torch.randn(k, n, generator=g).to(device, dtype)
        trials.append({"kind": "gemm", "shape": [m, n, k], "threads": torch.get_num_threads() if torch.device(device).type == "cpu" else None,
                       "gflops": _gflops(2 * m * n * k, lambda a=a, b=b: torch.mm(a, b), repeats, device)})
        del a, b
    if torch.device(device).type == "cpu" and torch.get_num_threads() > 1:
        workers = torch.get_num_threads()
        for m, n, k in ((1024, 1024, 1024), (2048, 2048, 1024)):
            trials.append({"kind": "gemm", "shape": [m, n, k], "threads": f"{workers} x 1 (concurrent)",
                           "gflops": _concurrent_gemms(m, n, k, dtype, workers, repeats)})
    for b, cin, cout, size, k in PEAK_CONVS:
        x = torch.randn(b, cin, size, size, generator=g).to(device, dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(cout, cin, k, k, generator=g).to(device, dtype).contiguous(memory_format=torch.channels_last)
        flops = 2 * b * cout * size * size * cin * k * k
        with torch.inference_mode():
            trials.append({"kind": "conv2d", "shape": [b, cin, cout, size, k], "threads": torch.get_num_threads() if torch.device(device).type == "cpu" else None,
                           "gflops": _gflops(flops, lambda x=x, w=w, k=k: F.conv2d(x, w, padding=k // 2), repeats, device)})
    best = max(trials, key=lambda t: t["gflops"])
    return {"gflops": best["gflops"], "found_by": best, "trials": trials,
            "method": f"best of {len(trials)} timed kernels (median of {repeats} runs each after a warm-up): GEMM shapes, thread layouts, convolutions"}


def fraction_of_peak(achieved: float, peak: float) -> dict:
    """``achieved`` against ``peak``; a figure above 100% means the peak was underestimated, so it is flagged, never printed."""
    fraction = achieved / peak if peak > 0 else float("inf")
    if fraction > 1.0:
        return {"fraction_of_peak": None, "above_peak": True,
                "flag": f"achieved {achieved:.1f} GFLOP/s exceeds the measured peak {peak:.1f}: the peak is underestimated, no fraction reported"}
    return {"fraction_of_peak": fraction, "above_peak": False}


def executed_flops(fn: Callable[[], object]) -> int:
    """FLOPs that ``fn`` actually executes (convolutions and matmuls, as FlopCounterMode counts them): a windowed
    CE map counts its windows, not full passes."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def forward_flops(classifier: Classifier, image: torch.Tensor) -> int:
    """FLOPs of one forward pass on one image (convolutions and matmuls, as FlopCounterMode counts them)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        classifier(image[None])
    return int(counter.get_total_flops())


# -- inputs ---------------------------------------------------------------------------------------


def bench_classifier(config: BenchConfig) -> Classifier:
    """The model under test, built with seeded random weights where it has none of its own."""
    from ..models.registry import get_model
    from ..models.torchvision_models import ARCHS

    torch.manual_seed(config.seed)
    takes_weights = config.model == DEFAULT_MODEL or config.model in ARCHS  # built-in models train their own
    kwargs = {"weights": config.weights} if config.weights is not None and takes_weights else {}
    return get_model(config.model, **kwargs).eval()


def bench_images(classifier: Classifier, n: int, seed: int) -> torch.Tensor:
    """Test images of the model's built-in dataset when it has one, else seeded uniform noise in [0, 1]."""
    from ..data.registry import get_dataset, list_datasets
    from ..models.registry import default_model_for

    for dataset in list_datasets():
        try:
            if default_model_for(dataset) == classifier.name:
                return get_dataset(dataset, split="test").batch(range(n)).images.float()
        except CemapError:
            continue
    return torch.rand(n, *classifier.input_shape, generator=torch.Generator().manual_seed(seed))


def latent_layer(classifier: Classifier) -> str:
    return next((layer for layer in LATENT_LAYERS if layer in classifier.layers), None) or classifier.resolve_layer(None)


def bench_autoencoder(classifier: Classifier, layer: str, image: torch.Tensor, seed: int) -> FittedAutoencoder:
    """A seeded untrained autoencoder at ``layer``: speed does not depend on what it learned."""
    split = split_classifier(classifier, layer)
    with torch.inference_mode():
        act = split.activation(image[None])[0]
    channels = act.shape[1] if act.dim() == 4 else act[0].numel()
    torch.manual_seed(seed)
    return FittedAutoencoder(LatentAutoencoder(channels, code=LATENT_K).to(image.device).eval(), split, AEConfig(code=LATENT_K))


# -- anchors (run where the config says, with the allocator they ship with) -----------------------


class _FindingLogit(nn.Module):
    """Two logits [0, z_t] per image so torchattacks' cross-entropy equals cemap's per-finding BCE (sigmoid heads)."""

    def __init__(self, classifier: Classifier, findings: torch.Tensor, precision: str) -> None:
        super().__init__()
        self.classifier, self.findings, self.precision = classifier, findings, precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = _logits(self.classifier, x, self.precision)
        z = logits.gather(1, self.findings[:, None])
        return torch.cat([torch.zeros_like(z), z], dim=1)


class _Logits(nn.Module):
    def __init__(self, classifier: Classifier, precision: str) -> None:
        super().__init__()
        self.classifier, self.precision = classifier, precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _logits(self.classifier, x, self.precision)


def _logits(classifier: Classifier, x: torch.Tensor, precision: str) -> torch.Tensor:
    if precision == "bf16":
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return classifier(x).float()
    return classifier(x)


def _torchattacks_pgd(classifier: Classifier, images: torch.Tensor, labels: torch.Tensor, original: torch.Tensor | None,
                      eps: float, alpha: float, steps: int, precision: str) -> torch.Tensor:
    import torchattacks

    if classifier.multilabel:
        model, target = _FindingLogit(classifier, labels, precision), original.long()
    else:
        model, target = _Logits(classifier, precision), labels
    # torchattacks keeps the model in the mode it finds it in: a fresh wrapper is in training mode (batch-stat BatchNorm).
    attack = torchattacks.PGD(model.eval(), eps=eps, alpha=alpha, steps=steps, random_start=False)
    return attack(images, target)


def _reference_latent(classifier: Classifier, ae: LatentAutoencoder, layer: str, images: torch.Tensor) -> torch.Tensor:
    """The pattern cemap replaces: one full forward per do(Z_j = 0), the autoencoder spliced in by a hook."""
    module = classifier.model.get_submodule(layer)
    state: dict = {}

    def splice(_m, _inp, out):
        z, _ = ae.encode(out)
        if state["j"] is not None:
            z = z.clone()
            z[:, state["j"]] = 0
        return ae.decode(z, out)[0]

    handle = module.register_forward_hook(splice)
    try:
        with torch.inference_mode():
            rows = []
            for x in images:
                state["j"] = None
                p = classifier.predict_proba(x[None])
                p_do = []
                for j in range(ae.code_channels):
                    state["j"] = j
                    p_do.append(classifier.predict_proba(x[None]))
                rows.append(expected_effect(p, torch.stack(p_do, 1), classifier.head))
    finally:
        handle.remove()
    return torch.cat(rows)


def _captum_attribution(method: str, classifier: Classifier, images: torch.Tensor, targets: torch.Tensor, cell: int, ppe: int) -> torch.Tensor:
    """Captum's ``Occlusion`` (sliding window, zero baseline) or ``FeatureAblation`` (the same grid as a feature mask) on
    the whole batch: B x H x W attributions of the target's probability, ``ppe`` perturbations per forward pass (Captum
    stacks them for every image of the batch, so a pass holds B x ppe images)."""
    from captum.attr import FeatureAblation, Occlusion

    forward = lambda x: classifier.predict_proba(x)  # noqa: E731
    c, h, w = images.shape[1:]
    with torch.inference_mode():
        if method == "occlusion":
            return Occlusion(forward).attribute(images, sliding_window_shapes=(c, cell, cell), strides=(c, cell, cell), baselines=0.0,
                                                target=targets, perturbations_per_eval=ppe)[:, 0]
        ys, xs = torch.arange(h, device=images.device) // cell, torch.arange(w, device=images.device) // cell
        groups = (ys[:, None] * (-(-w // cell)) + xs[None, :]).expand(images.shape[0], c, h, w)
        return FeatureAblation(forward).attribute(images, baselines=0.0, target=targets, feature_mask=groups, perturbations_per_eval=ppe)[:, 0]


def captum_ppe_values(cells: int, device: str) -> tuple[int, ...]:
    """Captum's ``perturbations_per_eval`` tried: one per pass, a few in between, and all the grid's cells in one pass."""
    between = (7, 16, 25) if torch.device(device).type == "cuda" else (7,)
    return tuple(sorted({1, *(p for p in between if p < cells), cells}))


def captum_runs(task: dict) -> dict:
    """Every Captum anchor of the CE map: Occlusion at each ``perturbations_per_eval`` and FeatureAblation at all cells per
    pass; on a GPU each also with cuDNN's algorithm search on (Captum's users can set it; the best of both counts)."""
    clf, x, targets, cell, device = task["classifier"], task["images"], task["targets"], task["cell"], x_device(task)
    runs = {f"captum_occlusion_ppe{p}": ("occlusion", p) for p in captum_ppe_values(task["cells"], device)}
    runs[f"captum_feature_ablation_ppe{task['cells']}"] = ("feature_ablation", task["cells"])
    flags = (False, True) if torch.device(device).type == "cuda" else (None,)
    out = {}
    for name, (method, ppe) in runs.items():
        for benchmark in flags:
            key = name if not benchmark else f"{name}_cudnn_benchmark"
            fn = lambda m=method, p=ppe: _captum_attribution(m, clf, x, targets, cell, p)  # noqa: E731
            with _cudnn_benchmark(benchmark):
                out[key] = timed(fn, task["repeats"], task["warmup"])
                out[f"{key}_map"] = fn()
    return out


def x_device(task: dict) -> str:
    return str(task["images"].device)


def _cudnn_benchmark(on: bool | None):
    """cuDNN's algorithm search on or off for one anchor (None: leave the flags alone, as on the CPU)."""
    import contextlib

    if on is None:
        return contextlib.nullcontext()
    b = torch.backends.cudnn
    return b.flags(enabled=b.enabled, benchmark=on, deterministic=b.deterministic, allow_tf32=b.allow_tf32)


def run_anchors(task: dict) -> dict:
    """Time every anchor on the task's inputs; returns timings and outputs (for the identity checks)."""
    if task["threads"]:
        torch.set_num_threads(task["threads"])
    clf, x, reps, warm = task["classifier"], task["images"], task["repeats"], task["warmup"]
    out: dict = {"allocator_tuned": allocator_tuned(), "threads": torch.get_num_threads(), "captum": captum_runs(task)}
    fn = lambda: _reference_latent(clf, task["ae"], task["layer"], x)  # noqa: E731
    out["latent_reference"] = timed(fn, reps, warm)
    out["latent_reference_ece"] = fn()
    px, labels, original = task["pgd_images"], task["pgd_labels"], task["pgd_original"]
    for precision in ("fp32", "bf16"):
        fn = lambda p=precision: _torchattacks_pgd(clf, px, labels, original, task["eps"], task["alpha"], task["steps"], p)  # noqa: E731
        out[f"torchattacks_{precision}"] = timed(fn, reps, warm)
        out[f"torchattacks_{precision}_adv"] = fn()
    return out


def _anchors(task: dict, in_process: bool) -> dict:
    """Run the anchors here, or in a fresh interpreter whose import of cemap leaves glibc's allocator as shipped
    (on a GPU always here: glibc's allocator does not matter there, and CUDA tensors are not sent to another process)."""
    if in_process or task["images"].device.type != "cpu":
        return run_anchors(task)
    saved = os.environ.get("CEMAP_NO_MALLOPT")
    os.environ["CEMAP_NO_MALLOPT"] = "1"
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(run_anchors, task).result()
    finally:
        if saved is None:
            os.environ.pop("CEMAP_NO_MALLOPT")
        else:
            os.environ["CEMAP_NO_MALLOPT"] = saved


# -- cemap side -----------------------------------------------------------------------------------


def _pgd_success(classifier: Classifier, clean: torch.Tensor, adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Did the attack flip the prediction (softmax) or the attacked finding's decision (sigmoid)?"""
    with torch.inference_mode():
        za, zc = classifier(adv).float(), classifier(clean).float()
    if classifier.multilabel:
        return (za.gather(1, labels[:, None]) > 0).squeeze(1) != (zc.gather(1, labels[:, None]) > 0).squeeze(1)
    return za.argmax(1) != labels


def _cell_values(maps: torch.Tensor, grid: AdaptiveCEMap) -> torch.Tensor:
    """B x cells: each map sampled at the centre of each cell of ``grid``."""
    ys = torch.tensor(grid.ys) + grid.cell // 2
    xs = torch.tensor(grid.xs) + grid.cell // 2
    return maps[:, ys][:, :, xs].flatten(1)


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Spearman's rho per row (B x cells each); 1.0 where both rows are constant."""
    from scipy.stats import spearmanr

    out = []
    for u, v in zip(a.tolist(), b.tolist()):
        rho = spearmanr(u, v)[0]
        out.append(1.0 if math.isnan(rho) and len(set(u)) == 1 and len(set(v)) == 1 else float(rho))
    return out


def _ratio(anchor: float, ours: float) -> float:
    return anchor / ours if ours > 0 else float("inf")


def _map_section(clf, x, targets, cfg, anchors) -> dict:
    n = x.shape[0]
    dense = {p: CEMap(clf, cell=cfg.cell, precision=p) for p in ("fp32", "bf16")}
    cell = dense["fp32"].cell
    adaptive = {p: AdaptiveCEMap(clf, cell=cell, refine=cfg.adaptive_refine, precision=p) for p in ("fp32", "bf16")}
    t, maps = {}, {}
    for p in ("fp32", "bf16"):
        t[f"dense_{p}"] = timed(lambda p=p: dense[p].attribute(x, targets), cfg.repeats, cfg.warmup)
        maps[f"dense_{p}"] = dense[p].attribute(x, targets)
        t[f"adaptive_{p}"] = timed(lambda p=p: adaptive[p].attribute(x, targets), cfg.repeats, cfg.warmup)
        maps[f"adaptive_{p}"] = adaptive[p].attribute(x, targets)
    captum = {k: v for k, v in anchors["captum"].items() if not k.endswith("_map")}
    captum_s = {k: _per_image(v, n) for k, v in captum.items()}
    best_name = min(captum_s, key=captum_s.get)
    best = captum_s[best_name]
    reference = anchors["captum"]["captum_occlusion_ppe1_map"].cpu()
    section = {
        "grid": list(adaptive["fp32"].grid), "cell": cell, "images": n,
        # windows of the local layers instead of full passes (cemap.causal.incremental): cxr-cnn, VGG, DenseNet, ResNet
        "dense_uses_windows": dense["fp32"].incremental is not None and dense["fp32"].incremental.worthwhile(dense["fp32"].masks),
        "forward_passes_per_image": {"dense": dense["fp32"].forward_passes_per_image, "adaptive": adaptive["fp32"].forward_passes_per_image},
        "s_per_image": {**{k: _per_image(v, n) for k, v in t.items()}, **captum_s},
        "cpu_s_per_image": {**{k: v["cpu_median_s"] / n for k, v in t.items()}, **{k: v["cpu_median_s"] / n for k, v in captum.items()}},
        "best_captum": best_name,
        "speedup_vs_best_captum": {k: _ratio(best, _per_image(v, n)) for k, v in t.items()},
        "bf16_max_abs_diff_vs_fp32": float((maps["dense_bf16"] - maps["dense_fp32"]).abs().max()),
        "captum_max_abs_diff_vs_dense_fp32": float((reference - maps["dense_fp32"].cpu()).abs().max()),
        "gpu_plans": dense["fp32"].plans() if torch.device(cfg.device).type == "cuda" else [],
        "adaptive_rank_correlation": {
            p: statistics.mean(rank_correlation(_cell_values(maps[f"dense_{p}"], adaptive[p]), _cell_values(maps[f"adaptive_{p}"], adaptive[p])))
            for p in ("fp32", "bf16")
        },
    }
    return section, dense


def _latent_section(clf, x, fitted, cfg, anchors) -> dict:
    n = x.shape[0]
    t, ece = {}, {}
    for p in ("fp32", "bf16"):
        latent = LatentCE(clf, fitted, value="zero", precision=p)
        t[p] = timed(lambda latent=latent: latent.attribute(x), cfg.repeats, cfg.warmup)
        ece[p] = latent.attribute(x)
    ref = _per_image(anchors["latent_reference"], n)
    return {
        "layer": fitted.layer, "interventions": LATENT_K, "images": n,
        "s_per_image": {"cemap_fp32": _per_image(t["fp32"], n), "cemap_bf16": _per_image(t["bf16"], n), "reference_fp32": ref},
        "speedup_vs_reference": {"cemap_fp32": _ratio(ref, _per_image(t["fp32"], n)), "cemap_bf16": _ratio(ref, _per_image(t["bf16"], n))},
        "max_abs_diff_vs_reference": {p: float((ece[p].cpu() - anchors["latent_reference_ece"].cpu()).abs().max()) for p in ece},
    }


def _pgd_section(clf, px, labels, cfg, anchors, eps: float, alpha: float) -> dict:
    try:
        from ..attacks import PGD
    except ImportError as exc:  # the attacks package is optional for a partial install
        return {"skipped": f"cemap.attacks.PGD unavailable ({exc})"}
    n = px.shape[0]
    t, adv, rate = {}, {}, {}
    for p in ("fp32", "bf16"):
        attack = PGD(clf, eps=eps, alpha=alpha, steps=cfg.pgd_steps, random_start=False, precision=p, loss="ce")  # torchattacks' loss
        t[p] = timed(lambda attack=attack: attack(px, labels), cfg.repeats, cfg.warmup)
        result = attack(px, labels)
        adv[p], rate[p] = result.adversarial, result.success_rate
    profile = _pgd_profile(PGD(clf, eps=eps, alpha=alpha, steps=cfg.pgd_steps, random_start=False, loss="ce"), px, labels, t["fp32"], cfg)
    ta = {p: anchors[f"torchattacks_{p}_adv"] for p in ("fp32", "bf16")}
    ta_rate = {p: float(_pgd_success(clf, px, ta[p], labels).float().mean()) for p in ta}
    ta_time = {p: _per_image(anchors[f"torchattacks_{p}"], n) for p in ta}
    return {
        "batch": n, "eps": eps, "alpha": alpha, "steps": cfg.pgd_steps, "random_start": False,
        "s_per_image": {"cemap_fp32": _per_image(t["fp32"], n), "cemap_bf16": _per_image(t["bf16"], n),
                        "torchattacks_fp32": ta_time["fp32"], "torchattacks_bf16": ta_time["bf16"]},
        "speedup_vs_torchattacks_fp32": {p: _ratio(ta_time["fp32"], _per_image(t[p], n)) for p in t},
        "speedup_vs_torchattacks_same_precision": {p: _ratio(ta_time[p], _per_image(t[p], n)) for p in t},
        "success_rate": {"cemap_fp32": rate["fp32"], "cemap_bf16": rate["bf16"], "torchattacks_fp32": ta_rate["fp32"], "torchattacks_bf16": ta_rate["bf16"]},
        "fp32_identical_to_torchattacks": bool(torch.equal(adv["fp32"].cpu(), ta["fp32"].cpu())),
        "fp32_max_abs_diff_vs_torchattacks": float((adv["fp32"] - ta["fp32"]).abs().max()),
        # Sigmoid heads: torchattacks' cross-entropy over [0, z_t] equals cemap's BCE only up to rounding, which
        # flips the sign of near-zero gradient entries over the steps; softmax heads share the loss exactly.
        "fp32_fraction_differing": float((adv["fp32"] != ta["fp32"]).float().mean()),
        "fp32_profile": profile,
    }


def _pgd_profile(attack, images: torch.Tensor, labels: torch.Tensor, total: dict, cfg: BenchConfig) -> dict:
    """Where cemap's fp32 PGD time goes: ``steps`` forward+backward passes (all a plain loop such as torchattacks
    runs) and any forward around them (a sigmoid head's clean decision when not read off the first step). Success is
    judged later, on first access to ``result.success``, by one more forward (``forward_s``), outside the timing as
    for torchattacks, whose success rate the bench judges by the same forward."""
    with torch.no_grad():
        original = attack._decisions(attack.logits(images), labels) if attack.classifier.multilabel else None
        forward = timed(lambda: attack.logits(images), cfg.repeats, cfg.warmup)["median_s"]
    step = timed(lambda: attack.gradient(images, labels, None, original), cfg.repeats, cfg.warmup)["median_s"]
    total = total["median_s"]
    extra = 1 if attack.classifier.multilabel and not attack.starts_at_clean() else 0
    return {
        "forward_s": forward, "forward_backward_s": step, "extra_forwards": extra, "attack_s": total,
        "share_in_steps": attack.steps * step / total, "share_in_extra_forwards": extra * forward / total,
        "note": "the steps are a plain loop's whole cost; with bit-identical outputs both sides do the same arithmetic",
    }


def _efficiency_section(clf, x, targets, ce_map: dict, dense: dict, cfg) -> dict:
    """Achieved GFLOP/s of the dense CE map (FLOPs it executes: windows count as windows) against the machine's
    measured peak (:func:`measured_peak`); a fraction above 100% is flagged instead of printed. The effective rate
    (full-pass FLOPs over the time taken) is reported beside it."""
    n = x.shape[0]
    flops = forward_flops(clf, x[0])
    passes = ce_map["forward_passes_per_image"]["dense"]
    with torch.inference_mode():
        executed = executed_flops(lambda: dense["fp32"].attribute(x, targets)) / n
    out = {"forward_gflop_per_image": flops / 1e9, "dense_map_gflop_per_image": flops * passes / 1e9,
           "executed_gflop_per_image": executed / 1e9}
    for p, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peak = measured_peak(dtype, repeats=cfg.repeats, device=cfg.device)
        seconds = ce_map["s_per_image"][f"dense_{p}"]
        achieved = executed / seconds / 1e9
        out[p] = {"peak_gflops": peak["gflops"], "achieved_gflops": achieved, "effective_gflops": flops * passes / seconds / 1e9,
                  **fraction_of_peak(achieved, peak["gflops"]), "peak": peak}
    if ce_map["dense_uses_windows"]:
        out["note"] = ("the dense map recomputes only the windows each cell changes: achieved counts the FLOPs it executes, "
                       "effective the FLOPs of the full forward passes it replaces (that one may exceed the peak)")
    return out


def _incremental_section(clf, x, targets, cfg) -> dict:
    """Dense fp32 CE maps with windows (cemap.causal.incremental) against the same maps by full passes, timed
    interleaved in this run on one image, for the bench model and ResNet-50 (random weights): speed-up and max |diff|."""
    from ..models.torchvision_models import torchvision_classifier

    models = [(clf.name, clf, x[:1], targets[:1])]
    if cfg.compare_resnet50 and clf.name != "resnet50":
        torch.manual_seed(cfg.seed)
        resnet = torchvision_classifier("resnet50", "random", size=clf.input_shape[-1]).to(cfg.device)
        if clf.input_shape[0] == 3:
            models.append(("resnet50", resnet, x[:1], None))
        else:
            models.append(("resnet50", resnet, torch.rand(1, *resnet.input_shape, generator=torch.Generator().manual_seed(cfg.seed)).to(cfg.device), None))
    out = {}
    for name, model, images, target in models:
        fast, slow = CEMap(model, cell=cfg.cell), CEMap(model, cell=cfg.cell, incremental=False)
        engine = fast.incremental
        uses = engine is not None and engine.worthwhile(fast.masks)
        runs: dict[str, list[float]] = {"incremental": [], "full_passes": []}
        for r in range(cfg.warmup + cfg.repeats):  # interleaved, so both see the same machine
            for key, cemap in (("incremental", fast), ("full_passes", slow)):
                t = time.perf_counter()
                cemap.attribute(images, target)
                _sync_all()
                if r >= cfg.warmup:
                    runs[key].append(time.perf_counter() - t)
        diff = float((fast.attribute(images, target) - slow.attribute(images, target)).abs().max())
        inc, full = statistics.median(runs["incremental"]), statistics.median(runs["full_passes"])
        out[name] = {
            "uses_windows": uses, "estimated_cost_ratio": engine.cost_ratio(fast.masks) if engine is not None else 1.0,
            "local_nodes": len(engine.nodes) if engine is not None else 0, "grid_cells": fast.masks.shape[0],
            "s_per_image": {"incremental": inc, "full_passes": full}, "runs_s": runs,
            "speedup_vs_full_passes": _ratio(full, inc), "max_abs_diff_vs_full_passes": diff,
        }
    return out


def _trained_cxr(n_images: int, with_boxes: bool):
    """The trained cxr-cnn and ``n_images`` synthcxr test images (those with a finding box when ``with_boxes``)."""
    from ..data.registry import get_dataset
    from ..models.registry import get_model

    clf = get_model("cxr-cnn")
    data = get_dataset("synthcxr", split="test", size=clf.input_shape[-1])
    picked = [i for i in range(len(data)) if data[i].boxes.numel()][:n_images] if with_boxes else range(min(n_images, len(data)))
    return clf, data.batch(picked)


def adaptive_quality(n_images: int, cfg: BenchConfig) -> dict:
    """Dense vs adaptive CE maps of the trained cxr-cnn on synthcxr: pointing game and rank correlation."""
    from ..evaluate.localisation import pointing_game_hits

    clf, batch = _trained_cxr(n_images, with_boxes=True)
    targets = torch.stack([bl.reshape(-1)[0] for bl in batch.box_labels]).long()
    boxes = [bx[bl == t] for bx, bl, t in zip(batch.boxes, batch.box_labels, targets)]
    dense = CEMap(clf, cell=cfg.cell)
    d = dense.attribute(batch.images, targets)
    rows = []
    for refine in sorted({0.0, cfg.adaptive_refine, 0.5}):
        adaptive = AdaptiveCEMap(clf, cell=dense.cell, refine=refine)
        a = adaptive.attribute(batch.images, targets)
        rho = rank_correlation(_cell_values(d, adaptive), _cell_values(a, adaptive))
        rows.append({"refine": refine, "forward_passes_per_image": adaptive.forward_passes_per_image,
                     "pointing_game": float(pointing_game_hits(a, boxes).float().mean()),
                     "rank_correlation": {"mean": statistics.mean(rho), "min": min(rho)}})
    chosen = next(r for r in rows if r["refine"] == cfg.adaptive_refine)
    return {
        "model": "cxr-cnn", "dataset": "synthcxr", "images": batch.images.shape[0], "grid": list(adaptive.grid), "refine": cfg.adaptive_refine,
        "forward_passes_per_image": {"dense": dense.forward_passes_per_image, "adaptive": chosen["forward_passes_per_image"]},
        "pointing_game": {"dense": float(pointing_game_hits(d, boxes).float().mean()), "adaptive": chosen["pointing_game"]},
        "rank_correlation": chosen["rank_correlation"],
        "tradeoff": rows,
    }


def pgd_quality(n_images: int, cfg: BenchConfig) -> dict:
    """PGD success in fp32 and bf16 on a trained model (cxr-cnn on synthcxr): at the bench's budget and at smaller ones,
    where success is partial and a difference would show. The default model's random weights leave its outputs all
    but independent of the input (no attack succeeds there), so its success rates cannot tell the precisions apart."""
    from ..attacks import PGD

    clf, batch = _trained_cxr(n_images, with_boxes=False)
    rows = []
    for eps in PGD_QUALITY_EPS:
        result = {p: PGD(clf, eps=eps, alpha=eps / 4, steps=cfg.pgd_steps, random_start=False, precision=p, loss="ce")(batch.images)
                  for p in ("fp32", "bf16")}
        rate = {p: r.success_rate for p, r in result.items()}
        agree = float((result["fp32"].success == result["bf16"].success).float().mean())
        rows.append({"eps": eps, "success_rate": rate, "difference_points": 100 * abs(rate["bf16"] - rate["fp32"]), "per_image_agreement": agree})
    return {"model": "cxr-cnn", "dataset": "synthcxr", "images": batch.images.shape[0], "steps": cfg.pgd_steps, "alpha": "eps / 4", "budgets": rows}


def run_bench(cfg: BenchConfig, quality: bool = True) -> dict:
    """Every section of the benchmark; returns the JSON-ready dict (cemap's side runs with the tuned allocator)."""
    tune_allocator()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    clf = bench_classifier(cfg).to(cfg.device)
    x = bench_images(clf, max(cfg.images, cfg.pgd_batch), cfg.seed).to(cfg.device)
    px, x = x[: cfg.pgd_batch], x[: cfg.images]
    with torch.inference_mode():
        p = clf.predict_proba(x).float()
        plabels_logits = clf(px).float()
    targets = resolve_targets(p, None)
    pgd_labels = plabels_logits.argmax(1)
    pgd_original = (plabels_logits.gather(1, pgd_labels[:, None]).squeeze(1) > 0).float() if clf.multilabel else None
    layer = latent_layer(clf)
    fitted = bench_autoencoder(clf, layer, x[0], cfg.seed)
    probe = CEMap(clf, cell=cfg.cell)
    eps, alpha = 8 / 255, 2 / 255
    task = {
        "classifier": clf, "images": x, "targets": targets, "cell": probe.cell, "cells": probe.masks.shape[0],
        "ae": fitted.autoencoder, "layer": layer, "pgd_images": px, "pgd_labels": pgd_labels, "pgd_original": pgd_original,
        "eps": eps, "alpha": alpha, "steps": cfg.pgd_steps, "repeats": cfg.repeats, "warmup": cfg.warmup, "threads": torch.get_num_threads(),
    }
    anchors = _anchors(task, cfg.anchors_in_process)
    ce_map, dense = _map_section(clf, x, targets, cfg, anchors)
    result = {
        "config": asdict(cfg),
        "environment": {
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(), "cemap_allocator_tuned": allocator_tuned(),
            "anchors_allocator_tuned": anchors["allocator_tuned"], "anchors_in_process": cfg.anchors_in_process or cfg.device != "cpu",
            "device": cfg.device, "gpu": torch.cuda.get_device_name(cfg.device) if cfg.device.startswith("cuda") else None,
        },
        "model": {"name": clf.name, "input_shape": list(clf.input_shape), "classes": clf.num_classes, "head": clf.head,
                  "weights": cfg.weights if cfg.model == DEFAULT_MODEL else "built-in"},
        "ce_map": ce_map,
        "latent_sweep": _latent_section(clf, x, fitted, cfg, anchors),
        "pgd": _pgd_section(clf, px, pgd_labels, cfg, anchors, eps, alpha),
    }
    result["incremental"] = _incremental_section(clf, x, targets, cfg)
    result["efficiency"] = _efficiency_section(clf, x, targets, ce_map, dense, cfg)
    if quality:
        result["adaptive_quality"] = adaptive_quality(cfg.quality_images, cfg)
        result["pgd_quality"] = pgd_quality(cfg.pgd_quality_images, cfg)
    return result


def format_table(result: dict) -> str:
    """The readable summary printed by ``cemap bench``."""
    m, c, lat, pgd, eff = result["model"], result["ce_map"], result["latent_sweep"], result["pgd"], result["efficiency"]
    env = result["environment"]
    lines = [
        f"model {m['name']} {'x'.join(map(str, m['input_shape']))} ({m['classes']} {m['head']}), torch {env['torch']}, {env['threads']} threads, "
        f"anchors {'in process' if env['anchors_in_process'] else 'in a fresh process'}",
        f"ce_map ({c['grid'][0]}x{c['grid'][1]} cells of {c['cell']} px)          s/image   vs best Captum",
    ]
    for k, v in c["speedup_vs_best_captum"].items():
        lines.append(f"  cemap {k:<28}{c['s_per_image'][k]:>8.3f}   {v:5.2f}x")
    for k in c["s_per_image"]:
        if k.startswith("captum"):
            lines.append(f"  {k:<34}{c['s_per_image'][k]:>8.3f}{'   (best)' if k == c['best_captum'] else ''}")
    lines.append(f"  passes/image dense {c['forward_passes_per_image']['dense']}, adaptive {c['forward_passes_per_image']['adaptive']:.1f}; "
                 f"adaptive rank corr {c['adaptive_rank_correlation']['fp32']:.3f}; bf16 max |diff| {c['bf16_max_abs_diff_vs_fp32']:.2e}")
    lines.append(f"latent_sweep ({lat['interventions']} at {lat['layer']})   s/image   vs reference")
    for k in ("cemap_fp32", "cemap_bf16"):
        lines.append(f"  {k:<34}{lat['s_per_image'][k]:>8.3f}   {lat['speedup_vs_reference'][k]:5.2f}x")
    lines.append(f"  {'reference_fp32':<34}{lat['s_per_image']['reference_fp32']:>8.3f}")
    if "skipped" in pgd:
        lines.append(f"pgd: {pgd['skipped']}")
    else:
        lines.append(f"pgd (eps {pgd['eps']:.4f}, {pgd['steps']} steps, batch {pgd['batch']})  s/image   vs torchattacks fp32   success")
        for k in ("cemap_fp32", "cemap_bf16", "torchattacks_fp32", "torchattacks_bf16"):
            ratio = pgd["speedup_vs_torchattacks_fp32"].get(k.split("_")[1]) if k.startswith("cemap") else None
            lines.append(f"  {k:<34}{pgd['s_per_image'][k]:>8.3f}   {'' if ratio is None else f'{ratio:5.2f}x':<21}{pgd['success_rate'][k]:.2f}")
        lines.append(f"  fp32 identical to torchattacks: {pgd['fp32_identical_to_torchattacks']} (max |diff| {pgd['fp32_max_abs_diff_vs_torchattacks']:.2e})")
        prof = pgd["fp32_profile"]
        lines.append(f"  fp32 profile: {pgd['steps']} x forward+backward {prof['forward_backward_s']:.3f} s = {100 * prof['share_in_steps']:.0f}%, "
                     f"{prof['extra_forwards']} x forward {prof['forward_s']:.3f} s = {100 * prof['share_in_extra_forwards']:.0f}% of {prof['attack_s']:.3f} s")
    if "incremental" in result:
        lines.append("dense fp32 CE map with windows vs full passes (same run, interleaved, 1 image)")
        for name, r in result["incremental"].items():
            lines.append(f"  {name:<20} {r['s_per_image']['incremental']:>8.3f} s vs {r['s_per_image']['full_passes']:>8.3f} s = "
                         f"{r['speedup_vs_full_passes']:.2f}x (estimated cost {r['estimated_cost_ratio']:.2f}), max |diff| {r['max_abs_diff_vs_full_passes']:.1e}")
    lines.append("efficiency of the dense CE map (executed FLOPs; peak = best of GEMM shapes, thread layouts and convolutions)")
    for p in ("fp32", "bf16"):
        e = eff[p]
        share = f"{100 * e['fraction_of_peak']:.0f}%" if e.get("fraction_of_peak") is not None else "ABOVE THE MEASURED PEAK (peak underestimated; no fraction)"
        lines.append(f"  {p}: {e['achieved_gflops']:.1f} GFLOP/s of {e['peak_gflops']:.1f} peak ({e['peak']['found_by']['kind']} "
                     f"{'x'.join(map(str, e['peak']['found_by']['shape']))}) = {share}; effective {e['effective_gflops']:.1f}")
    if "adaptive_quality" in result:
        q = result["adaptive_quality"]
        lines.append(f"adaptive vs dense on {q['dataset']} ({q['model']}, {q['images']} images): pointing game "
                     f"{q['pointing_game']['adaptive']:.3f} vs {q['pointing_game']['dense']:.3f}, rank corr mean {q['rank_correlation']['mean']:.3f}, "
                     f"passes {q['forward_passes_per_image']['adaptive']:.1f} vs {q['forward_passes_per_image']['dense']}")
        for row in q["tradeoff"]:
            lines.append(f"  refine {row['refine']:.2f}: passes {row['forward_passes_per_image']:.1f}, pointing game {row['pointing_game']:.3f}, "
                         f"rank corr {row['rank_correlation']['mean']:.3f}")
    if "pgd_quality" in result:
        q = result["pgd_quality"]
        lines.append(f"pgd success fp32 vs bf16 on {q['dataset']} ({q['model']}, {q['images']} images, {q['steps']} steps)")
        for row in q["budgets"]:
            lines.append(f"  eps {255 * row['eps']:g}/255: {row['success_rate']['fp32']:.3f} vs {row['success_rate']['bf16']:.3f} "
                         f"({row['difference_points']:.1f} points; same outcome for {100 * row['per_image_agreement']:.1f}% of images)")
    return "\n".join(lines)
