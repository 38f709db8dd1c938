"""The causal engine: split paths agree, batched sweeps equal one-forward-per-intervention, CE maps equal Captum."""

import pytest
import torch
from captum.attr import Occlusion

import cemap
from cemap.causal import CEMap, FittedAutoencoder, LatentAutoencoder, LatentCE, split_classifier
from cemap.causal.autoencoder import AEConfig
from cemap.errors import CemapError


def _random_ae(clf, layer, code=6, seed=1):
    split = split_classifier(clf, layer)
    with torch.no_grad():
        act, _ = split.activation(torch.rand(1, *clf.input_shape))
    torch.manual_seed(seed)
    ae = LatentAutoencoder(act.shape[1], code=code, hidden=10).eval()
    ae.code_mean.uniform_(0.1, 0.5)
    return FittedAutoencoder(ae, split, AEConfig(code=code, hidden=10))


@pytest.mark.parametrize("layer", ["conv2", "act1"])
def test_fx_and_hook_splits_agree(tiny_clf, layer):
    x = torch.rand(5, 3, 16, 16)
    fx_split = split_classifier(tiny_clf, layer, method="fx")
    hook_split = split_classifier(tiny_clf, layer, method="hooks")
    assert (fx_split.method, hook_split.method) == ("fx", "hooks")
    with torch.no_grad():
        a1, e1 = fx_split.activation(x)
        a2, e2 = hook_split.activation(x)
        assert torch.allclose(a1, a2, atol=1e-5)
        intervened = a1 * 0.5
        assert torch.allclose(fx_split.finish(intervened, e1), hook_split.finish(intervened, e2), atol=1e-5)
        assert torch.allclose(fx_split.finish(a1, e1), tiny_clf(x), atol=1e-5)


def test_split_keeps_residual_values_that_cross_the_cut(tiny_clf):
    # conv2's output is added to act1's output after the cut: act1 must travel as an extra
    split = split_classifier(tiny_clf, "conv2", method="fx")
    _, extras = split.activation(torch.rand(1, 3, 16, 16))
    assert len(extras) == 1


def test_fx_and_hook_latent_profiles_agree(mnist_clf, mnist_test, mnist_ae):
    x = mnist_test.images[:6]
    hooks = FittedAutoencoder(
        mnist_ae.autoencoder, split_classifier(mnist_clf, mnist_ae.layer, method="hooks"), mnist_ae.config
    )
    a = LatentCE(mnist_clf, mnist_ae).attribute(x)
    b = LatentCE(mnist_clf, hooks).attribute(x)
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("value", ["zero", "mean"])
@pytest.mark.parametrize("effect", ["ece", "class"])
def test_batched_latent_profile_equals_one_forward_per_intervention(tiny_clf, value, effect):
    fitted = _random_ae(tiny_clf, "conv2")
    ae = fitted.autoencoder
    x = torch.rand(3, 3, 16, 16)
    latent = LatentCE(tiny_clf, fitted, value=value, chunk_size=4)
    profile = latent.attribute(x, effect=effect)

    layer = tiny_clf.model.get_submodule("conv2")
    state = {}

    def substitute(_m, _i, out):
        z, _ = ae.encode(out)
        if state.get("j") is not None:
            z = z.clone()
            z[:, state["j"]] = 0.0 if value == "zero" else ae.code_mean[state["j"]]
        return ae.decode(z, out)[0]

    handle = layer.register_forward_hook(substitute)
    try:
        with torch.no_grad():
            state["j"] = None
            p = tiny_clf.predict_proba(x)
            expected = []
            for j in range(ae.code_channels):
                state["j"] = j
                q = tiny_clf.predict_proba(x)
                if effect == "ece":
                    expected.append((p * (p - q)).sum(-1))
                else:
                    t = p.argmax(-1)
                    expected.append(p.gather(1, t[:, None])[:, 0] - q.gather(1, t[:, None])[:, 0])
    finally:
        handle.remove()
    assert torch.allclose(profile, torch.stack(expected, 1), atol=1e-5)


def test_masked_profile_masks_before_the_sweep(tiny_clf):
    fitted = _random_ae(tiny_clf, "conv2")
    latent = LatentCE(tiny_clf, fitted)
    x = torch.rand(2, 3, 16, 16)
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[:, 4:10, 4:10] = True
    expected = latent.attribute(torch.where(masks[:, None], torch.zeros_like(x), x))
    assert torch.allclose(latent.attribute_masked(x, masks, fill="zero"), expected, atol=1e-6)


