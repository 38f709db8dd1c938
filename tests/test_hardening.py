"""Issue 18: a damaged cache, a second process, a full disk and a typo never cost a wrong result or a traceback.

Every test here is fast (no training of the built-in models): damaged cache entries are made
from tiny networks in a temporary CEMAP_CACHE, never in the shared one.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cemap.cli import main
from cemap.errors import CemapError


def run_cli(args, capsys):
    """(exit code, stdout, stderr) of ``cemap args`` run in this process."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code, err, *words):
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("warning: ")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


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
    import cemap.commands.listing as listing

    def boom():
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/x/shard.npz")
        except OSError as exc:
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos") from exc

    monkeypatch.setattr("cemap.models.list_models", boom)
    code, _, err = run_cli(["models"], capsys)
    one_line_error(code, err, "no space left", "/x/shard.npz")
