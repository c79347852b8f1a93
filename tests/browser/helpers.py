"""What a browser test does with a page: sign in, visit (collecting what went wrong), check
accessibility, take a screenshot. Shared by the page checks and the end-to-end journeys."""

import contextlib
import os
import re
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from django_otp.oath import TOTP

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@contextlib.contextmanager
def chromium_session():
    """Debian's Chromium through Playwright (no browser download), or a skip saying what is missing.
    Playwright keeps an asyncio loop in this thread and Django refuses ORM calls from such a thread,
    so the ORM is allowed while the browser lives (and only then)."""
    import pytest

    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian's Chromium is not installed ({CHROMIUM}): apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: make venv")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


SETTLE_SECONDS = 3.0  # the longest a page may keep requests in flight after its load event
_taken: list[Path] = []


@dataclass
class _Watch:
    """What one page's requests and console said since its last visit()."""

    problems: list[str] = field(default_factory=list)
    in_flight: dict = field(default_factory=dict)  # request -> the visit it belongs to
    visit: int = 0


_watches: "weakref.WeakKeyDictionary[object, _Watch]" = weakref.WeakKeyDictionary()


def watch(page) -> _Watch:
    """Start collecting console errors, uncaught exceptions, failed requests and same-origin
    answers >= 400 of PAGE (idempotent; visit() calls it)."""
    if page in _watches:
        return _watches[page]
    w = _watches[page] = _Watch()

    def on_request(request):
        w.in_flight[request] = w.visit

    def on_done(request):
        w.in_flight.pop(request, None)

    def on_failed(request):
        # A request of the page we left (a poll cut short by navigating away) is not this page's.
        if w.in_flight.pop(request, w.visit) == w.visit:
            w.problems.append(f"request failed: {request.method} {request.url}: {request.failure}")

    def on_response(response):
        if response.status >= 400 and _same_origin(response.url, page.url):
            w.problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def on_console(message):
        where = message.location.get("url", "")
        # Chromium probes /favicon.ico by itself, after the load event: not a request of the page
        # (an icon a page links to is a request like any other and is checked as such).
        if message.type == "error" and urlsplit(where).path != "/favicon.ico":
            w.problems.append(f"console error: {message.text}" + (f" ({where})" if where else ""))

    page.on("request", on_request)
    page.on("requestfinished", on_done)
    page.on("requestfailed", on_failed)
    page.on("response", on_response)
    page.on("console", on_console)
    page.on("pageerror", lambda error: w.problems.append(f"uncaught exception: {error}"))
    return w


def visit(page, url: str) -> list[str]:
    """Open URL and wait until its requests (htmx ones included) are done. Returns what went wrong
    while loading: an empty list for a clean page."""
    w = watch(page)
    w.visit += 1
    w.problems = []
    page.goto(url)
    settle(page)
    return problems(page)


def settle(page) -> None:
    """Wait until PAGE has no request in flight (after a click, an htmx swap...)."""
    w = watch(page)
    deadline = time.monotonic() + SETTLE_SECONDS
    while any(v == w.visit for v in w.in_flight.values()) and time.monotonic() < deadline:
        page.wait_for_timeout(20)


def problems(page) -> list[str]:
    """What went wrong on PAGE since its last visit(): check it again after clicking around."""
    return list(watch(page).problems)


