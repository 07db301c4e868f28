"""What every console request goes through before and after its view.

:func:`page` turns a plain view ``(services, call) -> Response`` into a Starlette endpoint that

1. picks the language (:mod:`.i18n`);
2. finds the session from the ``HttpOnly`` cookie
   (:mod:`~imageport.service.access.console_sessions`);
   a page that needs one redirects a ``GET`` to the sign-in page and refuses anything else
   with 401;
3. for anything but ``GET``/``HEAD``: refuses a request another site sent (``Sec-Fetch-Site``
   ``cross-site``/``same-site``, or an ``Origin`` other than the console's own), reads the
   body (at most :data:`MAX_FORM` bytes: the console's forms and JSON bodies are small; files
   go to the bucket API; a page's form takes a form, never JSON, which it would not read), and
   checks the anti-forgery value, from the form's ``csrf`` field or the ``X-CSRF-Token``
   header of a script's request (403 otherwise);
4. runs the view in a worker thread (the service layer is synchronous), and renders a
   :class:`~imageport.service.errors.ServiceError` as an error page with its code (404 as
   "not found": another project's image is exactly as absent as a deleted one), or as
   ``{"error": {"code", "message"}}`` for the console's JSON routes;
5. adds the security headers (:func:`secure`) to whatever it answers.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from imageport.console import i18n
from imageport.console.report_view import report_view
from imageport.numbers import whole_number
from imageport.service import codes
from imageport.service.access.authn import Principal
from imageport.service.access.console_sessions import ConsoleSession, csrf_matches, resume
from imageport.service.context import Services
from imageport.service.errors import Forbidden, RequestInvalid, ServiceError, Unauthenticated

BASE = "/console"
"""Where the console is mounted on the image API's listener."""
SESSION_COOKIE = "imageport_console"
MAX_FORM = 64 * 1024
"""Largest form or JSON body a console route reads."""
MAX_FIELDS = 200
"""Most form fields parsed from one body."""
_SAFE_METHODS = frozenset({"GET", "HEAD"})
_TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True, slots=True)
class Site:
    """What the console needs to know about where it runs."""

    #: the bucket API's port on this host (the browser uploads to it), None when unknown
    bucket_port: int | None = None
    #: the bucket API's address as browsers reach it (setting ``console_bucket_url``)
    bucket_url: str | None = None
    #: the console's origin as browsers reach it (setting ``console_origin``, e.g. behind a TLS
    #: proxy): its requests are the console's own, and ``https`` makes the cookie ``Secure``
    origin: str | None = None

    @property
    def secure_cookie(self) -> bool:
        return self.origin is not None and self.origin.startswith("https://")


@dataclass(frozen=True, slots=True)
class PageCall:
    """One console request, as a view sees it."""

    lang: i18n.Language
    session: ConsoleSession | None
    method: str
    #: the request's path and query (``/console/...``), for "come back here" links
    here: str
    path_params: Mapping[str, str]
    query: Sequence[tuple[str, str]]
    #: the form fields of a POST (``application/x-www-form-urlencoded``), in order
    form: Sequence[tuple[str, str]] = ()
    #: the parsed body of a script's JSON request, else None
    body: object = None
    #: the bucket API's root URL as this browser reaches it, ending without ``/``
    bucket_url: str = ""
    #: ``https`` or ``http``: how the browser reached the console
    scheme: str = "http"
    #: whether the session cookie must be ``Secure`` (HTTPS, or the setting says so)
    secure_cookie: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def principal(self) -> Principal:
        if self.session is None:
            raise Unauthenticated("InvalidToken", "sign in first")
        return self.session.principal

    @property
    def project_id(self) -> str:
        return self.principal.project_id

    def arg(self, name: str, default: str = "") -> str:
        """The first query value of ``name``."""
        return next((value for key, value in self.query if key == name), default)

    def field(self, name: str, default: str = "") -> str:
        """The first form value of ``name``."""
        return next((value for key, value in self.form if key == name), default)

    def fields(self, name: str) -> list[str]:
        return [value for key, value in self.form if key == name]


PageView = Callable[[Services, PageCall], Response]


@dataclass(frozen=True, slots=True)
class PageRoute:
    """One console route: ``path`` below :data:`BASE`, its view and how it is reached.
    ``public``: no session needed (sign-in); ``as_json``: a script's route."""

    path: str
    view: PageView
    methods: tuple[str, ...] = ("GET",)
    public: bool = False
    as_json: bool = False


