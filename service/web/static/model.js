/* Draws the model page's map and reconstruction field on canvas from the cached insights
   (the page's JSON twin), and fetches another item's tangent directions. */
"use strict";
(function () {
  const B = window.Bitseek;
  const panels = B.page("model-panels");
  if (!panels) return;
  const {form: root, name} = panels;
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
    "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363", "#9c9ede", "#cedb9c", "#e7cb94", "#e7969c"];

  function fit(canvas) { // sharp on high-density screens, as wide as its box
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || canvas.width;
    const h = Math.round(w * 0.75);
    canvas.width = w * ratio; canvas.height = h * ratio;
    canvas.style.height = h + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return {ctx, w, h};
  }

  function scaler(xs, ys, w, h, pad) {
    const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
    const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    const sx = (w - 2 * pad) / ((x1 - x0) || 1), sy = (h - 2 * pad) / ((y1 - y0) || 1);
    return {x: (v) => pad + (v - x0) * sx, y: (v) => h - pad - (v - y0) * sy, sx, sy};
  }

  function drawMap(map, key) {
    const canvas = document.getElementById("map");
    const {ctx, w, h} = fit(canvas);
    ctx.clearRect(0, 0, w, h);
    const s = scaler(map.x, map.y, w, h, 12);
    const values = key ? map.color[key] : null;
    const cats = values ? [...new Set(values.map((v) => JSON.stringify(v)))].sort() : [];
    ctx.globalAlpha = 0.75;
    for (let i = 0; i < map.x.length; i++) {
      ctx.fillStyle = values ? PALETTE[cats.indexOf(JSON.stringify(values[i])) % PALETTE.length] : "#1f77b4";
      ctx.beginPath(); ctx.arc(s.x(map.x[i]), s.y(map.y[i]), 2.6, 0, 2 * Math.PI); ctx.fill();
    }
    ctx.globalAlpha = 1;
    const legend = document.getElementById("map-legend");
    legend.innerHTML = cats.map((c, i) => '<li><i style="background:' + PALETTE[i % PALETTE.length] +
      '"></i>' + B.esc(JSON.parse(c)) + "</li>").join("");
  }

  function drawField(field) {
    const canvas = document.getElementById("field");
    if (!canvas || !field) return;
    const {ctx, w, h} = fit(canvas);
    const xs = field.grid.map((g) => g[0]), ys = field.grid.map((g) => g[1]);
    const s = scaler(xs, ys, w, h, 16);
    ctx.fillStyle = "rgba(120,120,120,0.45)";
    for (const p of field.points) { ctx.beginPath(); ctx.arc(s.x(p[0]), s.y(p[1]), 2, 0, 2 * Math.PI); ctx.fill(); }
    const cell = Math.min((w - 32) / 15, (h - 32) / 15);
    const longest = Math.max(...field.grid.map((g) => Math.hypot(g[2] * s.sx, g[3] * s.sy))) || 1;
    ctx.strokeStyle = "#c0392b"; ctx.fillStyle = "#c0392b"; ctx.lineWidth = 1.3;
    for (const [a, b, da, db] of field.grid) {
      const x = s.x(a), y = s.y(b);
      const k = (0.9 * cell) / longest;
      const dx = da * s.sx * k, dy = -db * s.sy * k;
      ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x + dx, y + dy); ctx.stroke();
      const ang = Math.atan2(dy, dx), len = Math.min(5, Math.hypot(dx, dy) * 0.5);
      ctx.beginPath(); ctx.moveTo(x + dx, y + dy);
      ctx.lineTo(x + dx - len * Math.cos(ang - 0.45), y + dy - len * Math.sin(ang - 0.45));
      ctx.lineTo(x + dx - len * Math.cos(ang + 0.45), y + dy - len * Math.sin(ang + 0.45));
      ctx.fill();
    }
  }

  async function start() {
    const r = await B.api("GET", "/v1/collections/" + encodeURIComponent(name) + "/model/insights");
    if (!r.ok) { root.insertAdjacentHTML("beforebegin", '<p class="error" role="alert">' + B.esc(r.error.message) + "</p>"); return; }
    const data = r.data;
    const select = document.getElementById("color-key");
    const draw = () => { if (data.map) drawMap(data.map, select ? select.value : null); drawField(data.field); };
    if (select) select.addEventListener("change", draw);
    draw();
    document.body.dataset.modelDrawn = "1";
    let timer = null;
    window.addEventListener("resize", () => { clearTimeout(timer); timer = setTimeout(draw, 150); });
  }

  const tform = document.getElementById("tangent-form");
  if (tform) {
    tform.addEventListener("submit", async (e) => {
      e.preventDefault();
      B.clearErrors(tform);
      const item = document.getElementById("t-item").value.trim();
      const r = await B.api("GET", "/v1/collections/" + encodeURIComponent(name) + "/model/tangents?item=" + encodeURIComponent(item));
      if (!r.ok) { B.showError(tform, Object.assign({}, r.error, {field: "item"})); return; }
      const t = r.data;
      document.getElementById("tangents").innerHTML =
        '<figure><img class="px" src="data:image/png;base64,' + t.image + '" alt="the item"><figcaption>item</figcaption></figure>' +
        t.directions.map((d, i) => '<figure><img class="px" src="data:image/png;base64,' + d + '" alt="tangent direction ' + (i + 1) +
          '"><figcaption>σ=' + t.singular_values[i].toFixed(2) + "</figcaption></figure>").join("");
    });
  }
  start();
})();