@pytest.mark.parametrize("cell", [4, 7])
def test_ce_map_matches_captum_occlusion(mnist_clf, mnist_test, cell):
    x = mnist_test.images[:3]
    ce = CEMap(mnist_clf, cell=cell, stride=cell, fill="zero")
    ours = ce.attribute(x)
    target = mnist_clf.predict_proba(x).argmax(-1)
    occ = Occlusion(lambda inp: mnist_clf.predict_proba(inp))
    theirs = occ.attribute(
        x,
        sliding_window_shapes=(1, cell, cell),
        strides=(1, cell, cell),
        baselines=0.0,
        target=target,
        perturbations_per_eval=16,
    )
    assert torch.allclose(ours, theirs[:, 0], atol=1e-5)


def test_ce_map_paints_overlapping_cells_as_mean(tiny_clf):
    x = torch.rand(2, 3, 16, 16)
    ce = CEMap(tiny_clf, cell=8, stride=4, fill="mean", chunk_size=5)
    effects, targets = ce.effects_for_masks(x, ce.masks)
    maps = ce.attribute(x, target=targets)
    # pixel (5, 5) is covered by cells starting at 0 and 4 in both axes: 4 cells
    covering = ce.masks[:, 5, 5]
    assert covering.sum() == 4
    assert torch.allclose(maps[:, 5, 5], effects[:, covering].mean(1), atol=1e-6)
    assert ce.forward_passes_per_image == ce.masks.shape[0] + 1


def test_ce_map_multilabel_target_uses_that_finding(tiny_clf):
    sig = cemap.Classifier(
        tiny_clf.model, class_names=list("abcd"), head="sigmoid", input_shape=(3, 16, 16), name="tiny-sig"
    )
    x = torch.rand(1, 3, 16, 16)
    m2 = CEMap(sig, cell=8, fill="zero").attribute(x, target=2)
    p = sig.predict_proba(x)
    masked = x.clone()
    masked[:, :, :8, :8] = 0
    expected = p[0, 2] - sig.predict_proba(masked)[0, 2]
    assert torch.allclose(m2[0, 0, 0], expected, atol=1e-6)


def test_ce_map_of_a_repeated_image_is_computed_once_and_equals_its_own(tiny_clf):
    """Pairs that share an image (one per finding) are masked once; each still gets its own target's map."""
    x = torch.rand(2, 3, 16, 16)
    batch = torch.stack([x[0], x[1], x[0], x[0]])
    targets = torch.tensor([0, 1, 2, 0])
    ce = CEMap(tiny_clf, cell=8, stride=4, fill="mean")
    calls = []
    original = ce.masked_probabilities
    ce.masked_probabilities = lambda images, masks: calls.append(len(images)) or original(images, masks)
    maps = ce.attribute(batch, targets)
    assert calls == [2]
    for i in range(4):
        alone = CEMap(tiny_clf, cell=8, stride=4, fill="mean").attribute(batch[i : i + 1], targets[i : i + 1])
        assert torch.allclose(maps[i], alone[0], atol=1e-6)


def test_bad_inputs_are_clear_errors(tiny_clf, mnist_clf):
    with pytest.raises(CemapError, match="mnist5k"):
        cemap.get_dataset("nope")
    with pytest.raises(CemapError, match="mnist-cnn"):
        cemap.get_model("nope")
    with pytest.raises(CemapError, match="relu1"):
        split_classifier(mnist_clf, "no.such.layer")
    with pytest.raises(CemapError, match="shape"):
        CEMap(mnist_clf).attribute(torch.rand(2, 3, 28, 28))
    with pytest.raises(CemapError, match="NaN"):
        CEMap(mnist_clf).attribute(torch.full((1, 1, 28, 28), float("nan")))
    with pytest.raises(CemapError, match="larger than the image"):
        CEMap(mnist_clf, cell=40)
    with pytest.raises(CemapError, match="outside"):
        CEMap(mnist_clf).attribute(torch.rand(1, 1, 28, 28) * 255)
    with pytest.raises(CemapError, match="fill"):
        CEMap(tiny_clf, fill="purple").attribute(torch.rand(1, 3, 16, 16))
