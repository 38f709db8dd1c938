"""torchvision / CheXNet / torchxrayvision adapters: safe loading, format conversion, logits, and CE on DenseNet-121."""

from __future__ import annotations

import os
import re

import pytest
import torch
import torchvision

import cemap
from cemap.causal import AEConfig
from cemap.errors import CemapError
from cemap.models.torchvision_models import IMAGENET_MEAN, IMAGENET_STD, torchvision_classifier


def _imagenet(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _randomise_bn(net: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics, so a mis-mapped norm key cannot go unnoticed."""
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def _to_chexnet_format(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The arnoweng/CheXNet release: DataParallel + wrapper prefix, old 'norm.1' names, Linear inside a Sequential."""
    out = {}
    for key, value in state.items():
        key = re.sub(r"\.(norm|relu|conv)(\d)\.", r".\1.\2.", key)
        key = key.replace("classifier.", "classifier.0.")
        out["module.densenet121." + key] = value
    return out


def test_chexnet_checkpoint_gives_same_logits(tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.densenet121(weights=None, num_classes=14).eval()
    _randomise_bn(net)
    converted = _to_chexnet_format(net.state_dict())
    assert any(".norm.1." in k for k in converted) and all(k.startswith("module.densenet121.") for k in converted)
    path = tmp_path / "m-25012018-123527.pth.tar"
    torch.save({"epoch": 3, "state_dict": converted, "best_loss": torch.tensor(0.15)}, path)
    clf = cemap.get_model("chexnet", weights=str(path), size=64)
    assert clf.head == "sigmoid" and len(clf.class_names) == 14 and clf.class_names[2] == "Effusion"
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(clf(x), net(_imagenet(x)), atol=1e-5)


def test_resnet18_loads_local_state_dict(tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    _randomise_bn(net)
    torch.save(net.state_dict(), tmp_path / "r18.pt")
    clf = cemap.get_model("resnet18", weights=str(tmp_path / "r18.pt"), class_names=["a", "b", "c"], size=64)
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(clf(x), net(_imagenet(x)), atol=1e-5)
    assert clf.default_layer == "layer2" and "layer4" in clf.layers


@pytest.mark.parametrize("arch", ["resnet50", "vgg16", "densenet121"])
def test_architectures_by_name_with_valid_layers(arch):
    clf = cemap.get_model(arch, weights="random", num_classes=2, size=64)
    modules = dict(clf.model.named_modules())
    assert all(layer in modules for layer in clf.layers)
    assert clf.resolve_layer(None) == clf.default_layer
    with torch.inference_mode():
        assert clf(torch.rand(1, 3, 64, 64)).shape == (1, 2)


def test_missing_and_unsafe_weights_are_refused(tmp_path):
    with pytest.raises(CemapError, match="weights file not found"):
        cemap.get_model("densenet121", weights=str(tmp_path / "nope.pt"))
    torch.save(
        torchvision.models.resnet18(weights=None, num_classes=2), tmp_path / "whole_model.pt"
    )  # pickles code objects
    with pytest.raises(CemapError, match="not a weights-only checkpoint"):
        cemap.get_model("resnet18", weights=str(tmp_path / "whole_model.pt"))
    with pytest.raises(CemapError, match="needs weights"):
        cemap.get_model("resnet18")
    torch.save(torchvision.models.resnet18(weights=None, num_classes=2).state_dict(), tmp_path / "r18.pt")
    with pytest.raises(CemapError, match="do not fit"):
        cemap.get_model("resnet50", weights=str(tmp_path / "r18.pt"))


def test_latent_ce_and_ce_map_on_densenet121_split_in_a_dense_block():
    """torchvision's DenseNet applies in-place ReLUs after the cut; the split must neither break nor corrupt shared
    tensors."""
    torch.manual_seed(0)
    clf = torchvision_classifier(
        "densenet121", weights="random", num_classes=3, head="sigmoid", size=32, default_layer="features.denseblock2"
    )
    _randomise_bn(clf.model)
    images = torch.rand(6, 3, 32, 32)
    split = cemap.causal.split_classifier(clf)
    with torch.inference_mode():
        act, extras = split.activation(images)
        assert split.method == "fx" and torch.allclose(split.finish(act, extras), clf(images), atol=1e-5)
        assert torch.allclose(split.finish(act, extras), split.finish(act, extras))  # act unchanged by the suffix
    fitted = cemap.fit_autoencoder(
        clf, images, config=AEConfig(code=4, hidden=8, steps=2, batch_size=3), use_cache=False
    )
    profile = cemap.LatentCE(clf, fitted).attribute(images[:2])
    assert profile.shape == (2, 4) and torch.isfinite(profile).all()
    ce = cemap.CEMap(clf, cell=8)
    maps = ce.attribute(images[:1], target=1)
    assert maps.shape == (1, 32, 32) and torch.isfinite(maps).all()
    masked = images[:1].clone()
    masked[..., :8, :8] = 0
    with torch.inference_mode():
        drop = clf.predict_proba(images[:1])[0, 1] - clf.predict_proba(masked)[0, 1]
    assert maps[0, 0, 0] == pytest.approx(float(drop), abs=1e-5)


# torchxrayvision ---------------------------------------------------------------------------


@pytest.fixture
def xrv_home(tmp_path, monkeypatch):
    """A temporary HOME, so torchxrayvision's ~/.torchxrayvision/models_data resolves there and the real home is
    untouched."""
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def _random_xrv_densenet():
    import torchxrayvision as xrv

    torch.manual_seed(0)
    net = xrv.models.DenseNet(weights=None, num_classes=18, in_channels=1).eval()
    _randomise_bn(net)
    return net


def test_xrv_densenet_loads_from_where_torchxrayvision_looks(xrv_home):
    from cemap.models.xrv import expected_path

    path = expected_path("densenet121-res224-all")
    assert str(path).startswith(str(xrv_home)) and ".torchxrayvision" in str(path)
    with pytest.raises(CemapError, match=re.escape(str(path))):
        cemap.get_model("xrv-densenet121-res224-all")
    net = _random_xrv_densenet()
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    clf = cemap.get_model("xrv-densenet121-res224-all")
    assert clf.input_shape == (1, 224, 224) and clf.head == "sigmoid" and clf.class_names[0] == "Atelectasis"
    x = torch.rand(1, 1, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(clf(x), net(x * 2048 - 1024), atol=1e-4)  # raw logits: no sigmoid, no op_norm


def test_operating_point_logits_reproduce_xrv_op_norm():
    import torchxrayvision as xrv

    from cemap.models.xrv import OperatingPointLogits

    thresholds = torch.tensor(
        xrv.models.model_urls["nih"]["op_threshs"]
    )  # some are NaN (outputs the model does not predict)
    logits = torch.randn(5, 18) * 4
    expected = xrv.models.op_norm(torch.sigmoid(logits), thresholds)
    expected = torch.where(
        torch.isnan(thresholds), torch.sigmoid(logits), expected
    )  # op_norm leaves 0.5 there; cemap keeps p
    assert torch.allclose(torch.sigmoid(OperatingPointLogits(thresholds)(logits)), expected, atol=1e-5)


def test_xrv_release_file_pickled_module_loads_weights_only(xrv_home):
    from cemap.models.xrv import expected_path

    net = _random_xrv_densenet()
    path = expected_path("densenet121-res224-nih")
    path.parent.mkdir(parents=True)
    torch.save(net, path)  # torchxrayvision's release files are whole pickled modules
    clf = cemap.get_model("xrv-densenet121-res224-nih")
    assert "unused_14" in clf.class_names
    x = torch.rand(1, 1, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(clf(x), net(x * 2048 - 1024), atol=1e-4)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_xrv_refuses_pickles_with_code(xrv_home):
    from cemap.models.xrv import expected_path

    path = expected_path("densenet121-res224-chex")
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "payload": _Exploit()}, path)
    with pytest.raises(CemapError, match="refusing to load"):
        cemap.get_model("xrv-densenet121-res224-chex")
