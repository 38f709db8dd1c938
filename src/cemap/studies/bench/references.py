"""The reference implementations cemap is measured against, and checked against: Captum's ``Occlusion`` and
``FeatureAblation`` (the CE map), torchattacks' ``PGD`` (cemap's PGD), and one full forward pass per latent
intervention (the latent sweep). ``cemap bench`` times them on the same inputs, by default in a fresh process with
the allocator they ship with; the tests use them as oracles of cemap's numbers."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import torch
from torch import nn

from ...causal.autoencoder import LatentAutoencoder
from ...causal.batching import allocator_tuned
from ...causal.effects import expected_effect
from ...models.classifier import Classifier
from .timing import timed


class FindingLogit(nn.Module):
    """Two logits [0, z_t] per image so torchattacks' cross-entropy equals cemap's per-finding BCE (sigmoid heads)."""

    def __init__(self, classifier: Classifier, findings: torch.Tensor, precision: str) -> None:
        super().__init__()
        self.classifier, self.findings, self.precision = classifier, findings, precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = model_logits(self.classifier, x, self.precision)
        z = logits.gather(1, self.findings[:, None])
        return torch.cat([torch.zeros_like(z), z], dim=1)


class Logits(nn.Module):
    def __init__(self, classifier: Classifier, precision: str) -> None:
        super().__init__()
        self.classifier, self.precision = classifier, precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return model_logits(self.classifier, x, self.precision)


def model_logits(classifier: Classifier, x: torch.Tensor, precision: str) -> torch.Tensor:
    if precision == "bf16":
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return classifier(x).float()
    return classifier(x)


def torchattacks_pgd(
    classifier: Classifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    original: torch.Tensor | None,
    eps: float,
    alpha: float,
    steps: int,
    precision: str,
) -> torch.Tensor:
    import torchattacks

    if classifier.multilabel:
        model, target = FindingLogit(classifier, labels, precision), original.long()
    else:
        model, target = Logits(classifier, precision), labels
    # torchattacks keeps the model in the mode it finds it in: a fresh wrapper is in training mode (batch-stat
    # BatchNorm).
    attack = torchattacks.PGD(model.eval(), eps=eps, alpha=alpha, steps=steps, random_start=False)
    return attack(images, target)


def reference_latent(classifier: Classifier, ae: LatentAutoencoder, layer: str, images: torch.Tensor) -> torch.Tensor:
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


def captum_attribution(
    method: str, classifier: Classifier, images: torch.Tensor, targets: torch.Tensor, cell: int, ppe: int
) -> torch.Tensor:
    """Captum's ``Occlusion`` (sliding window, zero baseline) or ``FeatureAblation`` (the same grid as a feature mask)
    on
    the whole batch: B x H x W attributions of the target's probability, ``ppe`` perturbations per forward pass (Captum
    stacks them for every image of the batch, so a pass holds B x ppe images)."""
    from captum.attr import FeatureAblation, Occlusion

    forward = lambda x: classifier.predict_proba(x)  # noqa: E731
    c, h, w = images.shape[1:]
    with torch.inference_mode():
        if method == "occlusion":
            return Occlusion(forward).attribute(
                images,
                sliding_window_shapes=(c, cell, cell),
                strides=(c, cell, cell),
                baselines=0.0,
                target=targets,
                perturbations_per_eval=ppe,
            )[:, 0]
        ys, xs = torch.arange(h, device=images.device) // cell, torch.arange(w, device=images.device) // cell
        groups = (ys[:, None] * (-(-w // cell)) + xs[None, :]).expand(images.shape[0], c, h, w)
        return FeatureAblation(forward).attribute(
            images, baselines=0.0, target=targets, feature_mask=groups, perturbations_per_eval=ppe
        )[:, 0]


def captum_ppe_values(cells: int, device: str) -> tuple[int, ...]:
    """Captum's ``perturbations_per_eval`` tried: one per pass, a few in between, and all the grid's cells in one
    pass."""
    between = (7, 16, 25) if torch.device(device).type == "cuda" else (7,)
    return tuple(sorted({1, *(p for p in between if p < cells), cells}))


def captum_runs(task: dict) -> dict:
    """Every Captum anchor of the CE map: Occlusion at each ``perturbations_per_eval`` and FeatureAblation at all cells
    per
    pass; on a GPU each also with cuDNN's algorithm search on (Captum's users can set it; the best of both counts)."""
    clf, x, targets, cell, device = task["classifier"], task["images"], task["targets"], task["cell"], x_device(task)
    runs = {f"captum_occlusion_ppe{p}": ("occlusion", p) for p in captum_ppe_values(task["cells"], device)}
    runs[f"captum_feature_ablation_ppe{task['cells']}"] = ("feature_ablation", task["cells"])
    flags = (False, True) if torch.device(device).type == "cuda" else (None,)
    out = {}
    for name, (method, ppe) in runs.items():
        for benchmark in flags:
            key = name if not benchmark else f"{name}cudnn_benchmark"
            fn = lambda m=method, p=ppe: captum_attribution(m, clf, x, targets, cell, p)  # noqa: E731
            with cudnn_benchmark(benchmark):
                out[key] = timed(fn, task["repeats"], task["warmup"])
                out[f"{key}_map"] = fn()
    return out


def x_device(task: dict) -> str:
    return str(task["images"].device)


def cudnn_benchmark(on: bool | None):
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
    fn = lambda: reference_latent(clf, task["ae"], task["layer"], x)  # noqa: E731
    out["latent_reference"] = timed(fn, reps, warm)
    out["latent_reference_ece"] = fn()
    px, labels, original = task["pgd_images"], task["pgd_labels"], task["pgd_original"]
    for precision in ("fp32", "bf16"):

        def attack(p: str = precision) -> torch.Tensor:
            return torchattacks_pgd(clf, px, labels, original, task["eps"], task["alpha"], task["steps"], p)

        out[f"torchattacks_{precision}"] = timed(attack, reps, warm)
        out[f"torchattacks_{precision}_adv"] = attack()
    return out


def anchors(task: dict, in_process: bool) -> dict:
    """Run the anchors here, or in a fresh interpreter whose import of cemap leaves glibc's allocator as shipped
    (on a GPU always here: glibc's allocator does not matter there, and CUDA tensors are not sent to another
    process)."""
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
