"""The GPU path: CE maps (windows and full passes), fills and the bench's peak on a CUDA device. Each test skips,
saying why, where no GPU is visible; the no-GPU errors are tested here too."""

from __future__ import annotations

import pytest
import torch
import torchvision

from cemap.causal import CEMap
from cemap.causal.adaptive import AdaptiveCEMap
from cemap.causal.masks import fill_images
from cemap.cli import main
from cemap.models.classifier import Classifier, Normalize

NO_GPU = (
    "no CUDA device visible (torch.cuda.is_available() is False): the GPU path is tested by scripts/gpu_check.sh "
    "on a GPU machine"
)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)


def _densenet(size: int = 64) -> Classifier:
    torch.manual_seed(0)
    net = torchvision.models.densenet121(weights=None, num_classes=4).eval()
    return Classifier(
        net, list("abcd"), head="sigmoid", input_shape=(3, size, size), preprocess=Normalize([0.5] * 3, [0.25] * 3)
    )


@cuda
@pytest.mark.parametrize("fill", ["zero", "mean", "blur"])
def test_ce_maps_on_the_gpu_equal_the_cpu_ones(fill):
    clf = _densenet()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    cpu = CEMap(clf, cell=16, fill=fill, incremental=False).attribute(images)
    gpu_clf = _densenet().cuda()
    fast, slow = CEMap(gpu_clf, cell=16, fill=fill), CEMap(gpu_clf, cell=16, fill=fill, incremental=False)
    flags = torch.backends.cudnn
    with flags.flags(
        enabled=True, benchmark=flags.benchmark, deterministic=flags.deterministic, allow_tf32=False
    ):  # TF32 alone moves 1e-4
        a, b = fast.attribute(images.cuda()), slow.attribute(images.cuda())
    assert a.device.type == "cuda" and (a - b).abs().max() <= 1e-5 and (b.cpu() - cpu).abs().max() <= 1e-5


@cuda
def test_bf16_and_adaptive_maps_run_on_the_gpu():
    clf = _densenet().cuda()
    images = torch.rand(2, 3, 64, 64, device="cuda")
    fp32 = CEMap(clf, cell=16).attribute(images)
    assert (CEMap(clf, cell=16, precision="bf16").attribute(images) - fp32).abs().max() < 0.05
    assert AdaptiveCEMap(clf, cell=16, precision="bf16").attribute(images).shape == (2, 64, 64)


@cuda
def test_fills_stay_on_the_device():
    images = torch.rand(2, 3, 32, 32, device="cuda")
    for fill in ("zero", "max", "mean", "blur", 0.3):
        assert fill_images(images, fill).device == images.device


@cuda
def test_the_bench_peak_is_measured_on_the_gpu(monkeypatch):
    import cemap.studies.bench.timing as timing

    monkeypatch.setattr(timing, "PEAK_GEMMS", ((1024, 1024, 1024),))
    monkeypatch.setattr(timing, "PEAK_CONVS", ((8, 64, 64, 56, 3),))
    peak = timing.measured_peak(torch.bfloat16, repeats=2, device="cuda")
    assert peak["gflops"] > 0 and len(peak["trials"]) == 2


@cuda
def test_the_autoencoder_trains_and_intervenes_where_the_classifier_runs():
    """``cemap run --device cuda`` fits the autoencoder with the classifier on the GPU and CPU-side images."""
    from cemap.causal import AEConfig, fidelity, fit_autoencoder
    from cemap.causal.latent import LatentCE

    images = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    cfg = AEConfig(steps=20, batch_size=4)
    profiles = {}
    for device in ("cpu", "cuda"):
        clf = _densenet().to(device)
        fitted = fit_autoencoder(clf, images, layer="features.denseblock2", config=cfg, use_cache=False)
        assert next(fitted.autoencoder.parameters()).device.type == device
        assert 0 <= fidelity(clf, fitted, images).agreement <= 1
        profiles[device] = LatentCE(clf, fitted).attribute(images.to(device)).cpu()
    assert (
        profiles["cuda"] - profiles["cpu"]
    ).abs().max() < 0.05  # 20 steps of Adam on two devices: close, not identical


@cuda
@pytest.mark.parametrize("method", ["ce-ms", "gradcam", "integrated-gradients", "occlusion", "rise", "kernelshap"])
def test_explainers_drive_a_gpu_classifier_from_cpu_images(method):
    """The benchmark keeps images, maps and metrics on the CPU while the network runs on the GPU."""
    from cemap.explain import get_explainer

    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    options = {"rise": {"n_masks": 64}, "kernelshap": {"n_samples": 32}, "integrated-gradients": {"n_steps": 8}}.get(
        method, {}
    )
    cpu = get_explainer(method, _densenet(), **options).attribute(images, 1)
    gpu = get_explainer(method, _densenet().cuda(), **options).attribute(images, 1)
    assert gpu.device.type == "cpu" and gpu.shape == cpu.shape
    assert torch.corrcoef(torch.stack([gpu.flatten(), cpu.flatten()]))[0, 1] > 0.99


