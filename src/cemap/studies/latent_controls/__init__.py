"""The paper's two latent experiments, each condition beside the control that makes it mean something.

The paper masks the finding's region, or attacks the image, and watches the latent CE profile
move. Without a control that shows nothing: masking *anything* of that size, or adding *any*
perturbation of that size, moves the profile too. This stage measures, on the same held-out
test images and paired per image:

* **masking** - synthcxr: the true lesion box of one finding per image masked (zero fill), against
  the same box shape placed elsewhere inside the lung field, never overlapping a lesion
  (``placements`` placements per image, averaged). MNIST: the digit's strokes erased (fill 0),
  against a contiguous background region of the same area grown at random away from the strokes
  and filled with the strokes' own intensities, so both change the same pixels by the same
  amounts (L1 and L2); zero-filling background would change nothing, which is no control.
* **adversarial** - PGD-Linf on the finding (synthcxr) or true class (MNIST), successful attacks
  only, against random sign noise of the same L-inf budget, Gaussian noise scaled to each image's
  PGD L2, and Gaussian blur whose L2 change is closest to it (natural corruptions of matched size).

Measures per image (all against the same image's clean profile):

* ``ece_l1``: L1 shift of the latent ECE profile (the paper's object, summed over all findings);
* ``finding_l1``: L1 shift of the latent class-CE profile of the masked / attacked finding itself;
* ``finding_drop``: p_AE(f|x) - p_AE(f|x_do), what the pixel intervention does to that finding;
* ``aligned_minus_other``: mean |shift| of the channels aligned with that finding (from the concept
  table on *other* held-out images) minus the mean |shift| of every other channel;
* per channel: |shift of Z_j| condition vs control, Wilcoxon signed-rank per channel, Holm-corrected.

The output change confounds both: masking the lesion (or attacking) lowers p(finding) more than its control does,
and the profile is read through the head. :mod:`.matched` adds an **output-matched control** (per image the control
plus Gaussian noise whose drop in p(finding) lies within a stated tolerance of the condition's) and a **regression**
of the profile shift on that drop, the residuals compared; the claims are stated again under both.

Every mean has a bootstrap interval and every condition-minus-control difference a paired one
(:mod:`cemap.evaluate.bootstrap`). Files: ``latent_controls.json``, ``latent_concepts.json`` (the concept
table, :mod:`cemap.evaluate.concepts`) and the figures ``latent_controls.png``, ``latent_concepts.png``.

Modules: :mod:`.study` (the orchestrator), :mod:`.regions` and :mod:`.perturbations` (what is masked or added, and its
controls), :mod:`.measures`, :mod:`.masking` and :mod:`.adversarial` (the two experiments), :mod:`.matched` (the
controls for the output change), :mod:`.claims` (verdicts in words); the typed results are in
:mod:`cemap.studies.results`.
"""

from .measures import MEASURES
from ..results import ConceptsResult, LatentControlsResult
from .study import LatentControlsConfig, run_latent_controls

__all__ = ["MEASURES", "ConceptsResult", "LatentControlsConfig", "LatentControlsResult", "run_latent_controls"]
