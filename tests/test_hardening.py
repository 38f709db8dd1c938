"""Issue 18: a damaged cache, a second process, a full disk and a typo never cost a wrong result or a traceback.

Every test here is fast (no training of the built-in models): damaged cache entries are made
from tiny networks in a temporary CEMAP_CACHE, never in the shared one.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cemap.causal import AEConfig, Fidelity, fit_autoencoder
from cemap.errors import CemapError

from cli_helpers import one_line_error, run_cli


one_line_error = functools.partial(one_line_error, warnings_allowed=True)


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("CEMAP_CACHE", str(root))
    return root


def flip_middle(path: Path, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for i in range(mid, mid + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 3))


# --- cache entries verify themselves ------------------------------------------------------------


def _cached(calls):
    from cemap.models.training import cached_weights

    def train(net):
        calls.append(1)
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.arange(p.numel(), dtype=torch.float32).reshape(p.shape) / p.numel())
        return net

    return cached_weights("tiny", {"epochs": 1}, small_net(), train)


@pytest.mark.parametrize("damage", ["flip", "zero", "half"])
def test_damaged_model_entry_is_moved_aside_and_rebuilt(own_cache, damage, capsys):
    calls = []
    first = {k: v.clone() for k, v in _cached(calls).state_dict().items()}
    (path,) = (own_cache / "models").glob("tiny-*.pt")
    if damage == "flip":
        flip_middle(path)
    elif damage == "zero":
        path.write_bytes(b"")
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    again = _cached(calls).state_dict()
    assert len(calls) == 2  # rebuilt, not used
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert path.with_name(path.name + ".damaged").exists()
    err = capsys.readouterr().err
    assert str(path) in err and "moved aside" in err
    _cached(calls)  # the rebuilt entry is used
    assert len(calls) == 2


def test_intact_entry_is_used(own_cache):
    calls = []
    _cached(calls)
    _cached(calls)
    assert len(calls) == 1


def test_weights_of_another_training_recipe_are_not_reused(own_cache, monkeypatch):
    import cemap.models.training as training

    calls = []
    _cached(calls)
    monkeypatch.setattr(training, "TRAINING_RECIPE", training.TRAINING_RECIPE + 1)
    _cached(calls)  # what an earlier version trained is another entry: trained again
    _cached(calls)
    assert len(calls) == 2 and len(list((own_cache / "models").glob("tiny-*.pt"))) == 2


def test_load_weights_names_a_damaged_file(tmp_path):
    from cemap.cache import load_weights

    path = tmp_path / "w.pt"
    torch.save({"state_dict": small_net().state_dict()}, path)
    flip_middle(path)
    with pytest.raises(CemapError, match="checksum mismatch") as info:
        load_weights(path)
    assert str(path) in str(info.value) and "delete" in str(info.value)
    path.write_bytes(b"")
    with pytest.raises(CemapError, match="empty"):
        load_weights(path)


def test_damaged_autoencoder_entry_is_retrained(own_cache, tiny_clf, capsys):
    from cemap.causal import fit_autoencoder
    from cemap.causal.autoencoder import AEConfig

    images = torch.rand(24, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    cfg = AEConfig(steps=5, batch_size=8)
    first = fit_autoencoder(tiny_clf, images, config=cfg).autoencoder.state_dict()
    (path,) = (own_cache / "autoencoders").glob("*.pt")
    flip_middle(path, 16)
    again = fit_autoencoder(tiny_clf, images, config=cfg).autoencoder.state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert "moved aside" in capsys.readouterr().err


# --- a full disk ------------------------------------------------------------------------------------


def test_full_disk_while_saving_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    from cemap import cache

    def no_space(obj, f, *a, **k):
        Path(f).write_bytes(b"PK")
        raise OSError(errno.ENOSPC, "No space left on device", str(f))

    monkeypatch.setattr(cache.torch, "save", no_space)
    with pytest.raises(CemapError, match="no space left") as info:
        cache.save_atomic({"a": 1}, tmp_path / "entry.pt")
    assert "entry.pt" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_full_disk_anywhere_is_one_line_from_the_cli(monkeypatch, capsys, tmp_path):
    def boom():
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/x/shard.npz")
        except OSError as exc:
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos") from exc

    monkeypatch.setattr("cemap.models.list_models", boom)
    code, _, err = run_cli(["models"], capsys)
    one_line_error(code, err, "no space left", "/x/shard.npz")


# --- the fidelity check looks at the autoencoder itself ----------------------------------------------


def test_fidelity_refuses_an_autoencoder_that_ignores_its_input(tiny_clf):
    from cemap.causal import AEConfig, FittedAutoencoder, LatentAutoencoder, fidelity
    from cemap.causal.split import split_classifier

    split = split_classifier(tiny_clf, "conv2")
    ae = LatentAutoencoder(8, 4, 8)
    with torch.no_grad():  # one code for every image: the reconstruction is the same for every image
        ae.enc1.weight.zero_()
        ae.enc2.weight.zero_()
        ae.enc2.bias.fill_(0.5)
        for m in (tiny_clf.model.fc,):  # outputs that barely vary: output agreement alone would say "ok"
            m.weight.mul_(1e-4)
    images = torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    fid = fidelity(tiny_clf, FittedAutoencoder(ae.eval(), split, AEConfig(code=4, hidden=8)), images)
    assert fid.agreement == 1.0 and fid.mean_kl < 0.05
    assert not fid.ok and fid.as_dict()["ok"] is False
    assert any("same for every image" in p for p in fid.problems)
    assert fid.recon_correlation == 0.0 and any("does not follow" in p for p in fid.problems)


def test_low_fidelity_is_a_coloured_warning(capsys):
    from cemap.commands.common import warn_fidelity

    warn_fidelity({"agreement": 1.0, "mean_kl": 0.0, "ok": False, "problems": ["the code is the same for every image"]})
    err = capsys.readouterr().err
    assert err.startswith("warning: low autoencoder fidelity") and "same for every image" in err
    warn_fidelity({"agreement": 1.0, "mean_kl": 0.0, "ok": True})
    assert capsys.readouterr().err == ""


# --- one run folder, one writer ---------------------------------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from cemap.runner.layout import RunLayout, RunLock
lock = RunLock(RunLayout(Path(sys.argv[1])))
lock.acquire()
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def holder(tmp_path):
    """A second process that holds the run folder's lock (as a run in progress does)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out), "60"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield out, proc
    proc.kill()
    proc.wait()


