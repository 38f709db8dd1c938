"""Pixel masks and fills; the training cache is keyed by configuration; training is deterministic."""

import pytest
import torch

from cemap.cache import cache_path
from cemap.causal.masks import box_mask, fill_images, grid_masks, grid_positions
from cemap.data.base import ImageDataset, Sample
from cemap.errors import CemapError
from cemap.models.mnist_cnn import MnistCNN
from cemap.models.training import fit_classifier, seeded_init


def test_grid_covers_every_pixel_and_pins_last_cell():
    assert grid_positions(10, 4, 4) == [0, 4, 6]
    masks = grid_masks(10, 10, 4, 4)
    assert masks.shape == (9, 10, 10)
    assert masks.any(0).all()
    assert masks.sum((1, 2)).eq(16).all()


def test_grid_rejects_bad_geometry():
    with pytest.raises(CemapError):
        grid_masks(8, 8, 4, 5)
    with pytest.raises(CemapError):
        grid_masks(8, 8, 0)


def test_box_mask_and_fills():
    m = box_mask(8, 8, torch.tensor([[1.0, 2.0, 3.0, 5.0]]))
    assert m.sum() == 2 * 3 and m[2, 1] and not m[5, 1]
    x = torch.rand(2, 3, 8, 8)
    assert fill_images(x, "zero").eq(0).all() and fill_images(x, "max").eq(1).all()
    assert torch.allclose(fill_images(x, "mean")[:, :, 0, 0], x.mean((2, 3)))
    blurred = fill_images(x, "blur", blur_sigma=1.0)
    assert blurred.shape == x.shape and blurred.std() < x.std()
    assert fill_images(x, 0.25).eq(0.25).all()


def test_cache_key_changes_with_config(tmp_path, monkeypatch):
    monkeypatch.setenv("CEMAP_CACHE", str(tmp_path))
    a = cache_path("models", "m", {"epochs": 1})
    assert a == cache_path("models", "m", {"epochs": 1})
    assert a != cache_path("models", "m", {"epochs": 2})
    assert a.parent.parent == tmp_path


class _Few(ImageDataset):
    class_names = [str(i) for i in range(10)]

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(40, 1, 28, 28, generator=g)
        self.y = torch.randint(0, 10, (40,), generator=g)

    def __len__(self):
        return 40

    def __getitem__(self, i):
        return Sample(self.x[i], self.y[i], str(i))


def test_training_is_deterministic_for_a_seed_whatever_ran_before():
    runs = []
    for history in (123, 999):
        torch.manual_seed(history)  # the process's random state before training must not matter
        net = seeded_init(MnistCNN, 7)
        runs.append(
            fit_classifier(net, _Few(), multilabel=False, epochs=1, batch_size=16, seed=7, max_shift=2).state_dict()
        )
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_autoencoder_is_deterministic_for_a_seed_whatever_ran_before(tiny_clf):
    from cemap.causal import AEConfig, fit_autoencoder

    images = torch.rand(24, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    runs = []
    for history in (1, 2):
        torch.manual_seed(history)
        fitted = fit_autoencoder(
            tiny_clf, images, config=AEConfig(code=4, hidden=8, steps=3, batch_size=8), use_cache=False
        )
        runs.append(fitted.autoencoder.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_study_stage_is_restored_with_its_files_until_its_key_or_the_code_changes(tmp_path, monkeypatch):
    from cemap.studies import stage_cache

    monkeypatch.setenv("CEMAP_CACHE", str(tmp_path / "cache"))
    calls = []

    def stage(out):
        def compute():
            calls.append(out)
            (out / "sub").mkdir(exist_ok=True)
            (out / "table.json").write_text('{"x": 1}')
            (out / "sub" / "figure.png").write_bytes(bytes(range(256)))
            return {"rows": [1.5, float("nan")], "name": "ce"}

        return compute

    first, second, third = (tmp_path / n for n in ("a", "b", "c"))
    for folder in (first, second, third):
        folder.mkdir()
    (first / "untouched.txt").write_text("was here before the stage")
    value, prov = stage_cache.run_cached("evaluation", {"n": 8}, first, stage(first))
    assert "restored_from" not in prov and prov["computed_s"] >= 0
    restored, prov = stage_cache.run_cached("evaluation", {"n": 8}, second, stage(second))
    assert calls == [first] and "restored_from" in prov
    # stored as strict JSON, as every file cemap writes: a NaN comes back as None
    assert restored == {"rows": [1.5, None], "name": "ce"}
    assert (second / "sub" / "figure.png").read_bytes() == bytes(range(256)) and (
        second / "table.json"
    ).read_text() == '{"x": 1}'
    assert not (second / "untouched.txt").exists()  # only what the stage wrote is kept
    stage_cache.run_cached("evaluation", {"n": 9}, third, stage(third))  # other settings: computed
    stage_cache.run_cached("evaluation", {"n": 8}, third, stage(third), reuse=False)  # asked to recompute
    monkeypatch.setattr(stage_cache, "source_fingerprint", lambda: "edited-code")
    stage_cache.run_cached("evaluation", {"n": 8}, third, stage(third))  # cemap's code changed: computed
    assert calls == [first, third, third, third]
    assert not list((tmp_path / "cache" / "study").glob("*.tmp*"))
