"""The report in a real browser: headless Chromium opens report.html, every image decodes, the console stays clean.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL bytes on file descriptors 3 and 4), with nothing but the standard
library. Install it with ``apt-get install -y chromium``. To keep the screenshot:

    CEMAP_SCREENSHOT=docs/figures/report_screenshot.png .venv/bin/pytest tests/test_browser.py

``CEMAP_BROWSER_RUN=out/demo`` checks (and screenshots) that run folder instead of the small one built here.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,2000",
]
IMAGES_JS = "JSON.stringify(Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth})))"


class DevTools:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, binary: str, profile: str) -> None:
        to_chrome_r, self._write = os.pipe()
        self._read, from_chrome_w = os.pipe()

        def child_fds() -> None:  # Chromium reads commands on fd 3 and answers on fd 4
            high_r, high_w = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            preexec_fn=child_fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed the pipe: {self.proc.stderr.read().decode(errors='replace')[-2000:]}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, timeout: float = 30.0, **params) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        os.write(self._write, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._read)
        os.close(self._write)


def console_errors(events: list[dict]) -> list[str]:
    errors = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            errors.append(json.dumps(params.get("exceptionDetails", {}))[:300])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(json.dumps(params.get("args", []))[:300])
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(params["entry"].get("text", "")[:300])
    return errors


def open_in_chromium(page: Path, screenshot: Path, height: int = 2000) -> dict:
    """Load ``page``; return its images, console errors, title and script count, and write a screenshot."""
    with tempfile.TemporaryDirectory() as profile:
        tools = DevTools(CHROMIUM, profile)
        try:
            target = tools.send("Target.createTarget", url="about:blank")["targetId"]
            tools.session = tools.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                tools.send(f"{domain}.enable")
            tools.send("Emulation.setDeviceMetricsOverride", width=1280, height=height, deviceScaleFactor=1, mobile=False)
            tools.send("Page.navigate", url=page.resolve().as_uri())
            tools.wait_for("Page.loadEventFired", timeout=60)
            evaluate = lambda js: tools.send("Runtime.evaluate", expression=js, returnByValue=True)["result"]["value"]  # noqa: E731
            result = {
                "images": json.loads(evaluate(IMAGES_JS)),
                "title": evaluate("document.title"),
                "scripts": evaluate("document.scripts.length"),
                "text": evaluate("document.body.innerText"),
            }
            shot = tools.send("Page.captureScreenshot", format="png", timeout=60)["data"]
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot))
            time.sleep(0.5)  # late console messages
            tools.send("Runtime.evaluate", expression="1")
            result["errors"] = console_errors(tools.events)
        finally:
            tools.close()
    return result


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    given = os.environ.get("CEMAP_BROWSER_RUN")
    if given:
        return Path(given)
    from cemap.studies.overview import run_overview

    out = tmp_path_factory.mktemp("run")
    run_overview(dataset="mnist5k", out=out, n_images=3)
    shutil.copy(out / "ce_maps.png", out / "<img src=x onerror=alert(1)><script>document.title='pwned'.png")
    return out


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_chromium(run_folder, tmp_path):
    from cemap.report.html import write_report

    page = write_report(run_folder, tmp_path / "report.html")
    shot = Path(os.environ.get("CEMAP_SCREENSHOT", tmp_path / "report.png"))
    result = open_in_chromium(page, shot)

    assert result["images"], "the report shows no images"
    broken = [i["alt"] for i in result["images"] if not (i["complete"] and i["width"] > 0)]
    assert not broken, f"images that did not decode: {broken}"
    assert result["errors"] == [], f"console errors: {result['errors']}"
    assert result["scripts"] == 0 and "pwned" not in result["title"]
    assert "Autoencoder fidelity" in result["text"]
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install -y chromium)")
def test_browser_check_catches_a_broken_image(tmp_path):
    """The check is not vacuous: an image that cannot decode is reported as such."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><title>t</title></head><body><img alt="bad" src="data:image/png;base64,AAAA"></body></html>')
    result = open_in_chromium(page, tmp_path / "broken.png")
    assert [i["width"] for i in result["images"]] == [0]
