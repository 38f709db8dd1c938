"""The detection study for one dataset and model (``cemap detect``).

Protocol, so that no reported number comes from images a detector was fitted on:
* fitting part: images of the *train* split (the detector and LID's logistic model are fitted
  here; C is chosen on a validation quarter of these images);
* evaluation part: images of the *test* split, never seen by any detector.
Only correctly classified clean images are attacked (softmax heads), and only *successful*
adversarials together with their own clean counterparts enter the detection numbers.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..attacks import CarliniWagnerL2, FGSM, PGD, Attack, AttackResult
from ..causal import fidelity, fit_autoencoder
from ..data import get_dataset
from ..data.base import stack_images
from ..detect import AdaptivePGD, CEDetector, CESignature, SignatureConfig, select_detector
from ..evaluate.detection import auroc, detection_metrics, roc_points
from ..evaluate.detection_baselines import feature_squeezing_score, layer_features, lid, max_softmax_score
from ..models import default_model_for, get_model
from ..report.detection_figures import roc_panels, signature_histograms
from ..report.figures import profile_bars

log = logging.getLogger(__name__)

METHODS = ("ce", "msp", "feature_squeezing", "lid")
# Linf budgets: MNIST's customary 0.1 / 0.3; for 8-bit radiographs the customary 2/255 and 8/255.
LINF_BUDGETS = {"mnist5k": (0.1, 0.3)}
DEFAULT_LINF = (2 / 255, 8 / 255)
# C&W budgets are confidence margins in logits: kappa 0 (just across the boundary) and a confident one.
CW_KAPPAS = {"mnist5k": (0.0, 5.0)}
DEFAULT_KAPPAS = (0.0, 2.0)
# Feature-squeezing settings of Xu et al.: 1 bit + 2x2 median for MNIST, 5 bits + 2x2 median otherwise.
SQUEEZERS = {"mnist5k": {"bits": (1,), "median_sizes": (2,)}}
DEFAULT_SQUEEZERS = {"bits": (5,), "median_sizes": (2,)}


@dataclass
class StudyConfig:
    n_fit: int = 200
    n_eval: int = 120
    n_adaptive: int = 32
    pgd_steps: int = 20
    cw_steps: int = 25
    cw_search_steps: int = 2
    adaptive_steps: int = 10
    adaptive_weights: tuple[float, ...] = (1.0,)
    lid_k: int = 20
    lid_reference: int = 200
    seed: int = 0
    signature: SignatureConfig = field(default_factory=SignatureConfig)

    @classmethod
    def quick(cls, seed: int = 0) -> "StudyConfig":
        """A smoke-sized study (about 30 s on 2 cores for cxr-cnn): every table row and figure, few images."""
        return cls(n_fit=32, n_eval=32, n_adaptive=8, pgd_steps=10, cw_steps=10, cw_search_steps=1, adaptive_steps=5,
                   adaptive_weights=(1.0,), seed=seed)


def study_attacks(classifier, dataset: str, cfg: StudyConfig) -> dict[str, Attack]:
    """The six (attack, budget) settings of the study, keyed by a readable name."""
    low, high = LINF_BUDGETS.get(dataset, DEFAULT_LINF)
    k_low, k_high = CW_KAPPAS.get(dataset, DEFAULT_KAPPAS)
    fmt = lambda e: f"{e:.3g}" if dataset in LINF_BUDGETS else f"{round(e * 255)}/255"  # noqa: E731
    attacks: dict[str, Attack] = {}
    for eps in (low, high):
        attacks[f"FGSM eps={fmt(eps)}"] = FGSM(classifier, eps=eps)
    for eps in (low, high):
        attacks[f"PGD-Linf eps={fmt(eps)}"] = PGD(classifier, eps=eps, steps=cfg.pgd_steps, random_start=True, seed=cfg.seed)
    for kappa in (k_low, k_high):
        attacks[f"C&W-L2 kappa={kappa:g}"] = CarliniWagnerL2(classifier, kappa=kappa, c=1.0, lr=0.1, steps=cfg.cw_steps, search_steps=cfg.cw_search_steps)
    return attacks


@dataclass
class Part:
    """Clean images of one part (fit or eval) and their detector features."""

    images: torch.Tensor
    labels: torch.Tensor | None
    features: dict[str, np.ndarray]


class FeatureExtractor:
    """Every detector's input for a batch of images: CE signature, MSP, feature-squeezing score, LID."""

    def __init__(self, classifier, signature: CESignature, reference: torch.Tensor, squeezers: dict, lid_k: int) -> None:
        self.classifier, self.signature, self.squeezers, self.lid_k = classifier, signature, squeezers, lid_k
        self.split = signature.fitted.split if signature.fitted is not None else None
        self.reference = layer_features(self.split, reference)

    def __call__(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        if len(images) == 0:
            return {"ce": np.zeros((0, self.signature.dim)), "msp": np.zeros(0), "feature_squeezing": np.zeros(0), "lid": np.zeros((0, 1))}
        return {
            "ce": self.signature(images).double().numpy(),
            "msp": max_softmax_score(self.classifier, images).double().numpy(),
            "feature_squeezing": feature_squeezing_score(self.classifier, images, **self.squeezers).double().numpy(),
            "lid": lid(self.reference, layer_features(self.split, images), k=self.lid_k).double().numpy()[:, None],
        }


def _pick(classifier, dataset, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` random images of ``dataset``; for softmax heads only correctly classified ones, with their labels."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    batch = dataset.batch(order[: min(len(order), 2 * n if not classifier.multilabel else n)])
    if classifier.multilabel:
        return batch.images[:n], None
    with torch.inference_mode():
        correct = classifier.predict_proba(batch.images).argmax(-1) == batch.labels
    return batch.images[correct][:n], batch.labels[correct][:n]


LOG_SCALES = (None, 1e-4, 1e-3, 1e-2)  # candidate units of the signed-log transform of effects, chosen on validation


def _fit_pair(clean: np.ndarray, adv: np.ndarray, ok: np.ndarray, seed: int, log_features: list[bool] | None = None) -> tuple[CEDetector, dict]:
    """A detector on the successful adversarials of the fitting part and their own clean images.

    With ``log_features`` (the CE signature) the signed-log unit is chosen on validation too; without (LID) the
    model stays linear in the raw feature."""
    idx = np.flatnonzero(ok)
    x = np.concatenate([clean[idx], adv])
    y = np.r_[np.zeros(len(idx)), np.ones(len(adv))]
    scales = LOG_SCALES if log_features is not None else (None,)
    return select_detector(x, y, groups=np.r_[idx, idx], log_scales=scales, seed=seed, log_features=log_features)


def _evaluate(method: str, detector: CEDetector | None, clean: np.ndarray, adv: np.ndarray) -> tuple[dict | None, np.ndarray, np.ndarray]:
    """Metrics (None with fewer than 2 samples per side) and the clean / adversarial scores."""
    score = (lambda a: detector.decision_function(a)) if detector is not None else (lambda a: a)
    s_clean, s_adv = score(clean), score(adv)
    if len(s_clean) < 2 or len(s_adv) < 2:
        return None, s_clean, s_adv
    return detection_metrics(s_clean, s_adv), s_clean, s_adv


def _norms(result: AttackResult) -> dict:
    ok = result.success
    return {"mean_linf": float(result.linf[ok].mean()) if ok.any() else None, "mean_l2": float(result.l2[ok].mean()) if ok.any() else None,
            "max_linf": float(result.linf.max()), "max_l2": float(result.l2.max())}


def run_detection_study(dataset: str = "mnist5k", model: str | None = None, out: Path = Path("out/detect"), quick: bool = False,
                        seed: int = 0, config: StudyConfig | None = None) -> dict:
    """Run the whole study; writes ``out/detection.json``, ``out/ce_detector.npz`` and figures; returns the JSON dict."""
    cfg = config or (StudyConfig.quick(seed) if quick else StudyConfig(seed=seed))
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    model = model or default_model_for(dataset)
    clf = get_model(model).eval()
    train, test = get_dataset(dataset, split="train"), get_dataset(dataset, split="test")
    fitted = fit_autoencoder(clf, stack_images(train), data_key=f"{dataset}-train")
    signature = CESignature(clf, fitted, cfg.signature)
    fit_images, fit_labels = _pick(clf, train, cfg.n_fit, seed)
    eval_images, eval_labels = _pick(clf, test, cfg.n_eval, seed + 1)
    fid = fidelity(fitted, clf, eval_images)
    ref = stack_images(train)[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 2))[: cfg.lid_reference]]
    extract = FeatureExtractor(clf, signature, ref, SQUEEZERS.get(dataset, DEFAULT_SQUEEZERS), cfg.lid_k)
    parts = {"fit": Part(fit_images, fit_labels, extract(fit_images)), "eval": Part(eval_images, eval_labels, extract(eval_images))}
    timings["setup_and_clean_features"] = time.perf_counter() - t0

    attacks = study_attacks(clf, dataset, cfg)
    results: dict[str, dict] = {}
    adv_features: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    success: dict[str, dict[str, np.ndarray]] = {}
    detectors: dict[str, dict[str, CEDetector]] = {}
    for name, attack in attacks.items():
        t = time.perf_counter()
        entry = {"attack": attack.name, "budget": attack.budget()}
        adv_features[name], success[name] = {}, {}
        for part_name, part in parts.items():
            res = attack(part.images, part.labels)
            ok = res.success.numpy()
            success[name][part_name] = ok
            adv_features[name][part_name] = extract(res.adversarial[res.success])
            entry[f"success_rate_{part_name}"] = float(ok.mean())
            entry[f"norms_{part_name}"] = _norms(res)
        fit_ok, ev_ok = success[name]["fit"], success[name]["eval"]
        detectors[name], entry["detection"] = {}, {}
        for method in METHODS:
            clean_fit, adv_fit = parts["fit"].features[method], adv_features[name]["fit"][method]
            detector = None
            if method in ("ce", "lid"):
                if fit_ok.sum() < 4:
                    entry["detection"][method] = None
                    continue
                detector, val = _fit_pair(clean_fit, adv_fit, fit_ok, seed, signature.effect_features if method == "ce" else None)
                detectors[name][method] = detector
                entry[f"{method}_validation_auroc"] = val
                entry[f"{method}_chosen"] = {"C": detector.C, "log_scale": detector.log_scale}
            metrics, *_ = _evaluate(method, detector, parts["eval"].features[method][ev_ok], adv_features[name]["eval"][method])
            entry["detection"][method] = metrics
        results[name] = entry
        timings[name] = time.perf_counter() - t
        log.info("%s done in %.0fs", name, timings[name])

    names = list(attacks)
    fgsm_high, pgd_high, cw_high = names[1], names[3], names[5]
    transfer = _transfer(detectors, parts, adv_features, success, source=fgsm_high, targets=names[2:])
    t = time.perf_counter()
    adaptive = _adaptive(clf, signature, detectors.get(pgd_high, {}), attacks[pgd_high], parts, extract, cfg) if "ce" in detectors.get(pgd_high, {}) else []
    timings["adaptive"] = time.perf_counter() - t

    figures = _figures(out, signature, parts, adv_features, success, detectors, [fgsm_high, pgd_high, cw_high])
    signal = _signal(signature, parts, adv_features, success, detectors, pgd_high)
    if pgd_high in detectors and "ce" in detectors[pgd_high]:
        detectors[pgd_high]["ce"].signature_config = {**cfg.signature.as_dict(), "model": model, "layer": fitted.layer, "dataset": dataset}
        detectors[pgd_high]["ce"].save(out / "ce_detector.npz")
        figures["detector"] = "ce_detector.npz"
    timings["total"] = time.perf_counter() - t0

    report = {
        "dataset": dataset,
        "model": model,
        "layer": fitted.layer,
        "autoencoder_fidelity": fid.as_dict(),
        "protocol": {
            "fit_part": f"{len(fit_images)} images of the train split (detector C chosen on a validation quarter of them)",
            "eval_part": f"{len(eval_images)} images of the test split, never seen by any detector",
            "clean_images": "correctly classified only" if not clf.multilabel else "all (sigmoid head: the most probable finding is attacked)",
            "only_successful_adversarials": True,
            "note": "detection numbers use only successful adversarials and their own clean counterparts",
            "scores": "higher = more adversarial; ce and lid: standardisation + logistic regression fitted on the fit part per attack",
        },
        "signature": {"config": cfg.signature.as_dict(), "features": signature.feature_names, "ce_map_cell": signature.cemap.cell,
                      "ce_map_stride": signature.cemap.stride},
        "baselines": {"feature_squeezing": SQUEEZERS.get(dataset, DEFAULT_SQUEEZERS), "lid": {"k": cfg.lid_k, "reference_images": len(ref), "layer": fitted.layer}},
        "study_config": {k: v for k, v in cfg.__dict__.items() if k != "signature"},
        "attacks": results,
        "table": _table(results, transfer, adaptive),
        "transfer": {"fit_on": fgsm_high, "rows": transfer},
        "adaptive": adaptive,
        "signal": signal,
        "figures": figures,
        "features_file": "features.npz",
        "timings_s": timings,
    }
    (out / "detection.json").write_text(json.dumps(report, indent=2, default=_jsonable))
    _save_features(out / "features.npz", parts, adv_features, success)
    return report


def _save_features(path: Path, parts, adv_features, success) -> None:
    """Every detector input of the study (plain arrays), so the tables can be re-analysed without re-attacking."""
    arrays = {f"{p}/clean/{m}": v for p, part in parts.items() for m, v in part.features.items()}
    for name, by_part in adv_features.items():
        for p, feats in by_part.items():
            arrays[f"{p}/success/{name}"] = success[name][p]
            arrays |= {f"{p}/adversarial/{name}/{m}": v for m, v in feats.items()}
    np.savez_compressed(path, **arrays)


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def _transfer(detectors, parts, adv_features, success, source: str, targets: list[str]) -> dict:
    """The detectors fitted on ``source`` scoring the other attacks' evaluation adversarials."""
    rows = {}
    for name in targets:
        ok = success[name]["eval"]
        rows[name] = {
            method: (_evaluate(method, detectors[source][method], parts["eval"].features[method][ok], adv_features[name]["eval"][method])[0]
                     if method in detectors.get(source, {}) else None)
            for method in ("ce", "lid")
        }
    return rows


def _adaptive(clf, signature, fitted_detectors: dict, pgd: PGD, parts, extract, cfg: StudyConfig) -> list[dict]:
    """PGD that also drives the CE detector's score toward 'clean', at the larger Linf budget."""
    ev = parts["eval"]
    n = min(cfg.n_adaptive, len(ev.images))
    images, labels = ev.images[:n], None if ev.labels is None else ev.labels[:n]
    detector = fitted_detectors["ce"]
    rows = []
    for weight in cfg.adaptive_weights:
        attack = AdaptivePGD(clf, signature, detector, weight=weight, eps=pgd.eps, steps=cfg.adaptive_steps, random_start=True, seed=cfg.seed, batch_size=8)
        res = attack(images, labels)
        ok = res.success.numpy()
        feats = extract(res.adversarial[res.success])
        row = {"attack": attack.name, "budget": attack.budget(), "n_attacked": n, "success_rate": float(ok.mean()), "detection": {}}
        flagged = detector.decision_function(feats["ce"]) > detector.threshold_ if ok.any() else np.zeros(0, bool)
        row["evasion_rate"] = float((~flagged).sum() / n)
        row["ce_flag_rate_at_fit_threshold"] = float(flagged.mean()) if ok.any() else None
        for method in METHODS:
            det = fitted_detectors.get(method) if method in ("ce", "lid") else None
            if method in ("ce", "lid") and det is None:
                row["detection"][method] = None
                continue
            row["detection"][method] = _evaluate(method, det, ev.features[method][:n][ok], feats[method])[0]
        rows.append(row)
    return rows


def _signal(signature: CESignature, parts, adv_features, success, detectors, name: str) -> dict:
    """Which signature features carry the signal: univariate AUROC on the evaluation part and the detector's standardised weights."""
    feature_names, effect = signature.feature_names, signature.effect_features
    ok = success[name]["eval"]
    clean, adv = parts["eval"].features["ce"][ok], adv_features[name]["eval"]["ce"]
    if len(clean) < 2 or len(adv) < 2:
        return {}
    y = np.r_[np.zeros(len(clean)), np.ones(len(adv))]
    uni = {f: auroc(y, np.r_[clean[:, j], adv[:, j]]) for j, f in enumerate(feature_names)}
    det = detectors.get(name, {}).get("ce")
    latent = [j for j, f in enumerate(feature_names) if f.startswith("latent_")]
    maps = [j for j, f in enumerate(feature_names) if f.startswith("map_")]
    parts_auroc = {}
    for label, cols in (("latent_only", latent), ("map_only", maps)):
        if cols:
            d, _ = _fit_pair(parts["fit"].features["ce"][:, cols], adv_features[name]["fit"]["ce"][:, cols], success[name]["fit"], 0,
                             [effect[j] for j in cols])
            parts_auroc[label] = auroc(y, d.decision_function(np.r_[clean[:, cols], adv[:, cols]]))
    return {
        "attack": name,
        "univariate_auroc": uni,
        "detector_weights_standardised": dict(zip(feature_names, det.coef_.tolist())) if det is not None else None,
        "ablation_auroc": parts_auroc,
    }


def _figures(out: Path, signature, parts, adv_features, success, detectors, shown: list[str]) -> dict:
    figures = {}
    clean_eval = parts["eval"].features["ce"]
    adv = {n: adv_features[n]["eval"]["ce"] for n in shown if len(adv_features[n]["eval"]["ce"]) > 1}
    if adv:
        ref = shown[1] if shown[1] in adv else next(iter(adv))
        y = np.r_[np.zeros(len(clean_eval)), np.ones(len(adv[ref]))]
        strength = [abs(auroc(y, np.r_[clean_eval[:, j], adv[ref][:, j]]) - 0.5) for j in range(signature.dim)]
        top = list(np.argsort(strength)[::-1][:5])
        figures["histograms"] = signature_histograms(clean_eval, adv, signature.feature_names, top, out / "signature_histograms.png").name
        if signature.latent is not None:
            k = signature.latent.k
            profiles = {"clean": torch.from_numpy(clean_eval[:, :k])} | {n: torch.from_numpy(a[:, :k]) for n, a in adv.items()}
            figures["latent_profiles"] = profile_bars(profiles, out / "latent_profiles_clean_vs_adversarial.png").name
    curves = {}
    for name in shown:
        ok = success[name]["eval"]
        methods = {}
        for method in METHODS:
            det = detectors.get(name, {}).get(method) if method in ("ce", "lid") else None
            if method in ("ce", "lid") and det is None:
                continue
            _, s_clean, s_adv = _evaluate(method, det, parts["eval"].features[method][ok], adv_features[name]["eval"][method])
            if len(s_clean) > 1 and len(s_adv) > 1:
                y = np.r_[np.zeros(len(s_clean)), np.ones(len(s_adv))]
                s = np.r_[s_clean.reshape(-1), s_adv.reshape(-1)]
                fpr, tpr = roc_points(y, s)
                methods[method] = (fpr, tpr, auroc(y, s))
        if methods:
            curves[name] = methods
    if curves:
        figures["roc"] = roc_panels(curves, out / "roc_curves.png").name
    return figures


def _table(results: dict, transfer: dict, adaptive: list[dict]) -> list[dict]:
    """Flat rows for the report: attack, success rate, then AUROC and TPR@5%FPR per detector."""

    def cells(detection: dict) -> dict:
        row = {}
        for method, m in detection.items():
            row[f"{method}_auroc"] = None if m is None else round(m["auroc"], 4)
            row[f"{method}_tpr5"] = None if m is None else round(m["tpr_at_5fpr"], 4)
        return row

    rows = [{"row": name, "success_rate": round(r["success_rate_eval"], 4), **cells(r["detection"])} for name, r in results.items()]
    rows += [{"row": f"transfer FGSM->{name}", "success_rate": round(results[name]["success_rate_eval"], 4), **cells(t)} for name, t in transfer.items()]
    rows += [{"row": f"adaptive PGD (detector weight {a['budget']['detector_weight']:g})", "success_rate": round(a["success_rate"], 4),
              "evasion_rate": round(a["evasion_rate"], 4), **cells(a["detection"])} for a in adaptive]
    return rows


def format_table(rows: list[dict]) -> str:
    """The table as aligned text (AUROC / TPR@5%FPR per detector)."""
    head = f"{'':44s} {'success':>7s}  " + "  ".join(f"{m:>17s}" for m in METHODS)
    lines = [head, " " * 55 + "  ".join(f"{'AUROC  TPR@5%':>17s}" for _ in METHODS)]
    for r in rows:
        cols = []
        for m in METHODS:
            a, t = r.get(f"{m}_auroc"), r.get(f"{m}_tpr5")
            cols.append(f"{'-':>17s}" if a is None else f"{a:>8.3f} {t:>8.3f}")
        lines.append(f"{r['row'][:44]:44s} {r['success_rate']:>7.3f}  " + "  ".join(cols))
    return "\n".join(lines)
