/* Bitseek page helpers: calls to the public JSON API, API errors shown next to their field,
   codes drawn as bits. Plain JavaScript, no build step; every page works without it. */
"use strict";
(function () {
  const TOKEN_KEY = "bitseek-admin-token"; // sessionStorage only: never in a URL or a cookie

  function esc(text) {
    return String(text).replace(/[&<>"']/g, (c) => (
      {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  }

  async function api(method, path, body, options) {
    const headers = {"Accept": "application/json"};
    const opts = options || {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (opts.admin) headers["Authorization"] = "Bearer " + (sessionStorage.getItem(TOKEN_KEY) || "");
    let response;
    try {
      response = await fetch(path, {
        method: method, headers: headers, signal: opts.signal,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      return {ok: false, status: 0, error: {message: "the server did not answer (" + err.message + ")"}};
    }
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    if (response.ok) return {ok: true, status: response.status, data: data};
    const error = (data && data.error) || {message: "HTTP " + response.status};
    return {ok: false, status: response.status, error: error};
  }

  function clearErrors(form) {
    form.querySelectorAll("[data-error-for]").forEach((el) => { el.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  }

  // error.field names a request field ("k", "settings.bits", "items[0].image"): show the message
  // next to the closest field the form has, else at the form's top
  function showError(form, error) {
    clearErrors(form);
    let field = error.field || "";
    let slot = null;
    while (field && !slot) {
      slot = form.querySelector('[data-error-for="' + CSS.escape(field) + '"]');
      const cut = Math.max(field.lastIndexOf("."), field.lastIndexOf("["));
      if (!slot) field = cut > 0 ? field.slice(0, cut) : "";
    }
    slot = slot || form.querySelector(".form-error") || form.querySelector("[data-error-for]");
    if (!slot) return;
    slot.textContent = error.message || "something went wrong";
    const input = slot.parentElement && slot.parentElement.querySelector("input, select");
    if (input) input.setAttribute("aria-invalid", "true");
  }

  function unpack(hex, bits) {
    const out = [];
    for (let i = 0; i < bits; i++) {
      const byte = parseInt(hex.substr((i >> 3) * 2, 2), 16);
      out.push((byte >> (7 - (i & 7))) & 1);
    }
    return out;
  }

  function bitsHtml(code, query, bits, distance) {
    if (!code || !query) return "";
    const mine = unpack(code, bits), theirs = unpack(query, bits);
    let cells = "";
    for (let i = 0; i < bits; i++) {
      cells += '<i class="b' + mine[i] + (mine[i] !== theirs[i] ? " d" : "") + '"></i>';
    }
    return '<div class="bits" role="img" aria-label="code ' + esc(code) + ", " + distance +
      ' bits differ from the query">' + cells + "</div>";
  }

  // a page's main form and the collection it is about (data-collection, data-modality)
  function page(id) {
    const form = document.getElementById(id);
    return form && {form, name: form.dataset.collection, modality: form.dataset.modality};
  }

  window.Bitseek = {api, esc, showError, clearErrors, bitsHtml, page, TOKEN_KEY};
})();