def test_a_second_process_is_refused_with_the_holders_pid(holder):
    from cemap.runner.layout import RunLayout, RunLock

    out, proc = holder
    with pytest.raises(CemapError, match=f"PID {proc.pid}"):
        RunLock(RunLayout(out)).acquire()
    proc.kill()
    proc.wait()
    with RunLock(RunLayout(out)):  # the kernel released the dead holder's lock
        pass


@pytest.fixture
def folder3(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for c in ("cat", "dog", "bird"):
        (root / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray((rng.random((12, 12, 3)) * 255).astype(np.uint8)).save(root / c / f"{i}.png")
    (root / "dog" / "broken.png").write_bytes(b"not an image")
    return root


def small_run(folder, out, *extra):
    return [
        "run",
        "--dataset",
        "imagefolder",
        "--model",
        "resnet18",
        "--model-opt",
        "weights=random",
        "--model-opt",
        "num_classes=3",
        "--model-opt",
        "size=32",
        "--data-opt",
        f"root={folder}",
        "--data-opt",
        "size=32",
        "--out",
        out,
        "--quiet",
        *extra,
    ]


def test_concurrent_resume_is_refused_and_deletes_nothing(holder, folder3, capsys):
    out, proc = holder
    (out / "shards").mkdir()
    theirs = out / "shards" / f"shard-000000.npz.tmp-{proc.pid}"
    theirs.write_bytes(b"half written by the other process")
    code, _, err = run_cli(small_run(folder3, out, "--resume"), capsys)
    one_line_error(code, err, "in use by another cemap run", f"PID {proc.pid}")
    assert theirs.exists()


def test_discard_partial_keeps_a_live_writers_file(tmp_path):
    from cemap.runner.layout import RunLayout

    layout = RunLayout(tmp_path)
    layout.shard_dir.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        dead = layout.shard_dir / "shard-000001.parquet.tmp-999999999"
        alive = layout.shard_dir / f"shard-000002.parquet.tmp-{live.pid}"
        for p in (dead, alive):
            p.write_bytes(b"x")
        assert layout.discard_partial() == [dead]
        assert alive.exists() and not dead.exists()
    finally:
        live.kill()
        live.wait()


def test_full_disk_while_committing_a_shard_is_one_line(tmp_path, monkeypatch):
    from cemap.runner import layout as layout_mod
    from cemap.runner.layout import RunLayout, atomic_open

    layout = RunLayout(tmp_path)

    def no_space(fh, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", no_space)
    with pytest.raises(CemapError, match="no space left") as info:
        with atomic_open(layout.root / "x.npz") as fh:
            np.savez_compressed(fh, a=np.zeros(3))
    assert "x.npz" in str(info.value)
    assert list(tmp_path.iterdir()) == []
    assert layout_mod.TMP_MARK


# --- validation before any work starts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--weights", "w.pt"], ["--model-opt weights=w.pt"]),
        (["--data-opt", "colour=1"], ["no option 'colour'", "root, size"]),
        (["--model-opt", "wieghts=x"], ["no option 'wieghts'"]),
        (["--layer", "layer9"], ["unknown layer 'layer9'", "layer3"]),
        (["--methods", "gradcan"], ["unknown method 'gradcan'"]),
        (["--attacks", "pgdd"], ["unknown attack 'pgdd'"]),
        (["--value", "half"], ["--value"]),
        (["--ae-dataset", "mnist"], ["unknown dataset 'mnist'"]),
        (["--fill", "purple"], ["unknown fill 'purple'"]),
        (["--fill", "7"], ["unknown fill 7", "[0, 1]"]),
        (["--cell", "0"], ["cell size 0", "must be positive"]),
        (["--stride", "0"], ["stride 0", "must be positive"]),
        (["--data-opt", "size=-1"], ["image size -1", "positive"]),
        (["--threads", "-1"], ["--threads -1"]),
    ],
)
def test_run_mistakes_are_refused_before_any_work_and_leave_no_folder(folder3, tmp_path, extra, words, capsys):
    out = tmp_path / "new" / "run"
    code, _, err = run_cli(small_run(folder3, out, *extra), capsys)
    one_line_error(code, err, *words)
    assert not (tmp_path / "new").exists()


def test_run_without_model_on_a_dataset_without_a_builtin_one(folder3, tmp_path, capsys):
    code, _, err = run_cli(
        ["run", "--dataset", "imagefolder", "--data-opt", f"root={folder3}", "--out", tmp_path / "o"], capsys
    )
    one_line_error(code, err, "has no built-in model", "--model")


def test_thousand_class_weights_on_a_three_class_folder_are_refused(folder3, tmp_path, capsys):
    args = small_run(folder3, tmp_path / "o")
    i = args.index("num_classes=3")
    del args[i - 1 : i + 1]
    code, _, err = run_cli(args, capsys)
    one_line_error(code, err, "1000 outputs", "3 classes", "bird, cat, dog")
    assert not (tmp_path / "o").exists()


def test_class_names_option_is_a_list(folder3):
    from cemap.commands.parsing import checked_options, options
    from cemap.data.registry import dataset_factory

    opts = checked_options(
        "dataset",
        "imagefolder",
        dataset_factory("imagefolder"),
        options([f"root={folder3}", "class_names=a,b,c"], "--data-opt"),
    )
    assert opts["class_names"] == ["a", "b", "c"]
    rel = checked_options(
        "dataset",
        "imagefolder",
        dataset_factory("imagefolder"),
        options([f"root={os.path.relpath(folder3)}"], "--data-opt"),
    )
    assert rel["root"] == str(folder3.resolve())


# --- damaged data, weights and typos on the other commands ------------------------------------------------


def test_damaged_synthcxr_cache_is_regenerated(own_cache, monkeypatch, capsys):
    from cemap.data import synthcxr

    made = []

    def generate(cfg, split):
        made.append(split)
        return {
            k: np.arange(6)
            for k in ("images", "labels", "box_image", "box_label", "boxes", "lung_bits", "has_shortcut")
        }

    monkeypatch.setattr(synthcxr, "generate", generate)
    cfg = synthcxr.SynthCXRConfig(n_train=8, n_test=6)
    first = synthcxr.load_or_generate(cfg, "test")
    (path,) = (own_cache / "synthcxr").glob("test-*.npz")
    path.write_bytes(path.read_bytes()[:100])  # half a file
    again = synthcxr.load_or_generate(cfg, "test")
    assert made == ["test", "test"] and all(np.array_equal(first[k], again[k]) for k in first)
    assert "moved aside" in capsys.readouterr().err
    synthcxr.load_or_generate(cfg, "test")
    assert made == ["test", "test"]


def test_unknown_synthcxr_option_is_named():
    from cemap.data.synthcxr import SynthCXR

    with pytest.raises(CemapError, match="no option 'n_tset'"):
        SynthCXR(n_tset=5)


@pytest.fixture
def pngs(tmp_path):
    from PIL import Image

    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray((np.random.default_rng(i).random((20, 20)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.mark.parametrize("top", ["0", "-1"])
def test_predict_top_must_be_positive(pngs, top, capsys):
    code, out, err = run_cli(["predict", pngs, "--model", "resnet18", "--weights", "random", "--top", top], capsys)
    one_line_error(code, err, f"--top {top}")
    assert out == ""


def test_a_jpeg_passed_as_weights_is_called_an_image(pngs, tmp_path, capsys):
    from PIL import Image

    jpeg = tmp_path / "weights.pt"
    Image.new("RGB", (8, 8)).save(jpeg, format="JPEG")
    code, _, err = run_cli(["predict", pngs, "--model", "resnet18", "--weights", jpeg], capsys)
    line = one_line_error(code, err, "JPEG image", "weights.pt")
    assert "pickled code" not in line


def test_wrong_architecture_weights_are_one_line(pngs, tmp_path, capsys):
    import torchvision

    path = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), path)
    code, _, err = run_cli(["predict", pngs, "--model", "cxr-cnn", "--weights", path], capsys)
    one_line_error(code, err, "do not fit the cxr-cnn architecture", "resnet18.pt")
    code, _, err = run_cli(["predict", pngs, "--model", "resnet50", "--weights", path], capsys)
    line = one_line_error(code, err, "size mismatch for")
    assert "torch.Size([" in line and line.count("[") == line.count("]")  # the shapes are never cut in half


def test_explain_checks_layer_and_target_before_any_work(pngs, tmp_path, capsys):
    out = tmp_path / "new" / "explain"
    code, _, err = run_cli(
        ["explain", pngs, "--model", "resnet18", "--weights", "random", "--layer", "layer9", "--out", out], capsys
    )
    one_line_error(code, err, "unknown layer 'layer9'")
    code, _, err = run_cli(
        ["explain", pngs, "--model", "resnet18", "--weights", "random", "--target", "classs", "--out", out], capsys
    )
    line = one_line_error(code, err, "no class 'classs'")
    assert len(line) < 400 and "classs'" in line and "valid classs" not in line
    assert not (tmp_path / "new").exists()


def test_report_refuses_a_folder_of_images_and_an_unfinished_run(pngs, tmp_path, capsys):
    code, _, err = run_cli(["report", pngs], capsys)
    one_line_error(code, err, "not a cemap run folder")
    assert sorted(p.name for p in pngs.iterdir()) == ["0.png", "1.png"]  # nothing written into it
    run = tmp_path / "run"
    (run / "shards").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"format": "cemap-run/1"}))
    code, _, err = run_cli(["report", run], capsys)
    one_line_error(code, err, "unfinished", "--resume")
    assert not (run / "report.html").exists()


