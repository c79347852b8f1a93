"""cert-csr and cert-install: DNS-01 certificates whose key never leaves the VPS. The chain here
is signed by a throw-away CA with openssl (in production: the ACME CA, through CHOM)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.agent_fixtures import SITE, Agent, recorder, require, site_agent  # noqa: F401 - the `agent` fixture

pytestmark = pytest.mark.real

DOMAINS = ["*.example.test", "example.test"]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60, cwd=cwd)


def _sign(csr: str, folder: Path, *, san: str = "DNS:*.example.test,DNS:example.test") -> str:
    """A chain (leaf + CA) for CSR's key and the names in SAN."""
    require("/usr/bin/openssl")
    (folder / "req.csr").write_text(csr)
    if not (folder / "ca.pem").exists():
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                 "-subj", "/CN=test CA", cwd=folder)  # fmt: skip
    (folder / "san.ext").write_text(f"subjectAltName={san}\n")
    _openssl("x509", "-req", "-in", "req.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "san.ext", "-out", "leaf.pem", cwd=folder)  # fmt: skip
    return (folder / "leaf.pem").read_text() + (folder / "ca.pem").read_text()


@pytest.fixture
def site(agent: Agent) -> dict[str, Any]:
    agent.env["VPSMANAGER_NGINX_RELOAD"] = agent.fake("reload", recorder(agent.fakes / "reload.calls"))
    return agent.ok("site-ensure", {"name": SITE})["data"]


def test_it_keeps_the_key_root_only_and_installs_the_matching_chain_once(agent: Agent, site, tmp_path: Path):
    first = agent.ok("cert-csr", {"name": SITE, "domains": DOMAINS})
    assert first["changed"] is True and "BEGIN CERTIFICATE REQUEST" in first["data"]["csr"]
    keys = agent.path("/var/lib/chom/tls/site1")
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o700 and os.stat(keys).st_uid == 0
    assert stat.S_IMODE(os.stat(keys / "pending.key").st_mode) == 0o600
    assert "PRIVATE KEY" not in str(first)

    chain = _sign(first["data"]["csr"], tmp_path)
    installed = agent.ok("cert-install", {"name": SITE, "domains": DOMAINS, "chain": chain})
    assert installed["changed"] is True
    assert installed["data"]["cert_path"] == "/var/lib/chom/tls/site1/fullchain.pem"
    assert (keys / "fullchain.pem").read_text() == chain
    assert stat.S_IMODE(os.stat(keys / "privkey.pem").st_mode) == 0o600
    assert not (keys / "pending.key").exists()

    assert len(agent.calls("reload")) == 1  # nginx loads the new certificate
    again = agent.ok("cert-install", {"name": SITE, "domains": DOMAINS, "chain": chain})
    assert again["changed"] is False and len(agent.calls("reload")) == 1
    # The installed certificate covers these names for long enough: no new key is made.
    renew = agent.ok("cert-csr", {"name": SITE, "domains": DOMAINS, "renew_before_days": 1})
    assert (renew["changed"], renew["data"]["csr"]) == (False, "")

    # Removing the site removes its key and certificate too.
    agent.ok("site-remove", {"name": SITE})
    assert not keys.exists()


def test_it_refuses_a_chain_for_another_key_or_other_names_and_keeps_the_old_one(
    agent: Agent, site, tmp_path: Path
):
    csr = agent.ok("cert-csr", {"name": SITE, "domains": DOMAINS})["data"]["csr"]
    good = _sign(csr, tmp_path)
    agent.ok("cert-install", {"name": SITE, "domains": DOMAINS, "chain": good})
    keys = agent.path("/var/lib/chom/tls/site1")
    key_before = (keys / "privkey.pem").read_bytes()

    agent.ok("cert-csr", {"name": SITE, "domains": [*DOMAINS, "www.example.test"]})
    wrong_names = _sign(csr, tmp_path)  # the old key's CSR: not the pending key either
    result = agent(
        "cert-install", {"name": SITE, "domains": [*DOMAINS, "www.example.test"], "chain": wrong_names}
    )
    assert result.error["code"] == "invalid_input" and "not *.example.test" in result.error["message"]

    result = agent("cert-install", {"name": SITE, "domains": DOMAINS, "chain": wrong_names})
    assert result.error["code"] == "invalid_input" and "pending key" in result.error["message"]
    assert (keys / "privkey.pem").read_bytes() == key_before
    assert (keys / "fullchain.pem").read_text() == good


@pytest.mark.parametrize(
    "domains",
    [["*.*.example.test"], ["a.*.example.test"], ["*example.test"], ["example.test;reboot"], []],
)
def test_it_refuses_names_that_are_not_host_names_or_leading_wildcards(agent: Agent, site, domains):
    result = agent("cert-csr", {"name": SITE, "domains": domains})
    assert result.error["code"] == "invalid_input"
    assert not agent.path("/var/lib/chom/tls/site1/pending.key").exists()
