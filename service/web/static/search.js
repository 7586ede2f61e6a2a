/* Live search on top of the GET form: each key press (or dropped image) queries the public
   search API, paints the hits, and puts the query in the URL (history.replaceState). */
"use strict";
(function () {
  const B = window.Bitseek;
  const page = B.page("search-form");
  if (!page) return;
  const {form, name, modality} = page;
  const hitsEl = document.getElementById("hits");
  const status = document.getElementById("status");
  const FIELDS = ["text", "vector", "id", "code", "k", "max_distance", "filter"];
  let controller = null;
  let imageB64 = null;
  let seq = 0;

  function params() {
    const data = new FormData(form);
    const out = {};
    for (const f of FIELDS) {
      const v = data.get(f);
      if (v !== null && String(v).trim() !== "") out[f] = String(v);
    }
    return out;
  }

  function parseFilter(text) {
    const out = {};
    for (const part of text.split(",")) {
      const p = part.trim();
      if (!p) continue;
      const at = p.indexOf("=");
      if (at <= 0) throw {field: "filter", message: "filter " + JSON.stringify(p) + ": write key=value pairs separated by commas, e.g. label=3"};
      const raw = p.slice(at + 1).trim();
      let value = raw;
      try { const j = JSON.parse(raw); if (j === null || typeof j !== "object") value = j; } catch (e) { value = raw; }
      out[p.slice(0, at).trim()] = value;
    }
    return out;
  }

  function body(p) {
    const b = {include: ["code", "preview"]};
    if (imageB64 && !p.id && !p.code) b.image = imageB64;
    for (const f of ["text", "id", "code"]) if (p[f] !== undefined) b[f] = p[f];
    if (p.vector !== undefined) {
      b.vector = p.vector.split(/[\s,]+/).filter(Boolean).map(Number);
      if (b.vector.some(Number.isNaN)) throw {field: "vector", message: "vector: numbers separated by commas"};
    }
    for (const f of ["k", "max_distance"]) {
      if (p[f] === undefined) continue;
      const n = Number(p[f]);
      if (!Number.isInteger(n)) throw {field: f, message: f + ": a whole number"};
      b[f] = n;
    }
    if (p.filter !== undefined) b.filter = parseFilter(p.filter);
    if (b.image) { delete b.text; delete b.vector; }
    return b;
  }

  function hitHtml(hit, res) {
    let shown = "";
    if (modality === "image") {
      shown = hit.preview ? '<img class="thumb" src="data:image/png;base64,' + hit.preview + '" alt="item ' + B.esc(hit.id) + '">' : "";
    } else if (modality === "text") {
      shown = '<p class="preview">' + B.esc(hit.preview || "") + "</p>";
    } else {
      shown = '<p class="preview mono">' + B.esc((hit.preview || []).map((v) => v.toFixed(3)).join(", ")) + "…</p>";
    }
    const meta = Object.entries(hit.metadata || {}).map(
      ([k, v]) => '<span class="tag">' + B.esc(k) + ": " + B.esc(v) + "</span>").join("");
    const id = encodeURIComponent(hit.id);
    return '<li class="hit card" data-id="' + B.esc(hit.id) + '"><div class="hit-body">' + shown +
      '<div class="hit-meta"><p><span class="dist" title="Hamming distance to the query">d = ' + hit.distance +
      '</span> <code class="hit-id">' + B.esc(hit.id) + "</code></p>" +
      (meta ? '<p class="meta">' + meta + "</p>" : "") +
      '<p class="links"><a class="more" href="/c/' + encodeURIComponent(name) + "?id=" + id + '">More like this</a> ' +
      '<a href="/v1/collections/' + encodeURIComponent(name) + "/items/" + id + '">Item</a></p></div></div>' +
      B.bitsHtml(hit.code, res.code, res.bits, hit.distance) + "</li>";
  }

  function paint(res, started) {
    hitsEl.innerHTML = res.hits.map((h) => hitHtml(h, res)).join("");
    const none = document.getElementById("no-hits");
    if (none) none.remove();
    if (!res.hits.length) hitsEl.insertAdjacentHTML("afterend", '<p class="muted" id="no-hits">No items within reach; widen the radius or drop the filter.</p>');
    const base = res.hits.length + " hits · server " + res.took_ms + " ms · " + res.probes +
      " probes · model v" + res.model_version + " · radius searched " + res.searched_distance +
      (res.widened ? " (widened)" : "");
    status.textContent = base;
    // measured once the hits are painted: the frame after the DOM change
    requestAnimationFrame(() => setTimeout(() => {
      const ms = performance.now() - started;
      document.body.dataset.roundTripMs = ms.toFixed(1);
      status.textContent = base + " · round trip " + ms.toFixed(0) + " ms";
    }, 0));
  }

  function shareUrl(p) {
    const q = new URLSearchParams(p);
    history.replaceState(null, "", "/c/" + encodeURIComponent(name) + (q.toString() ? "?" + q : ""));
    const alt = document.querySelector('link[rel="alternate"]');
    if (alt && q.toString() && !imageB64) alt.href = "/v1/collections/" + encodeURIComponent(name) + "/search?" + q;
  }

  async function run(started) {
    const p = params();
    const my = ++seq;
    if (controller) controller.abort();
    B.clearErrors(form);
    if (!p.text && !p.vector && !p.id && !p.code && !imageB64) {
      hitsEl.innerHTML = ""; status.textContent = ""; shareUrl(p); return;
    }
    let b;
    try { b = body(p); } catch (err) { B.showError(form, err); return; }
    controller = new AbortController();
    let r;
    try {
      r = await B.api("POST", "/v1/collections/" + encodeURIComponent(name) + "/search", b, {signal: controller.signal});
    } catch (err) { return; } // aborted by a newer key press
    if (my !== seq) return;
    shareUrl(p);
    if (!r.ok) { B.showError(form, r.error); status.textContent = ""; return; }
    paint(r.data, started);
  }

  form.addEventListener("input", (event) => {
    if (event.target.type === "file") return;
    if (["id", "code"].includes(event.target.name)) imageB64 = null; // a new kind of query
    run(event.timeStamp || performance.now()); // the key press, in performance.now()'s clock
  });
  form.addEventListener("submit", (event) => { event.preventDefault(); run(performance.now()); });

  // images: drop, paste or pick
  const drop = document.getElementById("dropzone");
  if (drop) {
    drop.hidden = false;
    const picker = document.getElementById("f-image");
    const preview = document.getElementById("query-image");
    const take = (file) => {
      if (!file) return;
      if (!/^image\/(png|jpeg)$/.test(file.type)) {
        B.showError(form, {field: "image", message: "pick a PNG or JPEG image (got " + (file.type || "an unknown type") + ")"});
        return;
      }
      const reader = new FileReader();
      reader.onload = () => {
        const url = String(reader.result);
        imageB64 = url.slice(url.indexOf(",") + 1);
        preview.src = url; preview.hidden = false;
        form.querySelector('[name="id"]').value = "";
        form.querySelector('[name="code"]').value = "";
        run(performance.now());
      };
      reader.readAsDataURL(file);
    };
    picker.addEventListener("change", () => take(picker.files[0]));
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); take(e.dataTransfer.files[0]); });
    document.addEventListener("paste", (e) => {
      const item = [...(e.clipboardData || {items: []}).items].find((i) => i.type.startsWith("image/"));
      if (item) take(item.getAsFile());
    });
  }
})();