@cuda
def test_randomised_copies_are_the_same_network_on_every_device():
    from cemap.evaluate.sanity import randomised_blocks

    blocks = ["features.denseblock4"]
    on_cpu = randomised_blocks(_densenet(), blocks, torch.Generator().manual_seed(0))
    on_gpu = randomised_blocks(_densenet().cuda(), blocks, torch.Generator().manual_seed(0))
    assert on_gpu.device.type == "cuda"
    for (name, a), b in zip(on_cpu.state_dict().items(), on_gpu.state_dict().values()):
        assert torch.equal(a, b.cpu()), name


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible: the no-GPU error cannot be shown here")
@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--quick"],
        ["run", "--dataset", "mnist5k", "--limit", "1", "--out", "{tmp}/run"],
        ["predict", "{tmp}", "--model", "mnist-cnn"],
        ["explain", "{tmp}", "--model", "mnist-cnn"],
        ["evaluate", "--dataset", "mnist5k"],
        ["evaluate", "--dataset", "synthcxr", "--benchmark"],
        ["detect", "--dataset", "mnist5k"],
        ["demo", "--quick"],
    ],
)
def test_commands_asked_for_cuda_without_a_gpu_fail_with_one_line(argv, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--device", "cuda"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA" in err[0], err


@cuda
def test_pgd_steps_replayed_from_cuda_graphs_equal_eager_steps():
    from cemap.attacks import PGD

    clf = _densenet().cuda()
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(4)).cuda()
    graphed = PGD(clf, eps=4 / 255, steps=3, random_start=False)
    eager = PGD(clf, eps=4 / 255, steps=3, random_start=False, cuda_graphs=False)
    a, b = graphed(images), eager(images)
    assert graphed._graphed is not None and eager._graphed is None
    same = (a.adversarial - b.adversarial).abs().flatten(1).amax(1) <= 1e-6
    # the same kernels, but cuDNN's backward sums with atomics: a gradient within rounding of zero may flip a sign
    # (on an H200 two replays differed in a few pixels by one step, as two eager runs do)
    assert same.float().mean() >= 2 / 3


@cuda
def test_the_gpu_plan_is_measured_and_agrees_with_full_passes():
    clf = _densenet().cuda()
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(5)).cuda()
    planned = CEMap(clf, cell=16)
    full = CEMap(clf, cell=16, incremental=False, chunk_size=8)
    assert (planned.attribute(images) - full.attribute(images)).abs().max() <= 1e-4
    [plan] = planned.plans()
    assert plan["source"].startswith("measured on") and plan["name"] in plan["seconds_per_image"]


@cuda
def test_latent_profiles_take_cpu_images_on_a_gpu_classifier():
    from cemap.causal.autoencoder import AEConfig, fit_autoencoder
    from cemap.causal.latent import LatentCE

    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    clf = _densenet().cuda()
    fitted = fit_autoencoder(
        clf, images, layer="features.denseblock2", config=AEConfig(steps=5, batch_size=4), use_cache=False
    )
    latent = LatentCE(clf, fitted)
    on_cpu_images, on_gpu_images = latent.attribute(images), latent.attribute(images.cuda())
    assert on_cpu_images.device.type == "cpu" and on_gpu_images.device.type == "cuda"
    assert (on_cpu_images - on_gpu_images.cpu()).abs().max() <= 1e-5
    assert LatentCE(clf, fitted, precision="bf16").attribute(images).shape == (4, 16)


@cuda
def test_concept_codes_of_cpu_images_with_a_gpu_autoencoder():
    """The demo's concept table encodes CPU images through a GPU classifier and autoencoder (it once failed there)."""
    from cemap.causal.autoencoder import AEConfig, fit_autoencoder
    from cemap.causal.concepts import channel_codes

    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    clf = _densenet().cuda()
    fitted = fit_autoencoder(
        clf, images, layer="features.denseblock2", config=AEConfig(steps=5, batch_size=4), use_cache=False
    )
    codes = channel_codes(clf, fitted, images, batch_size=2)
    assert codes.device.type == "cpu" and codes.shape[:2] == (4, fitted.autoencoder.code_channels)


@cuda
def test_compiled_maps_equal_eager_ones():
    clf = _densenet(32).cuda()
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(8)).cuda()
    eager, compiled = CEMap(clf, cell=8, incremental=False), CEMap(clf, cell=8, incremental=False, compiled=True)
    assert (eager.attribute(images) - compiled.attribute(images)).abs().max() <= 1e-4
