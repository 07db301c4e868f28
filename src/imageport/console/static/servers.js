// imageport console, servers area: statuses that change without a reload (the list and a
// server's page read the console's state routes every two seconds while a server is in
// transition), the console log's refresh, and the create form's key pair / password choice.
"use strict";
(function () {
  const api = window.imageport.api;
  const POLL_MS = 2000;
  const LOG_MS = 3000;
  // a getty's prompt; what the guest writes after it may share its line (as the boot test reads)
  const LOGIN_PROMPT = /\blogin:( |$)/m;

  function byServer(root, selector, id) {
    return root.querySelector(selector.replace("ID", CSS.escape(id)));
  }

  // Show a state document (console/servers.py server_state) in `root`: the status badge, whether
  // the server is changing, and which action buttons are usable now.
  function applyState(root, state) {
    const badge = root.querySelector("[data-status]");
    if (badge && badge.textContent !== state.label) badge.textContent = state.label;
    if (badge) badge.className = "status status-" + state.status;
    root.dataset.busy = state.busy ? "true" : "false";
    root.dataset.serverStatus = state.status;
    root.querySelectorAll("button[data-action]").forEach((button) => {
      button.disabled = !state.actions.includes(button.dataset.action);
    });
    root.querySelectorAll("[data-field]").forEach((field) => {
      const value = state[field.dataset.field];
      field.textContent = value === null || value === undefined ? field.dataset.none : String(value);
    });
  }

  function announce(text) {
    const news = document.getElementById("server-news");
    if (!news) return;
    news.hidden = false;
    news.textContent = text;
  }

  // The list: poll while a row is busy; a server that left the list was deleted.
  function watchList(table) {
    let timer = null;
    const schedule = () => {
      if (timer === null && table.querySelector('tbody tr[data-busy="true"]')) {
        timer = window.setTimeout(poll, POLL_MS);
      }
    };
    async function poll() {
      timer = null;
      let data = null;
      try {
        data = await api(table.dataset.states);
      } catch (error) {
        schedule();
        return;
      }
      const seen = new Set();
      for (const state of data.servers) {
        seen.add(state.id);
        const row = byServer(table, 'tbody tr[data-server-id="ID"]', state.id);
        if (row) applyState(row, state);
      }
      table.querySelectorAll("tbody tr[data-server-id]").forEach((row) => {
        if (!seen.has(row.dataset.serverId)) {
          const name = row.querySelector("th").textContent.trim();
          announce(table.dataset.gone.replace("{name}", name));
          row.remove();
        }
      });
      schedule();
    }
    schedule();
  }

  // A server's page: poll its state while it changes, and tell the consoles (an event).
  function watchServer(root) {
    async function poll() {
      try {
        const state = await api(root.dataset.stateUrl);
        applyState(root, state);
        document.dispatchEvent(new CustomEvent("imageport:server-state", { detail: state }));
      } catch (error) {
        if (error.status === 404) {
          root.dataset.busy = "false";
          return;
        }
      }
      if (root.dataset.busy === "true") window.setTimeout(poll, POLL_MS);
    }
    if (root.dataset.busy === "true") window.setTimeout(poll, POLL_MS);
  }

  // The console log: the refresh button, and every few seconds while the box is ticked (it is
  // ticked while the server boots, and unticked once the log shows a login prompt).
  function watchLog(section) {
    const pre = document.getElementById("console-log");
    const auto = document.getElementById("log-auto");
    const news = document.getElementById("log-news");
    let timer = null;
    pre.scrollTop = pre.scrollHeight;
    async function refresh(manual) {
      try {
        const data = await api(section.dataset.logUrl);
        const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
        if (data.output && pre.textContent !== data.output) pre.textContent = data.output;
        if (atBottom) pre.scrollTop = pre.scrollHeight;
        const booted = LOGIN_PROMPT.test(data.output || "");
        if (booted && auto.checked) auto.checked = false;
        if (manual || booted) {
          news.textContent = section.dataset.updated.replace("{time}", new Date().toLocaleTimeString());
        }
      } catch (error) {
        news.textContent = error.message;
      }
    }
    function loop() {
      timer = null;
      if (!auto.checked) return;
      refresh(false).finally(() => {
        if (auto.checked && timer === null) timer = window.setTimeout(loop, LOG_MS);
      });
    }
    document.getElementById("log-refresh").addEventListener("click", () => refresh(true));
    auto.addEventListener("change", () => {
      if (auto.checked && timer === null) loop();
    });
    if (auto.checked) timer = window.setTimeout(loop, LOG_MS);
  }

  // The create form: show the key pair or the password fields, as chosen.
  function loginChoice(form) {
    const panels = form.querySelectorAll("[data-login]");
    const show = () => {
      const chosen = form.querySelector('input[name="login"]:checked');
      panels.forEach((panel) => {
        panel.hidden = chosen !== null && panel.dataset.login !== chosen.value;
      });
    };
    form.addEventListener("change", (event) => {
      if (event.target.name === "login") show();
    });
    show();
  }

  const table = document.getElementById("servers");
  if (table) watchList(table);
  const server = document.getElementById("server");
  if (server) watchServer(server);
  const log = document.getElementById("console-log-section");
  if (log) watchLog(log);
  const form = document.getElementById("create-server");
  if (form) loginChoice(form);
})();