def test_zero_byte_cache_file_is_named_not_silent(tmp_path, capsys):
    from cemap.runner.layout import RunLayout

    layout = RunLayout(tmp_path)
    layout.autoencoder.write_bytes(b"")
    from cemap.runner.autoencoder import load_autoencoder

    with pytest.raises(CemapError, match="autoencoder.pt") as info:
        load_autoencoder(layout, None)
    assert "empty" in str(info.value)


def test_any_failed_command_leaves_no_empty_out_folder(tmp_path, capsys):
    out = tmp_path / "a" / "b"
    code, _, err = run_cli(["evaluate", "--dataset", "nosuch", "--out", out], capsys)
    assert code == 2 and not (tmp_path / "a").exists(), err


@pytest.fixture
def small_fs(tmp_path):
    """A 64 kB tmpfs (a really full disk) where this machine lets the test mount one; skipped elsewhere (ENOSPC is
    simulated above)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield mount
    if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
        subprocess.run(
            ["umount", "-l", str(mount)], capture_output=True
        )  # torch's writer may keep a handle open after the failure


def test_a_really_full_disk_keeps_the_old_entry_and_no_temporary_file(small_fs):
    from cemap.cache import load_weights, save_atomic

    path = small_fs / "entry.pt"
    save_atomic({"w": torch.zeros(10)}, path)
    with pytest.raises(CemapError, match="no space left") as info:
        save_atomic({"w": torch.zeros(100_000)}, path)
    assert "entry.pt" in str(info.value)
    assert sorted(p.name for p in small_fs.iterdir()) == ["entry.pt"]
    assert torch.equal(load_weights(path)["w"], torch.zeros(10))


def test_an_unexpected_end_of_file_is_one_line_and_ctrl_c_says_interrupted(monkeypatch, capsys):
    def eof():
        raise EOFError("Ran out of input")

    monkeypatch.setattr("cemap.models.list_models", eof)
    code, _, err = run_cli(["models"], capsys)
    one_line_error(code, err, "ended before it was complete", "Ran out of input")

    def interrupt():
        raise KeyboardInterrupt

    monkeypatch.setattr("cemap.models.list_models", interrupt)
    code, _, err = run_cli(["models"], capsys)
    assert code == 130 and "interrupted" in err


def test_a_small_run_names_classes_and_files_and_stores_absolute_paths(folder3, tmp_path, monkeypatch, capsys):
    """The folder's class names, each unreadable file by its relative path, and absolute paths in config.json."""
    from cemap.causal.autoencoder import AEConfig
    from cemap.runner import autoencoder as run_ae
    from cemap.runner import load_run

    monkeypatch.setattr(run_ae, "AEConfig", functools.partial(AEConfig, steps=3, batch_size=4))  # seconds, not minutes
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(
        small_run(os.path.relpath(folder3, tmp_path), "run", "--layer", "layer3", "--shard-size", "4"), capsys
    )
    assert code == 0, err
    run = load_run(tmp_path / "run")
    assert run.class_names == ["bird", "cat", "dog"]
    assert [e["id"] for e in run.errors()] == ["dog/broken.png"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["dataset_options"]["root"] == str(folder3.resolve())
    fid = run.manifest["autoencoder"]["fidelity"]
    assert set(fid) >= {"agreement", "mean_kl", "ok", "recon_correlation", "code_variation"}
    if not fid["ok"]:
        assert "warning: low autoencoder fidelity" in err


def test_imagefolder_class_names_as_text_are_split_at_commas(folder3):
    from cemap.data import get_dataset

    data = get_dataset("imagefolder", root=str(folder3), class_names="dog,cat", size=12)
    assert data.class_names == ["dog", "cat"] and len(data) == 5


def test_half_a_weights_file_is_called_truncated(pngs, tmp_path, capsys):
    path = tmp_path / "half.pt"
    torch.save(small_net().state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    code, _, err = run_cli(["predict", pngs, "--model", "resnet18", "--weights", path], capsys)
    one_line_error(code, err, "half.pt", "truncated")


def test_a_damaged_committed_shard_is_named_with_how_to_recompute_it(tmp_path):
    from cemap.runner.engine import Runner
    from cemap.runner.layout import RunLayout

    layout = RunLayout(tmp_path)
    layout.shard_dir.mkdir()
    layout.table(3).write_bytes(b"PAR1 not really")
    layout.shard_errors(3).write_text("")
    runner = Runner.__new__(Runner)
    runner.layout = layout
    with pytest.raises(CemapError, match="shard 3 .* is damaged") as info:
        runner._read_shard(3)
    assert "shard-000003.*" in str(info.value) and "--resume" in str(info.value)


def test_damaged_lung_mask_cache_is_decoded_again(own_cache, monkeypatch, capsys):
    from cemap.data import synthcxr_anatomy as anatomy

    res = anatomy.MASK_RES
    monkeypatch.setattr(
        anatomy, "_decode_masks", lambda zip_path: (np.ones((3, res, res), bool), ["a", "b", "c"])
    )  # not 25 s of decoding
    monkeypatch.setattr(anatomy, "_two_lungs", lambda mask: True)
    anatomy.lung_masks.cache_clear()
    path = own_cache / "synthcxr" / f"lung_masks_{anatomy.MASK_RES}.npz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    try:
        masks, names = anatomy.lung_masks()
    finally:
        anatomy.lung_masks.cache_clear()
    assert len(masks) == len(names) == 3 and "moved aside" in capsys.readouterr().err
    assert path.with_name(path.name + ".damaged").exists() and path.stat().st_size > 0


def test_damaged_study_stage_is_computed_again(own_cache, tmp_path, capsys):
    from cemap.studies.stage_cache import run_cached

    out = tmp_path / "out"
    out.mkdir()
    calls = []

    def compute():
        calls.append(1)
        (out / "fig.png").write_bytes(b"the real figure")
        return {"auroc": 0.9}

    assert run_cached("stage", {"k": 1}, out, compute)[0] == {"auroc": 0.9}
    (stored,) = (own_cache / "study").glob("stage-*/files/fig.png")
    stored.write_bytes(b"the real figurX")  # one byte flipped in the cache
    (out / "fig.png").unlink()
    value, provenance = run_cached("stage", {"k": 1}, out, compute)
    assert (
        len(calls) == 2 and "restored_from" not in provenance and (out / "fig.png").read_bytes() == b"the real figure"
    )
    assert "moved aside" in capsys.readouterr().err
    run_cached("stage", {"k": 1}, out, compute)
    assert len(calls) == 2


def test_damaged_json_cache_entry_is_moved_aside(own_cache, capsys):
    from cemap.cache import cache_path, load_json_cached, save_json_atomic

    path = cache_path("tuning", "m-ce", {"k": 1}, suffix=".json")
    save_json_atomic({"chosen": {"cell": 4}}, path)
    assert load_json_cached(path, ("chosen",)) == {"chosen": {"cell": 4}}
    path.write_text('{"chosen": {"ce')
    assert load_json_cached(path, ("chosen",)) is None
    assert not path.exists() and "moved aside" in capsys.readouterr().err


def test_fidelity_of_copies_of_one_image_is_not_called_a_collapse(tiny_clf):
    from cemap.causal import AEConfig, FittedAutoencoder, LatentAutoencoder, fidelity
    from cemap.causal.split import split_classifier

    torch.manual_seed(0)
    ae = LatentAutoencoder(8, 4, 8).eval()
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    fid = fidelity(
        tiny_clf,
        FittedAutoencoder(ae, split_classifier(tiny_clf, "conv2"), AEConfig(code=4, hidden=8)),
        image.repeat(4, 1, 1, 1),
    )
    assert fid.problems == ()


def test_a_classifier_names_a_class_count_that_does_not_match_its_outputs():
    import cemap
    from cemap.errors import CemapError

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    clf = cemap.Classifier(net, class_names=["a", "b", "c"], input_shape=(3, 8, 8), name="two-outputs")
    with pytest.raises(CemapError, match="3 class names were given"):
        clf.predict_proba(torch.rand(1, 3, 8, 8))


def test_a_model_with_nan_weights_is_refused_on_its_first_batch():
    import cemap
    from cemap.errors import CemapError

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    with torch.no_grad():
        net[1].weight.fill_(float("nan"))
    clf = cemap.Classifier(net, class_names=["a", "b"], input_shape=(3, 8, 8), name="broken")
    with pytest.raises(CemapError, match="NaN or infinite outputs"):
        cemap.CEMap(clf).attribute(torch.rand(1, 3, 8, 8))


def test_classes_can_be_named_or_indexed():
    import cemap
    from cemap.errors import CemapError

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    clf = cemap.Classifier(net, class_names=["cat", "dog"], input_shape=(3, 8, 8), name="pets")
    assert clf.class_index("dog") == 1 and clf.class_index(0) == 0 and clf.class_index("1") == 1
    with pytest.raises(CemapError, match="no class 'bird'"):
        clf.class_index("bird")
    with pytest.raises(CemapError, match="out of range"):
        clf.class_index(2)


# --- issue 30: no stuck folders, one-line rough edges, honest fidelity and long steps ----------------------------


def test_negative_threads_are_refused_on_any_command(pngs, capsys):
    code, out, err = run_cli(["predict", pngs, "--model", "resnet18", "--weights", "random", "--threads", "-1"], capsys)
    one_line_error(code, err, "--threads -1")
    assert out == ""


def test_an_out_folder_that_is_a_file_is_one_line(pngs, tmp_path, capsys):
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")
    for out in (taken, taken / "sub"):
        code, _, err = run_cli(["explain", pngs, "--model", "resnet18", "--weights", "random", "--out", out], capsys)
        one_line_error(code, err, "is a file", "--out")
    assert taken.read_text() == "mine"


def test_report_out_pointing_at_a_folder_is_one_line_and_leaves_no_temporary_file(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"format": "cemap-run/2", "complete": True, "n_images": 1}))
    target = tmp_path / "reports"
    target.mkdir()
    code, _, err = run_cli(["report", run, "--out", target], capsys)
    one_line_error(code, err, "is a folder", "report.html")
    assert list(target.iterdir()) == [] and not list(tmp_path.rglob("*.tmp"))


