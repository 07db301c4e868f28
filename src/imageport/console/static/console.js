// imageport console: the few behaviours every page shares. No framework, no build step.
"use strict";
(function () {
  const csrf = () => document.body.dataset.csrf || "";

  // fetch() a console JSON route: same origin, the session cookie, the anti-forgery header.
  async function api(path, options = {}) {
    const init = { method: options.method || "GET", credentials: "same-origin", headers: {} };
    if (init.method !== "GET") init.headers["X-CSRF-Token"] = csrf();
    if (options.body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    const response = await fetch(path, init);
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!response.ok) {
      const error = (data && data.error) || { code: String(response.status), message: text.slice(0, 200) };
      const failure = new Error(error.code + ": " + error.message);
      failure.code = error.code;
      failure.status = response.status;
      throw failure;
    }
    return data;
  }

  // A form with data-confirm asks first (the text is the attribute's value).
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i === 0 ? String(n) : n.toFixed(1)) + " " + units[i];
  }

  window.imageport = { api, csrf, bytes };
})();
