// The display page of a remote_console URL (/vnc/vnc_auto.html?token=...): noVNC connected to
// the service's VNC WebSocket with the URL's token. The page is public (the token is the only
// credential), so it takes the token out of the address bar at once and sends it nowhere but
// to the WebSocket of this origin.
import RFB from "./vendor/novnc/core/rfb.js";

const status = document.getElementById("status");
const ctrlAltDel = document.getElementById("ctrl-alt-del");
const token = new URLSearchParams(window.location.search).get("token");
window.history.replaceState(null, "", window.location.pathname);

if (!token) {
  status.textContent = "This URL has no token: ask the API for a new remote console URL.";
} else {
  const url = new URL("/vnc/websockify", window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("token", token);
  const rfb = new RFB(document.getElementById("screen"), url.href, { wsProtocols: ["binary"] });
  rfb.scaleViewport = true;
  rfb.background = "#0d1117";
  status.textContent = "Connecting…";
  rfb.addEventListener("connect", () => {
    status.textContent = "Connected.";
    ctrlAltDel.disabled = false;
    rfb.focus();
  });
  rfb.addEventListener("disconnect", (event) => {
    ctrlAltDel.disabled = true;
    status.textContent = event.detail.clean
      ? "Disconnected. A URL works for one connection: ask for a new one to connect again."
      : "The connection failed or was refused: the URL may be used up or expired (10 minutes), or the server is not running.";
  });
  ctrlAltDel.addEventListener("click", () => rfb.sendCtrlAltDel());
}
