"""A suspended site (billing, abuse) keeps showing visitors the suspension page through everything
the platform or the tenant does to it afterwards: certificate renewal, a redeploy, a PHP change, a
backup restore and a re-bootstrap of its VPS (issue 14). One VPS and one TLS site walk the whole
sequence; every check names the step after which it ran."""

import socket
import ssl
import warnings

import pytest
import urllib3
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from chom.models import Operation
from chom.operations import operation_execute
from fleet import services as fleet_services
from fleet.models import Vps
from fleet.remote.commands import Command
from fleet.services import transport_for
from sites import probe
from sites.configs import SERVED_BY_HEADER
from sites.models import Site
from sites.services import site_hostnames_sync, site_suspend, site_unsuspend
from sites.tls import sites_renew_certificates
from tests.backups.fixtures import moto_s3, s3  # noqa: F401 - shared fixtures
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e

SUSPENSION_PAGE = "This site is temporarily suspended."


def _run(op_id) -> Operation:
    operation_execute(operation_id=op_id)
    op = Operation.objects.get(id=op_id)
    assert op.status == "succeeded", f"{op.kind}: {op.error}\n" + "\n".join(
        e.message for e in op.log_entries.all()
    )
    return op


def _accepted(response) -> int:
    assert response.status_code == 202, response.content
    return response.json()["operation"]["id"]


def _sh(vps, *argv) -> str:
    with transport_for(vps) as transport:
        result = transport.run(Command.of(*argv))
    assert result.ok, f"{argv}: {result.stderr}"
    return result.stdout


def _https(vps, domain: str, path: str = "/") -> urllib3.BaseHTTPResponse:
    """GET over TLS with SNI = DOMAIN, as a browser would (trust was proven at issuance)."""
    pool = urllib3.HTTPSConnectionPool(
        vps.ip_address, 443, server_hostname=domain, cert_reqs="CERT_NONE", assert_hostname=False
    )
    with pool, warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        return pool.request("GET", path, headers={"Host": domain}, redirect=False, retries=False, timeout=5)


def _served_certificate(vps, domain: str) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection((vps.ip_address, 443), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=domain) as tls,
    ):
        return tls.getpeercert(binary_form=True)


def _assert_suspended(vps, site: Site, after: str) -> None:
    """A visitor of http:// is sent to https://, which answers the suspension page (503), both
    from the site's own server blocks; CHOM's row says suspended too."""
    hops = probe.visit(vps.ip_address, site.domain)
    seen = [(hop.url, hop.status) for hop in hops]
    assert seen == [(f"http://{site.domain}/", 301), (f"https://{site.domain}/", 503)], (
        f"after {after}: a visitor got {seen}, not the suspension page"
    )
    assert {hop.header(SERVED_BY_HEADER) for hop in hops} == {site.unix_user}, f"after {after}"
    page = _https(vps, site.domain)
    assert SUSPENSION_PAGE in page.data.decode(), f"after {after}: https served {page.data[:200]!r}"
    site.refresh_from_db()
    assert site.status == "suspended", f"after {after}: the site's row says {site.status}"


