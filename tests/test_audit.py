"""The reliance audit: it ranks a planted tag first on a tiny model made to use it; the CLI writes its JSON and report
section."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cemap.causal.masks import box_mask
from cemap.data import get_dataset
from cemap.data.synthcxr import FINDINGS, marker_box
from cemap.models import Classifier
from cemap.models.cxr_cnn import CAM_LAYER, DEFAULT_LAYER, CxrCNN, layer_names
from cemap.models.training import fit_classifier, seeded_init
from cemap.report.reliance import reliance_section
from cemap.studies.audit import AuditConfig, run_audit
from cemap.studies.context import StudyContext

from cli_helpers import run_cli

DATA = {"artifact": "tag", "size": 64, "n_train": 600, "n_test": 300, "seed": 5}


@pytest.fixture(scope="module")
def tag_model(tmp_path_factory):
    """A cxr-cnn trained for seconds on 600 synthcxr images where the corner tag marks every Nodule and nothing else."""
    train = get_dataset("synthcxr-planted", split="train", mode="spurious", given_target=1.0, given_other=0.0, **DATA)
    net = fit_classifier(
        seeded_init(lambda: CxrCNN(len(FINDINGS)), 0), train, multilabel=True, epochs=3, lr=3e-3, batch_size=32, seed=0
    )
    weights = tmp_path_factory.mktemp("tag-model") / "tag.pt"
    torch.save(net.state_dict(), weights)
    clf = Classifier(
        net,
        class_names=FINDINGS,
        head="sigmoid",
        input_shape=(1, 64, 64),
        layers=layer_names(net),
        default_layer=DEFAULT_LAYER,
        cam_layer=CAM_LAYER,
        name="tiny-tag",
    )
    return clf, weights


def _context(clf) -> StudyContext:
    ctx = StudyContext(
        dataset="synthcxr-planted", out="unused", model="cxr-cnn-planted", dataset_options={**DATA, "mode": "normal"}
    )
    ctx.classifier = clf
    return ctx


def test_the_audit_ranks_a_planted_tag_first_on_a_model_made_to_use_it(tag_model):
    clf, _ = tag_model
    result = run_audit(_context(clf), AuditConfig.quick_form(sensitivity=False, latent=False))
    top = result.reliance[0]
    assert top.family == "region" and top.finding == "Nodule", top
    from cemap.causal.regions import region_set

    regions = region_set(64, 64)
    mask = regions.masks[regions.names.index(top.name)]
    tag = box_mask(64, 64, torch.from_numpy(marker_box(64)))
    assert (mask & tag).sum() == tag.sum(), f"{top.name} does not hold the tag"
    assert top.footprint <= 1 / 16  # the smallest region that carries the effect, not a quadrant or the border band
    assert top.carried.low > 0.02 and result.concern_transfer.finding == "Nodule"
    doc = json.loads(json.dumps(result.to_json()))
    assert doc["reliance"][0]["name"] == top.name and doc["headline"][0]["claim"].startswith("The audit")


def test_known_candidates_measure_the_named_region_and_transform(tag_model, tmp_path):
    clf, _ = tag_model
    mask = np.zeros((64, 64), dtype=np.uint8)
    x0, y0, x1, y1 = (int(v) for v in marker_box(64))
    mask[y0:y1, x0:x1] = 1
    np.save(tmp_path / "tag.npy", mask)
    cfg = AuditConfig.quick_form(
        sensitivity=False,
        latent=False,
        n_images=64,
        recipients=8,
        donors=2,
        known=(str(tmp_path / "tag.npy"), "planted", "contrast 1.0"),
    )
    known = {e.name: e for e in run_audit(_context(clf), cfg).known}
    assert known["planted tag"].finding == "Nodule" and known["planted tag"].effect.low > 0.05
    assert (
        known["mask tag.npy"].effect.low > 0.02
    )  # swapping the tag's box with another image's removes or adds the tag
    assert known["contrast 1"].effect.estimate < 1e-6  # an identity transform changes nothing


def test_reliance_section_renders_a_minimal_result():
    html = reliance_section(
        {
            "model": "m",
            "dataset": "d",
            "n_images": 0,
            "flagged": False,
            "threshold": 0.1,
            "headline": [{"claim": "x < y"}],
            "reliance": [],
            "sensitivity": [],
            "latent": None,
            "known": [],
        }
    )
    assert "What this model relies on" in html and "x &lt; y" in html and "not flagged" in html


def test_cemap_audit_quick_writes_json_and_the_report_section(tag_model, tmp_path, capsys):
    _, weights = tag_model
    out = tmp_path / "audit"
    code, stdout, err = run_cli(
        [
            "audit",
            "--quick",
            "--no-latent",
            "--n-images",
            "120",
            "--model-opt",
            f"weights={weights}",
            *[a for k, v in DATA.items() for a in ("--data-opt", f"{k}={v}")],
            "--data-opt",
            "mode=normal",
            "--out",
            out,
            "--threads",
            "1",
        ],
        capsys,
    )
    assert code == 0, err
    doc = json.loads((out / "audit.json").read_text())
    assert doc["reliance"][0]["finding"] == "Nodule" and doc["sensitivity"] and doc["config"]["quick"]
    page = (out / "reliance.html").read_text()
    assert "What this model relies on" in page and "data:image/png;base64" in page
    assert stdout.startswith("* The audit")


@pytest.mark.slow
def test_the_full_audit_with_latent_channels_and_the_sensitivity_battery(tag_model):
    clf, _ = tag_model
    result = run_audit(_context(clf), AuditConfig(n_images=200, ae_steps=200))
    doc = result.to_json()
    assert len(doc["latent"]["channels"]) == 16 and "agreement" in doc["latent"]["fidelity"]
    assert any(e["family"] == "exchange" for e in doc["sensitivity"]) and doc["regions"]["cell_map"]
    assert any(c["claim"].startswith(("1 of", "2 of")) or "latent channels" in c["claim"] for c in doc["headline"])
