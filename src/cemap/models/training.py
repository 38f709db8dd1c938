"""CPU training of the built-in classifiers, cached by configuration.

A model is trained once per configuration and stored under the cache root; a changed
configuration (epochs, seed, data options, ...) gives a new key and retrains.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..cache import cache_path, load_cached, move_aside, save_atomic
from ..data.base import ImageDataset
from ..progress import progress_bar

log = logging.getLogger(__name__)

# Built-in models and latent autoencoders train on this many CPU threads, whatever the caller set: oneDNN splits a
# convolution's weight gradient across threads, so another thread count sums in another order and the weights differ
# in their last bits - which detection and latent verdicts then amplify (issue 29). Two threads keep the speed of a
# 2-core machine; the weights are then the same bit for bit for any caller setting, on one CPU kind (another
# instruction set, say AVX-512 instead of AVX2, may still round differently).
TRAIN_THREADS = 2

# Part of every trained model's cache key: raise it whenever the training code changes the weights it produces (the
# fixed thread count above did), so weights trained by an earlier version are never loaded as if this one had made
# them - a silent reuse made a benchmark run report a different model than a fresh clone trains.
TRAINING_RECIPE = 2


@contextlib.contextmanager
def training_threads(device: str | torch.device = "cpu") -> Iterator[None]:
    """Train on ``TRAIN_THREADS`` CPU threads (on a GPU the CPU's count does not matter); the caller's count comes
    back."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero padding): cheap augmentation."""
    if max_shift <= 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, [max_shift] * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])


def fit_classifier(
    net: nn.Module,
    train: ImageDataset,
    *,
    multilabel: bool,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    max_shift: int = 0,
    preprocess: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
    desc: str = "training",
    device: str = "cpu",
) -> nn.Module:
    """Train ``net`` (returning logits) with Adam and cross-entropy or BCE; deterministic for a seed and device, and on
    the CPU for any thread count the caller set (:data:`TRAIN_THREADS`).

    ``device`` is where the steps run (batches are drawn and shifted on the CPU); the trained net is returned on the
    CPU.
    """
    with training_threads(device):
        return _fit(net, train, multilabel, epochs, lr, batch_size, seed, max_shift, preprocess, desc, device)


def _fit(net, train, multilabel, epochs, lr, batch_size, seed, max_shift, preprocess, desc, device) -> nn.Module:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * ((len(train) + batch_size - 1) // batch_size)
    )
    loader = train.loader(batch_size=batch_size, shuffle=True, seed=seed)
    net.train()
    bar = progress_bar(epochs * len(loader), desc, unit="step", leave=False)
    for _ in range(epochs):
        for batch in loader:
            x = preprocess(random_shift(batch.images, max_shift, gen).to(device))
            logits = net(x)
            labels = batch.labels.to(device)
            if multilabel:
                loss = F.binary_cross_entropy_with_logits(logits, labels.float())
            else:
                loss = F.cross_entropy(logits, labels)
            optimiser_step(opt, sched, loss, bar)
    bar.close()
    return net.cpu().eval()


def optimiser_step(opt: torch.optim.Optimizer, sched, loss: torch.Tensor, bar) -> None:
    """One step of training (the classifier's or the latent autoencoder's), with the loss on the progress bar."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    bar.set_postfix(loss=f"{loss.item():.4f}")  # before update, so a log line shows this step's loss
    bar.update()


def cached_weights(
    name: str, config: dict[str, Any], net: nn.Module, train_fn: Callable[[nn.Module], nn.Module]
) -> nn.Module:
    """Load ``net``'s weights from the cache for ``config`` and this :data:`TRAINING_RECIPE`, training and storing them
    on a miss."""
    path = cache_path("models", name, {**config, "recipe": TRAINING_RECIPE})
    entry = load_cached(path)  # None on a miss, or when the entry was damaged (moved aside, never used)
    if entry is not None:
        try:
            net.load_state_dict(entry["state_dict"])
            return net.eval()
        except (KeyError, RuntimeError, TypeError):
            move_aside(path, "does not hold this model's weights")
    log.info("training %s (first use; cached at %s)", name, path)
    net = train_fn(net)
    save_atomic({"state_dict": net.state_dict(), "config": config}, path)
    return net.eval()


def seeded_init(make_net: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``make_net()`` with its initial weights drawn from ``seed``, whatever ran before in this process."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return make_net()


def builtin_weights(
    name: str,
    make_net: Callable[[], nn.Module],
    config: dict[str, Any],
    train_data: Callable[[], ImageDataset],
    multilabel: bool,
    weights: str | None = None,
) -> nn.Module:
    """A built-in model's weights: the user's file if given, else the cache, else trained on first use.

    ``config`` holds epochs, lr, batch_size, seed, max_shift and optionally ``device`` (where to train: weights
    trained on a GPU differ from CPU-trained ones, so the device is part of the key), and is the cache key. The weights
    are kept channels-last, so oneDNN runs every convolution and pooling of these small CNNs in its
    preferred layout (cxr-cnn's forward is about 2x faster, mostly in max-pooling).
    """
    net = seeded_init(make_net, config["seed"]).to(memory_format=torch.channels_last)
    if weights is not None:
        from .loading import load_into, load_state_dict_file

        load_into(net, load_state_dict_file(weights), weights, name)
        return net.eval()
    return cached_weights(
        name,
        config,
        net,
        lambda n: fit_classifier(
            n,
            train_data(),
            multilabel=multilabel,
            epochs=config["epochs"],
            lr=config["lr"],
            batch_size=config["batch_size"],
            seed=config["seed"],
            max_shift=config["max_shift"],
            desc=f"training {name}",
            device=config.get("device", "cpu"),
        ),
    )
