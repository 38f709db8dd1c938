"""The image explorer inside report.html: a thumbnail grid (plain HTML) and a panel driven by one inline script.

Everything the panel shows is in a JSON data block (``<script type="application/json">``, never
executed); the one executable script is a constant, allowed by the page's CSP through its SHA-256
hash, and it writes text with ``textContent`` only, so a file name full of markup stays text.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from typing import Sequence

import numpy as np
from matplotlib import colormaps
from PIL import Image

from ..studies.explorer import ExplorerItem, as_array, image_uint8

PIXELATED_BELOW = 96  # images smaller than this are enlarged without smoothing

EXPLORER_CSS = """
.xp-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(112px,1fr));gap:10px;margin:8px 0}
.xp-thumb{display:flex;flex-direction:column;align-items:center;gap:4px;background:#fff;border:1px solid #d5d9e0;
border-radius:6px;padding:6px;cursor:pointer;font:inherit;color:inherit}
.xp-thumb:hover,.xp-thumb:focus{border-color:#33598a;outline:2px solid #9db5d6}
.xp-thumb img{width:96px;height:96px;object-fit:contain;background:#000}
.xp-thumb span{font-size:.72rem;font-family:ui-monospace,monospace;overflow-wrap:anywhere;text-align:center;
max-width:100px}
img.px{image-rendering:pixelated}
.xp-panel{position:fixed;inset:0;background:rgba(20,24,32,.72);overflow:auto;z-index:10;padding:18px}
.xp-panel[hidden]{display:none}
.xp-box{background:#fff;border-radius:8px;max-width:1220px;margin:0 auto;padding:12px 18px 18px}
.xp-head{display:flex;align-items:center;gap:10px;flex-wrap:wrap}
.xp-head h3{margin:0;font-family:ui-monospace,monospace;font-size:.95rem;overflow-wrap:anywhere;flex:1 1 300px}
.xp-head button,.xp-methods button{font:inherit;font-size:.85rem;padding:3px 10px;border:1px solid #b8c0cc;
border-radius:4px;background:#f6f7f9;cursor:pointer}
.xp-methods{display:flex;flex-wrap:wrap;gap:6px;margin:10px 0}
.xp-methods button[aria-pressed=true]{background:#33598a;color:#fff;border-color:#33598a}
.xp-body{display:flex;gap:22px;flex-wrap:wrap;align-items:flex-start}
.xp-stage{position:relative;display:inline-block;line-height:0;background:#000}
.xp-stage img{width:100%;height:100%;display:block}
.xp-stage img.xp-map{position:absolute;left:0;top:0}
.xp-stage.big{width:440px;height:440px}
.xp-stage.small{width:168px;height:168px}
.xp-bx{position:absolute;border:2px solid #3f3;box-sizing:border-box;pointer-events:none}
.xp-side{flex:1 1 320px;min-width:280px}
.xp-side h4,.xp-box h4{margin:12px 0 4px;font-size:.9rem}
.xp-maps{display:flex;flex-wrap:wrap;gap:12px}
.xp-maps figure{margin:0;cursor:pointer}
.xp-maps figure.sel .xp-stage{outline:3px solid #33598a}
.xp-maps figcaption{font-size:.78rem;max-width:168px;overflow-wrap:anywhere}
.xp-bar{display:grid;grid-template-columns:minmax(90px,max-content) 1fr 4.5em;gap:6px;align-items:center;
font-size:.8rem;margin:1px 0}
.xp-bar .b{height:10px;background:#e8ebf0;position:relative}
.xp-bar .b i{position:absolute;top:0;bottom:0;background:#33598a}
.xp-bar .b i.neg{background:#b33}
.xp-bar .v{text-align:right;font-variant-numeric:tabular-nums}
.xp-bar .n{overflow-wrap:anywhere}
.xp-note{font-size:.8rem;color:#4a5263}
.xp-scale{display:flex;align-items:center;gap:6px;font-size:.78rem;color:#4a5263;margin-top:8px}
.xp-scale img{width:220px;height:12px;border:1px solid #ccc}
"""

EXPLORER_JS = r"""
(function () {
  "use strict";
  var source = document.getElementById("xp-data");
  var panel = document.getElementById("xp-panel");
  if (!source || !panel) { return; }
  var D = JSON.parse(source.textContent);
  var items = D.items, classes = D.classes || [], concepts = D.concepts || {};
  var current = -1, method = "image", opener = null;
  var byId = function (id) { return document.getElementById(id); };
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function num(v) {
    if (v === null || v === undefined || !isFinite(v)) { return "n/a"; }
    if (v === 0) { return "0"; }
    var a = Math.abs(v);
    if (a >= 1e-3 && a < 1e5) { return String(Number(v.toPrecision(3))); }
    return v.toExponential(2);
  }
  function className(j) { return classes[j] !== undefined ? classes[j] : "class " + j; }
  function stage(item, map, size) {
    var s = el("div", "xp-stage " + size);
    var base = map ? item.gray : item.img;
    if (base) {
      var b = el("img", item.small ? "px" : "");
      b.src = base;
      b.alt = item.id;
      b.setAttribute("data-role", map ? "background" : "image");
      s.appendChild(b);
    }
    if (map && item.maps[map]) {
      var m = el("img", "xp-map" + (item.small ? " px" : ""));
      m.src = item.maps[map].src;
      m.alt = map + " map of " + item.id;
      m.setAttribute("data-method", map);
      s.appendChild(m);
    }
    item.boxes.forEach(function (box) {
      var d = el("div", "xp-bx");
      d.style.left = (100 * box[0] / item.w) + "%";
      d.style.top = (100 * box[1] / item.h) + "%";
      d.style.width = (100 * (box[2] - box[0]) / item.w) + "%";
      d.style.height = (100 * (box[3] - box[1]) / item.h) + "%";
      d.title = box[4] === null ? "true box" : "true box: " + className(box[4]);
      s.appendChild(d);
    });
    return s;
  }
  function bar(label, value, scale, title) {
    var row = el("div", "xp-bar");
    var n = el("span", "n", label);
    if (title) { n.title = title; }
    var b = el("span", "b"), i = el("i", value < 0 ? "neg" : "");
    i.style.width = Math.min(100, 100 * Math.abs(value) / (scale || 1)) + "%";
    b.appendChild(i);
    row.appendChild(n); row.appendChild(b); row.appendChild(el("span", "v", num(value)));
    return row;
  }
  function methodsOf(item) { return ["image"].concat(Object.keys(item.maps)); }
  function renderMethods(item) {
    var box = byId("xp-methods");
    box.textContent = "";
    methodsOf(item).forEach(function (name, k) {
      var b = el("button", "", name === "image" ? "image only" : name);
      b.type = "button";
      b.setAttribute("data-method", name);
      b.setAttribute("aria-pressed", String(name === method));
      b.title = "key " + k;
      b.addEventListener("click", function () { setMethod(name); });
      box.appendChild(b);
    });
  }
  function renderMain(item) {
    var main = byId("xp-main");
    main.textContent = "";
    main.appendChild(stage(item, method === "image" ? null : method, "big"));
    var cap = method === "image" ? "The image in its own colours" :
      method + " over the image (scale: \u00b1" + num(item.maps[method].max) + ")";
    if (item.boxes.length) { cap += "; green: true boxes"; }
    byId("xp-caption").textContent = cap;
    Array.prototype.forEach.call(document.querySelectorAll("#xp-maps figure"), function (f) {
      f.className = f.getAttribute("data-method") === method ? "sel" : "";
    });
  }
  function setMethod(name) {
    var item = items[current];
    if (!item || methodsOf(item).indexOf(name) < 0) { return; }
    method = name;
    Array.prototype.forEach.call(byId("xp-methods").children, function (b) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-method") === name));
    });
    panel.setAttribute("data-method", name);
    renderMain(item);
  }
  function renderMaps(item) {
    var box = byId("xp-maps");
    box.textContent = "";
    var names = Object.keys(item.maps);
    if (!names.length) { box.appendChild(el("p", "xp-note", "No maps were saved for this image.")); }
    names.forEach(function (name) {
      var f = el("figure");
      f.setAttribute("data-method", name);
      f.appendChild(stage(item, name, "small"));
      f.appendChild(el("figcaption", "", name + " (\u00b1" + num(item.maps[name].max) + ")"));
      f.addEventListener("click", function () { setMethod(name); });
      box.appendChild(f);
    });
  }
  function renderProbs(item) {
    var box = byId("xp-probs");
    box.textContent = "";
    if (!item.probs) { box.appendChild(el("p", "xp-note", "Not saved for this image.")); return; }
    var order = item.probs.map(function (p, j) { return j; })
      .sort(function (a, b) { return item.probs[b] - item.probs[a]; });
    order.slice(0, 10).forEach(function (j) {
      var tags = [];
      if (j === item.target) { tags.push("explained"); }
      if (item.labels && item.labels.indexOf(j) >= 0) { tags.push("true"); }
      box.appendChild(bar(className(j) + (tags.length ? " (" + tags.join(", ") + ")" : ""), item.probs[j], 1));
    });
    if (order.length > 10) {
      box.appendChild(el("p", "xp-note", (order.length - 10) + " less probable classes not shown"));
    }
  }
  function renderProfile(item) {
    var box = byId("xp-profile");
    box.textContent = "";
    if (!item.profile) {
      box.appendChild(el("p", "xp-note",
        "Not saved for this image (the study that explained it computed no latent profile)."));
      return;
    }
    var scale = Math.max.apply(null, item.profile.map(Math.abs)) || 1;
    item.profile.forEach(function (v, j) {
      var label = "Z" + j + (concepts[j] ? " - " + concepts[j] : "");
      box.appendChild(bar(label, v, scale, label));
    });
  }
  function open(i) {
    if (!items.length) { return; }
    current = (i + items.length) % items.length;
    var item = items[current];
    if (methodsOf(item).indexOf(method) < 0) { method = "image"; }
    byId("xp-title").textContent = item.id;
    byId("xp-count").textContent = (current + 1) + " of " + items.length +
      (item.source ? " \u00b7 " + item.source : "");
    renderMethods(item);
    renderMaps(item);
    renderMain(item);
    renderProbs(item);
    renderProfile(item);
    panel.setAttribute("data-index", String(current));
    panel.setAttribute("data-method", method);
    panel.hidden = false;
    byId("xp-close").focus();
  }
  function close() {
    panel.hidden = true;
    panel.removeAttribute("data-index");
    if (opener) { opener.focus(); }
  }
  Array.prototype.forEach.call(document.querySelectorAll(".xp-thumb"), function (t) {
    t.addEventListener("click", function () { opener = t; open(Number(t.getAttribute("data-i"))); });
  });
  byId("xp-prev").addEventListener("click", function () { open(current - 1); });
  byId("xp-next").addEventListener("click", function () { open(current + 1); });
  byId("xp-close").addEventListener("click", close);
  panel.addEventListener("click", function (e) { if (e.target === panel) { close(); } });
  document.addEventListener("keydown", function (e) {
    if (panel.hidden) { return; }
    var names = methodsOf(items[current]), k = names.indexOf(method);
    if (e.key === "Escape") { close(); }
    else if (e.key === "ArrowRight") { open(current + 1); }
    else if (e.key === "ArrowLeft") { open(current - 1); }
    else if (e.key === "ArrowDown" || e.key === "m") { setMethod(names[(k + 1) % names.length]); }
    else if (e.key === "ArrowUp") { setMethod(names[(k - 1 + names.length) % names.length]); }
    else if (/^[0-9]$/.test(e.key) && Number(e.key) < names.length) { setMethod(names[Number(e.key)]); }
    else { return; }
    e.preventDefault();
  });
  document.documentElement.setAttribute("data-explorer", "ready");
})();
"""

PANEL_HTML = """
<div id="xp-panel" class="xp-panel" hidden role="dialog" aria-modal="true" aria-labelledby="xp-title">
<div class="xp-box">
<div class="xp-head"><button type="button" id="xp-prev" title="left arrow">&#8249; previous</button>
<h3 id="xp-title"></h3>
<span id="xp-count" class="xp-note"></span><button type="button" id="xp-next" title="right arrow">next &#8250;</button>
<button type="button" id="xp-close" title="Esc">close</button></div>
<div class="xp-methods" id="xp-methods" role="group" aria-label="what the large view shows"></div>
<div class="xp-body"><div><div id="xp-main"></div><p id="xp-caption" class="xp-note"></p></div>
<div class="xp-side"><h4>Predicted probabilities</h4><div id="xp-probs"></div>
<h4>Latent CE profile (ECE of zeroing each channel)</h4><div id="xp-profile"></div></div></div>
<h4>Every map, side by side</h4><div class="xp-maps" id="xp-maps"></div>
<div class="xp-scale"><span>&minus;max</span><img alt="colour scale" src="{scale}">
<span>+max of each map: red = the model relies on it, blue = it argues against the prediction</span></div>
<p class="xp-note">Keys: &larr; &rarr; previous / next image, &uarr; &darr; or 0-9 method, Esc close.</p>
</div></div>
"""


def script_hash(script: str = EXPLORER_JS) -> str:
    """The CSP source that allows exactly this inline script (or style sheet): ``'sha256-...'``."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii") + "'"


def png_uri(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def map_rgba(m: np.ndarray) -> tuple[np.ndarray, float]:
    """A map as RGBA pixels on the shared scale: value / max|value| through ``bwr``, transparent where near zero."""
    m = np.nan_to_num(np.asarray(m, dtype=np.float32))
    lim = float(np.abs(m).max())
    v = m / lim if lim > 0 else m
    rgba = colormaps["bwr"]((v + 1) / 2)
    rgba[..., 3] = np.clip(np.abs(v) * 1.25, 0, 1) * 0.85
    return (rgba * 255 + 0.5).astype(np.uint8), lim


def scale_uri() -> str:
    v = np.linspace(-1, 1, 128)[None, :].repeat(4, 0)
    rgba, _ = map_rgba(v)
    white = np.full((*v.shape, 3), 255.0)
    alpha = rgba[..., 3:] / 255.0
    return png_uri((rgba[..., :3] * alpha + white * (1 - alpha)).astype(np.uint8))


def item_json(item: ExplorerItem) -> dict:
    """What the panel needs about one item, images as data URIs."""
    data: dict = {"id": str(item.id), "source": item.source, "maps": {}, "img": None, "gray": None}
    h = w = None
    if item.image is not None:
        pixels = image_uint8(item.image)
        h, w = pixels.shape[:2]
        data["img"] = png_uri(pixels)
        data["gray"] = png_uri(pixels if pixels.ndim == 2 else pixels.mean(-1).astype(np.uint8))
    for name, m in item.maps.items():
        m = as_array(m)
        m = m.reshape(m.shape[-2:])
        h, w = (h, w) if h else m.shape
        rgba, lim = map_rgba(m)
        data["maps"][str(name)] = {"src": png_uri(rgba), "max": lim}
    data["h"], data["w"] = int(h or 1), int(w or 1)
    data["small"] = max(data["h"], data["w"]) < PIXELATED_BELOW
    boxes = as_array(item.boxes)
    boxes = boxes.reshape(-1, 4).tolist() if boxes is not None and boxes.size else []
    labels = list(item.box_labels or [])
    data["boxes"] = [[*b, int(labels[k]) if k < len(labels) else None] for k, b in enumerate(boxes)]
    probs, profile = as_array(item.probs), as_array(item.profile)
    data["probs"] = [float(p) for p in probs.reshape(-1)] if probs is not None else None
    data["profile"] = [float(p) for p in profile.reshape(-1)] if profile is not None else None
    data["target"] = None if item.target is None else int(item.target)
    data["labels"] = None if item.labels is None else [int(x) for x in item.labels]
    return data


def json_for_html(value) -> str:
    """JSON that cannot end its ``<script>`` element or open markup (``<``, ``>``, ``&`` as \\u escapes)."""
    text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def explorer_html(
    items: Sequence[ExplorerItem], class_names: Sequence[str], concepts: dict[int, str] | None = None
) -> tuple[str, str]:
    """(HTML of the grid and panel, the inline script to put at the end of the page); ('', '') without items."""
    if not items:
        return "", ""
    data = [item_json(i) for i in items]
    thumbs = []
    for k, (item, d) in enumerate(zip(items, data)):
        src = d["img"] or (next(iter(d["maps"].values()))["src"] if d["maps"] else "")
        cls = "px" if d["small"] else ""
        label = html.escape(str(item.id), quote=True)
        thumbs.append(
            f'<button type="button" class="xp-thumb" data-i="{k}" title="{label}">'
            f'<img class="{cls}" src="{src}" alt="{label}"><span>{label}</span></button>'
        )
    payload = {
        "classes": [str(c) for c in class_names],
        "concepts": {str(j): str(t) for j, t in (concepts or {}).items()},
        "items": data,
    }
    body = (
        f'<div class="xp-grid" id="xp-grid">{"".join(thumbs)}</div>'
        + PANEL_HTML.replace("{scale}", scale_uri())
        + f'<script type="application/json" id="xp-data">{json_for_html(payload)}</script>'
    )
    return body, EXPLORER_JS
