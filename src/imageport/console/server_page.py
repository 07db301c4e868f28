"""A server's page: its properties, console log, serial console, remote login screen, and
"create image from this server".

* The console log is what ``GET .../console-output`` answers (the same service call), made
  readable (:func:`readable_log`); the page's script reads ``/servers/{id}/console-log`` again on
  the refresh button, and every few seconds while the server is booting.
* The serial console and the remote login screen are the service's console WebSockets
  (:mod:`imageport.api.ecs.console_sockets`), opened by the page's script with a token from
  ``POST /servers/{id}/serial-console`` or ``/remote-console``: the same service calls as the
  server API's ``actions/serial-console`` and ``remote_console`` routes, so the same rules hold
  (the server must be ``ACTIVE``; one connection per token, within ten minutes). The terminal is
  xterm.js, the screen noVNC, both shipped in ``static/vendor/``.
* "Create image" (``/servers/{id}/image``) sends the image API's
  ``POST /v2/cloudimages/action`` body with ``instance_id`` to the same use case and opens the
  new image's page.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.responses import JSONResponse, Response

from imageport.api.ecs.render import server_document
from imageport.boot.patterns import signals_of
from imageport.console.fields import only_fields
from imageport.console.pages import PageCall, PageRoute, redirect, render, segment, url
from imageport.console.servers import ACTIONS, FieldError, busy, server_state
from imageport.numbers import whole_number
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import NotFound, RequestInvalid, ServiceError
from imageport.service.images import queries as image_queries
from imageport.service.images import server_images
from imageport.service.jobs import manage
from imageport.service.servers import consoles, queries
from imageport.service.servers.statuses import ServerStatus

LOG_LINES = 200
"""Console log lines a page shows (the script may ask for up to :data:`MAX_LOG_LINES`)."""
MAX_LOG_LINES = 2000
REMOTE_CONSOLE_BODY = json.dumps({"remote_console": consoles.REMOTE_CONSOLE}).encode()
"""The one body the remote console route takes."""

_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, erase
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]?"  # any other escape
)


def shows_login_prompt(log: str) -> bool:
    """Whether a getty's prompt is in ``log`` (the guest has booted; the page's script stops
    refreshing the log when it sees one), as the boot test reads it: a message the guest writes
    after the prompt may share its line (``web-1 login: [ 63.5] cloud-init[420]: ...``)."""
    return any("login" in signals_of(line) for line in log.splitlines())


_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""What is left out of a shown log: control characters (but tab and line feed), and the
bidirectional overrides that would show text in another order than the guest wrote it."""


def readable_log(output: str) -> str:
    """A serial console's output as text for a page: terminal escape sequences removed, each
    line as a terminal would leave it after its carriage returns (the last text written over
    it), control characters dropped. What the guest prints is untrusted; the page escapes it
    too."""
    text = _ESCAPES.sub("", output).replace("\r\n", "\n")
    lines = []
    for line in text.split("\n"):
        parts = [part for part in line.split("\r") if part]
        lines.append(_UNPRINTABLE.sub("", parts[-1] if parts else ""))
    return "\n".join(lines)


def _console_log(services: Services, call: PageCall, server_id: str, lines: int) -> str:
    """The last ``lines`` of the server's console log, readable; an explanation instead when
    the host cannot read it (``Ecs.0321``: a server that never started has none)."""
    try:
        output = queries.console_output(
            services, call.project_id, server_id, [("length", str(lines))]
        )
    except RequestInvalid as refused:
        if refused.code != codes.ECS_CONSOLE_FAILED:
            raise
        return ""
    return readable_log(output)


def _image_name(services: Services, call: PageCall, image_id: str) -> str | None:
    try:
        return image_queries.get_image(services, call.project_id, image_id).name
    except NotFound:
        return None


def show_server(services: Services, call: PageCall) -> Response:
    """A server: properties, actions, console log, serial console and remote login screen."""
    server = queries.show_server(services, call.project_id, call.path_params["server_id"])
    doc = server_document(server)
    log = _console_log(services, call, server.id, LOG_LINES)
    booting = busy(server.status, server.task_state) or (
        server.status == ServerStatus.ACTIVE and not shows_login_prompt(log)
    )
    state = server_state(call.lang, doc)
    return render(
        call,
        "server_page.html",
        server={**doc, "state": state},
        state=state,
        image_name=_image_name(services, call, server.image_id),
        disk_gib=server.disk_gib,
        log=log,
        booting=booting,
        done=call.arg("done") if call.arg("done") in ACTIONS else "",
    )


