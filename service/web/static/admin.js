/* Admin views: shown only once the typed token is accepted by the API. The token lives in this
   tab's sessionStorage (never in a URL); every call sends it, and the API checks it anyway. */
"use strict";
(function () {
  const B = window.Bitseek;
  const login = document.getElementById("login-form");
  if (!login) return;
  const views = document.getElementById("admin-views");
  const select = document.getElementById("r-collection");
  const retrain = document.getElementById("retrain-form");
  const jobBox = document.getElementById("job");
  let losses = [];
  let polling = null;

  const col = () => encodeURIComponent(select.value);

  async function unlock(token) {
    sessionStorage.setItem(B.TOKEN_KEY, token);
    const probe = select.value
      ? "/v1/admin/collections/" + col() + "/models"
      : "/v1/admin/jobs/none";
    const r = await B.api("GET", probe, undefined, {admin: true});
    if (!r.ok && (r.status === 401 || r.error.type === "AdminDisabled")) {
      sessionStorage.removeItem(B.TOKEN_KEY);
      views.hidden = true; login.hidden = false;
      B.showError(login, {field: "authorization", message: r.error.message});
      return false;
    }
    login.hidden = true; views.hidden = false;
    B.clearErrors(login);
    document.getElementById("a-token").value = "";
    await versions();
    return true;
  }

  async function versions() {
    if (!select.value) return;
    const r = await B.api("GET", "/v1/admin/collections/" + col() + "/models", undefined, {admin: true});
    const body = document.getElementById("versions");
    if (!r.ok) { B.showError(views, r.error); body.innerHTML = ""; return; }
    body.innerHTML = r.data.data.slice().reverse().map((v) =>
      "<tr" + (v.active ? ' class="active"' : "") + "><td>v" + v.version + (v.active ? " <strong>(serving)</strong>" : "") +
      "</td><td>" + new Date(v.created_at * 1000).toLocaleString() + "</td><td><code>" + B.esc(v.job_id || "—") +
      "</code></td><td>" + (v.metrics.train_seconds !== undefined ? Number(v.metrics.train_seconds).toFixed(1) : "—") +
      "</td><td>" + (v.active ? "" : '<button type="button" class="activate" data-version="' + v.version + '">Activate v' + v.version + "</button>") +
      "</td></tr>").join("");
  }

  function drawLoss() {
    const svg = document.getElementById("loss-curve");
    if (losses.length < 2) { svg.innerHTML = ""; return; }
    const lo = Math.min(...losses), hi = Math.max(...losses);
    const pts = losses.map((l, i) => (i * 400 / (losses.length - 1)).toFixed(1) + "," +
      (110 - ((l - lo) / ((hi - lo) || 1)) * 100).toFixed(1)).join(" ");
    svg.innerHTML = '<polyline fill="none" stroke="currentColor" stroke-width="2" points="' + pts + '"/>' +
      '<text x="4" y="12">loss ' + hi.toFixed(3) + '</text><text x="4" y="118">' + lo.toFixed(3) + "</text>";
  }

  function showJob(job) {
    jobBox.hidden = false;
    document.getElementById("job-id").textContent = job.id;
    const state = document.getElementById("job-state");
    state.textContent = job.state + (job.error ? ": " + job.error : "");
    state.dataset.state = job.state;
    const p = job.progress || {};
    document.getElementById("job-progress").textContent = !p.stage ? "waiting for the worker"
      : p.stage + (p.epochs ? " epoch " + p.epoch + "/" + p.epochs : "") +
        (p.loss !== undefined ? " · loss " + Number(p.loss).toFixed(4) : "");
    const bar = document.getElementById("job-bar");
    bar.value = job.state === "succeeded" ? 1 : p.epochs ? (p.epoch - 1 + (p.step || 0) / (p.steps || 1)) / p.epochs : 0;
    if (p.loss !== undefined && (losses.length === 0 || losses[losses.length - 1] !== p.loss)) { losses.push(Number(p.loss)); drawLoss(); }
    const history = job.metrics && job.metrics.finetune && job.metrics.finetune.loss_history;
    if (Array.isArray(history) && history.length > losses.length) { losses = history.map(Number); drawLoss(); } // per epoch, once done
    document.getElementById("job-cancel").hidden = !["queued", "training"].includes(job.state);
  }

  async function poll(id) {
    clearTimeout(polling);
    const r = await B.api("GET", "/v1/admin/jobs/" + encodeURIComponent(id), undefined, {admin: true});
    if (!r.ok) { B.showError(retrain, r.error); return; }
    showJob(r.data);
    if (["succeeded", "failed", "cancelled"].includes(r.data.state)) { await versions(); return; }
    polling = setTimeout(() => poll(id), 300);
  }

  login.addEventListener("submit", (e) => {
    e.preventDefault();
    const token = document.getElementById("a-token").value;
    if (!token) { B.showError(login, {field: "authorization", message: "type the admin token"}); return; }
    unlock(token);
  });
  document.getElementById("logout").addEventListener("click", () => {
    sessionStorage.removeItem(B.TOKEN_KEY);
    views.hidden = true; login.hidden = false;
  });
  select.addEventListener("change", versions);

  retrain.addEventListener("submit", async (e) => {
    e.preventDefault();
    B.clearErrors(retrain);
    let settings = {};
    const extra = document.getElementById("r-settings").value.trim();
    if (extra) {
      try { settings = JSON.parse(extra); } catch (err) {
        B.showError(retrain, {field: "settings", message: "settings: not JSON (" + err.message + ")"}); return;
      }
      if (settings === null || typeof settings !== "object" || Array.isArray(settings)) {
        B.showError(retrain, {field: "settings", message: "settings: a JSON object, e.g. {\"epochs\": 3}"}); return;
      }
    }
    const epochs = document.getElementById("r-epochs").value, bits = document.getElementById("r-bits").value;
    if (epochs) settings.epochs = Number(epochs);
    if (bits) settings.bits = Number(bits);
    const r = await B.api("POST", "/v1/admin/collections/" + col() + "/retrain", {settings}, {admin: true});
    if (!r.ok) { B.showError(retrain, r.error); return; }
    losses = []; drawLoss();
    showJob(r.data);
    poll(r.data.id);
  });
  document.getElementById("job-cancel").addEventListener("click", async () => {
    const id = document.getElementById("job-id").textContent;
    await B.api("POST", "/v1/admin/jobs/" + encodeURIComponent(id) + "/cancel", undefined, {admin: true});
  });
  document.getElementById("versions").addEventListener("click", async (e) => {
    const button = e.target.closest("button.activate");
    if (!button) return;
    button.disabled = true;
    button.textContent = "Activating…";
    const r = await B.api("POST", "/v1/admin/collections/" + col() + "/models/" + button.dataset.version + "/activate", undefined, {admin: true});
    if (!r.ok) B.showError(views, r.error);
    await versions();
  });

  const kept = sessionStorage.getItem(B.TOKEN_KEY);
  if (kept) unlock(kept);
})();
