"""Automatic TLS end to end: a site created with the default `tls: auto` on a real VPS gets its
certificate from the local ACME CA by itself once its names resolve (through the CA's own DNS
server, which CHOM's DNS check asks too) to its VPS; a site whose name points elsewhere waits."""

import socket
import ssl

import pytest
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from chom.models import Operation
from chom.operations import operation_execute
from observability.notifications import channel_create, channel_deliveries_send
from sites import probe
from sites.models import Site
from sites.tls import tls_checks_run

pytestmark = pytest.mark.e2e


def _run(op_id) -> Operation:
    operation_execute(operation_id=op_id)
    op = Operation.objects.get(id=op_id)
    assert op.status == "succeeded", f"{op.error}\n" + "\n".join(e.message for e in op.log_entries.all())
    return op


def _create(persona, **body) -> dict:
    response = persona.client().post("/api/v1/sites", body, format="json")
    assert response.status_code == 202, response.content
    _run(response.json()["operation"]["id"])
    return response.json()


def _https_get(ip: str, domain: str, root_pem: str) -> tuple[str, dict]:
    """GET / over TLS with SNI = DOMAIN, the chain verified against ROOT_PEM."""
    context = ssl.create_default_context(cadata=root_pem)
    with (
        socket.create_connection((ip, 443), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=domain) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {domain}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        return data.decode(errors="replace"), tls.getpeercert()


def test_it_serves_https_by_itself_once_the_names_resolve_and_waits_for_a_name_that_does_not(
    alice, staff, make_vps, pebble
):
    vps = make_vps("e2e-autotls")
    channel_create(
        tenant=alice.tenant,
        kind="email",
        address="ops@acme.test",
        events=["certificate.issued", "site.suspended"],
    )
    acme = {
        "ACME_DIRECTORY_URL": pebble.directory_url,
        "ACME_CA_BUNDLE_FILE": str(pebble.ca_bundle),
        # Nobody but the test (the customer) tells the DNS server where the names live.
        "LOCAL_DNS_MANAGEMENT_URL": "",
        "TLS_DNS_RESOLVERS": [pebble.dns.dns_server],
    }
    with override_settings(**acme):
        body = _create(alice, domain="auto.test", type="static", aliases=["www.auto.test"])
        waiting = _create(alice, domain="nowhere.test", type="static")
        assert body["tls"]["mode"] == "auto"
        pebble.dns.point("auto.test", vps.ip_address)
        pebble.dns.point("www.auto.test", vps.ip_address)
        pebble.dns.point("nowhere.test", "198.51.100.7")

        before = timezone.now()
        assert tls_checks_run() == {"issuing": 1, "waiting_dns": 1, "failed": 0}  # as beat does
        (ssl_op,) = Operation.objects.filter(kind="site.ssl", status="queued")
        assert ssl_op.target_id == str(body["id"])
        _run(ssl_op.id)

    detail = alice.client().get(f"/api/v1/sites/{body['id']}").json()
    assert detail["tls"]["state"] == "active" and detail["tls"]["reason"] == ""
    assert detail["ssl"]["status"] == "active" and detail["ssl"]["expires_at"]
    root = pebble.issuing_root()
    for name in ("auto.test", "www.auto.test"):
        response, cert = _https_get(vps.ip_address, name, root)
        assert "200 OK" in response.splitlines()[0] and "<h1>auto.test</h1>" in response
        assert ("DNS", name) in cert["subjectAltName"]
    hops = probe.visit(vps.ip_address, "www.auto.test")
    assert [(h.url, h.status) for h in hops] == [
        ("http://www.auto.test/", 301),
        ("https://www.auto.test/", 200),
    ]

    other = alice.client().get(f"/api/v1/sites/{waiting['id']}").json()
    assert other["tls"]["state"] == "waiting_dns"
    assert "nowhere.test resolves to 198.51.100.7" in other["tls"]["reason"]
    assert vps.ip_address in other["tls"]["reason"]
    next_check = Site.objects.get(pk=waiting["id"]).tls_next_check_at
    assert next_check > before
    assert other["ssl"]["status"] == "none"
    assert not Operation.objects.filter(kind="site.ssl", target_id=str(waiting["id"])).exists()

    # The tenant was told, and is told when the site is suspended.
    suspended = staff.client().post(f"/api/v1/sites/{body['id']}/suspend")
    assert suspended.status_code == 202, suspended.content
    _run(suspended.json()["operation"]["id"])
    channel_deliveries_send()
    # One batch is sent concurrently: the order of the two messages is not fixed.
    subjects = sorted(m.subject for m in mail.outbox)
    assert len(subjects) == 2, subjects
    assert subjects[0].startswith("[CHOM] certificate.issued auto.test: auto.test serves HTTPS")
    assert subjects[1].startswith("[CHOM] site.suspended auto.test: auto.test is suspended")
