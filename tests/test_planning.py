"""The chunk planner: the CPU keeps its measured rules; on a GPU the first map of a (classifier, masks, precision) times
the candidates and keeps the fastest. Here the GPU branch is simulated on the CPU (the device check is patched), so its
decisions - candidates, cache, memory cap, equal numbers - are tested without a GPU."""

from __future__ import annotations

import torch

import cemap.causal.cemap_map as cemap_map
import cemap.causal.planning as planning
from cemap.causal import CEMap
from cemap.causal.planning import MaskPlan, PlanCache, cpu_plan, workload_bucket


def test_the_cpu_keeps_its_rules(mnist_clf):
    images = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    ce = CEMap(mnist_clf)
    fills = torch.zeros_like(images)
    owner, which = torch.arange(2).repeat_interleave(50), torch.arange(50).repeat(2) % ce.masks.shape[0]
    plan = ce.plan(images, owner, ce.masks, which, fills)
    assert plan.source == "cpu rules" and plan.windows  # mnist-cnn is all local layers: windows pay on the CPU
    assert plan.chunk == cemap_map.INCREMENTAL_CHUNKS * ce.chunk_size
    assert CEMap(mnist_clf, chunk_size=5).plan(images, owner, ce.masks, which, fills).source == "given"


def test_the_gpu_planner_times_every_candidate_and_keeps_the_fastest(monkeypatch, tiny_clf):
    monkeypatch.setattr(cemap_map, "on_gpu", lambda device: True)  # the GPU branch, on the CPU
    monkeypatch.setattr(cemap_map, "PLANS", PlanCache())
    timed: list[list[str]] = []
    real_measure = planning.measure

    def spy(candidates, device, repeats=2):
        timed.append(sorted(candidates))
        return real_measure(candidates, device, repeats)

    monkeypatch.setattr(cemap_map, "measure", spy)
    images = torch.rand(3, *tiny_clf.input_shape, generator=torch.Generator().manual_seed(1))
    ce = CEMap(tiny_clf, cell=8)
    expected = CEMap(tiny_clf, cell=8, incremental=False, chunk_size=7).attribute(images)  # the CPU rule, full passes
    got = ce.attribute(images)
    assert (got - expected).abs().max() < 1e-5
    assert (
        len(timed) == 1
        and any(name.startswith("full/nchw/") for name in timed[0])
        and any(name.startswith("full/nhwc/") for name in timed[0])
    )
    [plan] = ce.plans()
    assert plan["source"].startswith("measured on") and plan["name"] in plan["seconds_per_image"]
    assert plan["seconds_per_image"][plan["name"]] == min(plan["seconds_per_image"].values())
    ce.attribute(images)  # the same workload again: the plan is reused, nothing is timed
    CEMap(tiny_clf, cell=8).attribute(images)  # a new map of the same classifier shares the plan
    assert len(timed) == 1


def test_a_plan_never_exceeds_the_memory_cap(monkeypatch, tiny_clf):
    monkeypatch.setattr(cemap_map, "on_gpu", lambda device: True)
    monkeypatch.setattr(cemap_map, "PLANS", PlanCache())
    monkeypatch.setattr(cemap_map, "memory_cap", lambda bytes_per_image, device: 16)
    images = torch.rand(4, *tiny_clf.input_shape, generator=torch.Generator().manual_seed(2))
    ce = CEMap(tiny_clf, cell=8)
    ce.attribute(images)
    [plan] = ce.plans()
    assert plan["chunk"] <= 16 * (planning.GPU_WINDOW_FACTOR if plan["windows"] else 1)


def test_maps_that_keep_gradients_use_small_chunks(monkeypatch, tiny_clf):
    monkeypatch.setattr(cemap_map, "on_gpu", lambda device: True)
    images = torch.rand(1, *tiny_clf.input_shape, requires_grad=True)
    ce = CEMap(tiny_clf, cell=8, incremental=False)
    with torch.enable_grad():
        plan = ce.plan(images, torch.zeros(3, dtype=torch.long), ce.masks, torch.arange(3), torch.zeros_like(images))
    assert plan.source == "gradients" and not plan.windows


def test_out_of_memory_candidates_lose(monkeypatch):
    def boom():
        raise torch.cuda.OutOfMemoryError("simulated")

    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    seconds = planning.measure({"fits": lambda: None, "too_big": boom}, "cpu")
    assert seconds["too_big"] == float("inf") and seconds["fits"] < float("inf")


def test_plan_names_buckets_and_cpu_rules():
    assert MaskPlan(512, False, True, "x").name == "full/nhwc/512"
    assert [workload_bucket(n) for n in (1, 50, 64, 65, 10_000)] == [1, 64, 64, 128, 4096]
    assert (
        cpu_plan((3, 224, 224), "fp32", False, None).chunk == 8
        and cpu_plan((3, 224, 224), "bf16", False, None).chunk == 16
    )


def test_activation_bytes_on_the_cpu_is_the_sum_of_the_outputs(tiny_clf):
    image = torch.rand(1, *tiny_clf.input_shape)
    estimate = planning.activation_bytes(tiny_clf.predict_proba, list(tiny_clf.modules()), image)
    assert estimate >= image.numel() * 4


def test_distinct_images_finds_repeats_exactly():
    from cemap.causal.cemap_map import distinct_images

    a, b = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    distinct, inverse = distinct_images(torch.stack([a, b, a]))
    assert len(distinct) == 2 and torch.equal(distinct[inverse], torch.stack([a, b, a]))
    same, index = distinct_images(torch.stack([a, b]))
    assert same.shape[0] == 2 and index.tolist() == [0, 1]


def test_compiled_maps_pad_every_chunk_to_one_shape(monkeypatch, tiny_clf):
    """torch.compile is replaced by the network itself: what is tested is that every pass sees the plan's chunk size
    (one compiled shape) and that the padding changes no number."""
    import cemap.causal.compiled as compiled

    monkeypatch.setattr(cemap_map, "on_gpu", lambda device: True)
    monkeypatch.setattr(compiled, "on_gpu", lambda device: True)  # both modules ask
    monkeypatch.setattr(cemap_map, "PLANS", PlanCache())
    monkeypatch.setattr(compiled, "_COMPILED", {})
    monkeypatch.setattr(
        cemap_map, "memory_cap", lambda bytes_per_image, device: 4
    )  # chunks of 4: the last one is padded
    rows: list[int] = []

    def fake_compile(network, dynamic):
        assert dynamic is False
        return lambda x: (rows.append(x.shape[0]), network(x))[1]

    monkeypatch.setattr(compiled.torch, "compile", fake_compile)
    images = torch.rand(3, *tiny_clf.input_shape, generator=torch.Generator().manual_seed(4))
    ce = CEMap(tiny_clf, cell=8, incremental=False, compiled=True)
    got = ce.attribute(images)
    [plan] = ce.plans()
    assert plan["chunk"] == 4 and (3 * ce.forward_passes_per_image) % 4 and rows and set(rows) == {4}
    assert (got - CEMap(tiny_clf, cell=8, incremental=False, chunk_size=7).attribute(images)).abs().max() < 1e-5


def test_compiled_maps_on_the_cpu_are_one_line(tiny_clf):
    import pytest

    from cemap.errors import CemapError

    with pytest.raises(CemapError, match="GPU only"):
        CEMap(tiny_clf, cell=8, compiled=True).attribute(torch.rand(1, *tiny_clf.input_shape))
