"""The detection study for one dataset and model (``cemap detect``): every detector on equal terms.

Protocol, so that no reported number comes from images a detector was fitted on or chosen with:

* fitting part: images of the *train* split. Every supervised detector - CE and each baseline - is the same
  ``CEDetector`` (signed log, standardisation, logistic regression) on its own features, its hyper-parameters
  (C, log unit; for CE also the effect scale, probability or log-odds) chosen by the same grouped 4-fold
  cross-validation on these images, then refitted on all of them. LID's neighbours and Mahalanobis' Gaussians
  come from further clean train images, disjoint from the fitting part.
* evaluation part: images of the *test* split, never seen by any detector.
* Only correctly classified clean images are attacked (softmax heads); only *successful* adversarials and their
  own clean counterparts enter a detection row; adaptive rows too (each successful adversarial beside its own clean
  image).
* Unsupervised baselines are scored with the fixed direction of their paper (higher = more adversarial). An
  unsupervised AUROC below 0.5 is a *reversed* score, flagged as such: the supervised fit learns the direction.
* CE's effect scale (probability or log-odds) is the one with the higher validation AUROC; scales within
  ``SCALE_TIE`` tie, and a tie goes to log-odds, fixed in advance (probability effects vanish on saturated
  outputs). ``selection`` records the scale and whether the tie-break decided it.
* Every AUROC and TPR at 5% FPR comes with a bootstrap 95% interval over images, an image's clean and adversarial
  scores drawn together (paired); CE minus the best *other detector in any form* - supervised or unsupervised,
  whichever scores higher: for unseen attacks an unsupervised score is a fair rival - with an interval on the same
  resamples, and its verdict is read from that interval.

The headline is transfer: detectors fitted on one attack (PGD at the larger budget) and on a mix (FGSM and PGD
at the standard budgets), scored on attacks they have not seen - minimal (first-flip), confidence-matched and
converged C&W adversarials among them - and the worst case of an adaptive attack (Tramer et al. 2020) against
each supervised detector, over a sweep of detector-loss weights, steps and restarts.

Modules: :mod:`.study` (the orchestrator, :func:`run_detection`), :mod:`.config`, :mod:`.attacks`, :mod:`.protocol`
(parts, fitting, scoring), :mod:`.adaptive`, :mod:`.claims` (headline and table), :mod:`.figures` (what the figures
show); the typed result is in :mod:`cemap.studies.results`.
"""

from .claims import format_table, headline, table
from .config import METHODS, SIZES, DetectionConfig
from ..results import DetectionResult
from .study import run_detection

__all__ = [
    "METHODS",
    "SIZES",
    "DetectionConfig",
    "DetectionResult",
    "format_table",
    "headline",
    "run_detection",
    "table",
]
