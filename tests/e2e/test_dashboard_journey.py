"""The operator's whole journey through the dashboard alone (issue 15, item 4), in Debian's Chromium:
sign in → add a cloud account → create a VPS there (a fake of DigitalOcean's API whose droplets are
real local VPSes) and watch its bootstrap in the live log → create a tenant (owner token shown
once) → create a PHP site for it → deploy → TLS from a real ACME CA (pebble) → back up to S3 (moto)
→ restore → suspend → unsuspend → acknowledge the alert a failed restore drill raised → find every
action in the audit log.

The dashboard enqueues each operation through Celery as in production; a worker thread of this test
runs the queued rows as a Celery worker would (`operation_execute`), while the browser follows the
redirect to the operation's page and waits for htmx's polling to show the end. Every page visited
must load without console errors or failed requests, and leaves a screenshot
(var/screenshots/journey-NN-*.png). What the visitor sees is checked on the VPS itself over HTTP(S).
"""

import json
import re
import threading
import time
from pathlib import Path

import pytest
import urllib3
from celery.signals import after_task_publish
from django.conf import settings
from django.db import connection
from django.test import override_settings

from chom.models import Operation
from chom.operations import operation_execute
from devstack.clouds import DigitalOceanFake, LocalMachines
from devstack.s3 import BUCKET
from fleet.models import Vps
from fleet.remote.commands import Command
from fleet.services import transport_for
from sites.configs import SERVED_BY_HEADER
from sites.models import Site
from tests.backups.fixtures import moto_s3, s3  # noqa: F401 - shared fixtures
from tests.browser.conftest import (  # the browser tests' staff user and page fixtures
    STAFF_EMAIL,
    STAFF_PASSWORD,
    page,  # noqa: F401
    staff_user,  # noqa: F401
)
from tests.browser.helpers import chromium_session, follow, log_in, problems, screenshot, settle
from tests.support.fleet import RUN, vps_name

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: make venv")

pytestmark = pytest.mark.e2e

FINAL = ("succeeded", "failed", "cancelled")
DOMAIN = "journey.test"
SUSPENSION_PAGE = "This site is temporarily suspended."


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, as tests/browser launches it. Not that package's fixture: its start
    clears var/screenshots, which would throw away the page crawl's screenshots of the same run."""
    with chromium_session() as chromium:
        yield chromium


class _RunMachines(LocalMachines):
    """The fake cloud's droplets, named per test run: two runs on one machine never share a VPS."""

    def boot(self, name: str, public_key: str) -> str:
        return super().boot(f"{name}-{RUN}", public_key)

    def destroy(self, name: str) -> None:
        super().destroy(f"{name}-{RUN}")


@pytest.fixture
def cloud(local_fleet, fleet_network):
    """DigitalOcean's API, faked on loopback; each droplet it creates is a real local VPS."""
    network, base, subnet = fleet_network
    machines = _RunMachines(base_dir=str(base / "cloud-journey"), bridge=network.name, subnet=subnet)
    with DigitalOceanFake(machines=machines) as fake:
        yield fake


@pytest.fixture
def acme(pebble):
    with override_settings(
        ACME_DIRECTORY_URL=pebble.directory_url,
        ACME_CA_BUNDLE_FILE=str(pebble.ca_bundle),
        LOCAL_DNS_MANAGEMENT_URL=pebble.dns_management_url,
    ):
        yield pebble


class Worker:
    """What a Celery worker does with each queued operation, in a thread of this test: claim it and
    run it (`operation_execute`), one at a time, oldest first."""

    def __init__(self) -> None:
        self.crash: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="journey-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, timeout: float = 120) -> None:
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the worker is still running an operation after {timeout}s"

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                queued = Operation.objects.filter(status=Operation.Status.QUEUED).order_by("created_at")
                ids = list(queued.values_list("id", flat=True)[:1])
                if not ids:
                    self._stop.wait(0.1)
                    continue
                operation_execute(operation_id=ids[0])
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
            self.crash = exc
        finally:
            connection.close()


@pytest.fixture
def worker(transactional_db):
    sent: list[str] = []

    def record(sender=None, headers=None, **_):
        sent.append(headers["id"])

    after_task_publish.connect(record, weak=False)
    running = Worker()
    running.start()
    yield running
    running.stop()
    after_task_publish.disconnect(record)
    _forget_messages(sent)
    assert running.crash is None, f"the worker crashed: {running.crash!r}"