def test_a_finished_run_leaves_no_lock_and_a_dead_runs_lock_is_taken_over_with_a_warning(tmp_path, capsys):
    from cemap.runner.layout import RunLayout, RunLock

    layout = RunLayout(tmp_path)
    (tmp_path / "config.json").write_text("{}")  # a started run: its folder stays
    layout.lock.write_text("999999999\n")  # left by a killed run
    with RunLock(layout):
        assert layout.lock.read_text().strip() == str(os.getpid())
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning: took over the lock" in err and "PID 999999999" in err
    assert not layout.lock.exists() and (tmp_path / "config.json").exists()


def test_fidelity_ok_is_every_gate_and_names_the_one_that_failed():
    from cemap.causal.fidelity import LIMITS

    assert Fidelity(agreement=1.0, mean_kl=0.0, n=4).as_dict()["ok"] is True
    low = Fidelity(agreement=0.9, mean_kl=0.0, n=10).as_dict()
    assert low["ok"] is False and low["failed"] == ["decision agreement 0.900 is below 0.98"]
    assert low["limits"] == LIMITS and LIMITS["min_recon_correlation"] == 0.1
    assert not Fidelity(agreement=1.0, mean_kl=float("nan"), n=4).ok  # a NaN passes no gate
    same = Fidelity(agreement=1.0, mean_kl=0.0, n=4, problems=("the code is the same for every image",))
    assert not same.ok and same.failures == ("the code is the same for every image",)


