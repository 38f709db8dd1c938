"""ChestX-ray14 folder loading (on a tiny fake folder), image reading, and imagefolder trees."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import cemap
from cemap.data.images import read_image
from cemap.errors import CemapError

ENTRIES = [
    # name, findings, view, (width, height)
    ("00000001_000.png", "Nodule|Mass", "PA", (80, 60)),
    ("00000002_000.png", "Infiltration", "AP", (64, 64)),
    ("00000003_001.png", "No Finding", "PA", (64, 64)),
    ("00000004_000.png", "Effusion|Atelectasis", "AP", (64, 64)),
    ("00000005_000.png", "Hernia", "LL", (64, 64)),
]
BOXES = [
    ("00000001_000.png", "Nodule", 8.0, 6.0, 16.0, 12.0),
    ("00000001_000.png", "Mass", 40.0, 30.0, 20.0, 24.0),
    ("00000002_000.png", "Infiltrate", 10.0, 20.0, 30.0, 10.0),
    ("00000004_000.png", "Effusion", 0.0, 32.0, 32.0, 32.0),
]


@pytest.fixture
def nih_root(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, _, _, (w, h) in ENTRIES:
        mode = "RGBA" if name.startswith("00000002") else "L"  # some real ChestX-ray14 PNGs are RGBA
        pixels = rng.integers(0, 256, size=(h, w, 4) if mode == "RGBA" else (h, w), dtype=np.uint8)
        Image.fromarray(pixels, mode=mode).save(images / name)
    header = (
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View "
        "Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n"
    )
    rows = [f"{n},{f},0,{i},50,M,{v},{w},{h},0.143,0.143\n" for i, (n, f, v, (w, h)) in enumerate(ENTRIES)]
    (tmp_path / "Data_Entry_2017_v2020.csv").write_text(header + "".join(rows))
    box_rows = [f"{n},{f},{x},{y},{w},{h},,,\n" for n, f, x, y, w, h in BOXES]
    (tmp_path / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n" + "".join(box_rows))
    (tmp_path / "train_val_list.txt").write_text("00000003_001.png\n00000005_000.png\n")
    (tmp_path / "test_list.txt").write_text("00000001_000.png\n00000002_000.png\n00000004_000.png\n")
    return tmp_path


def test_labels_follow_data_entry(nih_root):
    ds = cemap.get_dataset("nih", split="all", root=nih_root, size=32)
    assert ds.names == [
        "00000001_000.png",
        "00000002_000.png",
        "00000003_001.png",
        "00000004_000.png",
    ]  # LL view dropped
    names = ds.class_names
    expected = {0: {"Nodule", "Mass"}, 1: {"Infiltration"}, 2: set(), 3: {"Effusion", "Atelectasis"}}
    for i, findings in expected.items():
        assert {names[c] for c in torch.nonzero(ds.labels[i]).flatten().tolist()} == findings
    sample = ds[0]
    assert sample.image.shape == (3, 32, 32) and 0 <= sample.image.min() and sample.image.max() <= 1


def test_boxes_scaled_to_model_input(nih_root):
    ds = cemap.get_dataset("nih", split="boxed", root=nih_root, size=32, channels=1)
    assert ds.names == ["00000001_000.png", "00000002_000.png", "00000004_000.png"]  # PA and AP views both kept
    first = ds[0]  # native 80 x 60: x scales by 32/80, y by 32/60
    sx, sy = 32 / 80, 32 / 60
    expected = torch.tensor([[8 * sx, 6 * sy, 24 * sx, 18 * sy], [40 * sx, 30 * sy, 60 * sx, 54 * sy]])
    assert torch.allclose(first.boxes, expected)
    assert [ds.class_names[c] for c in first.box_labels.tolist()] == ["Nodule", "Mass"]
    infiltrate = ds[1]
    assert ds.class_names[int(infiltrate.box_labels[0])] == "Infiltration"  # BBox_List spells it "Infiltrate"
    assert torch.allclose(infiltrate.boxes, torch.tensor([[5.0, 10.0, 20.0, 15.0]]))
    assert first.image.shape == (1, 32, 32)


def test_official_split_lists_and_finding_order(nih_root):
    test = cemap.get_dataset("nih", split="test", root=nih_root, size=16, findings=["Mass", "Nodule"])
    assert test.names == ["00000001_000.png", "00000002_000.png", "00000004_000.png"]
    assert test.labels[0].tolist() == [1.0, 1.0] and test.labels[1].tolist() == [0.0, 0.0]
    assert test[0].box_labels.tolist() == [1, 0]  # Nodule is class 1 here; boxes of other findings are dropped
    assert len(test[2].boxes) == 0
    assert cemap.get_dataset("nih", split="train", root=nih_root, size=16).names == ["00000003_001.png"]


def test_nih_bad_input(nih_root, tmp_path):
    with pytest.raises(CemapError, match="not found"):
        cemap.get_dataset("nih", root=tmp_path / "nowhere")
    with pytest.raises(CemapError, match="unknown findings"):
        cemap.get_dataset("nih", root=nih_root, findings=["Covid"])
    (nih_root / "test_list.txt").unlink()
    with pytest.raises(CemapError, match="test_list.txt"):
        cemap.get_dataset("nih", split="test", root=nih_root)


def test_read_image_formats_and_corrupt_files(tmp_path):
    gray16 = (np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 100).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png", channels=1)
    assert img.shape == (1, 20, 30)
    assert img.max() == pytest.approx(gray16.max() / 65535, abs=1e-4)
    rgb = read_image(tmp_path / "a.png", channels=3, size=(10, 12))
    assert rgb.shape == (3, 10, 12) and torch.equal(rgb[0], rgb[2])
    Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8)).save(tmp_path / "b.jpg")
    assert read_image(tmp_path / "b.jpg", channels=1, size=4).shape == (1, 4, 4)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(CemapError, match="bad.png"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(CemapError, match="not found"):
        read_image(tmp_path / "missing.png")


def test_read_dicom_monochrome1_is_inverted(tmp_path):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = generate_uid()
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(str(tmp_path / "x.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    pixels = np.tile(np.arange(16, dtype=np.uint16) * 100, (8, 1))
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 16, 15, 0
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.PixelData = pixels.tobytes()
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    img = read_image(tmp_path / "x.dcm")
    assert img.shape == (1, 8, 16)
    assert img[0, 0, 0] == pytest.approx(1.0) and img[0, 0, -1] == pytest.approx(0.0)


def test_imagefolder_tree(tmp_path):
    for split, cls, n in [("train", "cat", 2), ("train", "dog", 1), ("test", "cat", 1), ("test", "dog", 2)]:
        folder = tmp_path / split / cls
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((12, 10, 3), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    test = cemap.get_dataset("imagefolder", split="test", root=tmp_path, size=8)
    assert test.class_names == ["cat", "dog"] and len(test) == 3
    assert [int(test[i].labels) for i in range(3)] == [0, 1, 1]
    assert test[0].image.shape == (3, 8, 8) and test[0].id == "cat/0.png"
    train = cemap.get_dataset("imagefolder", split="train", root=tmp_path, size=8, class_names=["dog", "cat"])
    assert [int(train[i].labels) for i in range(3)] == [0, 1, 1]
    with pytest.raises(CemapError, match="class folders missing"):
        cemap.get_dataset("imagefolder", root=tmp_path, class_names=["bird"])
