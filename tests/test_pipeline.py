"""One per-image pipeline for run / explain / demo: every map is computed once, whatever asks for it."""

import torch
from torch import nn

import cemap
from cemap.pipeline import ImagePipeline
from cemap.runner.pipeline import RunPipeline


def _clf():
    """Flatten + Linear (no local prefix, so CE maps run full passes)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(1 * 12 * 12, 3))
    return cemap.Classifier(net, class_names=list("abc"), input_shape=(1, 12, 12), name="counting")


def _count_images(clf) -> list[int]:
    """A running count of the images that reach the model's head (one entry, updated by a forward hook)."""
    seen = [0]
    clf.model[1].register_forward_hook(lambda module, args, out: seen.__setitem__(0, seen[0] + out.shape[0]))
    return seen


def test_each_map_is_computed_once_per_image():
    clf = _clf()
    images = torch.rand(5, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    pipeline = ImagePipeline(clf, methods=("ce", "ce"), ce_options={"cell": 4, "stride": 4})
    seen = _count_images(clf)
    result = pipeline(images)
    masks = pipeline.cemap.masks.shape[0]
    # one prediction pass, then the CE map: every masked image plus the unmasked one, once
    assert seen[0] == 5 + 5 * (masks + 1)
    assert list(result.maps) == ["ce"] and result.maps["ce"].shape == (5, 12, 12)
    assert torch.equal(result.maps["ce"], cemap.CEMap(clf, cell=4, stride=4).attribute(images, result.targets))


def test_run_pipeline_names_the_ce_map_once():
    clf = _clf()
    assert RunPipeline(clf, None, methods=("ce",)).map_names == ["ce"]
    assert RunPipeline(clf, None, methods=("random", "ce", "random")).map_names == ["ce", "random"]
