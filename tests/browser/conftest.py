"""Browser tests: Debian's Chromium driven by Playwright (Python) against Django's live server.

One Chromium serves every test of this package (a fresh context, so fresh cookies, per test).
pytest-django's `live_server` serves the static files (its handler wraps staticfiles' finders), so
pages load the vendored htmx and CSS exactly as `make run` does. Playwright's sync API keeps an
asyncio loop running in the test thread, and Django refuses ORM calls from such a thread: the
`browser` fixture allows them (DJANGO_ALLOW_ASYNC_UNSAFE) while it lives, and lives only as long
as this package's tests so the rest of the suite keeps Django's check.
"""

import ipaddress
import socket

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from backups.models import Backup
from chom.alerts import alert_raise
from chom.models import Membership, Operation, OperationLogEntry
from chom.services import tenant_create
from fleet.models import ProviderCredential, Vps
from sites.git_ssh import deploy_key_generate
from sites.models import Release, Site, SiteVariable, SiteWebhook, Worker
from tests.browser.helpers import (
    SCREENSHOTS,
    chromium_session,
    log_in,
    screenshots_taken,
)
from tests.browser.routes import dashboard_pages

STAFF_EMAIL = "ops@chom.test"
STAFF_PASSWORD = "browser-tests-only-password"


@pytest.fixture(scope="package")
def browser():
    with chromium_session() as chromium:
        for stale in SCREENSHOTS.glob("*.png"):
            stale.unlink()
        yield chromium


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """The pages under test never leave this machine. A page that calls a cloud's API with the
    fixture's account would otherwise reach the real one and merely show "could not list": name
    look-ups and connections beyond loopback are refused, and the test that made one fails."""
    attempts: list[str] = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host):
            attempts.append(f"name look-up of {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"browser tests stay on loopback: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            attempts.append(f"connection to {address[0]}")
            raise ConnectionRefusedError(f"browser tests stay on loopback: {address[0]}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    yield attempts
    assert not attempts, f"the pages tried to leave this machine: {sorted(set(attempts))}"


def _is_loopback(host) -> bool:
    if host is None or (isinstance(host, str) and host.lower() == "localhost"):
        return True
    try:
        return ipaddress.ip_address(host.decode() if isinstance(host, bytes) else host).is_loopback
    except ValueError:
        return False


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def staff_user(transactional_db, settings):
    # Optional unless enrolled, whatever the environment says: tests that need it switch it on.
    settings.STAFF_REQUIRE_2FA = False
    return get_user_model().objects.create_user(STAFF_EMAIL, STAFF_EMAIL, STAFF_PASSWORD, is_staff=True)


@pytest.fixture
def staff_page(page, live_server, staff_user):
    """A page signed in as staff through the login form."""
    log_in(page, live_server.url, username=STAFF_EMAIL, password=STAFF_PASSWORD)
    return page


@pytest.fixture
def dashboard_objects(staff_user) -> dict[str, object]:
    """One of each object a detail page shows, keyed by the word its routes' names use."""
    vps = Vps.objects.create(
        name="web-1", provider="manual", ip_address="192.0.2.10", status=Vps.Status.ACTIVE, max_sites=50
    )
    tenant, issued = tenant_create(slug="acme", name="Acme", tier="pro", owner_email="alice@acme.test")
    site = Site.objects.create(
        tenant=tenant, vps=vps, domain="shop.acme.test", type=Site.Type.STATIC, status=Site.Status.ACTIVE
    )
    _app_delivery(site)
    _workers(site)
    # Written as a finished operation would be: operation_create would queue real work for a worker.
    operation = Operation.objects.create(
        kind="site.deploy", tenant=tenant, target_type="sites.site", target_id=str(site.pk),
        status=Operation.Status.SUCCEEDED, step="done", progress=100, created_by=staff_user,
    )  # fmt: skip
    OperationLogEntry.objects.create(operation=operation, message="release 20260101-000000 is live")
    backup = Backup.objects.create(
        site=site, status=Backup.Status.SUCCEEDED, size_bytes=2048, artefacts={"files": {"key": "k"}}
    )
    alert = alert_raise(
        name="SiteDown", key=f"site:{site.pk}", summary=f"{site.domain} answers 502", tenant=tenant,
        labels={"site": site.domain},
    )  # fmt: skip
    member = Membership.objects.get(tenant=tenant, user=issued.token.user)
    # The row, not provider_credential_save (which checks the token with the cloud). Its API is a
    # closed loopback port: pages that list the cloud's catalogue show "could not list" at once.
    account = ProviderCredential.objects.create(
        provider="digitalocean", token="dop_v1_browser_tests", base_url="http://127.0.0.1:9"
    )
    return {
        "vps": vps, "tenant": tenant, "site": site, "operation": operation, "backup": backup,
        "alert": alert, "member": member, "token": issued.token, "account": account,
    }  # fmt: skip


def _workers(site: Site) -> None:
    """The site page's workers: one running as last read, one disabled, one never read."""
    reading = {"running": 2, "restarts": 1, "last_exit": {"kind": "signal", "status": 9}, "error": ""}
    Worker.objects.create(
        site=site, name="queue", command=["php", "artisan", "queue:work"], processes=2, status=reading,
        status_checked_at=timezone.now(),
    )  # fmt: skip
    Worker.objects.create(site=site, name="node", command=["node", "server.js"], enabled=False)
    Worker.objects.create(site=site, name="fresh", command=["php", "worker.php"])


def _app_delivery(site: Site) -> None:
    """What the site detail's app delivery section shows, each part filled in."""
    _, public = deploy_key_generate(comment="chom-shop")
    Site.objects.filter(pk=site.pk).update(
        deploy_key_public=public, deploy_key_created_at=timezone.now(),
        git_host_key_fingerprint="SHA256:uNiVeRsEkEyFiNgErPrInTbRoWsErTeStS0000000",
        build_command=["npm", "run", "build"], release_command=["php", "artisan", "migrate", "--force"],
    )  # fmt: skip
    SiteVariable.objects.create(site=site, name="APP_NAME", value="Acme shop")
    SiteWebhook.objects.create(site=site, hook_id="browser-tests-hook", secret="browser-tests-secret")
    Release.objects.create(
        site=site, name="20260101-000000", source="upload", commit="sha256:" + "0f" * 32,
        status=Release.Status.ACTIVE, activated_at=timezone.now(),
    )  # fmt: skip


@pytest.fixture
def crawl(staff_user, dashboard_objects):
    """Every dashboard route, filled with dashboard_objects and classified (tests/browser/routes.py)."""
    client = Client(raise_request_exception=False)
    client.force_login(staff_user)
    return dashboard_pages(client=client, objects=dashboard_objects)


def pytest_terminal_summary(terminalreporter):
    taken = screenshots_taken()
    if taken:
        terminalreporter.section("browser screenshots")
        terminalreporter.write_line(f"{len(taken)} full-page screenshots in {SCREENSHOTS}/:")
        for path in taken:
            terminalreporter.write_line(f"  {path.name}")
