"""Drive the web console in a real browser: Debian's Chromium through Playwright.

:func:`chromium` launches ``/usr/bin/chromium`` headless with the flags this machine needs (no
sandbox as root; no background networking, whose connections the closed network refuses) and
closes it at the end. :func:`sign_in` fills the sign-in form as a user would. :func:`shoot`
takes a page's screenshot: into ``docs/console/`` when ``IMAGEPORT_SCREENSHOTS=1``
(``scripts/screenshots`` sets it to refresh the README's pictures), else into a temporary
folder, so that every run still takes them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Browser, Page, expect, sync_playwright

from support.server_process import Keys

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"
#: how long a page action or assertion waits before failing (ms)
ACTION_MS = 15_000


def missing_reason() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: run scripts/install --test (it installs chromium)"
    return None


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium for the duration of the block."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=FLAGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def new_page(browser: Browser, *, locale: str = "en-US") -> Iterator[Page]:
    """A page in a fresh context (its own cookies), sized like a laptop screen."""
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(ACTION_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_in(page: Page, ims_url: str, keys: Keys, *, then: str = "/console/images") -> None:
    """Sign in on the form with ``keys``' access key and secret, starting from ``then``."""
    page.goto(ims_url + then)
    page.get_by_label("Access key ID (AK)").fill(keys.access_key)
    page.get_by_label("Secret access key (SK)").fill(keys.secret_key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{then}*")
    expect(page.get_by_text(f"Project {keys.project}")).to_be_visible()


def shoot(page: Page, name: str, tmp: Path) -> Path:
    """A full-page screenshot ``name``.png (see the module docstring for where)."""
    folder = DOCS if os.environ.get("IMAGEPORT_SCREENSHOTS") == "1" else tmp
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000, f"the screenshot {path} is empty"
    return path


def require_chromium() -> None:
    """Fail loudly (not skip) when Chromium is missing: the install script puts it there."""
    reason = missing_reason()
    if reason is not None:
        raise RuntimeError(reason)
    assert shutil.which(str(CHROMIUM))