def test_autoencoder_steps_follow_the_data_and_progress_is_plain_lines_off_a_terminal(tiny_clf, capsys, monkeypatch):
    from cemap import progress
    from cemap.causal import sized_config

    assert sized_config(17).steps == 200 and sized_config(1000).steps == 400 and sized_config(5000).steps == 800
    assert sized_config(3, AEConfig(steps=50)).steps == 50  # never more than asked
    monkeypatch.delenv("CEMAP_QUIET", raising=False)
    monkeypatch.setattr(progress, "_ENABLED", None)
    monkeypatch.setattr(progress, "FIRST_LINE_S", 0.0)
    capsys.readouterr()
    fit_autoencoder(tiny_clf, torch.rand(6, 3, 16, 16), config=AEConfig(steps=5), use_cache=False)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].endswith("on 6 images: 5 steps") and "about" in lines[1] and "left" in lines[1]
    assert lines[-1].startswith("autoencoder @ conv2") and "5/5 steps in" in lines[-1]
    progress.set_progress(False)
    fit_autoencoder(tiny_clf, torch.rand(6, 3, 16, 16), config=AEConfig(steps=5), use_cache=False)
    assert capsys.readouterr().err == ""  # --quiet: nothing


@pytest.mark.parametrize("target", [2, "b"])
def test_a_target_of_a_class_the_network_lacks_is_a_cemap_error(target):
    import cemap

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    clf = cemap.Classifier(net, class_names=["a", "b", "c"], input_shape=(3, 8, 8), name="two-outputs")
    with pytest.raises(CemapError, match="3 class names were given"):
        cemap.CEMap(clf).attribute(torch.rand(1, 3, 8, 8), target=target)
