"""TCAV (Kim et al. 2018) through ``captum.concept``, in the known-artifact case.

The concept's examples are held-out images *with* the artifact, its counterpart the same images *without* it (a
paired design: the concept activation vector separates exactly the artifact). The TCAV score is the share of
images with the artifact's finding whose finding logit rises along that vector at the classifier's CAM layer
(``sign_count``; ``magnitude`` weighs each image by its derivative); 0.5 = the concept does not push the finding
either way. The benchmark flags a model when the score is far from 0.5; which score, and the distance's threshold,
are chosen on calibration models.
"""

from __future__ import annotations

import tempfile

import numpy as np
import torch


class _Images(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def tcav_scores(
    classifier, concept: torch.Tensor, counterpart: torch.Tensor, inputs: torch.Tensor, target: int, seed: int = 0
) -> dict[str, float]:
    """TCAV scores of the concept (``concept`` vs ``counterpart`` images) for ``target`` on ``inputs``: ``sign_count``
    (the share
    of inputs whose target logit rises along the concept) and ``magnitude`` (the share of the positive derivative
    mass)."""
    from captum.concept import TCAV, Concept

    layer = f"model.{classifier.cam_layer}" if classifier.cam_layer else None
    loader = lambda x: torch.utils.data.DataLoader(_Images(x), batch_size=16)  # noqa: E731
    concepts = [Concept(0, "artifact", loader(concept)), Concept(1, "no-artifact", loader(counterpart))]
    state = np.random.get_state()  # the CAV classifier draws from numpy's global generator: seeded here, restored after
    try:
        with tempfile.TemporaryDirectory() as tmp, torch.random.fork_rng():
            torch.manual_seed(seed)
            np.random.seed(seed)
            tcav = TCAV(classifier, layers=[layer], save_path=tmp)
            scores = tcav.interpret(
                inputs.clone().requires_grad_(True), experimental_sets=[concepts], target=int(target)
            )
    finally:
        np.random.set_state(state)
    return {k: float(scores["0-1"][layer][k][0]) for k in ("sign_count", "magnitude")}