def test_a_suspension_survives_renewal_redeploy_php_change_restore_and_rebootstrap(
    alice,
    make_vps,
    pebble,
    s3,  # noqa: F811
):
    vps = make_vps("e2e-suspend")
    acme = {
        "ACME_DIRECTORY_URL": pebble.directory_url,
        "ACME_CA_BUNDLE_FILE": str(pebble.ca_bundle),
        "LOCAL_DNS_MANAGEMENT_URL": pebble.dns_management_url,
    }
    client = alice.client()
    with override_settings(**acme):
        body = client.post("/api/v1/sites", {"domain": "held.test", "type": "php"}, format="json")
        _run(_accepted(body))
        site = Site.objects.get(pk=body.json()["id"])
        _run(_accepted(client.post(f"/api/v1/sites/{site.pk}/ssl")))
    home = f"/var/www/{site.unix_user}"

    # Yesterday's backup, taken while the site was live: restoring it later must not revive it.
    note = 'echo restored-note > "$1/current/public/note.txt"'
    _sh(vps, "runuser", "-u", site.unix_user, "--", "sh", "-c", note, "sh", home)
    backup = client.post(f"/api/v1/sites/{site.pk}/backups")
    _run(_accepted(backup))
    # The tenant's redeploy and PHP change, requested while the site was live, are still queued
    # when the suspension lands (a worker may take them in any order).
    queued_deploy = _accepted(client.post(f"/api/v1/sites/{site.pk}/deploy"))
    queued_php_change = _accepted(
        client.patch(f"/api/v1/sites/{site.pk}", {"php_version": "8.2"}, format="json")
    )

    _run(site_suspend(site=site, reason="billing").id)
    _assert_suspended(vps, site, "the suspension")

    # 1. Certificate renewal: the daily job finds the certificate due and the VPS really orders a
    # new one over HTTP-01 while the site is suspended. pebble 2.4's certificates last 5 years and
    # the agent renews at most 365 days ahead, so the order is forced the other way the agent
    # re-orders: the certificate lacks a name the site now has.
    before = _served_certificate(vps, site.domain)
    Site.objects.filter(pk=site.pk).update(aliases=["www.held.test"], ssl_expires_at=timezone.now())
    site.refresh_from_db()
    site_hostnames_sync(site=site)
    with override_settings(**acme):
        (renewal,) = sites_renew_certificates()
        renewal = _run(renewal.id)
    assert any("issued certificate" in e.message for e in renewal.log_entries.all())
    # (`systemctl reload nginx` returns a few ms before the new workers serve.)
    wait_for(
        lambda: _served_certificate(vps, site.domain) != before, timeout=2, what="the renewed certificate"
    )
    _assert_suspended(vps, site, "certificate renewal")

    # 2. Redeploy: the tenant is refused clearly; the one queued before the suspension re-renders
    # the vhost and keeps the page.
    for refused in (
        client.post(f"/api/v1/sites/{site.pk}/deploy"),
        client.post(f"/api/v1/sites/{site.pk}/rollback"),
    ):
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "site_suspended", (
            refused.content
        )
    deployed = _run(queued_deploy)
    site.refresh_from_db()
    assert site.current_release == deployed.result["release"]
    _assert_suspended(vps, site, "a redeploy")

    # 3. PHP change. The image carries PHP 8.2 only (Debian 12): the refusal is proven with a
    # second version CHOM believes installed; the queued change re-applies pool and vhost on 8.2.
    Vps.objects.filter(pk=vps.pk).update(php_versions=["8.2", "8.3"])
    queued = Operation.objects.filter(target_id=str(site.pk), status="queued").count()
    refused = client.patch(f"/api/v1/sites/{site.pk}", {"php_version": "8.3"}, format="json")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "site_suspended", refused.content
    site.refresh_from_db()
    assert site.php_version == "8.2", "a refused PHP change was saved anyway"
    assert Operation.objects.filter(target_id=str(site.pk), status="queued").count() == queued
    Vps.objects.filter(pk=vps.pk).update(php_versions=["8.2"])
    php_change = _run(queued_php_change)
    assert "step: php-fpm pool (PHP 8.2)" in [e.message for e in php_change.log_entries.all()]
    _assert_suspended(vps, site, "a PHP change")

    # 4. Restore of the backup taken while the site was live.
    restore = _run(
        _accepted(client.post(f"/api/v1/backups/{backup.json()['id']}/restore", {}, format="json"))
    )
    assert _sh(vps, "readlink", f"{home}/current").strip() == f"releases/{restore.result['release']}"
    _assert_suspended(vps, site, "a backup restore")

    # 5. Re-bootstrap of the VPS, with nginx and php-fpm down so the bootstrap starts them from
    # what is on disk.
    _sh(vps, "systemctl", "stop", "nginx", "php8.2-fpm")
    with transaction.atomic():
        bootstrap = fleet_services.vps_bootstrap_request(vps=vps)
    bootstrap = _run(bootstrap.id)
    assert "services: changed" in [e.message for e in bootstrap.log_entries.all()]
    _assert_suspended(vps, site, "a VPS re-bootstrap")

    # Lifting the suspension serves the site again: the restored release, on https.
    _run(site_unsuspend(site=site, reason="billing").id)
    hops = probe.visit(vps.ip_address, site.domain)
    assert [(hop.url, hop.status) for hop in hops] == [
        (f"http://{site.domain}/", 301),
        (f"https://{site.domain}/", 200),
    ]
    assert _https(vps, site.domain, "/note.txt").data == b"restored-note\n"
    site.refresh_from_db()
    assert (site.status, site.current_release) == ("active", restore.result["release"])
