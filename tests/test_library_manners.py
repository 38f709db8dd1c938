"""A library is a guest in the user's process: importing cemap and wrapping a model change nothing of theirs."""

import subprocess
import sys

import pytest
import torch
from torch import nn

import cemap
from cemap.errors import CemapError


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_keeps_warnings_backend_allocator_and_rng():
    code = (
        "import warnings, matplotlib, torch\n"
        "matplotlib.use('svg')\n"
        "torch.manual_seed(7); before = torch.get_rng_state()\n"
        "filters = list(warnings.filters)\n"
        "import cemap, cemap.models\n"
        "cemap.list_models()  # names every model family, torchxrayvision's included\n"
        "assert warnings.filters == filters, 'warnings filters changed'\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "from cemap.causal.batching import allocator_tuned\n"
        "assert not allocator_tuned(), 'allocator tuned at import'\n"
        "assert torch.equal(torch.get_rng_state(), before), 'global RNG drawn from'\n"
        "warnings.warn('still heard')\n"
    )
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert "UserWarning: still heard" in proc.stderr


def test_import_leaves_heavy_libraries_unloaded():
    heavy = ["sklearn", "scipy", "captum", "pytorch_grad_cam", "torchxrayvision", "torchvision", "matplotlib", "pandas"]
    proc = _python(f"import sys, cemap; print([m for m in {heavy!r} if m in sys.modules])")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_classifier_freezes_its_own_copy():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)).train()
    clf = cemap.Classifier(net, list("abc"), input_shape=(1, 8, 8))
    assert net.training and all(p.requires_grad for p in net.parameters())
    assert not clf.training and not any(p.requires_grad for p in clf.parameters())
    shared = cemap.Classifier(net, list("abc"), input_shape=(1, 8, 8), copy=False)
    assert shared.model is net and not net.training  # copy=False freezes the module itself, as documented


def test_latent_ce_refuses_a_target_it_would_ignore(mnist_clf, mnist_ae, mnist_test):
    latent = cemap.LatentCE(mnist_clf, mnist_ae)
    images = mnist_test.batch(range(2)).images
    with pytest.raises(CemapError, match="effect='class'"):
        latent.attribute(images, target=3)
    by_class = [latent.attribute(images, target=t, effect="class") for t in (3, 7)]
    assert not torch.equal(by_class[0], by_class[1])


def test_every_map_method_answers_to_attribute(tiny_clf):
    from cemap.explain import get_explainer

    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    explainer = get_explainer("gradcam", tiny_clf)
    assert explainer.attribute(images, target=1).shape == (2, 16, 16) and not hasattr(explainer, "explain")  # one verb
    assert cemap.CEMap(tiny_clf).attribute(images, target=1).shape == (2, 16, 16)


def test_cemaps_own_methods_are_explainers_of_the_one_family(tiny_clf):
    from cemap.explain import Explainer, LayerExplainer, get_explainer

    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    ce = get_explainer("ce", tiny_clf, cell=4)
    assert isinstance(ce, Explainer) and isinstance(cemap.CEMap(tiny_clf), Explainer)
    assert isinstance(cemap.AdaptiveCEMap(tiny_clf), Explainer)
    assert torch.equal(
        ce.attribute(images, 1), cemap.CEMap(tiny_clf, cell=4).attribute(images, 1)
    )  # chunked or not, the same maps
    fitted = cemap.fit_autoencoder(
        tiny_clf, images, config=cemap.AEConfig(code=4, hidden=8, steps=2, batch_size=3), use_cache=False
    )
    latent = cemap.LatentCE(tiny_clf, fitted)
    assert isinstance(latent, LayerExplainer) and latent.layer == "conv2" and latent.attribute(images).shape == (3, 4)
