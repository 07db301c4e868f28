"""The console by keyboard and for assistive technology: what a user without a mouse, or with a
screen reader, needs on every main page."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from support import console_browser
from support.server_process import ServeProcess

#: every form control and link without an accessible name, and every image without alt text
UNNAMED = """() => {
  const named = (el) => {
    if (el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')) return true;
    if (el.id && document.querySelector(`label[for="${CSS.escape(el.id)}"]`)) return true;
    if (el.closest('label')) return true;
    if (['BUTTON', 'A'].includes(el.tagName)) return el.textContent.trim().length > 0
      || !!el.querySelector('img[alt]:not([alt=""])');
    if (el.tagName === 'INPUT' && ['submit', 'button'].includes(el.type)) return !!el.value;
    return !!el.getAttribute('title');
  };
  const controls = [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button, a[href]')];
  const bad = controls.filter((el) => !named(el)).map((el) => el.outerHTML.slice(0, 120));
  const images = [...document.querySelectorAll('img:not([alt])')].map((el) => el.outerHTML);
  return bad.concat(images);
}"""
#: the main pages a signed-in user reaches from the navigation
MAIN_PAGES = ["/console/images", "/console/buckets", "/console/servers"]


def unnamed_controls(page: Page) -> list[str]:
    found: list[str] = page.evaluate(UNNAMED)
    return found


def test_signing_in_works_with_the_keyboard_alone(server: ServeProcess, page: Page) -> None:
    alpha = server.keys["alpha"]
    page.goto(server.ims_url + "/console/signin")
    page.keyboard.press("Tab")  # the skip link comes first
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.get_by_label("Access key ID (AK)").focus()
    page.keyboard.type(alpha.access_key)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Secret access key (SK)")).to_be_focused()
    page.keyboard.type(alpha.secret_key)
    page.keyboard.press("Enter")
    expect(page.get_by_text("Project alpha")).to_be_visible()


def test_the_sign_in_page_names_every_control(server: ServeProcess, page: Page) -> None:
    page.goto(server.ims_url + "/console/signin")
    assert unnamed_controls(page) == []
    expect(page.locator("html")).to_have_attribute("lang", "en")


def test_every_main_page_names_every_control(server: ServeProcess, page: Page) -> None:
    console_browser.sign_in(page, server.ims_url, server.keys["alpha"])
    for path in MAIN_PAGES:
        page.goto(server.ims_url + path)
        expect(page.locator("main h1")).to_be_visible()
        assert unnamed_controls(page) == [], path
        current = page.locator('header nav a[aria-current="page"]')
        expect(current).to_have_count(1)
