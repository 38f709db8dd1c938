"""Training is reproducible whatever thread count the caller set (issue 29): built-in models and latent autoencoders
train on a fixed number of threads, so 1 and 2 caller threads give the same weights bit for bit."""

from __future__ import annotations

import torch
from torch import nn

from cemap.data.base import ImageDataset, Sample
from cemap.models.training import TRAIN_THREADS, fit_classifier


class _Noise(ImageDataset):
    class_names = ["a", "b"]
    multilabel = False

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(96, 1, 16, 16, generator=g)
        self.labels = (self.images.mean((1, 2, 3)) > 0.5).long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Sample:
        return Sample(self.images[i], self.labels[i], id=str(i))


def _net() -> nn.Module:
    torch.manual_seed(0)  # the same initial weights for both trainings
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 2),
    )


def _weights(threads: int) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng():
        return _trained(threads)


def _trained(threads: int) -> dict[str, torch.Tensor]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net = fit_classifier(_net(), _Noise(), multilabel=False, epochs=2, batch_size=32, seed=3)
        assert torch.get_num_threads() == threads  # the caller's setting comes back
    finally:
        torch.set_num_threads(before)
    return net.state_dict()


def test_training_gives_the_same_weights_for_one_and_two_caller_threads():
    one, two = _weights(1), _weights(2)
    assert TRAIN_THREADS == 2
    for name in one:
        assert torch.equal(one[name], two[name]), name


def test_training_progress_is_plain_lines_in_a_log_and_nothing_when_quiet(capsys, monkeypatch):
    from cemap import progress

    monkeypatch.delenv("CEMAP_QUIET", raising=False)
    monkeypatch.setattr(progress, "_ENABLED", None)  # stderr under pytest is not a terminal
    monkeypatch.setattr(progress, "FIRST_LINE_S", 0.0)
    capsys.readouterr()
    with torch.random.fork_rng():
        fit_classifier(_net(), _Noise(), multilabel=False, epochs=1, batch_size=32, seed=3, desc="tiny")
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "tiny: 3 steps" and "loss" in lines[1] and lines[-1].startswith("tiny: 3/3 steps in")
    progress.set_progress(False)
    with torch.random.fork_rng():
        fit_classifier(_net(), _Noise(), multilabel=False, epochs=1, batch_size=32, seed=3, desc="tiny")
    assert capsys.readouterr().err == ""
