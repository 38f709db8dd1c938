"""What every attack shares: [0, 1] clipping, batching, the loss for softmax and sigmoid heads,
targeted or untargeted goals, success and perturbation norms.

An attack is configured once and called on a batch (torchattacks style); a variant only says
how one chunk is perturbed (``perturb``), using ``objective`` (per-sample loss to ascend) or
``margin`` (C&W's logit margin) from this base.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..causal.batching import as_model_input, autocast, chunks, prefers_channels_last
from ..errors import CemapError
from ..models.classifier import Classifier
from ..models.folding import with_scale_shift_batchnorm
from .graphs import GraphedSteps


@dataclass
class AttackResult:
    """``adversarial`` B x C x H x W in [0, 1]; ``linf``, ``l2`` and ``success`` per sample.

    ``labels`` is the class (softmax) or finding (sigmoid) that was attacked, ``target`` the goal
    of a targeted attack (None when untargeted). ``success`` is judged on first access, by a float32
    forward pass of the adversarials through the attack's classifier: a caller that needs only the
    images (adversarial training, say) does not pay for it, as with torchattacks.
    """

    adversarial: torch.Tensor
    linf: torch.Tensor
    l2: torch.Tensor
    labels: torch.Tensor
    target: torch.Tensor | None
    judge: Callable[[torch.Tensor], torch.Tensor] = field(repr=False, compare=False)

    def __len__(self) -> int:
        return self.adversarial.shape[0]

    @cached_property
    def success(self) -> torch.Tensor:
        return self.judge(self.adversarial)

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if len(self) else float("nan")


def perturbation_norms(clean: torch.Tensor, adversarial: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Linf, L2) of ``adversarial - clean`` per sample."""
    delta = (adversarial - clean).flatten(1)
    return delta.abs().amax(1), delta.norm(dim=1)


LOSSES = ("stable", "ce")