_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def url(path: str, **query: object) -> str:
    """A console URL: ``BASE`` + ``path`` with its path segments as given and ``query``
    percent-encoded (None values are left out)."""
    items = [(k, str(v)) for k, v in query.items() if v is not None and v != ""]
    tail = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in items)
    return f"{BASE}{path}" + (f"?{tail}" if tail else "")


def segment(value: str) -> str:
    """``value`` as one URL path segment (a bucket name, an object key, an id)."""
    return quote(value, safe="")


_INVISIBLE = {
    code: f"<U+{code:04X}>"
    for code in (
        *range(0x20),
        *range(0x7F, 0xA0),
        0x061C,
        0x200E,
        0x200F,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    )
}


def shown(text: str) -> str:
    """``text`` with control and bidirectional-formatting characters made visible
    (``<U+202E>``): a name a user chose (an object key) cannot reorder or hide what a page
    shows around it."""
    return text.translate(_INVISIBLE)


_environment.globals.update(url=url, segment=segment)
_environment.filters["shown"] = shown
# the check report partial (templates/_report.html) arranges its document with this
_environment.globals.update(report_view=report_view)


def render(call: PageCall, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """``template`` rendered for ``call`` (its language, session and anti-forgery value)."""
    page = _environment.get_template(template)
    context.setdefault("nav", "")
    html = page.render(
        t=call.lang,
        lang=call.lang.code,
        languages=i18n.LANGUAGES,
        call=call,
        session=call.session,
        csrf=call.session.csrf if call.session else "",
        **context,
    )
    return HTMLResponse(html, status_code=status)


def redirect(location: str) -> RedirectResponse:
    """A 303 to a console page (after a form's POST, the browser GETs the next page)."""
    return RedirectResponse(location, status_code=303)


def safe_next(target: str) -> str:
    """``target`` when it is a console path (no scheme, no host, no ``//``, no ``.`` or ``..``
    segment, which the browser would resolve, also written ``%2e``, before it follows the
    redirect), else the console's start page: sign-in and language links never send the
    browser elsewhere."""
    parts = urlsplit(target)
    segments = unquote(parts.path).split("/")
    if (
        target.startswith(BASE + "/")
        and not parts.scheme
        and not parts.netloc
        and "\\" not in target
        and not any(ord(c) < 0x20 for c in target)
        and "." not in segments
        and ".." not in segments
    ):
        return target[:2000]
    return url("/images")


def secure(response: Response, *, connect: Sequence[str] = ()) -> Response:
    """Add the console's security headers: a strict content security policy (scripts, styles
    and images from the console only, fetches to it and to ``connect``), no framing, no
    sniffing, no referrer beyond the origin, and no caching of pages that show a project's
    data."""
    sources = " ".join(["'self'", *connect])
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"font-src 'self'; connect-src {sources}; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def bucket_url(site: Site, request: Request) -> str:
    """Where this browser reaches the bucket API: the setting, else the host name the
    browser used for the console on the bucket API's port."""
    if site.bucket_url:
        return site.bucket_url.rstrip("/")
    host = request.url.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{request.url.scheme}://{host}:{site.bucket_port or 0}"


def _same_origin(request: Request, site: Site) -> bool:
    """Whether a browser sent ``request`` from the console's own pages: no ``Sec-Fetch-Site``
    but ``same-origin`` (or ``none``: typed by the user), no ``Origin`` but the console's (on
    the request's ``Host``, or the setting ``console_origin``: behind a TLS proxy the browser
    says ``https://`` where the service sees plain HTTP)."""
    fetched_from = request.headers.get("sec-fetch-site")
    if fetched_from is not None and fetched_from not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser's cross-site request; the anti-forgery value still counts
    if site.origin is not None and origin.lower() == site.origin:
        return True
    return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


def session_token(request: Request) -> str:
    """The session cookie's token; empty when there is none, or more than one: another page
    of the same site (a service on another port of this host; cookies ignore ports) can add a
    cookie of the same name with a longer path, which the browser sends first, to sign the
    browser into its own session. Two such cookies are no session at all."""
    raw = request.headers.get("cookie", "")
    names = [part.split("=", 1)[0].strip() for part in raw.split(";")]
    if names.count(SESSION_COOKIE) > 1:
        return ""
    return request.cookies.get(SESSION_COOKIE, "")


def _unique_members(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object's members; a member given twice is refused (which one would count?)."""
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("a member is given twice")
    return document


async def _read_body(request: Request) -> bytes:
    if (whole_number(request.headers.get("content-length", "")) or 0) > MAX_FORM:
        raise RequestInvalid(codes.BAD_REQUEST, f"the request body is larger than {MAX_FORM} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM:
            raise RequestInvalid(
                codes.BAD_REQUEST, f"the request body is larger than {MAX_FORM} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_body(request: Request, body: bytes) -> tuple[list[tuple[str, str]], object]:
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not body:
        return [], None
    if kind == "application/json":
        try:
            return [], json.loads(body, object_pairs_hook=_unique_members)
        except (ValueError, RecursionError):
            raise RequestInvalid(codes.BAD_REQUEST, "the body is not JSON") from None
    if kind == "application/x-www-form-urlencoded":
        try:
            text = body.decode("utf-8")
            fields = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
        except (UnicodeDecodeError, ValueError):
            raise RequestInvalid(codes.BAD_REQUEST, "the form is malformed") from None
        return fields, None
    raise RequestInvalid(codes.BAD_REQUEST, f"the console does not take {kind or 'that'} bodies")


def error_page(call: PageCall, error: ServiceError, *, as_json: bool) -> Response:
    """The page (or JSON body) for a refused request."""
    if as_json:
        return JSONResponse(
            {"error": {"code": error.code, "message": error.message}}, status_code=error.status
        )
    template = "not_found.html" if error.status == 404 else "error.html"
    return render(call, template, status=error.status, error=error)


def page(
    services: Services,
    site: Site,
    view: PageView,
    *,
    public: bool = False,
    as_json: bool = False,
) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint running ``view`` after the steps in the module docstring.
    ``public``: the view runs without a session (sign-in); ``as_json``: a script's route
    (errors as JSON, no redirect to sign in)."""

    async def handle(request: Request) -> Response:
        lang = i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("accept-language"))
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        call = PageCall(
            lang=lang,
            session=None,
            method=request.method,
            here=here,
            path_params=dict(request.path_params),
            query=request.query_params.multi_items(),
            bucket_url=bucket_url(site, request),
            scheme=request.url.scheme,
            secure_cookie=site.secure_cookie or request.url.scheme == "https",
            headers=request.headers,
        )
        connect = [call.bucket_url]
        try:
            token = session_token(request)
            session = None
            if token:
                try:
                    session = await run_in_threadpool(resume, services, token)
                except Unauthenticated:
                    session = None
            call = _with(call, session=session)
            if session is None and not public:
                if request.method in _SAFE_METHODS and not as_json:
                    response: Response = redirect(
                        url("/signin", next=here, ended=1 if token else None)
                    )
                    if token:
                        response.delete_cookie(SESSION_COOKIE, path=BASE)
                    return secure(response, connect=connect)
                raise Unauthenticated("InvalidToken", "sign in first")
            if request.method not in _SAFE_METHODS:
                if not _same_origin(request, site):
                    raise Forbidden("CSRF", "the request did not come from this console")
                body = await _read_body(request)
                form, document = _parse_body(request, body)
                if document is not None and not as_json:
                    raise RequestInvalid(
                        codes.BAD_REQUEST, "this page takes a form, not a JSON document"
                    )
                call = _with(call, form=form, body=document)
                if session is not None:
                    offered = call.field("csrf") or request.headers.get("x-csrf-token", "")
                    if not csrf_matches(session.token, offered):
                        raise Forbidden("CSRF", "the anti-forgery value is missing or wrong")
            response = await run_in_threadpool(view, services, call)
        except ServiceError as error:
            if error.code == "CSRF" and not as_json:
                error = Forbidden("CSRF", call.lang("error.forgery"))
            response = error_page(call, error, as_json=as_json)
        except ClientDisconnect:
            return Response(status_code=400)
        return secure(response, connect=connect)

    handle.__doc__ = view.__doc__  # the route's line in docs/console.md
    return handle


def _with(call: PageCall, **changes: Any) -> PageCall:
    return dataclasses.replace(call, **changes)


def set_session_cookie(response: Response, session: ConsoleSession, call: PageCall) -> Response:
    """Put ``session``'s token in the ``HttpOnly``, ``SameSite=Strict`` cookie (``Secure`` when
    asked: on HTTPS or behind a TLS proxy), scoped to the console's path."""
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        max_age=None,
        path=BASE,
        httponly=True,
        samesite="strict",
        secure=call.secure_cookie,
    )
    return response


def clear_session_cookie(response: Response) -> Response:
    response.delete_cookie(SESSION_COOKIE, path=BASE, httponly=True, samesite="strict")
    return response
