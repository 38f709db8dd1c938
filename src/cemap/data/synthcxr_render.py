"""Drawing synthcxr images: chest anatomy around a real lung mask, and the lesions of each finding.

Everything is float32 numpy in [0, 1] intensity, whole batches at a time for the anatomy and
one small box-sized patch per lesion. All randomness comes from the ``rng`` passed in, so a
seed fixes every pixel.
"""

from __future__ import annotations

import numpy as np


def warp_masks(source: np.ndarray, index: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """B x size x size lung masks: source masks ``index``, each scaled and shifted a little (nearest neighbour)."""
    b, res = len(index), source.shape[-1]
    scale = rng.uniform(0.88, 1.04, size=(b, 2))
    shift = rng.uniform(-0.05, 0.05, size=(b, 2))
    grid = (np.arange(size) + 0.5) / size - 0.5
    rows = np.floor(((grid[None] - shift[:, 1:2]) / scale[:, 1:2] + 0.5) * res).astype(np.int64)
    cols = np.floor(((grid[None] - shift[:, 0:1]) / scale[:, 0:1] + 0.5) * res).astype(np.int64)
    valid = ((rows >= 0) & (rows < res))[:, :, None] & ((cols >= 0) & (cols < res))[:, None, :]
    out = source[index[:, None, None], rows.clip(0, res - 1)[:, :, None], cols.clip(0, res - 1)[:, None, :]]
    return out & valid


def _extent(masks: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-image lung bounding box (x0, x1, y0, y1) in pixels."""
    size = masks.shape[-1]
    cols, rows = masks.any(1), masks.any(2)
    idx = np.arange(size)
    x0 = np.where(cols, idx, size).min(1)
    x1 = np.where(cols, idx, -1).max(1) + 1
    y0 = np.where(rows, idx, size).min(1)
    y1 = np.where(rows, idx, -1).max(1) + 1
    return x0.astype(np.float32), x1.astype(np.float32), y0.astype(np.float32), y1.astype(np.float32)


def _soft(x: np.ndarray, width: float) -> np.ndarray:
    from scipy.special import expit  # scipy is imported on use, not by `import cemap`

    return expit(x / width)


def anatomy(masks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(B x S x S background radiographs, B x S x S soft lung field) for B lung masks.

    Layers, as on a PA film: dark air outside the body, soft tissue, spine and mediastinum,
    heart shadow overlapping the left lung, dark aerated lungs with ribs and vascular texture.
    """
    from scipy import ndimage

    b, size = masks.shape[0], masks.shape[-1]
    f32 = np.float32
    lung = ndimage.gaussian_filter(masks.astype(f32), sigma=(0, 0.008 * size, 0.008 * size))
    x0, x1, y0, y1 = (v[:, None, None] for v in _extent(masks))
    cx, lw, lh = (x0 + x1) / 2, (x1 - x0).clip(1), (y1 - y0).clip(1)
    yy, xx = np.meshgrid(np.arange(size, dtype=f32) + 0.5, np.arange(size, dtype=f32) + 0.5, indexing="ij")
    u, v = (
        (xx[None] - cx) / lw,
        (yy[None] - y0) / lh,
    )  # lung-relative coordinates: u in ~[-0.5, 0.5], v in [0, 1] top to bottom

    def jitter(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, size=(b, 1, 1)).astype(f32)

    body = _soft(1 - (u / jitter(0.58, 0.68)) ** 2 - ((v - 0.55) / 1.05).clip(0) ** 4, 0.04)
    img = 0.04 + body * (jitter(0.5, 0.6) - 0.12 * np.abs(u))
    img += jitter(0.12, 0.2) * np.exp(-((u / jitter(0.05, 0.07)) ** 2)) * body  # spine and mediastinum
    ribs_phase = jitter(0, 2 * np.pi)
    period = jitter(0.09, 0.12)
    ribs = np.sin(2 * np.pi * (v - jitter(0.9, 1.3) * u**2) / period + ribs_phase).clip(0) ** 2
    img += jitter(0.05, 0.09) * ribs * (0.3 + 0.7 * lung) * body
    aerated = 1 - lung * jitter(0.5, 0.62)
    img *= aerated
    hilum = np.exp(-(((np.abs(u) - 0.2) / 0.12) ** 2 + ((v - 0.45) / 0.2) ** 2))
    texture = ndimage.gaussian_filter(
        rng.standard_normal((b, size, size)).astype(f32), sigma=(0, 0.012 * size, 0.012 * size)
    )
    texture /= texture.std(axis=(1, 2), keepdims=True) + 1e-6
    img += lung * (0.06 * hilum + 0.018 * texture)
    heart = _soft(
        1 - ((u - jitter(0.04, 0.1)) / jitter(0.2, 0.26)) ** 2 - ((v - jitter(0.78, 0.86)) / jitter(0.2, 0.26)) ** 2,
        0.08,
    )
    img += jitter(0.22, 0.3) * heart * lung
    return img.astype(f32), lung


def _local(box: np.ndarray, size: int) -> tuple[slice, slice, np.ndarray, np.ndarray]:
    """Pixel slices covering ``box`` and the box-normalised coordinates dx, dy in [-1, 1] across it."""
    x0, y0, x1, y1 = box
    xs = slice(max(0, int(np.floor(x0))), min(size, int(np.ceil(x1))))
    ys = slice(max(0, int(np.floor(y0))), min(size, int(np.ceil(y1))))
    px = np.arange(xs.start, xs.stop, dtype=np.float32) + 0.5
    py = np.arange(ys.start, ys.stop, dtype=np.float32) + 0.5
    dy, dx = np.meshgrid(
        (py - (y0 + y1) / 2) / max((y1 - y0) / 2, 0.5), (px - (x0 + x1) / 2) / max((x1 - x0) / 2, 0.5), indexing="ij"
    )
    return ys, xs, dx, dy


def _sphere(r: np.ndarray) -> np.ndarray:
    """Projected thickness of a ball of radius 1: bright centre, sharp rim."""
    return np.sqrt((1 - r**2).clip(0))


def nodule(dx, dy, rng):
    return rng.uniform(0.4, 0.55) * _sphere(np.hypot(dx, dy) / 0.9)


def mass(dx, dy, rng):
    theta = np.arctan2(dy, dx)
    lobes = (
        1 + 0.15 * np.sin(3 * theta + rng.uniform(0, 2 * np.pi)) + 0.08 * np.sin(5 * theta + rng.uniform(0, 2 * np.pi))
    )
    return rng.uniform(0.3, 0.42) * _sphere(np.hypot(dx, dy) / (0.82 * lobes)) ** 0.6


def infiltrate(dx, dy, rng):
    from scipy import ndimage

    patches = ndimage.gaussian_filter(rng.standard_normal(dx.shape).astype(np.float32), sigma=1.2)
    patches = (patches / (patches.std() + 1e-6)).clip(-1, 2) * 0.5 + 0.5
    return rng.uniform(0.16, 0.24) * np.exp(-1.6 * (dx**2 + dy**2)) * patches


def effusion(dx, dy, rng, lateral_sign: float):
    """Dense basal opacity whose upper edge (meniscus) climbs toward the chest wall."""
    lateral = (lateral_sign * dx + 1) / 2  # 0 medially, 1 at the chest wall
    level = 0.3 - 0.9 * lateral**2
    return rng.uniform(0.28, 0.4) * _soft(dy - level, 0.12)


def lesion_patch(
    lung: np.ndarray, finding: str, box: np.ndarray, lung_center_x: float, rng: np.random.Generator
) -> tuple[slice, slice, np.ndarray]:
    """(rows, columns, float32 patch): the opacity one lesion of ``finding`` adds inside ``box``, only where there is
    lung.

    The patch covers exactly the box's pixel footprint (x0, y0 floored, x1, y1 ceiled): a lesion
    changes no pixel outside it.
    """
    ys, xs, dx, dy = _local(box, lung.shape[-1])
    if finding == "Effusion":
        opacity = effusion(dx, dy, rng, lateral_sign=1.0 if (box[0] + box[2]) / 2 > lung_center_x else -1.0)
    else:
        opacity = {"Nodule": nodule, "Mass": mass, "Infiltrate": infiltrate}[finding](dx, dy, rng)
    return ys, xs, opacity.astype(np.float32) * lung[ys, xs]


def draw_lesion(
    img: np.ndarray, lung: np.ndarray, finding: str, box: np.ndarray, lung_center_x: float, rng: np.random.Generator
) -> None:
    """Add one lesion of ``finding`` inside ``box`` to ``img`` (S x S), only where there is lung."""
    ys, xs, patch = lesion_patch(lung, finding, box, lung_center_x, rng)
    img[ys, xs] += patch


def draw_marker(img: np.ndarray, box: np.ndarray) -> None:
    """The shortcut: a bright lead-letter-like tag (a square ring) that has nothing to do with disease."""
    x0, y0, x1, y1 = (int(v) for v in box)
    img[y0:y1, x0:x1] = 0.95
    t = max(1, (x1 - x0) // 4)
    img[y0 + t : y1 - t, x0 + t : x1 - t] = 0.35


def exposure(shape: tuple[int, ...], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(B x 1 x 1 gamma, B x S x S quantum noise) of a batch of films: drawn once, whatever is drawn on the films."""
    gamma = rng.uniform(0.85, 1.2, size=(shape[0], 1, 1)).astype(np.float32)
    return gamma, rng.normal(0, 0.012, size=shape).astype(np.float32)


def develop(img: np.ndarray, gamma: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Apply exposure and noise, and quantise to 8 bits as in a stored PNG (pixel by pixel: a pixel depends on no
    other)."""
    out = img.clip(0, 1) ** gamma + noise
    return np.round(out.clip(0, 1) * 255).astype(np.uint8)


def finish(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-image exposure (gamma), quantum noise, and 8-bit quantisation as in a stored PNG."""
    return develop(img, *exposure(img.shape, rng))
