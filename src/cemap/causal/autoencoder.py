"""The latent autoencoder of PAPER.md section 3, its loss, training and fidelity report.

An encoder E maps the activation A of the cut layer to k concept channels Z; a decoder D maps
them back. The classifier stays frozen; only E and D learn, with the *intended* notebook loss
``w_tv * TV + w_rec * L1 + w_kl * KL`` (the notebooks add TV twice through a typo).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, replace
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..cache import cache_path, load_cached, move_aside, save_atomic
from ..models.classifier import Classifier
from ..models.training import optimiser_step, seeded_init, training_threads
from ..progress import progress_bar
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
    steps: int = 800  # optimiser steps, not epochs (see sized_config for a size that follows the data)
    lr: float = 2e-3
    batch_size: int = 64
    seed: int = 0


EPOCHS = 25  # passes over the training images that the default 800 steps of 64 give 2048 images
MIN_STEPS = 200  # even a handful of images gets this many steps


def sized_config(n_images: int, config: AEConfig | None = None) -> AEConfig:
    """``config`` with its steps cut to about :data:`EPOCHS` passes over ``n_images`` (at least :data:`MIN_STEPS`,
    never more than its own). 800 steps over 17 images are 800 passes that fit them no better and cost minutes; from
    2048 images on nothing changes."""
    cfg = config or AEConfig()
    passes = EPOCHS * -(-n_images // cfg.batch_size)
    return replace(cfg, steps=min(cfg.steps, max(MIN_STEPS, passes)))


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
        return F.kl_div(
            F.log_softmax(student_logits, -1), F.log_softmax(teacher_logits, -1), log_target=True, reduction="none"
        ).sum(-1)
    p = torch.sigmoid(teacher_logits)
    logp, log1mp = F.logsigmoid(teacher_logits), F.logsigmoid(-teacher_logits)
    logq, log1mq = F.logsigmoid(student_logits), F.logsigmoid(-student_logits)
    return (p * (logp - logq) + (1 - p) * (log1mp - log1mq)).sum(-1)


def autoencoder_loss(
    ae: LatentAutoencoder, split: Split, classifier: Classifier, act, extras, teacher_logits, cfg: AEConfig
) -> torch.Tensor:
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
    images = images.to(
        classifier.device
    )  # trained where the classifier runs (the initial weights are drawn on the CPU)
    split = split_classifier(classifier, layer)
    channels = _channels(split, images)
    key = {
        "model": model_fingerprint(classifier),
        "layer": split.layer,
        "data": data_key,
        "init": "seeded",
        **asdict(cfg),
    }
    path = cache_path("autoencoders", classifier.name or "model", key)
    entry = load_cached(path) if use_cache else None  # a damaged entry is moved aside and retrained, never used
    if entry is not None:
        try:
            return restore_autoencoder(entry["state_dict"], split, cfg, classifier.device, channels)
        except (KeyError, RuntimeError, TypeError):
            move_aside(path, "does not hold this autoencoder's weights")
    ae = _seeded_autoencoder(channels, cfg).to(classifier.device)
    with training_threads(classifier.device):  # the same weights for any thread count the caller set
        _train(ae, split, classifier, images, cfg)
    ae.code_mean.copy_(_code_mean(ae, split, images, cfg.batch_size))
    if use_cache:
        save_atomic({"state_dict": ae.state_dict(), "key": key}, path)
    return FittedAutoencoder(ae.eval(), split, cfg)


def _seeded_autoencoder(channels: int, cfg: AEConfig) -> LatentAutoencoder:
    """A fresh autoencoder whose initial weights come from ``cfg.seed`` (the global RNG is left alone)."""
    return seeded_init(lambda: LatentAutoencoder(channels, cfg.code, cfg.hidden), cfg.seed)


def restore_autoencoder(
    state_dict: dict,
    split: Split,
    config: AEConfig,
    device: torch.device | str | None = None,
    channels: int | None = None,
) -> FittedAutoencoder:
    """The autoencoder whose weights ``state_dict`` holds (cemap's cache, a run folder), at ``split``, in eval mode.

    ``channels``: the cut activation's channels when known (weights for another layer then fail to load, a
    RuntimeError);
    by default they are read from the weights.
    """
    channels = channels if channels is not None else state_dict["enc1.weight"].shape[1]
    ae = _seeded_autoencoder(channels, config)
    ae.load_state_dict(state_dict)
    return FittedAutoencoder((ae if device is None else ae.to(device)).eval(), split, config)


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
    bar = progress_bar(cfg.steps, f"autoencoder @ {split.layer} on {len(images)} images", unit="step", leave=False)
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
