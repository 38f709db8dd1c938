"""The report in a real browser: headless Chromium, driven by Playwright, opens report.html and uses the image explorer.

Chromium is the system one (Debian's ``chromium`` package, ``make browser`` installs it); Playwright's
Python package talks to it through its bundled driver and downloads nothing. The tests skip, saying
why, only where no Chromium is installed. To check a real run folder and keep a screenshot of its
first screen (1280 x 800)::

    CEMAP_BROWSER_RUN=out/demo CEMAP_SCREENSHOT=docs/figures/report_screenshot.png .venv/bin/pytest
    tests/test_browser.py
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cemap.studies.explorer import ExplorerItem, image_uint8, save_explorer_items
from cemap.report.html import write_report

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CEMAP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EVIL = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium installed (make browser, or apt-get install -y chromium)"
)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install -e '.[test]'")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A page with its console errors and uncaught exceptions collected."""

    def __init__(self, browser, path: Path):
        self.page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        self.errors: list[str] = []
        self.page.on(
            "console",
            lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type in ("error", "assert") else None,
        )
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.goto(path.resolve().as_uri())

    def js(self, expression: str):
        return self.page.evaluate(expression)


def decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def synthetic_run(out: Path) -> list[ExplorerItem]:
    """A run folder with results, a figure and explorer items whose names carry markup."""
    rng = np.random.default_rng(1)
    items = []
    for i in range(4):
        size = 24 + 8 * i  # images of different sizes, colour and gray
        image = rng.random((3, size, size)) if i % 2 == 0 else rng.random((1, size, size))
        maps = {
            "CE map": rng.standard_normal((size, size)),
            "gradcam": rng.random((size, size)),
            f"method {EVIL}": rng.random((size, size)),
        }
        name = f"scans/{EVIL}_{i}.png" if i == 1 else f"scans/patient {i}/view.png"
        items.append(
            ExplorerItem(
                id=name,
                image=image,
                maps=maps,
                boxes=[[2, 3, 12, 15]],
                box_labels=[i % 2],
                probs=[0.3, 0.7],
                target=1,
                labels=[1],
                profile=rng.standard_normal(5),
                source="demo",
            )
        )
    save_explorer_items(out, items, class_names=["normal", f"finding {EVIL}"])
    metrics = {
        "dataset": "synthcxr",
        "model": "cxr-cnn",
        "layer": "features.3",
        "split_method": "fx",
        "classifier": {"accuracy": 0.9},
        "ce_map": {"cell": 8, "stride": 8, "fill": "zero", "forward_passes_per_image": 17},
        "autoencoder": {"code_channels": 5, "fidelity": {"agreement": 0.99, "mean_kl": 0.01, "n": 50, "ok": True}},
    }
    (out / "metrics.json").write_text(json.dumps(metrics))
    (out / "latent_concepts.json").write_text(
        json.dumps(
            {
                "dataset": "synthcxr",
                "model": "cxr-cnn",
                "images": [],
                "what": "channels",
                "layer": "features.3",
                "n_images": 50,
                "concepts": ["Effusion"],
                "positives": {"Effusion": 10},
                "box_area": {},
                "labels": ["Z0", "Z1", "Z2 - Effusion, AUROC 0.93", "Z3", "Z4"],
                "coverage": {"aligned": ["Effusion"], "not_aligned": [], "threshold": 0.9},
                "rows": [],
            }
        )
    )
    Image.new("RGB", (40, 30), (200, 30, 30)).save(
        out / (EVIL.replace("/", "_") + ".png")
    )  # a figure whose file name is markup
    return items


