// imageport console, a server's page: the serial console (xterm.js) and the remote login screen
// (noVNC), each over the service's console WebSocket on this origin. "Connect" asks the console
// for a fresh one-time token (the same service call as the server API's serial-console action
// and remote_console route), then opens the WebSocket with it; a token is used up by that
// connection, so connecting again asks for another. Both libraries ship in ./vendor/.
import { Terminal } from "./vendor/xterm/xterm.mjs";
import RFB from "./vendor/novnc/core/rfb.js";

const server = document.getElementById("server");

function socketUrl(path) {
  const url = new URL(path, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

// The buttons and status line of a console section; `open()` returns a close function.
function consolePanel(section, { open, onConnected, onClosed }) {
  const connect = section.querySelector("[data-connect]");
  const disconnect = section.querySelector("[data-disconnect]");
  const status = section.querySelector("[data-console-status]");
  let close = null;
  const running = () => server.dataset.serverStatus === "ACTIVE";
  const refreshButtons = () => {
    connect.disabled = close !== null || !running();
    disconnect.disabled = close === null;
  };
  const say = (text) => {
    status.textContent = text;
  };
  const ended = (reason) => {
    close = null;
    say(section.dataset.closed + (reason ? " " + reason : ""));
    refreshButtons();
    if (onClosed) onClosed();
  };
  connect.addEventListener("click", async () => {
    connect.disabled = true;
    say(section.dataset.connecting);
    try {
      const { path } = await window.imageport.api(section.dataset.tokenUrl, { method: "POST" });
      close = open(socketUrl(path), {
        connected: () => {
          say(section.dataset.connected);
          refreshButtons();
          if (onConnected) onConnected();
        },
        ended,
      });
    } catch (error) {
      close = null;
      say(section.dataset.failed + " " + error.message);
    }
    refreshButtons();
  });
  disconnect.addEventListener("click", () => {
    if (close) close();
  });
  document.addEventListener("imageport:server-state", refreshButtons);
  refreshButtons();
  return { disconnect };
}

// Shift+Escape moves the keyboard out of a console (the terminal and the screen take every
// other key, Tab included, for the server).
function leavesOnShiftEscape(event, target) {
  if (event.key === "Escape" && event.shiftKey) {
    event.preventDefault();
    event.stopPropagation();
    target.focus();
    return true;
  }
  return false;
}

function serialConsole(section) {
  const term = new Terminal({
    cols: 100,
    rows: 24,
    scrollback: 2000,
    cursorBlink: true,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", monospace',
    fontSize: 14,
    theme: { background: "#0d1117", foreground: "#e6edf3" },
  });
  term.open(section.querySelector(".terminal"));
  const encoder = new TextEncoder();
  let socket = null;
  term.onData((data) => {
    if (socket !== null && socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
  });
  const panel = consolePanel(section, {
    open(url, { connected, ended }) {
      socket = new WebSocket(url, ["binary"]);
      socket.binaryType = "arraybuffer";
      socket.addEventListener("open", () => {
        connected();
        term.focus();
      });
      socket.addEventListener("message", (event) => {
        term.write(typeof event.data === "string" ? event.data : new Uint8Array(event.data));
      });
      socket.addEventListener("close", (event) => {
        socket = null;
        ended(event.reason || "");
      });
      return () => socket && socket.close(1000);
    },
  });
  term.attachCustomKeyEventHandler(
    (event) => !(event.type === "keydown" && leavesOnShiftEscape(event, panel.disconnect)),
  );
}

function remoteScreen(section) {
  const screen = section.querySelector(".screen");
  const ctrlAltDel = section.querySelector("[data-ctrl-alt-del]");
  let rfb = null;
  const panel = consolePanel(section, {
    open(url, { connected, ended }) {
      rfb = new RFB(screen, url, { wsProtocols: ["binary"] });
      rfb.scaleViewport = true;
      rfb.background = "#0d1117";
      rfb.addEventListener("connect", () => {
        connected();
        rfb.focus();
      });
      rfb.addEventListener("securityfailure", (event) => ended(event.detail.reason || ""));
      rfb.addEventListener("disconnect", () => {
        rfb = null;
        ended("");
      });
      return () => rfb && rfb.disconnect();
    },
    onConnected: () => {
      ctrlAltDel.disabled = false;
    },
    onClosed: () => {
      ctrlAltDel.disabled = true;
    },
  });
  ctrlAltDel.addEventListener("click", () => rfb && rfb.sendCtrlAltDel());
  screen.addEventListener("keydown", (event) => leavesOnShiftEscape(event, panel.disconnect), true);
}

serialConsole(document.getElementById("serial"));
remoteScreen(document.getElementById("vnc"));