class Attack:
    """Base class. Softmax heads: cross-entropy on the class. Sigmoid heads: binary cross-entropy
    on the attacked finding (untargeted: flip its decision; targeted: make finding ``target`` positive).

    ``loss="stable"`` (default) computes that cross-entropy as softplus of minus the goal's log-odds: the
    same value, but a gradient that stays non-zero however confident the model is. ``loss="ce"`` calls
    PyTorch's cross_entropy / BCE-with-logits as torchattacks does (bit-identical adversarials); their
    gradient, p - y, is exactly zero once p rounds to 1 in float32 (about 17 logits of margin), and such
    a sample never moves - a random start that makes the model more confident strands it there.
    """

    name = "attack"

    def __init__(
        self,
        classifier: Classifier,
        batch_size: int = 128,
        precision: str = "fp32",
        loss: str = "stable",
        cuda_graphs: bool = True,
    ) -> None:
        autocast(precision)  # validates the name
        if loss not in LOSSES:
            raise CemapError(f"unknown attack loss {loss!r}", f"use one of {', '.join(LOSSES)}")
        self.loss = loss
        self.classifier = classifier
        self.batch_size = batch_size
        self.precision = precision
        self.channels_last = precision != "fp32" and prefers_channels_last(classifier.input_shape)
        self.cuda_graphs = cuda_graphs
        self._net = self._gradient_model()
        self._graphed: GraphedSteps | None = None

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.budget().items())
        return f"{type(self).__name__}({params})"

    def budget(self) -> dict:
        """The settings that define the threat model (for reports)."""
        return {}

    # -- the goal -----------------------------------------------------------------------------
    def _gradient_model(self) -> nn.Module:
        """What the steps run through: the classifier itself in fp32 (bit-identical to a plain loop such as
        torchattacks'); in reduced precision a parameter-sharing copy whose frozen batch-norms are one multiply-add
        (``ScaleShift``), rebuilt on every call so that it never holds running statistics that have since changed."""
        return self.classifier if self.precision == "fp32" else with_scale_shift_batchnorm(self.classifier)

    def _graphed_steps(self) -> GraphedSteps | None:
        """The recorded steps of this attack, kept across calls while the network is the same object (fp32 on a GPU)."""
        device = self.classifier.device
        if not (self.cuda_graphs and device.type == "cuda" and self._net is self.classifier):
            return None
        return self._graphed if self._graphed is not None else GraphedSteps(self._eager_gradient, device)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        # Reduced precision also runs channels-last (DenseNet-121 fwd+bwd in bf16: 1.3x); fp32 keeps the caller's
        # layout so its adversarials are bit-identical to a plain loop such as torchattacks'.
        with autocast(self.precision, self.classifier.device):
            return self._net(as_model_input(images, self.channels_last)).float()

    def decisions(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Sigmoid heads: the current yes/no of the attacked finding, as the BCE label to move away from."""
        return (logits.gather(1, labels[:, None]).squeeze(1) > 0).float()

    def objective(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        target: torch.Tensor | None,
        original: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-sample loss that the attack ascends. ``original`` holds the clean decision (sigmoid heads)."""
        if self.loss == "ce":
            return self._torch_cross_entropy(logits, labels, target, original)
        goal = labels if target is None else target
        z = logits.gather(1, goal[:, None]).squeeze(1)
        if self.classifier.head == "softmax":
            odds = z - logits.masked_fill(F.one_hot(goal, logits.shape[1]).bool(), float("-inf")).logsumexp(1)
        else:
            odds = z if target is not None else (2 * original - 1) * z
        cross_entropy = F.softplus(-odds)  # -log p(goal): CE of the class, or BCE against the clean decision / positive
        return cross_entropy if target is None else -cross_entropy

    def _torch_cross_entropy(self, logits, labels, target, original) -> torch.Tensor:
        if self.classifier.head == "softmax":
            if target is None:
                return F.cross_entropy(logits, labels, reduction="none")
            return -F.cross_entropy(logits, target, reduction="none")
        if target is None:
            z = logits.gather(1, labels[:, None]).squeeze(1)
            return F.binary_cross_entropy_with_logits(z, original, reduction="none")
        z = logits.gather(1, target[:, None]).squeeze(1)
        return -F.binary_cross_entropy_with_logits(z, torch.ones_like(z), reduction="none")

    def margin(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        target: torch.Tensor | None,
        original: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """How far each sample is from success in logit units (<= 0 means the goal is met)."""
        if self.classifier.head == "softmax":
            goal = labels if target is None else target
            z_goal = logits.gather(1, goal[:, None]).squeeze(1)
            others = logits.masked_fill(F.one_hot(goal, logits.shape[1]).bool(), float("-inf")).amax(1)
            return z_goal - others if target is None else others - z_goal
        if target is None:
            z = logits.gather(1, labels[:, None]).squeeze(1)
            return (2 * original - 1) * z
        return -logits.gather(1, target[:, None]).squeeze(1)

    def succeeded(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        target: torch.Tensor | None,
        original: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.margin(logits, labels, target, original) < 0

    def gradient(self, images: torch.Tensor, labels, target, original) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(d(sum of per-sample objectives)/d images, the clean decision); sums keep each sample independent of the
        batch.

        ``original=None`` on a sigmoid head means ``images`` are the clean images themselves: their decision
        is read off this forward (and returned for the later steps) instead of costing one more. On a GPU an fp32
        attack replays each batch shape's step from a CUDA graph (:mod:`.graphs`; the same kernels, without launches).
        """
        if self._graphed is not None:
            return self._graphed(images, labels, target, original)
        return self._eager_gradient(images, labels, target, original)

    def _eager_gradient(
        self, images: torch.Tensor, labels, target, original
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.enable_grad():
            x = images.detach().requires_grad_(True)
            logits = self.logits(x)
            if original is None and self.classifier.multilabel:
                original = self.decisions(logits.detach(), labels)
            loss = self.objective(logits, labels, target, original).sum()
            return torch.autograd.grad(loss, x)[0], original

    # -- the mechanics ------------------------------------------------------------------------
    def starts_at_clean(self) -> bool:
        """Whether the first forward of :meth:`perturb` is at the clean images (see :meth:`gradient`)."""
        return False

    def perturb(
        self, images: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None, original: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(adversarial images, the clean decision - as given, or as read off the first forward)."""
        raise NotImplementedError

    def _resolve(self, images: torch.Tensor, labels, target) -> tuple[torch.Tensor, torch.Tensor | None]:
        clf = self.classifier
        b, k = images.shape[0], clf.num_classes

        def as_index(value, what: str) -> torch.Tensor:
            t = torch.as_tensor(value, dtype=torch.long).reshape(-1)
            t = (
                t.expand(b) if t.numel() == 1 else t
            ).clone()  # a clone is never an inference tensor (labels made under inference_mode)
            if t.numel() != b:
                raise CemapError(
                    f"got {t.numel()} {what} for {b} images", f"pass one {what[:-1]} per image, a single int, or None"
                )
            if (t < 0).any() or (t >= k).any():
                raise CemapError(f"{what} {t.tolist()[:8]} out of range", f"classes are 0..{k - 1}")
            return t

        if labels is None:
            with torch.no_grad():
                labels = torch.cat([self.logits(images[s]).argmax(1) for s in chunks(b, self.batch_size)])
        elif clf.multilabel and torch.is_tensor(labels) and labels.dim() == 2:
            raise CemapError(
                "sigmoid heads are attacked one finding at a time",
                "pass labels=None (most probable finding) or one finding index per image",
            )
        return as_index(labels, "labels"), None if target is None else as_index(target, "targets")

    def __call__(
        self, images: torch.Tensor, labels: int | torch.Tensor | None = None, target: int | torch.Tensor | None = None
    ) -> AttackResult:
        """Attack ``images`` (B x C x H x W in [0, 1]). ``labels``: the true class (softmax) or the finding
        to attack (sigmoid); None attacks the model's own prediction. ``target``: a targeted goal."""
        # a clone is never an inference tensor, so images made under torch.inference_mode can be attacked
        images = self.classifier.check_images(images).detach().clone()
        self._net = self._gradient_model()
        self._graphed = self._graphed_steps()
        labels, target = self._resolve(images, labels, target)
        adv, originals = [], []
        for s in chunks(images.shape[0], self.batch_size):
            x, y, t = images[s], labels[s], None if target is None else target[s]
            original = None
            if self.classifier.multilabel and not self.starts_at_clean():
                with torch.no_grad():
                    original = self.decisions(self.logits(x), y)
            a, original = self.perturb(x, y, t, original)
            adv.append(a.detach().clamp(0, 1))
            originals.append(original)
        adversarial = torch.cat(adv)
        linf, l2 = perturbation_norms(images, adversarial)
        return AttackResult(
            adversarial, linf, l2, labels, target, judge=lambda a: self._judge(images, a, labels, target, originals)
        )

    def _judge(
        self,
        images: torch.Tensor,
        adversarial: torch.Tensor,
        labels: torch.Tensor,
        target: torch.Tensor | None,
        originals: list[torch.Tensor | None],
    ) -> torch.Tensor:
        """Per-sample success, chunk by chunk as the attack ran, judged by the model in float32 whatever precision
        the attack's gradients used: success is a fact about the model, and a bf16 logit near the decision boundary
        can carry the wrong sign. A sigmoid head's clean decision is re-read in float32 for the same reason."""
        with torch.no_grad():
            out = []
            for s, original in zip(chunks(adversarial.shape[0], self.batch_size), originals):
                if original is not None and self.precision != "fp32":
                    original = self.decisions(self.classifier(images[s]).float(), labels[s])
                t = None if target is None else target[s]
                out.append(self.succeeded(self.classifier(adversarial[s]).float(), labels[s], t, original))
            return torch.cat(out)
