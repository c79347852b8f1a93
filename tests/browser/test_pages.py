"""Every dashboard page a staff user can open: it renders with no console error and no failed
request, passes the accessibility smoke check, and leaves a full-page screenshot in var/screenshots/.

The pages come from the URL resolver (tests/browser/routes.py), so a page added later is crawled
without touching this file; a detail page needs an object in `dashboard_objects` (conftest).
"""

import socket

import pytest

from tests.browser.helpers import accessibility_problems, assert_accessible, screenshot, visit

CORE_PAGES = {
    "dashboard", "operation-list", "operation-detail", "vps-list", "vps-detail", "site-list",
    "site-create", "site-detail", "backup-detail", "billing-dashboard", "observability-alerts",
}  # fmt: skip


def test_it_finds_the_dashboard_pages_and_tells_them_from_actions(crawl):
    kinds = {p.name: p.kind for p in crawl}
    assert {n for n, k in kinds.items() if k == "page"} >= CORE_PAGES
    assert kinds["site-deploy"] == "action"
    assert kinds["observability-site-metrics"] == "endpoint"
    assert not {"login", "health", "stripe-webhook"} & kinds.keys()


def test_it_renders_every_dashboard_page_without_errors(staff_page, crawl, subtests):
    for found in (p for p in crawl if p.kind in ("page", "broken")):
        with subtests.test(msg=found.name):
            assert found.kind == "page", f"{found.name}: {found.problem}"
            errors = visit(staff_page, found.url)
            screenshot(staff_page, found.name)
            assert errors == [], f"{found.url}:\n  " + "\n  ".join(errors)


def test_it_keeps_every_dashboard_page_accessible(staff_page, crawl, subtests):
    for found in (p for p in crawl if p.kind == "page"):
        with subtests.test(msg=found.name):
            visit(staff_page, found.url)
            assert_accessible(staff_page)


def test_it_serves_the_vendored_htmx_and_stylesheet(staff_page, live_server):
    assert visit(staff_page, f"{live_server.url}/") == []
    assert staff_page.evaluate("typeof htmx.ajax") == "function"
    background = staff_page.evaluate("getComputedStyle(document.querySelector('header')).backgroundColor")
    assert background == "rgb(29, 35, 48)"  # chom.css's header colour: the stylesheet was served


BROKEN_PAGE = """<!doctype html><html><head><title>broken</title>
<style>a:focus { outline: none }</style><script src="/static/chom/no-such-file.js"></script></head>
<body><a href="#">first link</a><h1>One</h1><h1>Two</h1>
<input type="text" name="unlabelled"><button></button>
<script>console.error("boom"); fetch("http://127.0.0.1:9/closed-port"); undefinedFunction();</script>
</body></html>"""


def test_it_notices_what_a_broken_page_does_wrong(page, live_server, transactional_db):
    url = f"{live_server.url}/__browser-test-broken-page__"
    page.route(url, lambda route: route.fulfill(status=200, content_type="text/html", body=BROKEN_PAGE))
    errors = "\n".join(visit(page, url))
    assert "HTTP 404: GET" in errors and "no-such-file.js" in errors
    assert "console error: boom" in errors
    assert "request failed: GET http://127.0.0.1:9/closed-port" in errors
    assert "uncaught exception" in errors and "undefinedFunction" in errors
    found = "\n".join(accessibility_problems(page))
    assert "field without a label" in found and 'name="unlabelled"' in found
    assert "button without an accessible name" in found
    assert "2 h1 headings" in found
    assert "keyboard focus: no focus indicator on <a" in found
    with pytest.raises(AssertionError):
        assert_accessible(page)


def test_it_keeps_the_pages_on_this_machine(loopback_only):
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("api.digitalocean.com", 443)
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("192.0.2.1", 443))  # TEST-NET-1: refused before any packet leaves
    assert loopback_only == ["name look-up of api.digitalocean.com", "connection to 192.0.2.1"]
    loopback_only.clear()