@needs_chromium
def test_explorer_opens_the_right_image_shows_every_map_and_switches_methods(browser, tmp_path):
    items = synthetic_run(tmp_path)
    page = Page(browser, write_report(tmp_path))
    pg = page.page
    pg.wait_for_selector("html[data-explorer=ready]", state="attached")
    # the headline is on the first screen (below the title, the summary line and the reliance link)
    assert pg.locator("#headline").bounding_box()["y"] < 320 and "The autoencoder is faithful" in pg.inner_text(
        "#headline"
    )
    thumbs = pg.locator(".xp-thumb")
    assert thumbs.count() == len(items)
    for k in (2, 1):  # the second one carries markup in its name
        thumbs.nth(k).click()
        panel = pg.locator("#xp-panel")
        assert panel.is_visible() and pg.inner_text("#xp-title") == items[k].id
        big = pg.locator("#xp-main img[data-role=image]")
        assert big.get_attribute("src") == thumbs.nth(k).locator("img").get_attribute(
            "src"
        )  # the image itself, in its own colours
        assert big.get_attribute("alt") == items[k].id
        np.testing.assert_array_equal(
            decode(big.get_attribute("src")), image_uint8(items[k].image)
        )  # its own pixels and colours
        shown = pg.locator("#xp-maps figure").evaluate_all("fs => fs.map(f => f.getAttribute('data-method'))")
        assert shown == list(items[k].maps)
        decoded = pg.locator("#xp-maps img").evaluate_all("is => is.map(i => i.complete && i.naturalWidth)")
        assert all(decoded) and len(decoded) == 2 * len(items[k].maps)  # each map over its image background
        assert pg.locator("#xp-maps .xp-bx").count() == len(items[k].maps)  # the true box on every map
        assert pg.locator("#xp-profile").inner_text().startswith("Z0") and "Z2 - Effusion, AUROC 0.93" in pg.inner_text(
            "#xp-profile"
        )
        assert "finding " + EVIL in pg.inner_text("#xp-probs")  # class names as text
        pg.keyboard.press("Escape")
        assert panel.is_hidden()

    thumbs.nth(0).click()
    pg.locator("#xp-methods button[data-method=gradcam]").click()
    assert pg.get_attribute("#xp-panel", "data-method") == "gradcam"
    overlay = pg.locator("#xp-main img.xp-map")
    assert overlay.get_attribute("data-method") == "gradcam"
    assert overlay.get_attribute("src") == pg.locator("#xp-maps figure[data-method=gradcam] img.xp-map").get_attribute(
        "src"
    )
    assert pg.locator("#xp-methods button[aria-pressed=true]").inner_text() == "gradcam"
    pg.keyboard.press("ArrowDown")
    assert pg.get_attribute("#xp-panel", "data-method") == f"method {EVIL}"
    pg.keyboard.press("1")
    assert pg.get_attribute("#xp-panel", "data-method") == "CE map"
    pg.keyboard.press("ArrowRight")
    assert pg.get_attribute("#xp-panel", "data-index") == "1" and pg.inner_text("#xp-title") == items[1].id
    assert pg.get_attribute("#xp-panel", "data-method") == "CE map"  # the method stays as the reader moves on
    pg.keyboard.press("ArrowLeft")
    pg.keyboard.press("ArrowLeft")
    assert pg.get_attribute("#xp-panel", "data-index") == str(len(items) - 1)  # wraps around
    pg.keyboard.press("Escape")

    assert page.js("window.__pwned") is None, "markup in a file name ran as script"
    assert page.js("document.querySelectorAll('img[src=\"x\"]').length") == 0, "markup in a file name became elements"
    assert page.errors == [], f"console errors: {page.errors}"
    pg.close()


@needs_chromium
def test_json_files_download_from_the_report(browser, tmp_path):
    synthetic_run(tmp_path)
    page = Page(browser, write_report(tmp_path))
    with page.page.expect_download() as download:
        page.page.click('a[download="metrics.json"]')
    saved = tmp_path / "downloaded.json"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "metrics.json" and json.loads(saved.read_text())["model"] == "cxr-cnn"
    assert page.errors == []
    page.page.close()


@needs_chromium
def test_a_real_run_folder_renders_and_its_first_screen_states_the_findings(browser, tmp_path):
    """``CEMAP_BROWSER_RUN`` (any run folder: demo, evaluate, explain, cemap run), else a small demo-like folder."""
    given = os.environ.get("CEMAP_BROWSER_RUN")
    folder = Path(given) if given else tmp_path
    if not given:
        synthetic_run(tmp_path)
    page = Page(browser, write_report(folder, tmp_path / "report.html"))
    pg = page.page
    pg.wait_for_load_state("load")
    broken = pg.locator("img").evaluate_all("is => is.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)")
    assert broken == [], f"images that did not decode: {broken}"
    first = pg.locator("#headline").bounding_box()
    assert first["y"] < 800 and "What this run found" in pg.inner_text("#headline")
    if pg.locator(".xp-thumb").count():
        pg.locator(".xp-thumb").first.click()
        assert pg.locator("#xp-panel").is_visible()
        pg.keyboard.press("Escape")
    shot = os.environ.get("CEMAP_SCREENSHOT")
    if shot:
        pg.evaluate("window.scrollTo(0, 0)")
        pg.screenshot(path=shot)  # the first screen, 1280 x 800
    assert page.errors == [], f"console errors: {page.errors}"
    pg.close()


@needs_chromium
def test_the_checks_are_not_vacuous(browser, tmp_path):
    """A broken image, a script the CSP blocks and a console error are all seen by the checks above."""
    page_file = tmp_path / "bad.html"
    page_file.write_text(
        '<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src '
        'data:">'
        '<title>t</title></head><body><img alt="bad" src="data:image/png;base64,AAAA"><script>window.__pwned = '
        "1</script>"
        '<img src=x onerror="window.__pwned = 2"></body></html>'
    )
    page = Page(browser, page_file)
    page.page.wait_for_load_state("load")
    broken = page.page.locator("img").evaluate_all(
        "is => is.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)"
    )
    assert "bad" in broken and page.js("window.__pwned") is None
    assert any("Content Security Policy" in e for e in page.errors), page.errors
    page.page.close()
