"""How faithfully the classifier with the latent autoencoder inserted stands in for the original (PAPER.md section 3).

Latent CEs describe the original model only when the autoencoder is faithful: its outputs agree
with the original's (decision agreement, mean KL) *and* it carries each image's information (its
reconstruction follows the activation from image to image, its code and the latent CE profiles
differ between images). :func:`fidelity` measures all of it on held-out images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import CemapError
from ..models.classifier import Classifier
from .autoencoder import FittedAutoencoder, prediction_kl
from .batching import chunks
from .latent import LatentCE

# The autoencoder itself must carry each image's information, not only leave the outputs unchanged: a classifier whose
# outputs barely vary (a random network) agrees with an autoencoder that ignores its input. Measured on the demo's
# faithful cxr-cnn autoencoder (agreement 0.98, KL 0.018): relative error 1.77 (it is trained on L1 and KL, so
# magnitudes are loose), reconstruction correlation across images well above 0.5. An autoencoder that ignores its input
# has correlation 0.
MIN_RECON_CORRELATION = (
    0.1  # correlation across images between the activation and its reconstruction (per element, pooled)
)
MAX_RELATIVE_ERROR = 25.0  # reconstruction MSE / activation variance across images, far beyond any faithful autoencoder
MIN_CODE_VARIATION = (
    1e-4  # variance of the code across images relative to its mean square: 0 = one code for every image
)
MIN_PROFILE_VARIATION = 1e-4  # spread of latent CE profiles across images relative to their size
MIN_AGREEMENT = 0.98  # share of decisions unchanged with the autoencoder inserted (PAPER.md section 3)
MAX_MEAN_KL = 0.05  # mean KL between the predictive distributions with and without it
PROFILE_IMAGES = 8  # latent CE profiles cost k + 1 suffix passes per image: a few images tell identical from different


@dataclass
class Fidelity:
    """How faithfully the classifier with the autoencoder inserted (f_AE) stands in for the original (f).

    ``agreement`` and ``mean_kl`` compare outputs; ``relative_error`` (reconstruction MSE over the activation's variance
    across images), ``recon_correlation`` (does the reconstruction follow the activation from image to image: 0 when it
    is the same for every image), ``code_variation`` (the code's variance across images over its mean square) and
    ``profile_variation`` (how much latent CE profiles differ between images) look at the autoencoder itself.
    ``problems`` says in words what failed in the autoencoder itself, ``failures`` every gate that failed (the outputs'
    too); ``ok`` is the AND of every gate.
    """

    agreement: float
    mean_kl: float
    n: int
    relative_error: float | None = None
    recon_correlation: float | None = None
    code_variation: float | None = None
    profile_variation: float | None = None
    problems: tuple[str, ...] = ()

    @property
    def failures(self) -> tuple[str, ...]:
        """Every failed gate in words, each naming its value and limit (a NaN fails every gate it reaches)."""
        out = []
        if not self.agreement >= MIN_AGREEMENT:
            out.append(f"decision agreement {self.agreement:.3f} is below {MIN_AGREEMENT}")
        if not self.mean_kl <= MAX_MEAN_KL:
            out.append(f"mean KL {self.mean_kl:.4f} is above {MAX_MEAN_KL}")
        return (*out, *self.problems)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        out = {"agreement": self.agreement, "mean_kl": self.mean_kl, "n": self.n, "ok": self.ok, "limits": dict(LIMITS)}
        for key in ("relative_error", "recon_correlation", "code_variation", "profile_variation"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.problems:
            out["problems"] = list(self.problems)
        if self.failures:
            out["failed"] = list(self.failures)
        return out


# Every gate of ``Fidelity.ok``, as the JSON records it beside the values: a reader checks each number against its
# limit.
LIMITS = {
    "min_agreement": MIN_AGREEMENT,
    "max_mean_kl": MAX_MEAN_KL,
    "min_recon_correlation": MIN_RECON_CORRELATION,
    "max_relative_error": MAX_RELATIVE_ERROR,
    "min_code_variation": MIN_CODE_VARIATION,
    "min_profile_variation": MIN_PROFILE_VARIATION,
}


@torch.inference_mode()
def fidelity(
    classifier: Classifier,
    fitted: FittedAutoencoder,
    images: torch.Tensor,
    batch_size: int = 128,
    check_profiles: bool = True,
) -> Fidelity:
    """Decision agreement between f_AE and f (top-1, or per finding) and mean KL, on held-out images, plus checks of
    the autoencoder itself: does it reconstruct each image's activation better than the average activation, does
    its code differ between images, and do the latent CE profiles differ between images."""
    if isinstance(classifier, FittedAutoencoder):  # the order before issue 28: refused, not silently swapped
        raise CemapError("fidelity takes the classifier first", "call fidelity(classifier, fitted, images)")
    images = classifier.check_images(images).to(classifier.device)
    agree, kl, count = 0.0, 0.0, 0
    totals = None
    for s in chunks(len(images), batch_size):
        x = images[s]
        act, extras = fitted.split.activation(x)
        z, _ = fitted.autoencoder.encode(act)
        recon = fitted.autoencoder.decode(z, act)[0]
        teacher = fitted.split.finish(act, extras)
        student = fitted.split.finish(recon, extras)
        same = classifier.decisions(classifier.probabilities(teacher)) == classifier.decisions(
            classifier.probabilities(student)
        )
        agree += same.float().mean(-1).sum().item() if same.dim() > 1 else same.float().sum().item()
        kl += prediction_kl(classifier, teacher, student).sum().item()
        count += len(x)
        a, r, zz = act.double().flatten(1), recon.double().flatten(1), z.double().flatten(1)
        sums = (
            a.sum(0),
            (a * a).sum(0),
            r.sum(0),
            (r * r).sum(0),
            (a * r).sum(0),
            ((r - a) ** 2).sum(),
            zz.sum(0),
            (zz * zz).sum(0),
        )
        totals = sums if totals is None else tuple(t + u for t, u in zip(totals, sums))
    result = Fidelity(agreement=agree / count, mean_kl=kl / count, n=count)
    if count < 2:
        return result
    a_sum, a_sq, r_sum, r_sq, ar, err_sq, code_sum, code_sq = (t / count for t in totals)
    var_a = (a_sq - a_sum**2).clamp_min(0)
    var_r = (r_sq - r_sum**2).clamp_min(0)
    cov = (ar - a_sum * r_sum).sum().item()
    act_var = var_a.mean().item()
    mse = err_sq.item() / a_sum.numel()
    code_var = (code_sq - code_sum**2).clamp_min(0).mean().item()
    code_power = code_sq.mean().item()
    act_power = a_sq.mean().item()
    if act_power == 0 or act_var / act_power < 1e-8:  # the images themselves give one activation: nothing to tell apart
        return result
    problems = []
    relative_error = mse / act_var if act_var > 0 else (0.0 if mse == 0 else float("inf"))
    spread = (var_a.sum() * var_r.sum()).sqrt().item()
    recon_correlation = cov / spread if spread > 0 else 0.0
    # Each gate is written so that a NaN fails it.
    if not recon_correlation >= MIN_RECON_CORRELATION:
        problems.append(
            "the reconstruction does not follow the activation from image to image (correlation "
            f"{recon_correlation:.2f}, below {MIN_RECON_CORRELATION})"
        )
    if not relative_error <= MAX_RELATIVE_ERROR:
        problems.append(
            f"reconstruction error {relative_error:.1f} x the activation's variance across images (above "
            f"{MAX_RELATIVE_ERROR})"
        )
    code_variation = code_var / code_power if code_power > 0 else 0.0
    if not code_variation >= MIN_CODE_VARIATION:
        problems.append(
            "the code is the same for every image" if code_power > 0 else "the code is zero for every image"
        )
    profile_variation = _profile_variation(fitted, classifier, images[:PROFILE_IMAGES]) if check_profiles else None
    if profile_variation is not None and not profile_variation >= MIN_PROFILE_VARIATION:
        problems.append("latent CE profiles are the same for every image")
    result.relative_error, result.recon_correlation = relative_error, recon_correlation
    result.code_variation, result.profile_variation = code_variation, profile_variation
    result.problems = tuple(problems)
    return result


def _profile_variation(fitted: FittedAutoencoder, classifier: Classifier, images: torch.Tensor) -> float | None:
    """Mean over channels of the profiles' standard deviation across images, relative to their mean magnitude (0 =
    identical)."""
    if len(images) < 2:
        return None
    profiles = LatentCE(classifier, fitted).attribute(images).double()
    scale = profiles.abs().mean().item()
    if scale == 0:
        return 0.0
    return (profiles.std(0).mean().item()) / scale
