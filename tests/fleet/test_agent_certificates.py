"""cert-issue: a real certificate from pebble over HTTP-01 through nginx (via certbot), idempotent
reissue, and a failed order that keeps the previous certificate.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.agent_fixtures import (
    SITE,
    Agent,
    Web,
    free_port,
    require,
    site_agent,  # noqa: F401 - the site tests' `agent` fixture (replaces conftest's)
    stop,
    wait_for,
)

pytestmark = pytest.mark.real  # real nginx/php-fpm/MariaDB/PostgreSQL/promtool (tests/support/real.py)


# --------------------------------------------------------------------------- ACME


@dataclass
class Acme:
    server: str
    ca_pem: str
    challtestsrv: str

    def point(self, host: str, address: str) -> None:
        for path, body in (
            ("clear-a", {"host": host + "."}),
            ("add-a", {"host": host + ".", "addresses": [address]}),
        ):
            request = urllib.request.Request(
                f"{self.challtestsrv}/{path}", data=json.dumps(body).encode(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def acme(web: Web, base: Path) -> Iterator[Acme]:
    """pebble validating HTTP-01 on the test nginx's port, resolving names via challtestsrv."""
    for binary in ("/usr/bin/pebble", "/usr/bin/pebble-challtestsrv", "/usr/bin/certbot", "/usr/bin/openssl"):
        require(binary)
    d = base / "pebble"
    d.mkdir()
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{d}/ca.key")
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        f"{d}/ca.key",
        "-days",
        "2",
        "-subj",
        "/CN=CHOM test CA",
        "-out",
        f"{d}/ca.pem",
    )
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{d}/leaf.key")
    openssl("req", "-new", "-key", f"{d}/leaf.key", "-subj", "/CN=localhost", "-out", f"{d}/leaf.csr")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ca = ["-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key", "-CAcreateserial"]
    openssl(
        "x509",
        "-req",
        "-in",
        f"{d}/leaf.csr",
        *ca,
        "-days",
        "2",
        "-extfile",
        f"{d}/san.ext",
        "-out",
        f"{d}/leaf.pem",
    )
    acme_port, mgmt_port, dns_port, chall_port = free_port(), free_port(), free_port(), free_port()
    (d / "pebble.json").write_text(
        json.dumps(
            {
                "pebble": {
                    "listenAddress": f"127.0.0.1:{acme_port}",
                    "managementListenAddress": f"127.0.0.1:{mgmt_port}",
                    "certificate": f"{d}/leaf.pem",
                    "privateKey": f"{d}/leaf.key",
                    "httpPort": web.port,
                    "tlsPort": free_port(),
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                }
            }
        )
    )
    challtestsrv = subprocess.Popen(
        [
            "pebble-challtestsrv",
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-dns01",
            f"127.0.0.1:{dns_port}",
        ]
        + ["-http01", "", "-https01", "", "-tlsalpn01", "", "-management", f"127.0.0.1:{chall_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    pebble = subprocess.Popen(
        ["pebble", "-config", f"{d}/pebble.json", "-dnsserver", f"127.0.0.1:{dns_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        server = f"https://127.0.0.1:{acme_port}/dir"
        context = ssl.create_default_context(cafile=f"{d}/ca.pem")

        def ready() -> bool:
            try:
                with urllib.request.urlopen(server, timeout=0.2, context=context) as response:
                    return response.status == 200
            except (urllib.error.URLError, OSError):
                return False

        wait_for(ready, "pebble")
        wait_for(lambda: _answers(f"http://127.0.0.1:{chall_port}/"), "pebble-challtestsrv")
        yield Acme(
            server=server, ca_pem=(d / "ca.pem").read_text(), challtestsrv=f"http://127.0.0.1:{chall_port}"
        )
    finally:
        stop(pebble)
        stop(challtestsrv)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=0.2).close()
        return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def test_cert_issue_gets_a_real_certificate_over_http01_and_then_changes_nothing(
    agent: Agent, site: dict[str, Any], web: Web, acme: Acme
) -> None:
    acme.point("site1.test", "127.0.0.1")
    acme.point("other.test", "127.0.0.1")
    payload = {
        "name": SITE,
        "domains": ["site1.test", "other.test"],
        "email": "ops@example.com",
        "server": acme.server,
        "ca_bundle": acme.ca_pem,
    }
    started = time.monotonic()
    first = agent.ok("cert-issue", payload)
    print(f"\nACME issue (pebble, HTTP-01 through nginx, 2 domains): {time.monotonic() - started:.2f}s")

    data = first["data"]
    assert first["changed"] is True
    assert data["cert_path"] == "/etc/letsencrypt/live/site1/fullchain.pem"
    assert data["key_path"] == "/etc/letsencrypt/live/site1/privkey.pem"
    not_after = time.mktime(time.strptime(data["not_after"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert not_after > time.time() + 86400
    fullchain = agent.path(data["cert_path"])
    assert "BEGIN CERTIFICATE" in fullchain.read_text()
    assert agent.path(data["key_path"]).exists()

    second = agent.ok("cert-issue", payload)
    assert (second["changed"], second["data"]) == (False, data)

    # A failed order (the new name resolves nowhere nginx listens) keeps the old certificate.
    before = fullchain.read_bytes()
    acme.point("gone.test", "127.0.0.2")
    result = agent("cert-issue", {**payload, "domains": ["site1.test", "gone.test"]})
    assert (result.error["code"], result.out["changed"]) == ("acme_failed", False)
    assert "certbot exited 1" in result.error["message"]
    assert fullchain.read_bytes() == before
    assert agent.ok("cert-issue", payload)["changed"] is False
