"""Sign in, sign out and the language switch.

``GET /console/signin`` shows the form; ``POST`` opens a session with an access key and its
secret or with a token (:mod:`~imageport.service.access.console_sessions`), sets the cookie and
sends the browser on to ``next`` (a console path only: :func:`~.pages.safe_next`).
``POST /console/signout`` ends the session's token. ``GET /console/lang/{code}`` sets the
language cookie and goes back.
"""

from __future__ import annotations

from starlette.responses import Response

from imageport.console import i18n
from imageport.console.pages import (
    PageCall,
    PageRoute,
    clear_session_cookie,
    redirect,
    render,
    safe_next,
    set_session_cookie,
    url,
)
from imageport.service.access.console_sessions import (
    sign_in_with_key,
    sign_in_with_token,
    sign_out,
)
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid, Unauthenticated

LANG_COOKIE_SECONDS = 365 * 24 * 3600


def signin_form(services: Services, call: PageCall) -> Response:
    """The sign-in form (a signed-in browser goes straight on)."""
    if call.session is not None:
        return redirect(safe_next(call.arg("next")))
    notice = ""
    if call.arg("ended"):
        notice = call.lang("signin.expired")
    elif call.arg("out"):
        notice = call.lang("signin.signed_out")
    return render(
        call, "signin.html", next=safe_next(call.arg("next")), notice=notice, failed=False
    )


def signin(services: Services, call: PageCall) -> Response:
    """Open a session with the form's key and secret, or its token."""
    target = safe_next(call.field("next"))
    try:
        if call.field("token").strip():
            session = sign_in_with_token(services, call.field("token"))
        else:
            session = sign_in_with_key(services, call.field("access_key"), call.field("secret_key"))
    except (Unauthenticated, RequestInvalid):
        return render(
            call,
            "signin.html",
            status=401,
            next=target,
            notice="",
            failed=True,
            access_key=call.field("access_key")[:64],
        )
    return set_session_cookie(redirect(target), session, call)


def signout(services: Services, call: PageCall) -> Response:
    """End the session and show the sign-in form (a session already ended: clear its
    cookie)."""
    if call.session is not None:
        sign_out(services, call.session.token)
    return clear_session_cookie(redirect(url("/signin", out=1)))


def switch_language(services: Services, call: PageCall) -> Response:
    """Set the language cookie and go back to the page the switch was on."""
    code = call.path_params["code"]
    response = redirect(safe_next(call.arg("next")))
    if code in i18n.LANGUAGES:
        response.set_cookie(
            i18n.COOKIE, code, max_age=LANG_COOKIE_SECONDS, path="/console", samesite="lax"
        )
    return response


def start(services: Services, call: PageCall) -> Response:
    """``/console/``: the images page."""
    return redirect(url("/images"))


PAGES = [
    PageRoute("/", start, public=True),
    PageRoute("/signin", signin_form, public=True),
    PageRoute("/signin", signin, ("POST",), public=True),
    # public: the button of a page whose session has ended meanwhile still signs out (clears
    # the cookie); a live session's sign-out still needs its anti-forgery value
    PageRoute("/signout", signout, ("POST",), public=True),
    PageRoute("/lang/{code}", switch_language, public=True),
]
