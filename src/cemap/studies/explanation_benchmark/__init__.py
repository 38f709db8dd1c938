"""Explanation benchmark v3 (issue 26): causal ground truth from the generator, enough images to decide, equal tuning,
floors.

Protocol, fixed before any figure was seen:

* **Held out.** Models are trained on synthcxr's seed-0 train split. Every choice - every
  method's settings, CheXlocalize's thresholds - is made on the seed-0 *validation* split (drawn
  like train, never trained on). Every reported figure comes from ``n_images`` (300) test images
  drawn with a generator seed used for nothing else (20261130).
* **Equal tuning** (:mod:`.tuning`): each tuned method (CE, Grad-CAM, Grad-CAM++, Occlusion,
  Integrated Gradients, RISE, Kernel SHAP) has the same number of candidates (:mod:`.config`) and
  the same rule: the highest validation pointing game + ground-truth top-1 agreement.
* **Causal ground truth** (:mod:`cemap.evaluate.groundtruth`): on images with several lesions, a
  map's lesion shares against each lesion's true effect p(x) - p(x without it), from the exact
  counterfactual the generator renders. CE is also scored with the exact counterfactual as its
  fill (``ce-oracle``, an upper bound) and with a small inpainter trained on the train split
  (``ce-inpaint``), beside the tuned blur/mean/zero fill and the paper's grid (``ce-paper``).
* **Floors in every table**: random, centre, edge and local contrast; a metric a floor wins
  against the median method is uninformative and takes no verdict. ROAD and deletion (MoRF)
  under three imputers: noisy linear, blur, the exact counterfactual.
* **Sanity v2** (:mod:`.sanity`), **verdicts** (:mod:`.verdicts`: images, then trainings).

``run_explanation_benchmark(ctx, config)`` runs one (model, size, training seed);
:func:`demo_config` is the same protocol at demo size.
"""

from .config import CE_VARIANTS, FLOORS, HELDOUT_SEED, IMPUTERS, PEERS, TUNED, BenchmarkConfig, candidates, demo_config
from .data import BenchPairs, bench_pairs
from .report import format_run, markdown_summary, merged_claims, run_claims
from .study import BenchmarkResult, benchmark_model, load_values, model_quality, run_explanation_benchmark
from .verdicts import RULE, merged_verdicts, run_verdicts

__all__ = [
    "CE_VARIANTS",
    "FLOORS",
    "HELDOUT_SEED",
    "IMPUTERS",
    "PEERS",
    "RULE",
    "TUNED",
    "BenchPairs",
    "BenchmarkConfig",
    "BenchmarkResult",
    "bench_pairs",
    "benchmark_model",
    "candidates",
    "demo_config",
    "format_run",
    "load_values",
    "markdown_summary",
    "merged_claims",
    "merged_verdicts",
    "model_quality",
    "run_claims",
    "run_explanation_benchmark",
    "run_verdicts",
]
