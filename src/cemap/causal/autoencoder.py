"""The latent autoencoder of PAPER.md section 3, its loss, training and fidelity report.

An encoder E maps the activation A of the cut layer to k concept channels Z; a decoder D maps
them back. The classifier stays frozen; only E and D learn, with the *intended* notebook loss
``w_tv * TV + w_rec * L1 + w_kl * KL`` (the notebooks add TV twice through a typo).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..cache import cache_path, load_cached, move_aside, save_atomic
from ..models.classifier import Classifier
from ..models.training import optimiser_step, seeded_init, training_threads
from ..progress import progress_enabled
from .split import Split, split_classifier

log = logging.getLogger(__name__)

FROZEN_OUTPUTS_BYTES = 1 << 30


@dataclass(frozen=True)
class AEConfig:
    code: int = 16
    hidden: int = 32
    w_tv: float = 5.0
    w_rec: float = 2.0
    w_kl: float = 3.0
    steps: int = 800  # optimiser steps, not epochs: small and large training sets get the same training
    lr: float = 2e-3
    batch_size: int = 64
    seed: int = 0


class LatentAutoencoder(nn.Module):
    """conv3x3 C->hidden->k (the code Z) and back; 2-D activations are treated as C x 1 x 1 maps."""

    def __init__(self, channels: int, code: int = 16, hidden: int = 32) -> None:
        super().__init__()
        self.enc1 = nn.Conv2d(channels, hidden, 3, padding=1)
        self.enc2 = nn.Conv2d(hidden, code, 3, padding=1)
        self.dec1 = nn.Conv2d(code, hidden, 3, padding=1)
        self.dec2 = nn.Conv2d(hidden, channels, 3, padding=1)
        self.register_buffer("code_mean", torch.zeros(code))

    @property
    def code_channels(self) -> int:
        return self.enc2.out_channels

    def encode(self, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Z, first encoder feature map), on the autoencoder's device whatever ``act``'s."""
        h = F.relu(self.enc1(_as_map(act).to(self.enc1.weight.device)))
        return F.relu(self.enc2(h)), h

    def decode(self, z: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(A_hat shaped like ``like``, first decoder feature map)."""
        h = F.relu(self.dec1(z))
        return self.dec2(h).reshape(like.shape), h

    def forward(self, act: torch.Tensor) -> torch.Tensor:
        """A_hat on ``act``'s device (the autoencoder runs where its weights are)."""
        home = act.device
        act = act.to(self.enc1.weight.device)
        z, _ = self.encode(act)
        return self.decode(z, act)[0].to(home)


def _as_map(act: torch.Tensor) -> torch.Tensor:
    return act if act.dim() == 4 else act.reshape(act.shape[0], -1, 1, 1)


def tv_match(h_enc: torch.Tensor, h_dec: torch.Tensor) -> torch.Tensor:
    """The notebooks' ``tvloss``: L1 distance of vertical finite differences, divided by height."""
    d_enc = h_enc[:, :, 1:, :] - h_enc[:, :, :-1, :]
    d_dec = h_dec[:, :, 1:, :] - h_dec[:, :, :-1, :]
    return (d_enc - d_dec).abs().sum() / (h_enc.shape[0] * max(h_enc.shape[2], 1) * h_enc[0, 0].numel())


def prediction_kl(classifier: Classifier, teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(teacher || student): softmax over classes, or summed Bernoulli KLs per finding."""
    if classifier.head == "softmax":
        return F.kl_div(F.log_softmax(student_logits, -1), F.log_softmax(teacher_logits, -1), log_target=True, reduction="none").sum(-1)
    p = torch.sigmoid(teacher_logits)
    logp, log1mp = F.logsigmoid(teacher_logits), F.logsigmoid(-teacher_logits)
    logq, log1mq = F.logsigmoid(student_logits), F.logsigmoid(-student_logits)
    return (p * (logp - logq) + (1 - p) * (log1mp - log1mq)).sum(-1)


def autoencoder_loss(ae: LatentAutoencoder, split: Split, classifier: Classifier, act, extras, teacher_logits, cfg: AEConfig) -> torch.Tensor:
    z, h_enc = ae.encode(act)
    recon, h_dec = ae.decode(z, act)
    rec = (recon - act).abs().mean()
    tv = tv_match(h_enc, h_dec) if h_enc.shape[2] > 1 else recon.new_zeros(())
    kl = prediction_kl(classifier, teacher_logits, split.finish(recon, extras)).mean()
    return cfg.w_tv * tv + cfg.w_rec * rec + cfg.w_kl * kl


def model_fingerprint(classifier: Classifier) -> str:
    """Hash of the weights, so a cached autoencoder is never reused for a different model."""
    h = hashlib.sha256(classifier.name.encode())
    for name, t in classifier.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).to(torch.float32).numpy().tobytes())
    return h.hexdigest()[:16]


# The autoencoder itself must carry each image's information, not only leave the outputs unchanged: a
# classifier whose outputs barely vary (a random network) agrees with an autoencoder that ignores its input.
# Measured on the demo's faithful cxr-cnn autoencoder (agreement 0.98, KL 0.018): relative error 1.77 (it is trained on L1
# and KL, so magnitudes are loose), reconstruction correlation across images well above 0.5. An autoencoder that ignores
# its input has correlation 0.
MIN_RECON_CORRELATION = 0.1  # correlation across images between the activation and its reconstruction (per element, pooled)
MAX_RELATIVE_ERROR = 25.0  # reconstruction MSE / activation variance across images, far beyond any faithful autoencoder
MIN_CODE_VARIATION = 1e-4  # variance of the code across images relative to its mean square: 0 = one code for every image
MIN_PROFILE_VARIATION = 1e-4  # spread of latent CE profiles across images relative to their size
PROFILE_IMAGES = 8  # latent CE profiles cost k + 1 suffix passes per image: a few images tell identical from different


@dataclass
class Fidelity:
    """How faithfully the classifier with the autoencoder inserted (f_AE) stands in for the original (f).

    ``agreement`` and ``mean_kl`` compare outputs; ``relative_error`` (reconstruction MSE over the
    activation's variance across images), ``recon_correlation`` (does the reconstruction follow the
    activation from image to image: 0 when it is the same for every image), ``code_variation`` (the code's variance across images over
    its mean square) and ``profile_variation`` (how much latent CE profiles differ between images)
    look at the autoencoder itself. ``problems`` says in words what failed; ``ok`` needs all of it.
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
    def ok(self) -> bool:
        return self.agreement >= 0.98 and self.mean_kl <= 0.05 and not self.problems

    def as_dict(self) -> dict:
        out = {"agreement": self.agreement, "mean_kl": self.mean_kl, "n": self.n, "ok": self.ok}
        for key in ("relative_error", "recon_correlation", "code_variation", "profile_variation"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.problems:
            out["problems"] = list(self.problems)
        return out


@dataclass
class FittedAutoencoder:
    """An autoencoder together with the split it was trained at."""

    autoencoder: LatentAutoencoder
    split: Split
    config: AEConfig

    @property
    def layer(self) -> str:
        return self.split.layer


def _batches(images: torch.Tensor, size: int) -> Iterable[torch.Tensor]:
    for i in range(0, len(images), size):
        yield images[i : i + size]


def _channels(split: Split, sample: torch.Tensor) -> int:
    with torch.inference_mode():
        act, _ = split.activation(sample[:1])
    return act.shape[1]


def fit_autoencoder(
    classifier: Classifier,
    images: torch.Tensor,
    layer: str | None = None,
    config: AEConfig | None = None,
    data_key: str | None = None,
    use_cache: bool = True,
) -> FittedAutoencoder:
    """Train (or load from cache) the autoencoder at ``layer`` on ``images`` (N x C x H x W in [0, 1])."""
    cfg = config or AEConfig()
    images = classifier.check_images(images)
    data_key = data_key or _data_fingerprint(images)
    images = images.to(classifier.device)  # trained where the classifier runs (the initial weights are drawn on the CPU)
    split = split_classifier(classifier, layer)
    channels = _channels(split, images)
    ae = seeded_init(lambda: LatentAutoencoder(channels, cfg.code, cfg.hidden), cfg.seed).to(classifier.device)
    key = {"model": model_fingerprint(classifier), "layer": split.layer, "data": data_key, "init": "seeded", **asdict(cfg)}
    path = cache_path("autoencoders", classifier.name or "model", key)
    entry = load_cached(path) if use_cache else None  # a damaged entry is moved aside and retrained, never used
    if entry is not None:
        try:
            ae.load_state_dict(entry["state_dict"])
            return FittedAutoencoder(ae.eval(), split, cfg)
        except (KeyError, RuntimeError, TypeError):
            move_aside(path, "does not hold this autoencoder's weights")
            ae = seeded_init(lambda: LatentAutoencoder(channels, cfg.code, cfg.hidden), cfg.seed).to(classifier.device)
    with training_threads(classifier.device):  # the same weights for any thread count the caller set
        _train(ae, split, classifier, images, cfg)
    ae.code_mean.copy_(_code_mean(ae, split, images, cfg.batch_size))
    if use_cache:
        save_atomic({"state_dict": ae.state_dict(), "key": key}, path)
    return FittedAutoencoder(ae.eval(), split, cfg)


def _data_fingerprint(images: torch.Tensor) -> str:
    return hashlib.sha256(images.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def _minibatches(n: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterable[torch.Tensor]:
    """Exactly ``steps`` index batches, reshuffled at every pass over the ``n`` images."""
    done = 0
    while True:
        for idx in _batches(torch.randperm(n, generator=generator), batch_size):
            if done == steps:
                return
            done += 1
            yield idx


def _frozen_outputs(split: Split, images: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Every image's activation and logits, computed once: the classifier is frozen, and training draws
    each image ~25 times (800 steps of 64). None when the split passes extras or they would pass 1 GiB."""
    with torch.inference_mode():
        act, extras = split.activation(images[:1])
    if extras or act.numel() * act.element_size() * len(images) > FROZEN_OUTPUTS_BYTES:
        return None
    acts, logits = [], []
    with torch.no_grad():
        for x in _batches(images, batch_size):
            a, _ = split.activation(x)
            acts.append(a)
            logits.append(split.finish(a, ()))
    return torch.cat(acts), torch.cat(logits)


def _train(ae: LatentAutoencoder, split: Split, classifier: Classifier, images: torch.Tensor, cfg: AEConfig) -> None:
    opt = torch.optim.Adam(ae.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    frozen = _frozen_outputs(split, images, cfg.batch_size)
    ae.train()
    bar = tqdm(total=cfg.steps, desc=f"autoencoder @ {split.layer}", disable=not progress_enabled(), leave=False)
    for idx in _minibatches(len(images), cfg.batch_size, cfg.steps, gen):
        if frozen is not None:
            act, teacher, extras = frozen[0][idx], frozen[1][idx], ()
        else:
            with torch.no_grad():
                act, extras = split.activation(images[idx])
                teacher = split.finish(act, extras)
        loss = autoencoder_loss(ae, split, classifier, act, extras, teacher, cfg)
        optimiser_step(opt, sched, loss, bar)
    bar.close()
    ae.eval()


@torch.inference_mode()
def _code_mean(ae: LatentAutoencoder, split: Split, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    total = torch.zeros(ae.code_channels, device=images.device)
    for x in _batches(images, batch_size):
        act, _ = split.activation(x)
        total += ae.encode(act)[0].mean(dim=(2, 3)).sum(0)
    return total / len(images)


@torch.inference_mode()
def fidelity(fitted: FittedAutoencoder, classifier: Classifier, images: torch.Tensor, batch_size: int = 128, check_profiles: bool = True) -> Fidelity:
    """Decision agreement between f_AE and f (top-1, or per finding) and mean KL, on held-out images, plus checks of
    the autoencoder itself: does it reconstruct each image's activation better than the average activation, does
    its code differ between images, and do the latent CE profiles differ between images."""
    images = classifier.check_images(images).to(classifier.device)
    agree, kl, count = 0.0, 0.0, 0
    totals = None
    for x in _batches(images, batch_size):
        act, extras = fitted.split.activation(x)
        z, _ = fitted.autoencoder.encode(act)
        recon = fitted.autoencoder.decode(z, act)[0]
        teacher = fitted.split.finish(act, extras)
        student = fitted.split.finish(recon, extras)
        same = classifier.decisions(classifier.probabilities(teacher)) == classifier.decisions(classifier.probabilities(student))
        agree += same.float().mean(-1).sum().item() if same.dim() > 1 else same.float().sum().item()
        kl += prediction_kl(classifier, teacher, student).sum().item()
        count += len(x)
        a, r, zz = act.double().flatten(1), recon.double().flatten(1), z.double().flatten(1)
        sums = (a.sum(0), (a * a).sum(0), r.sum(0), (r * r).sum(0), (a * r).sum(0), ((r - a) ** 2).sum(), zz.sum(0), (zz * zz).sum(0))
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
    if recon_correlation < MIN_RECON_CORRELATION:
        problems.append(f"the reconstruction does not follow the activation from image to image (correlation {recon_correlation:.2f})")
    if relative_error > MAX_RELATIVE_ERROR:
        problems.append(f"reconstruction error {relative_error:.1f} x the activation's variance across images")
    code_variation = code_var / code_power if code_power > 0 else 0.0
    if code_variation < MIN_CODE_VARIATION:
        problems.append("the code is the same for every image" if code_power > 0 else "the code is zero for every image")
    profile_variation = _profile_variation(fitted, classifier, images[:PROFILE_IMAGES]) if check_profiles else None
    if profile_variation is not None and profile_variation < MIN_PROFILE_VARIATION:
        problems.append("latent CE profiles are the same for every image")
    result.relative_error, result.recon_correlation = relative_error, recon_correlation
    result.code_variation, result.profile_variation = code_variation, profile_variation
    result.problems = tuple(problems)
    return result


def _profile_variation(fitted: FittedAutoencoder, classifier: Classifier, images: torch.Tensor) -> float | None:
    """Mean over channels of the profiles' standard deviation across images, relative to their mean magnitude (0 = identical)."""
    from .latent import LatentCE

    if len(images) < 2:
        return None
    profiles = LatentCE(classifier, fitted).attribute(images).double()
    scale = profiles.abs().mean().item()
    if scale == 0:
        return 0.0
    return (profiles.std(0).mean().item()) / scale
