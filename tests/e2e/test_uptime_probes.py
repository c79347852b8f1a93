"""Uptime probes end to end: a static site deployed by CHOM on a real VPS is found through CHOM's
probe list by a real Prometheus, probed by a real blackbox exporter (Host header = the domain, at
the VPS's address: the domain resolves nowhere), and shows as up in CHOM's API. Its nginx stopped
(through CHOM's transport and agent) → the probe fails → SiteDown (a test copy of the rule with
`for: 2s`) reaches CHOM's webhook as an Alert about that site; nginx started → resolved.
A site with a certificate from the test ACME CA is probed over https too, verified against that CA."""

import socket
import ssl
import time

import pytest
import requests
from django.test import override_settings

from chom.operations import operation_execute
from fleet import services
from fleet.remote.agent_client import Agent
from observability.models import Alert
from sites.models import Site
from tests.support.alert_rules import fast_rules
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e
FOR_SECONDS = 2
WITHIN = 60


@pytest.fixture
def start_probes(start_prometheus):
    """The monitoring stack with test copies of CHOM's rules (`for` in seconds); PROBE_CA_FILE:
    the CA the blackbox exporter trusts for the sites' https."""
    return lambda *, probe_ca_file="": start_prometheus(
        rules=fast_rules(for_seconds=FOR_SECONDS), probe_ca_file=probe_ca_file
    )


@pytest.fixture
def monitoring(start_probes):
    return start_probes()


def _probe_success(env, site: Site) -> list[str]:
    answer = requests.get(
        f"{env['PROMETHEUS_URL']}/api/v1/query",
        params={"query": f'probe_success{{job="chom-probes", site="{site.unix_user}"}}'},
        timeout=5,
    )
    return [r["value"][1] for r in answer.json()["data"]["result"]]


def _probe_log(env, vps, hostname: str, *, scheme: str = "http") -> str:
    """One probe by the blackbox exporter itself, as Prometheus asks for it: its debug output."""
    answer = requests.get(
        f"{env['BLACKBOX_URL']}/probe",
        params={
            "module": "chom_site",
            "target": f"{scheme}://{vps.ip_address}/",
            "hostname": hostname,
            "debug": "true",
        },
        timeout=15,
    )
    return answer.text


def _probe(env, vps, hostname: str, *, scheme: str = "http") -> float:
    [line] = [
        x
        for x in _probe_log(env, vps, hostname, scheme=scheme).splitlines()
        if x.startswith("probe_success ")
    ]
    return float(line.split()[1])


def _nginx(vps, *, running: bool) -> str:
    with services.transport_for(vps) as transport:
        return Agent(transport).call("service-ensure", {"name": "nginx", "running": running}).data["state"]


def _site_down(site: Site, status: str) -> Alert | None:
    return Alert.objects.filter(name="SiteDown", site=site, status=status).first()


def test_it_probes_a_site_and_raises_site_down_when_its_nginx_stops(monitoring, make_vps, alice):
    vps = make_vps("e2e-probes")
    created = alice.client().post("/api/v1/sites", {"domain": "uptime.test", "type": "static"}, format="json")
    assert created.status_code == 202, created.content
    operation_execute(operation_id=created.json()["operation"]["id"])
    site = Site.objects.get(pk=created.json()["id"])
    assert site.status == Site.Status.ACTIVE

    wait_for(lambda: _probe_success(monitoring, site) == ["1"], timeout=WITHIN, what="the probe succeeding")
    uptime = alice.client().get(f"/api/v1/sites/{site.pk}/uptime").json()
    assert uptime["state"] == "up" and uptime["urls"][0]["url"] == "http://uptime.test/", uptime
    assert _site_down(site, Alert.Status.FIRING) is None
    # nginx's default server answers 200 for a name it does not serve: not a CHOM answer, down.
    default = requests.get(f"http://{vps.ip_address}/", headers={"Host": "nobody.test"}, timeout=5)
    assert default.status_code == 200 and "X-Chom-Site" not in default.headers
    assert _probe(monitoring, vps, "nobody.test") == 0
    assert _probe(monitoring, vps, "uptime.test") == 1

    assert _nginx(vps, running=False) != "active"
    stopped = time.monotonic()
    try:
        wait_for(lambda: _probe_success(monitoring, site) == ["0"], timeout=WITHIN, what="the probe failing")
        probe_failed = time.monotonic() - stopped
        alert = wait_for(
            lambda: _site_down(site, Alert.Status.FIRING),
            timeout=WITHIN,
            interval=0.2,
            what="SiteDown in CHOM",
        )
        fired = time.monotonic() - stopped
        print(
            f"\nnginx stopped -> probe_success 0: {probe_failed:.1f}s; -> SiteDown in CHOM: {fired:.1f}s"
            f" (rule for: {FOR_SECONDS}s)"
        )
        assert alert.tenant == alice.tenant and alert.severity == "critical"
        assert alert.labels["domain"] == "uptime.test" and alert.labels["vps"] == vps.name
        assert alice.client().get(f"/api/v1/sites/{site.pk}/uptime").json()["state"] == "down"
    finally:
        assert _nginx(vps, running=True) == "active"
    started = time.monotonic()
    wait_for(
        lambda: _site_down(site, Alert.Status.RESOLVED),
        timeout=WITHIN,
        interval=0.2,
        what="SiteDown resolved",
    )
    print(f"nginx started -> SiteDown resolved in CHOM: {time.monotonic() - started:.1f}s")
    assert _probe_success(monitoring, site) == ["1"]


