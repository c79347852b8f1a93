"""Wildcard sites end to end: a DNS-01 certificate from the local ACME CA (pebble), its
challenges answered through the DigitalOcean DNS fake, which serves the TXT records through
pebble-challtestsrv (the DNS pebble validates with); every name below the wildcard then serves
HTTPS from a real VPS, and the TXT records are gone afterwards."""

import socket
import ssl

import dns.nameserver
import dns.resolver
import pytest
from django.test import override_settings

from chom.models import Operation
from chom.operations import operation_execute
from devstack.dns_fakes import DigitalOceanDnsFake
from sites.models import Site

pytestmark = pytest.mark.e2e


def _https_get(ip: str, name: str, root_pem: str) -> tuple[str, dict]:
    context = ssl.create_default_context(cadata=root_pem)
    with (
        socket.create_connection((ip, 443), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        return data.decode(errors="replace"), tls.getpeercert()


def _run(response) -> Operation:
    assert response.status_code == 202, response.content
    op_id = response.json()["operation"]["id"]
    operation_execute(operation_id=op_id)
    return Operation.objects.get(id=op_id)


def _explain(op: Operation) -> str:
    return f"{op.error}\n" + "\n".join(e.message for e in op.log_entries.all())


def _txt(server: str, name: str) -> list[str]:
    resolver = dns.resolver.Resolver(configure=False)
    host, port = server.split(":")
    resolver.nameservers = [dns.nameserver.Do53Nameserver(host, int(port))]
    try:
        return [b"".join(r.strings).decode() for r in resolver.resolve(name, "TXT")]
    except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
        return []


def test_it_issues_a_wildcard_certificate_over_dns01_and_serves_every_name_with_it(
    alice, make_vps, pebble, tmp_path
):
    vps = make_vps("e2e-wild")
    client = alice.client()
    with (
        DigitalOceanDnsFake(zones=("example.test",), challtestsrv=pebble.dns_management_url) as fake,
        override_settings(
            ACME_DIRECTORY_URL=pebble.directory_url,
            ACME_CA_BUNDLE_FILE=str(pebble.ca_bundle),
            ACME_ACCOUNT_KEY_FILE=str(tmp_path / "acme-account.pem"),
            LOCAL_DNS_MANAGEMENT_URL=pebble.dns_management_url,
            TLS_DNS_RESOLVERS=[pebble.dns.dns_server],
            DNS_PROVIDER_API_URLS={"digitalocean": fake.url, "cloudflare": ""},
        ),
    ):
        account = client.post(
            "/api/v1/dns-accounts",
            {"name": "zones", "provider": "digitalocean", "token": fake.token},
            format="json",
        )
        assert account.status_code == 201, account.content
        body = {
            "domain": "*.example.test",
            "type": "static",
            "tls": "manual",
            "dns_account": account.json()["id"],
        }
        created = client.post("/api/v1/sites", body, format="json")
        deploy = _run(created)
        assert deploy.status == "succeeded", _explain(deploy)
        site_id = created.json()["id"]

        op = _run(client.post(f"/api/v1/sites/{site_id}/ssl"))
        assert op.status == "succeeded", _explain(op)
        log = _explain(op)
        assert "TXT _acme-challenge.example.test written through digitalocean" in log
        assert "TXT _acme-challenge.example.test deleted" in log

        site = Site.objects.get(pk=site_id)
        assert (site.ssl_status, site.tls_state) == ("active", "active") and site.ssl_expires_at
        root = pebble.issuing_root()
        serials = set()
        for name in ("a.example.test", "b.example.test"):
            response, cert = _https_get(vps.ip_address, name, root)
            assert "200 OK" in response.splitlines()[0] and "<h1>*.example.test</h1>" in response
            assert ("DNS", "*.example.test") in cert["subjectAltName"]
            serials.add(cert["serialNumber"])
        assert len(serials) == 1
        # The TXT records are gone: from the provider and from the DNS the CA asked.
        assert fake.txt_values("_acme-challenge.example.test") == []
        assert _txt(pebble.dns.dns_server, "_acme-challenge.example.test") == []
        assert [r.method for r in fake.requests].count("POST") == 1

        # The private key never left the VPS: CHOM holds neither it nor the DNS token there.
        again = _run(client.post(f"/api/v1/sites/{site_id}/ssl"))
        assert again.status == "succeeded", _explain(again)
        assert [r.method for r in fake.requests].count("POST") == 1  # still valid: no new order
        _, still = _https_get(vps.ip_address, "a.example.test", root)
        assert still["serialNumber"] in serials

        # A new certificate (the apex joins the wildcard) whose TXT record the provider refuses:
        # the operation fails with the provider's reason, raises the alert, leaves no record
        # behind, and the old certificate keeps serving.
        Site.objects.filter(pk=site_id).update(aliases=["example.test"])
        fake.fail_next(422, method="POST", message="Record limit reached")
        failed = _run(client.post(f"/api/v1/sites/{site_id}/ssl"))
        assert failed.status == "failed" and "Record limit reached" in failed.error, _explain(failed)
        from observability.models import Alert

        assert Alert.objects.get(name="ssl_failed", status="firing").labels == {"site": "*.example.test"}
        assert fake.records == {} and _txt(pebble.dns.dns_server, "_acme-challenge.example.test") == []
        _, after = _https_get(vps.ip_address, "b.example.test", root)
        assert after["serialNumber"] in serials

        # Retried: the wildcard and the apex answer at the same name, two TXT values at once.
        both = _run(client.post(f"/api/v1/sites/{site_id}/ssl"))
        assert both.status == "succeeded", _explain(both)
        response, cert = _https_get(vps.ip_address, "example.test", root)
        assert "200 OK" in response.splitlines()[0]
        assert {("DNS", "*.example.test"), ("DNS", "example.test")} <= set(cert["subjectAltName"])
        assert fake.records == {} and not Alert.objects.filter(name="ssl_failed", status="firing").exists()