def _forget_messages(task_ids: list[str]) -> None:
    """The Celery messages this test published (the dashboard's operations, the alert's
    notifications), left in the embedded broker's folder: the test's worker ran the rows, so nobody
    reads them, and they are this test's litter. (Redis, in CI, keeps them until a worker reads them.)"""
    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        return
    for message in Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]).glob("*.msg"):
        try:
            if json.loads(message.read_text())["headers"]["id"] in task_ids:
                message.unlink()
        except (FileNotFoundError, ValueError, KeyError):  # taken meanwhile, or not a task message
            pass


@pytest.fixture
def journey(page, live_server, staff_user, worker):  # noqa: F811 - fixtures
    """The staff browser page, which may reach nothing but CHOM itself."""
    outside: list[str] = []

    def only_chom(route):
        if route.request.url.startswith(live_server.url + "/"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.context.route("**/*", only_chom)
    page.on("dialog", lambda dialog: dialog.accept())  # "Restore …? A pre-restore backup is taken first."
    yield page
    assert outside == [], f"the dashboard made the browser leave CHOM: {outside}"


# --- what the browser does --------------------------------------------------------------------------


class Steps:
    """The journey's pages: each one checked for problems and kept as a screenshot."""

    def __init__(self, ui) -> None:
        self.ui, self.number = ui, 0
        self.timings: list[tuple[str, float]] = []
        self._started = time.monotonic()

    def done(self, name: str) -> None:
        assert problems(self.ui) == [], f"{name}: {problems(self.ui)}"
        self.number += 1
        screenshot(self.ui, f"journey-{self.number:02d}-{name}")
        now = time.monotonic()
        self.timings.append((name, now - self._started))
        self._started = now

    def click(self, locator) -> None:
        found = follow(self.ui, locator)
        assert found == [], f"{self.ui.url}: {found}"

    def nav(self, name: str) -> None:
        self.click(self.ui.locator("header").get_by_role("link", name=name, exact=True))

    def button(self, name: str, *, within=None) -> None:
        self.click((within or self.ui).get_by_role("button", name=re.compile(name)))

    def operation(self, kind: str, *, expect: str = "succeeded", timeout: float = 90) -> str:
        """On the operation page the last action led to: wait (htmx polls it every second) until
        the operation is over. Returns the page's log."""
        ui = self.ui
        assert re.search(r"/operations/[0-9a-f-]{36}/$", ui.url), f"not on an operation's page: {ui.url}"
        live = ui.locator("#operation-live")
        sync_api.expect(live.locator("h1")).to_contain_text(kind)
        status = live.locator("h1 .status")
        sync_api.expect(status).to_have_text(
            re.compile("^(" + "|".join(FINAL) + ")$"), timeout=timeout * 1000
        )
        settle(ui)
        log = live.locator("pre.log").inner_text()
        assert status.inner_text() == expect, f"{kind} ended {status.inner_text()}:\n{live.inner_text()}"
        return log


def _sh(vps: Vps, *argv: str) -> str:
    with transport_for(vps) as transport:
        result = transport.run(Command.of(*argv))
    assert result.ok, f"{argv}: {result.stderr}"
    return result.stdout


def _as_site(vps: Vps, site: Site, script: str) -> str:
    """SCRIPT run by sh as the site user, with the site's current release as $1."""
    home = f"/var/www/{site.unix_user}/current"
    return _sh(vps, "runuser", "-u", site.unix_user, "--", "sh", "-c", script, "sh", home)


def _http(vps: Vps, path: str = "/") -> urllib3.BaseHTTPResponse:
    return urllib3.request(
        "GET", f"http://{vps.ip_address}{path}", headers={"Host": DOMAIN}, redirect=False, retries=False,
        timeout=5,
    )  # fmt: skip


def _https(vps: Vps, root_pem: str, path: str = "/") -> urllib3.BaseHTTPResponse:
    """GET over TLS as a browser would: SNI and Host = the domain, the certificate verified against
    the ACME CA's root for that name."""
    pool = urllib3.HTTPSConnectionPool(
        vps.ip_address, 443, server_hostname=DOMAIN, assert_hostname=DOMAIN, cert_reqs="CERT_REQUIRED",
        ca_cert_data=root_pem,
    )  # fmt: skip
    with pool:
        return pool.request("GET", path, headers={"Host": DOMAIN}, redirect=False, retries=False, timeout=5)


# --- the journey ------------------------------------------------------------------------------------


def test_it_runs_the_platform_from_the_dashboard_alone(journey, live_server, cloud, acme, s3, worker):  # noqa: F811
    ui = journey
    steps = Steps(ui)
    started = time.monotonic()

    # Sign in through the login form.
    log_in(ui, live_server.url, username=STAFF_EMAIL, password=STAFF_PASSWORD)

    # Fleet → Cloud accounts → add DigitalOcean: the token is checked against the API on save.
    steps.nav("Fleet")
    steps.click(ui.get_by_role("link", name="Cloud accounts"))
    steps.click(ui.get_by_role("link", name="Add a digitalocean account"))
    ui.get_by_label("API token").fill(cloud.token)
    ui.get_by_label("API address").fill(cloud.url)
    steps.button("Save the digitalocean account")
    sync_api.expect(ui.get_by_role("status")).to_contain_text("digitalocean accepted its token")
    sync_api.expect(ui.locator("#account-digitalocean")).to_be_visible()
    assert cloud.token not in ui.content()  # write-only
    cloud.assert_requested("GET", "/account")
    steps.done("cloud-account")

    # Fleet → Create a VPS at DigitalOcean; its live log shows the bootstrap while it runs.
    steps.nav("Fleet")
    steps.click(ui.get_by_role("link", name="Create a VPS").first)
    name = vps_name("journey")
    ui.get_by_label(re.compile("^Name:?$")).fill(name)
    ui.get_by_label("Provider").select_option("digitalocean")
    steps.button("^Create the VPS$")
    status = ui.locator("#operation-live h1 .status")
    assert status.inner_text() in ("queued", "running"), "the server was built before its page was shown"
    log = ui.locator("#operation-live pre.log")
    sync_api.expect(log).to_contain_text("asking digitalocean for s-1vcpu-2gb in fra1", timeout=30_000)
    # The bootstrap's steps appear while it runs (or the failure that ended it, shown by the next check).
    sync_api.expect(log).to_contain_text(re.compile("step: packages|failed: "), timeout=60_000)
    bootstrap = steps.operation("vps.create")
    for line in (
        "host key pinned on first connection",
        "step: firewall",
        "step: mariadb",
        "bootstrap finished",
    ):
        assert line in bootstrap, f"{line!r} is not in the live log:\n{bootstrap}"
    steps.done("vps-bootstrapped")
    vps = Vps.objects.get(name=name)
    assert (vps.status, vps.provider) == (Vps.Status.ACTIVE, "digitalocean") and vps.ip_address
    assert cloud.assert_requested("POST", "/droplets").body["image"] == "debian-12-x64"
    steps.nav("Fleet")
    row = ui.locator("tr", has_text=name)
    sync_api.expect(row).to_contain_text("digitalocean")
    sync_api.expect(row.locator(".status")).to_have_text("active")
    steps.done("fleet")

    # Tenants → New tenant: the owner's first API token is shown once.
    steps.nav("Tenants")
    ui.get_by_label("Slug").fill("journey")
    ui.get_by_label(re.compile("^Name:?$")).fill("Journey Ltd")
    ui.get_by_label("Tier").select_option("pro")
    ui.get_by_label("Owner's email").fill("owner@journey.test")
    steps.button("^Create tenant$")
    token = ui.locator("input#token").input_value()
    assert len(token) > 20, token
    sync_api.expect(ui.get_by_text("shown only this once")).to_be_visible()
    steps.done("tenant-token-once")
    steps.click(ui.get_by_role("link", name="Done"))
    assert "/tenants/journey/" in ui.url and token not in ui.content()

    # Sites → New site: a PHP site of the tenant; its first deploy goes live on the new VPS.
    steps.nav("Sites")
    steps.click(ui.get_by_role("link", name="New site"))
    ui.get_by_label("Tenant").select_option(label="journey")
    ui.get_by_label("Domain").fill(DOMAIN)
    ui.get_by_label(re.compile("^Type:?$")).select_option("php")
    steps.button("^Create the site$")
    steps.operation("site.deploy")
    steps.done("site-created")
    site = Site.objects.get(domain=DOMAIN)
    assert site.vps_id == vps.pk and site.tenant.slug == "journey"
    served = _http(vps)
    assert served.status == 200 and served.headers.get(SERVED_BY_HEADER) == site.unix_user

    def site_page() -> None:
        steps.nav("Sites")
        steps.click(ui.get_by_role("link", name=DOMAIN, exact=True))

    # Deploy again.
    site_page()
    steps.button("^Deploy")
    steps.operation("site.deploy")
    steps.done("deploy")
    site.refresh_from_db()
    assert site.releases.count() == 2 and site.status == Site.Status.ACTIVE

    # TLS: a certificate from the ACME CA over HTTP-01; http:// now sends visitors to https://.
    site_page()
    steps.button("^Request a certificate$")
    steps.operation("site.ssl")
    steps.done("ssl")
    root = acme.issuing_root()
    served = _https(vps, root)
    assert served.status == 200 and served.headers.get(SERVED_BY_HEADER) == site.unix_user
    assert _http(vps).status == 301
    site_page()
    sync_api.expect(ui.get_by_role("row", name=re.compile("^Certificate "))).to_contain_text(
        "active, expires"
    )

    # Back up to S3, with a file the restore must bring back.
    _as_site(vps, site, 'echo "kept by the backup" > "$1/public/kept.txt"')
    steps.button("^Back up now$")
    steps.operation("backup.run")
    steps.done("backup")
    (backup,) = site.backups.all()
    assert backup.status == "succeeded" and set(backup.artefacts) >= {"files", "database"}

    # Restore it (the page asks for a confirmation, which the operator gives) after losing the file.
    _as_site(vps, site, 'rm "$1/public/kept.txt"')
    assert _https(vps, root, "/kept.txt").status == 404
    site_page()
    steps.click(ui.get_by_role("link", name=str(backup.pk), exact=True))
    steps.button("^Restore$")
    steps.operation("backup.restore")
    steps.done("restore")
    restored = _https(vps, root, "/kept.txt")
    assert restored.status == 200 and restored.data == b"kept by the backup\n"

    # Suspend, with a reason: visitors get the suspension ui from the VPS.
    site_page()
    ui.get_by_label(re.compile("^Reason:?$")).fill("abuse report 42")
    steps.button("^Suspend$")
    steps.operation("site.suspend")
    steps.done("suspend")
    suspended = _https(vps, root)
    assert suspended.status == 503 and SUSPENSION_PAGE in suspended.data.decode()
    assert suspended.headers.get(SERVED_BY_HEADER) == site.unix_user
    site_page()
    sync_api.expect(ui.locator("h1 .status")).to_have_text("suspended")
    sync_api.expect(ui.get_by_text("admin: abuse report 42")).to_be_visible()

    # Unsuspend.
    steps.button("^Unsuspend$")
    steps.operation("site.unsuspend")
    steps.done("unsuspend")
    assert _https(vps, root).status == 200

    # An alert the platform raises: the restore drill of a backup whose dump was tampered with in S3.
    s3.put_object(Bucket=BUCKET, Key=backup.artefacts["database"]["key"], Body=b"\x1f\x8bgarbage")
    site_page()
    steps.click(ui.get_by_role("link", name=str(backup.pk), exact=True))
    steps.button("^Verify")
    steps.operation("backup.verify", expect="failed")
    steps.done("drill-failed")

    # Alerts → acknowledge it.
    steps.nav("Alerts")
    alert_row = ui.locator("tr", has_text="backup_drill_failed")
    sync_api.expect(alert_row).to_contain_text(DOMAIN)
    steps.button("^Acknowledge$", within=alert_row)
    sync_api.expect(ui.get_by_role("status")).to_contain_text("backup_drill_failed acknowledged")
    sync_api.expect(alert_row).to_contain_text(f"acknowledged by {STAFF_EMAIL}")
    steps.done("alert-acknowledged")

    # Operations: every long action of the journey, each ended as expected.
    steps.nav("Operations")
    listed = ui.locator("main table").inner_text()
    for kind in ("vps.create", "site.deploy", "site.ssl", "backup.run", "backup.restore", "site.suspend",
                 "site.unsuspend", "backup.verify"):  # fmt: skip
        assert kind in listed, f"{kind} is not on the operations page"
    steps.done("operations")

    # Audit: every staff action of the journey, by this staff user.
    steps.nav("Audit")
    actions = ui.locator("main table tbody td:nth-child(4)").all_inner_texts()
    for action in ("auth.logged_in", "cloud_account.saved", "vps.created", "tenant.created", "site.created",
                   "site.suspended", "site.unsuspended", "alert.acknowledged"):  # fmt: skip
        assert action in actions, f"{action} is not in the audit log: {actions}"
    suspended_row = ui.locator("tr", has_text="site.suspended")
    sync_api.expect(suspended_row).to_contain_text(STAFF_EMAIL)
    sync_api.expect(suspended_row).to_contain_text("reason=admin: abuse report 42")
    steps.done("audit-log")

    assert not Operation.objects.exclude(status__in=FINAL).exists()
    print(f"\njourney through the dashboard in {time.monotonic() - started:.1f}s:")
    for name, seconds in steps.timings:
        print(f"  {name:<22} {seconds:5.1f}s")