def _query(env, promql: str) -> list[dict]:
    answer = requests.get(f"{env['PROMETHEUS_URL']}/api/v1/query", params={"query": promql}, timeout=5)
    return answer.json()["data"]["result"]


def _tls_get(ip: str, domain: str, root_pem: str = "") -> tuple[str, dict | None]:
    """HEAD / over TLS with SNI and Host = DOMAIN: (answer head, certificate), verified against
    ROOT_PEM when given, else not verified at all (no certificate returned then)."""
    context = ssl.create_default_context(cadata=root_pem or None)
    if not root_pem:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection((ip, 443), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=domain) as tls,
    ):
        tls.sendall(f"HEAD / HTTP/1.1\r\nHost: {domain}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        return data.decode(errors="replace"), tls.getpeercert() or None


def test_it_probes_https_verified_against_the_sites_ca_and_fails_a_certificate_for_another_name(
    start_probes, make_vps, alice, pebble, tmp_path
):
    vps = make_vps("e2e-probetls")
    with override_settings(
        ACME_DIRECTORY_URL=pebble.directory_url,
        ACME_CA_BUNDLE_FILE=str(pebble.ca_bundle),
        LOCAL_DNS_MANAGEMENT_URL=pebble.dns_management_url,
    ):
        created = alice.client().post(
            "/api/v1/sites", {"domain": "uptls.test", "type": "static"}, format="json"
        )
        assert created.status_code == 202, created.content
        operation_execute(operation_id=created.json()["operation"]["id"])
        issued = alice.client().post(f"/api/v1/sites/{created.json()['id']}/ssl")
        assert issued.status_code == 202, issued.content
        issuing = time.monotonic()
        operation_execute(operation_id=issued.json()["operation"]["id"])
        print(f"\ncertificate from the test ACME CA in {time.monotonic() - issuing:.1f}s")
    site = Site.objects.get(pk=created.json()["id"])
    assert (site.status, site.ssl_status) == (Site.Status.ACTIVE, Site.SslStatus.ACTIVE)
    root = pebble.issuing_root()
    _, cert = _tls_get(vps.ip_address, "uptls.test", root)
    not_after = ssl.cert_time_to_seconds(cert["notAfter"])
    assert abs(site.ssl_expires_at.timestamp() - not_after) < 1

    started = time.monotonic()
    (tmp_path / "acme-root.pem").write_text(root)
    env = start_probes(probe_ca_file=str(tmp_path / "acme-root.pem"))
    https = f'{{job="chom-probes", site="{site.unix_user}", scheme="https"}}'
    wait_for(
        lambda: [r["value"][1] for r in _query(env, f"probe_success{https}")] == ["1"],
        timeout=WITHIN,
        what="the https probe succeeding",
    )
    print(f"monitoring started -> https probe_success 1: {time.monotonic() - started:.1f}s")
    [expiry] = _query(env, f"probe_ssl_earliest_cert_expiry{https}")
    assert abs(float(expiry["value"][1]) - not_after) < 1, (expiry, cert["notAfter"])
    wait_for(lambda: _probe_success(env, site) == ["1", "1"], timeout=WITHIN, what="both probes succeeding")
    uptime = alice.client().get(f"/api/v1/sites/{site.pk}/uptime").json()
    assert uptime["state"] == "up", uptime
    assert [(u["url"], u["state"]) for u in uptime["urls"]] == [
        ("http://uptls.test/", "up"),
        ("https://uptls.test/", "up"),
    ], uptime

    # Asked for another name at the same address, nginx answers with this site's vhost (its only
    # one on 443): the answer itself would pass; the certificate, not valid for that name, fails it.
    head, _ = _tls_get(vps.ip_address, "other.test")
    assert head.startswith("HTTP/1.1 200") and f"X-Chom-Site: {site.unix_user}" in head, head
    log = _probe_log(env, vps, "other.test", scheme="https")
    assert "\nprobe_success 0\n" in log and "certificate is valid for uptls.test, not other.test" in log, log
    assert _probe(env, vps, "uptls.test", scheme="https") == 1
    print(f"monitoring started -> end of test: {time.monotonic() - started:.1f}s")
