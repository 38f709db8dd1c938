"""synthcxr: synthetic chest radiographs whose lesion boxes are known exactly.

Anatomy comes from the real lung-field masks torchxrayvision ships; each finding's box is a
real ChestX-ray14 radiologist box of that finding (size, aspect and, where it fits, position;
scaled from 1024 px), kept inside the lung field. Train and test use disjoint lung masks; the
``val`` split is drawn like train (train lung masks, its own random stream, ``n_test`` images)
and is never trained on: settings are chosen there. Generated arrays are cached under the
cemap cache root, keyed by the configuration.

Every pixel comes from one seeded stream, so the generator can also render any image *without*
chosen lesions (:func:`render_without`, :meth:`SynthCXR.without`): the exact lesion-free
counterfactual, the same anatomy, other lesions, exposure and noise.

``shortcut=True`` adds a bright corner tag to most images with ``shortcut_finding`` (and a few
without), so a model can learn to cheat; ``shortcut_box`` / ``has_shortcut`` say where and when.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..cache import cache_root, config_key, load_npz_cached, write_failed
from ..errors import CemapError
from .base import ImageDataset, Sample
from .registry import register_dataset
from .synthcxr_anatomy import lung_masks, nih_boxes
from .synthcxr_boxes import integral, place_box
from .synthcxr_render import anatomy, develop, draw_marker, exposure, lesion_patch, warp_masks

FINDINGS = ["Nodule", "Mass", "Infiltrate", "Effusion"]
PREVALENCE = 0.3
MASK_SPLIT_SEED = 20190203  # fixed forever: which real lung masks are train and which are test
TEST_MASK_FRACTION = 0.2
GENERATOR_VERSION = 2  # bump when the drawing changes, so caches regenerate
CHUNK = 256
SPLITS = (
    "train",
    "test",
    "val",
)  # val: drawn like train (train lung masks, own stream, n_test images), never trained on


@dataclass(frozen=True)
class SynthCXRConfig:
    size: int = 128
    seed: int = 0
    n_train: int = 2000
    n_test: int = 600
    shortcut: bool = False
    shortcut_finding: str = "Nodule"
    shortcut_given_finding: float = 0.9  # P(tag | finding present)
    shortcut_given_absent: float = 0.05  # P(tag | finding absent)

    def check(self) -> None:
        if not 32 <= self.size <= 224:
            raise CemapError(f"synthcxr size {self.size} out of range", "use a size between 32 and 224 pixels")
        if self.shortcut_finding not in FINDINGS:
            raise CemapError(f"unknown shortcut finding {self.shortcut_finding!r}", f"use one of {', '.join(FINDINGS)}")
        if min(self.n_train, self.n_test) < 1:
            raise CemapError("synthcxr split sizes must be positive")


def marker_box(size: int) -> np.ndarray:
    """The shortcut tag's fixed xyxy box: top-left corner, outside the lung field."""
    side, margin = max(4, size // 14), max(1, size // 40)
    return np.array([margin, margin, margin + side, margin + side], dtype=np.float32)


def mask_pools(n_masks: int) -> dict[str, np.ndarray]:
    order = np.random.default_rng(MASK_SPLIT_SEED).permutation(n_masks)
    n_test = int(round(TEST_MASK_FRACTION * n_masks))
    return {"train": np.sort(order[n_test:]), "test": np.sort(order[:n_test])}


@dataclass
class Film:
    """One image's layers before development: lesions are added to ``base`` in order, the tag is painted last."""

    base: np.ndarray  # S x S float32 anatomy
    lesions: list[tuple[int, slice, slice, np.ndarray]]  # (finding, rows, columns, patch), in drawing order
    tagged: bool
    gamma: np.ndarray  # 1 x 1
    noise: np.ndarray  # S x S

    def develop(self, size: int, remove: frozenset[int] = frozenset()) -> np.ndarray:
        """S x S uint8: the film with the lesions at positions ``remove`` (0 = first drawn) left out, exactly as the
        generator renders it."""
        img = self.base.copy()
        for k, (_, ys, xs, patch) in enumerate(self.lesions):
            if k not in remove:
                img[ys, xs] += patch
        if self.tagged:
            draw_marker(img, marker_box(size))
        return develop(img[None], self.gamma[None], self.noise[None])[0]


def _films(cfg: SynthCXRConfig, split: str, until: int | None = None):
    """Yield (index, Film, boxes) for every image of the split, in order, drawing from the split's one random stream.

    ``until``: stop after the chunk holding that image (the stream before it is drawn all the same).
    """
    source, _ = lung_masks()
    boxes_by_finding = nih_boxes()
    n = {"train": cfg.n_train, "test": cfg.n_test, "val": cfg.n_test}[split]
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split), GENERATOR_VERSION])
    pool = mask_pools(len(source))["test" if split == "test" else "train"]
    masks = warp_masks(source, rng.choice(pool, size=n), cfg.size, rng)
    labels = (rng.random((n, len(FINDINGS))) < PREVALENCE).astype(np.float32)
    s = cfg.shortcut_finding
    tag_p = np.where(labels[:, FINDINGS.index(s)] > 0, cfg.shortcut_given_finding, cfg.shortcut_given_absent)
    has_tag = (rng.random(n) < tag_p) & cfg.shortcut
    for start in range(0, n if until is None else min(n, until + 1), CHUNK):
        stop = min(start + CHUNK, n)
        img, lung = anatomy(masks[start:stop], rng)
        drawn = []
        for i in range(start, stop):
            placed: list[np.ndarray] = []
            table = integral(masks[i])
            lung_x = np.nonzero(masks[i].any(0))[0]
            centre_x = (lung_x.min() + lung_x.max() + 1) / 2
            lesions = []
            for f in np.flatnonzero(labels[i]):
                box = place_box(boxes_by_finding[FINDINGS[f]], masks[i], table, placed, rng)
                if box is None:  # no NIH box of this finding fits this lung field: the finding is absent
                    labels[i, f] = 0
                    continue
                placed.append(box)
                lesions.append((int(f), *lesion_patch(lung[i - start], FINDINGS[f], box, centre_x, rng)))
            drawn.append((i, lesions, placed))
        gamma, noise = exposure(img.shape, rng)
        for i, lesions, placed in drawn:
            yield (
                i,
                Film(img[i - start], lesions, bool(has_tag[i]), gamma[i - start], noise[i - start]),
                placed,
                labels[i],
                masks[i],
            )