def _same_origin(url: str, page_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(page_url)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def screenshot(page, name: str) -> Path:
    """A full-page PNG at var/screenshots/NAME.png, listed at the end of the run."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name).strip('-')}.png"
    page.screenshot(path=str(path), full_page=True)
    if path not in _taken:
        _taken.append(path)
    return path


def screenshots_taken() -> list[Path]:
    return list(_taken)


# Runs in the page. Visible controls need a label (label[for], a wrapping label, aria-label or
# aria-labelledby), buttons a name; one h1; a language and a title.
_AUDIT_JS = """() => {
  const visible = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
  const text = (el) => (el ? (el.innerText || el.textContent || "").trim() : "");
  const byIds = (ids) => (ids || "").split(/\\s+/)
    .map((id) => text(document.getElementById(id))).join("").trim();
  const describe = (el) => el.outerHTML.slice(0, 120);
  const found = [];
  const fields = "input:not([type=hidden]):not([type=submit]):not([type=button]):not([type=reset])"
    + ":not([type=image]), select, textarea";
  for (const el of document.querySelectorAll(fields)) {
    if (!visible(el)) continue;
    const labelled = [...(el.labels || [])].some((l) => text(l))
      || (el.getAttribute("aria-label") || "").trim() || byIds(el.getAttribute("aria-labelledby"));
    if (!labelled) found.push("field without a label: " + describe(el));
  }
  const buttons = "button, [role=button], input[type=submit], input[type=button], input[type=reset]";
  for (const el of document.querySelectorAll(buttons)) {
    if (!visible(el)) continue;
    const name = text(el) || (el.getAttribute("aria-label") || "").trim()
      || byIds(el.getAttribute("aria-labelledby")) || (el.getAttribute("title") || "").trim()
      || (el.tagName === "INPUT" ? (el.value || "").trim() : "")
      || [...el.querySelectorAll("img[alt]")].map((i) => i.alt.trim()).join("");
    if (!name) found.push("button without an accessible name: " + describe(el));
  }
  const h1 = document.querySelectorAll("h1").length;
  if (h1 !== 1) found.push(`${h1} h1 headings (one expected)`);
  if (!document.documentElement.lang) found.push("<html> has no lang");
  if (!document.title.trim()) found.push("empty <title>");
  return found;
}"""

# After one Tab: what has the focus, and can a sighted keyboard user see where it is?
_FOCUS_JS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return "nothing";
  const style = getComputedStyle(el);
  const ring = (style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0)
    || style.boxShadow !== "none";
  const box = el.getBoundingClientRect();
  if (!(box.width > 0 && box.height > 0)) return "invisible " + el.outerHTML.slice(0, 120);
  if (!el.matches(":focus-visible") || !ring) return "no focus indicator on " + el.outerHTML.slice(0, 120);
  return "";
}"""


def accessibility_problems(page) -> list[str]:
    """The smoke check: labels, button names, one h1, and a visible focus after pressing Tab."""
    found = page.evaluate(_AUDIT_JS)
    page.keyboard.press("Tab")
    focus = page.evaluate(_FOCUS_JS)
    if focus == "nothing":
        found.append("Tab moves the focus to nothing")
    elif focus:
        found.append(f"keyboard focus: {focus}")
    return found


def assert_accessible(page) -> None:
    found = accessibility_problems(page)
    assert not found, f"{page.url}:\n  " + "\n  ".join(found)


def totp_code(device, *, offset: int = 0) -> str:
    """The code an authenticator app shows for DEVICE (a django-otp TOTPDevice) now, or OFFSET
    seconds from now."""
    totp = TOTP(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift)
    totp.time = time.time() + offset
    return f"{totp.token():0{device.digits}d}"


def log_in(page, base_url: str, *, username: str, password: str, device=None) -> None:
    """Sign in through the login form (and the second-factor page when DEVICE is given), as a
    person would; ends on the page the sign-in lands on."""
    submit_password(page, base_url, username=username, password=password)
    if device is not None:
        submit_code(page, device)
    assert problems(page) == []


def submit_password(page, base_url: str, *, username: str, password: str) -> None:
    assert visit(page, f"{base_url}/login/") == []
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    settle(page)


def submit_code(page, device) -> None:
    """On the second-factor page: type the code DEVICE's app shows now."""
    assert urlsplit(page.url).path == "/account/2fa/", f"not on the second-factor page but {page.url}"
    page.get_by_label("Code from your authenticator app").fill(totp_code(device))
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("^(Verify|Confirm)$")).click()
    settle(page)


def follow(page, locator) -> list[str]:
    """Click LOCATOR (a link, or a form's button) and wait for the page it leads to, checked as
    visit() checks a page: returns what went wrong while it loaded. A request of the page left
    behind (an htmx poll cut short by the click) is not the new page's problem."""
    w = watch(page)
    w.visit += 1
    w.problems = []
    with page.expect_navigation():
        locator.click()
    settle(page)
    return problems(page)


# Ids used twice on a page: a label would name the wrong field.
_DUPLICATE_IDS_JS = """() => {
  const seen = {};
  for (const el of document.querySelectorAll("[id]")) seen[el.id] = (seen[el.id] || 0) + 1;
  return Object.keys(seen).filter((id) => seen[id] > 1);
}"""


def duplicate_ids(page) -> list[str]:
    """The ids PAGE uses more than once."""
    return page.evaluate(_DUPLICATE_IDS_JS)
