/* Live denoising on top of the GET form: corrupt the item in the page (noise or mask, by the
   slider), send it to the public denoise API, show corrupted, reconstructed and original. */
"use strict";
(function () {
  const B = window.Bitseek, page = B.page("denoise-form");
  if (!page) return;
  const {form, name, modality} = page;
  const out = document.getElementById("denoise-result");
  const slider = document.getElementById("d-noise");
  const shown = document.getElementById("d-noise-out");
  let original = null; // {image: base64} or {text}
  let seq = 0;

  function seeded(seed) { // small deterministic generator, so a slider position is repeatable
    let s = seed >>> 0;
    return () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 4294967296; };
  }

  function loadImage(b64) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("not an image"));
      img.src = "data:image/png;base64," + b64;
    });
  }

  async function corruptImage(b64, level, mode) {
    const img = await loadImage(b64);
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const rand = seeded(7);
    for (let i = 0; i < px.data.length; i += 4) {
      if (rand() >= level) continue;
      const v = mode === "noise" ? Math.floor(rand() * 256) : 0;
      px.data[i] = px.data[i + 1] = px.data[i + 2] = v;
    }
    ctx.putImageData(px, 0, 0);
    const url = canvas.toDataURL("image/png");
    return url.slice(url.indexOf(",") + 1);
  }

  function corruptText(text, level) {
    const rand = seeded(7);
    const words = text.split(/\s+/).filter(Boolean);
    const kept = words.filter(() => rand() >= level);
    return (kept.length ? kept : words.slice(0, 1)).join(" ");
  }

  function figure(caption, inner) { return "<figure>" + inner + "<figcaption>" + caption + "</figcaption></figure>"; }
  function img(b64, alt, id) { return '<img class="big"' + (id ? ' id="' + id + '"' : "") + ' src="data:image/png;base64,' + b64 + '" alt="' + alt + '">'; }

  async function fetchOriginal() {
    const data = new FormData(form);
    const id = String(data.get("id") || "").trim();
    if (id) {
      const r = await B.api("GET", "/v1/collections/" + encodeURIComponent(name) + "/items/" + encodeURIComponent(id));
      if (!r.ok) { B.showError(form, r.error); return null; }
      return modality === "image" ? {image: r.data.image} : modality === "text" ? {text: r.data.text} : {vector: r.data.vector};
    }
    const text = String(data.get("text") || "").trim();
    return text ? {text} : null;
  }

  async function run() {
    const my = ++seq;
    B.clearErrors(form);
    const level = Number(slider.value);
    shown.textContent = Math.round(level * 100) + "%";
    if (!original) return;
    const modeInput = form.querySelector('[name="mode"]:checked');
    const mode = modeInput ? modeInput.value : "noise";
    let item, corrupted;
    if (original.image) { corrupted = await corruptImage(original.image, level, mode); item = {image: corrupted}; }
    else if (original.text) { corrupted = corruptText(original.text, level); item = {text: corrupted}; }
    else { item = {vector: original.vector}; }
    const r = await B.api("POST", "/v1/collections/" + encodeURIComponent(name) + "/denoise", {items: [item]});
    if (my !== seq) return;
    if (!r.ok) { B.showError(form, r.error); return; }
    const d = r.data.items[0];
    if (original.image) {
      out.innerHTML = figure("Corrupted", img(corrupted, "corrupted")) + figure("Reconstructed", img(d.image, "reconstructed", "reconstructed")) + figure("Original", img(original.image, "original"));
    } else if (original.text) {
      out.innerHTML = '<figure class="text"><figcaption>Corrupted</figcaption><p>' + B.esc(corrupted.slice(0, 600)) + "</p></figure>" +
        '<figure class="text"><figcaption>Top terms of the reconstruction</figcaption><ol class="terms" id="terms">' +
        d.terms.map((t) => "<li><span>" + B.esc(t.term) + "</span> <small>" + t.weight.toFixed(3) + "</small></li>").join("") + "</ol></figure>" +
        '<figure class="text"><figcaption>Original</figcaption><p>' + B.esc(original.text.slice(0, 600)) + "</p></figure>";
    } else {
      out.innerHTML = '<figure class="text"><figcaption>Reconstructed</figcaption><p class="mono">' + d.vector.map((v) => v.toFixed(3)).join(", ") + "</p></figure>";
    }
    const q = new URLSearchParams(new FormData(form));
    history.replaceState(null, "", "/c/" + encodeURIComponent(name) + "/denoise?" + q);
  }

  form.addEventListener("submit", async (e) => { e.preventDefault(); original = await fetchOriginal(); run(); });
  slider.addEventListener("input", run);
  form.querySelectorAll('[name="mode"]').forEach((el) => el.addEventListener("change", run));
  const drop = document.getElementById("d-drop");
  if (drop) {
    drop.hidden = false;
    const picker = document.getElementById("d-file");
    picker.addEventListener("change", () => {
      const file = picker.files[0];
      if (!file) return;
      const reader = new FileReader();
      reader.onload = () => {
        const url = String(reader.result);
        original = {image: url.slice(url.indexOf(",") + 1)};
        form.querySelector('[name="id"]').value = "";
        run();
      };
      reader.readAsDataURL(file);
    });
  }
  // a page rendered with an item: take it over so the slider is live
  if (form.querySelector('[name="id"]').value || (form.querySelector('[name="text"]') || {}).value) {
    fetchOriginal().then((o) => { original = o; });
  }
})();