def generate(cfg: SynthCXRConfig, split: str) -> dict[str, np.ndarray]:
    """Draw one split: uint8 images, multi-hot labels, boxes, lung masks and shortcut flags."""
    n = {"train": cfg.n_train, "test": cfg.n_test, "val": cfg.n_test}[split]
    images = np.empty((n, cfg.size, cfg.size), dtype=np.uint8)
    labels = np.zeros((n, len(FINDINGS)), dtype=np.float32)
    masks = np.zeros((n, cfg.size, cfg.size), dtype=bool)
    has_tag = np.zeros(n, dtype=bool)
    box_rows: list[list[float]] = []
    for i, film, boxes, label, mask in _films(cfg, split):
        images[i], labels[i], masks[i], has_tag[i] = film.develop(cfg.size), label, mask, film.tagged
        box_rows += [[i, f, *box] for (f, *_), box in zip(film.lesions, boxes)]
    rows = np.array(box_rows, dtype=np.float64).reshape(-1, 6)
    return {
        "images": images,
        "labels": labels,
        "box_image": rows[:, 0].astype(np.int64),
        "box_label": rows[:, 1].astype(np.int64),
        "boxes": rows[:, 2:].astype(np.float32),
        "lung_bits": np.packbits(masks, axis=-1),
        "has_shortcut": has_tag,
    }


def render_without(cfg: SynthCXRConfig, split: str, requests) -> np.ndarray:
    """N x S x S uint8 counterfactual images: for each request ``(image index, lesions to leave out)``, the split's
    image
    rendered exactly as the generator renders it, but without those lesions (positions in drawing order, which is the
    order of :meth:`SynthCXR.lesions`). Everything else - anatomy, the other lesions, exposure, noise - is the very same
    draw, so ``(i, ())`` reproduces image i bit for bit and leaving out lesion k changes pixels only inside its box.
    """
    requests = [(int(i), frozenset(int(k) for k in remove)) for i, remove in requests]
    out = np.empty((len(requests), cfg.size, cfg.size), dtype=np.uint8)
    if not requests:
        return out
    wanted: dict[int, list[int]] = {}
    for r, (i, _) in enumerate(requests):
        wanted.setdefault(i, []).append(r)
    n = {"train": cfg.n_train, "test": cfg.n_test, "val": cfg.n_test}[split]
    if min(wanted) < 0 or max(wanted) >= n:
        raise CemapError(
            f"synthcxr {split} has {n} images; asked for image {max(wanted) if max(wanted) >= n else min(wanted)}"
        )
    for i, film, *_ in _films(cfg, split, until=max(wanted)):
        for r in wanted.get(i, ()):
            bad = [k for k in requests[r][1] if not 0 <= k < len(film.lesions)]
            if bad:
                raise CemapError(
                    f"image {i} of synthcxr {split} has {len(film.lesions)} lesions; there is no lesion {bad[0]}"
                )
            out[r] = film.develop(cfg.size, requests[r][1])
    return out