def console_log(services: Services, call: PageCall) -> Response:
    """JSON for the page's script: ``{"output"}``, the last ``lines`` (200, at most 2000) of
    the console log, readable."""
    lines = min(whole_number(call.arg("lines")) or LOG_LINES, MAX_LOG_LINES)
    server_id = call.path_params["server_id"]
    queries.show_server(services, call.project_id, server_id)  # 404 for a deleted one
    return JSONResponse({"output": _console_log(services, call, server_id, lines)})


def _no_body(call: PageCall) -> None:
    """A console-token request carries nothing (the page's script sends no body): anything
    else is refused, not ignored."""
    if call.form or call.body is not None:
        raise RequestInvalid(codes.BAD_REQUEST, "this route takes no body")


def serial_console_token(services: Services, call: PageCall) -> Response:
    """JSON for the page's script: ``{"path"}`` of the serial console's WebSocket with a fresh
    token (the server API's serial-console action)."""
    _no_body(call)
    ticket = consoles.serial_console(
        services, call.project_id, call.project_id, call.path_params["server_id"], b""
    )
    return JSONResponse({"path": _socket_path(consoles.SERIAL_SOCKET_PATH, ticket.token)})


def remote_console_token(services: Services, call: PageCall) -> Response:
    """JSON for the page's script: ``{"path"}`` of the display's (noVNC's) WebSocket with a
    fresh token (the server API's remote_console route)."""
    _no_body(call)
    ticket = consoles.remote_console(
        services,
        call.project_id,
        call.project_id,
        call.path_params["server_id"],
        REMOTE_CONSOLE_BODY,
    )
    return JSONResponse({"path": _socket_path(consoles.VNC_SOCKET_PATH, ticket.token)})


def _socket_path(path: str, token: str) -> str:
    return f"{path}?token={token}"  # the token is URL-safe base64


# -- create image from this server ---------------------------------------------------------------


def _image_form(
    call: PageCall,
    server: dict[str, Any],
    values: dict[str, str],
    error: FieldError | None = None,
    status: int = 200,
) -> Response:
    return render(
        call, "server_image.html", status=status, server=server, values=values, error=error
    )


def image_form(services: Services, call: PageCall) -> Response:
    """The "create image from this server" form: name and description."""
    server = queries.show_server(services, call.project_id, call.path_params["server_id"])
    return _image_form(call, server_document(server), {"name": "", "description": ""})


#: the image form's field each of the image API's validation codes is about
IMAGE_FIELDS = {
    codes.NAME_REQUIRED: "name",
    codes.NAME_INVALID: "name",
    codes.NAME_TOO_LONG: "name",
    codes.NAME_TAKEN: "name",
    codes.DESCRIPTION_INVALID: "description",
    codes.DESCRIPTION_TOO_LONG: "description",
}


def image_field(error: ServiceError) -> FieldError:
    """Where the image form shows ``error``: at the field its code is about, else above the
    form (the server's state, the project's quota)."""
    return FieldError(IMAGE_FIELDS.get(error.code), error.code, error.message)


def create_image(services: Services, call: PageCall) -> Response:
    """Make a private image of the server (``POST /v2/cloudimages/action`` with
    ``instance_id``) and open the new image's page."""
    server_id = call.path_params["server_id"]
    server = queries.show_server(services, call.project_id, server_id)
    only_fields(call.form, ("csrf", "name", "description"))
    values = {"name": call.field("name")[:256], "description": call.field("description")[:2048]}
    body: dict[str, object] = {"name": call.field("name"), "instance_id": server.id}
    if call.field("description"):
        body["description"] = call.field("description")
    try:
        job_id = server_images.create_image(services, call.project_id, body)
    except RequestInvalid as refused:
        return _image_form(call, server_document(server), values, image_field(refused), 400)
    except ServiceError as refused:  # the server is busy or not in a state to copy (409)
        if refused.status == 404:
            raise
        return _image_form(call, server_document(server), values, image_field(refused), 409)
    image_id = manage.show_job(services, call.project_id, job_id).image_id
    return redirect(url(f"/images/{segment(image_id or '')}"))


PAGES = [
    PageRoute("/servers/{server_id}", show_server),
    PageRoute("/servers/{server_id}/console-log", console_log, as_json=True),
    PageRoute("/servers/{server_id}/serial-console", serial_console_token, ("POST",), as_json=True),
    PageRoute("/servers/{server_id}/remote-console", remote_console_token, ("POST",), as_json=True),
    PageRoute("/servers/{server_id}/image", image_form),
    PageRoute("/servers/{server_id}/image", create_image, ("POST",)),
]