def load_or_generate(cfg: SynthCXRConfig, split: str, use_cache: bool = True) -> dict[str, np.ndarray]:
    key = {**asdict(cfg), "split": split, "version": GENERATOR_VERSION}
    if not cfg.shortcut:  # the shortcut's own settings do not change a clean dataset
        key = {k: v for k, v in key.items() if not k.startswith("shortcut_")}
    path = cache_root() / "synthcxr" / f"{split}-{config_key(key)}.npz"
    if use_cache and path.exists():
        arrays = _read_cached(path)
        if arrays is not None:
            return arrays
    arrays = generate(cfg, split)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")
        try:
            np.savez(tmp, config=np.array(json.dumps(key)), **arrays)
            tmp.replace(path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise write_failed(path, exc) from exc
    return arrays


def _read_cached(path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when the file is damaged (zero bytes, truncated, a CRC mismatch): it is then moved
    aside with a warning naming it, and the split is generated again - the same images, from the same seed."""
    arrays = load_npz_cached(path, ("images", "labels", "box_image", "box_label", "boxes", "lung_bits", "has_shortcut"))
    return None if arrays is None else {k: v for k, v in arrays.items() if k != "config"}


@register_dataset("synthcxr")
class SynthCXR(ImageDataset):
    """Grayscale (1 x size x size) multi-label chest radiographs with exact boxes for every finding."""

    name = "synthcxr"
    class_names = FINDINGS
    multilabel = True

    def __init__(self, split: str = "test", use_cache: bool = True, **config) -> None:
        if split not in SPLITS:
            raise CemapError(
                f"unknown split {split!r}", "use 'train', 'test' or 'val' (drawn like train, never trained on)"
            )
        unknown = sorted(set(config) - set(SynthCXRConfig.__dataclass_fields__))
        if unknown:
            raise CemapError(
                f"dataset 'synthcxr' has no option {unknown[0]!r}",
                f"--data-opt keys it takes: use_cache, {', '.join(SynthCXRConfig.__dataclass_fields__)}",
            )
        try:
            self.config = SynthCXRConfig(**config)
        except TypeError as exc:
            raise CemapError(
                f"bad synthcxr option: {exc}", f"options: {', '.join(SynthCXRConfig.__dataclass_fields__)}"
            ) from exc
        self.config.check()
        self.split = split
        arrays = load_or_generate(self.config, split, use_cache)
        self.images = torch.from_numpy(arrays["images"]).unsqueeze(1)
        self.labels = torch.from_numpy(arrays["labels"])
        self._lung_bits = arrays["lung_bits"]
        self.has_shortcut = torch.from_numpy(arrays["has_shortcut"])
        order = np.argsort(arrays["box_image"], kind="stable")
        bounds = np.searchsorted(arrays["box_image"][order], np.arange(len(self.images) + 1))
        boxes, box_labels = torch.from_numpy(arrays["boxes"][order]), torch.from_numpy(arrays["box_label"][order])
        self._boxes = [boxes[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self._box_labels = [box_labels[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    @property
    def size(self) -> int:
        return self.config.size

    @property
    def shortcut_box(self) -> torch.Tensor | None:
        """xyxy box of the shortcut tag (same place in every tagged image), or None without shortcut."""
        return torch.from_numpy(marker_box(self.size)) if self.config.shortcut else None

    def lung_mask(self, index: int) -> torch.Tensor:
        """H x W bool lung field of image ``index`` (lesions are drawn only inside it)."""
        return torch.from_numpy(np.unpackbits(self._lung_bits[index], axis=-1)[:, : self.size].astype(bool))

    def lesions(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(K x 4 boxes, K finding indices) of image ``index``'s lesions in drawing order: lesion k of
        :meth:`without`."""
        return self._boxes[index], self._box_labels[index]

    def without(self, requests) -> torch.Tensor:
        """N x 1 x S x S images in [0, 1]: for each ``(index, lesions to leave out)``, the exact counterfactual - image
        ``index`` as the generator renders it without those lesions (:func:`render_without`; ``(i, ())`` is image i
        itself).
        The true effect of lesion k on the model is then ``p(x) - p(without((i, [k])))``, with no imputer involved."""
        return torch.from_numpy(render_without(self.config, self.split, requests)).unsqueeze(1).float() / 255.0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        return Sample(
            image=self.images[index].float() / 255.0,
            labels=self.labels[index],
            id=f"synthcxr-{self.split}-{index:05d}",
            boxes=self._boxes[index],
            box_labels=self._box_labels[index],
        )
