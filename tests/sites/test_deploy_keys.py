"""Private repositories over SSH: the deploy key API (create, rotate, shown but never its private
half), SSH repository URLs (same SSRF rules, hostile shapes refused), the git source CHOM sends
the agent, and the host key pinned on first use."""

import json
import subprocess

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_ssh_private_key
from django.db import connection

from chom.models import AuditEvent
from chom.operations import OperationError
from fleet.models import Vps
from fleet.remote.agent_client import Agent, AgentError
from fleet.remote.commands import Command
from fleet.remote.transport import Result
from sites.deploy_keys import site_git_host_key_pin
from sites.git_ssh import git_host_key_changed_error
from sites.models import Site
from sites.types import site_type
from tests.support.recording import RecordingTransport, agent_answer, installed_agent_checksums

HOST_BLOB = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"  # an ed25519 key


@pytest.fixture
def vps(db):
    return Vps.objects.create(
        name="web-1", provider="manual", ip_address="192.0.2.10", status="active", max_sites=10,
        php_versions=["8.2"],
    )  # fmt: skip


@pytest.fixture
def site(acme, vps):
    return Site.objects.create(
        tenant=acme[0], vps=vps, domain="shop.example.com", type="php", status="active", php_version="8.2",
        unix_user="site1", repository_url="git@git.invalid:acme/shop.git", repository_branch="main",
        current_release="r1",
    )  # fmt: skip


def _create_key(persona, site) -> dict:
    response = persona.client().post(f"/api/v1/sites/{site.pk}/deploy-key")
    assert response.status_code == 200, response.content
    assert b"PRIVATE" not in response.content
    return response.json()


def _ssh_keygen_fingerprint(public_key: str, tmp_path) -> str:
    path = tmp_path / "key.pub"
    path.write_text(public_key + "\n")
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(path)], capture_output=True, text=True, timeout=30, check=True
    )
    return out.stdout.split()[1]


def test_it_creates_an_ed25519_deploy_key_and_returns_only_its_public_half(alice, site, tmp_path):
    key = _create_key(alice, site)
    assert set(key) == {"public_key", "fingerprint", "created_at"}
    assert key["public_key"].startswith("ssh-ed25519 ")
    # The fingerprint is the one GitHub and ssh-keygen show for the pasted key.
    assert key["fingerprint"] == _ssh_keygen_fingerprint(key["public_key"], tmp_path)
    site.refresh_from_db()
    private = load_ssh_private_key(site.deploy_key_private.encode(), password=None)
    public = private.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    assert key["public_key"].split()[:2] == public.split()[:2]
    # Encrypted at rest: the column itself holds no key.
    with connection.cursor() as cursor:
        cursor.execute("SELECT deploy_key_private FROM sites_site WHERE id = %s", [site.pk])
        (stored,) = cursor.fetchone()
    assert "OPENSSH" not in stored and site.deploy_key_private.split("\n")[1] not in stored
    event = AuditEvent.objects.get(action="site.deploy_key_created")
    assert event.data == {"fingerprint": key["fingerprint"]} and event.tenant == alice.tenant


def test_it_rotates_the_key_and_the_site_detail_shows_the_new_public_half_only(alice, site):
    first = _create_key(alice, site)
    site.refresh_from_db()
    first_private = site.deploy_key_private
    second = _create_key(alice, site)
    assert second["public_key"] != first["public_key"] and second["fingerprint"] != first["fingerprint"]
    site.refresh_from_db()
    assert site.deploy_key_private != first_private
    assert AuditEvent.objects.filter(action="site.deploy_key_rotated").count() == 1
    detail = alice.client().get(f"/api/v1/sites/{site.pk}")
    assert detail.status_code == 200
    assert detail.json()["deploy_key"] == second
    assert detail.json()["git_host_key"] is None
    assert b"PRIVATE" not in detail.content and first_private.split("\n")[1].encode() not in detail.content
    # The next deploy sends the new key (the agent overwrites the old one on the VPS).
    assert site_type("php").source(site)["ssh"]["private_key"] == site.deploy_key_private


def test_a_site_without_a_deploy_key_shows_null(alice, site):
    assert alice.client().get(f"/api/v1/sites/{site.pk}").json()["deploy_key"] is None


def test_it_hides_another_tenants_site_with_404_and_changes_nothing(charlie, site):
    response = charlie.client().post(f"/api/v1/sites/{site.pk}/deploy-key")
    assert response.status_code == 404
    assert response.json()["error"]["code"]
    site.refresh_from_db()
    assert site.deploy_key_private == "" and not AuditEvent.objects.filter(
        action__startswith="site.deploy_key"
    )


def test_a_viewer_may_not_create_a_key(victor, site):
    assert victor.client().post(f"/api/v1/sites/{site.pk}/deploy-key").status_code == 403
    site.refresh_from_db()
    assert site.deploy_key_public == ""


def test_it_refuses_a_key_for_a_site_being_deleted(alice, site):
    Site.objects.filter(pk=site.pk).update(status=Site.Status.DELETING)
    response = alice.client().post(f"/api/v1/sites/{site.pk}/deploy-key")
    assert response.status_code == 409 and response.json()["error"]["code"] == "site_deleting"


# --- repository URLs -----------------------------------------------------------------------------

ACCEPTED = [
    "git@git.invalid:acme/shop.git",
    "git@git.invalid:/srv/git/shop.git",
    "ssh://git@git.invalid/acme/shop.git",
    "ssh://git@git.invalid:2222/acme/shop.git",
    "ssh://git.invalid/~/shop.git",
    "https://git.invalid/acme/shop.git",
]

REFUSED = [
    ("ssh://-oProxyCommand=touch%20x/r.git", "repository URL"),
    ("ssh://-oProxyCommand/r.git", "repository URL"),
    ("git@-oProxyCommand=x:r.git", "repository URL"),
    ("-oProxyCommand=x@git.invalid:r.git", "repository URL"),
    ("ext::sh -c touch% /tmp/pwned", "repository URL"),
    ("fd::17", "repository URL"),
    ("git.invalid:acme/shop.git", "repository URL"),  # no user: git may take it for a local path
    ("git@git.invalid:../../etc/passwd", "'..'"),
    ("git@git.invalid:acme/../../x.git", "'..'"),
    ("ssh://git@git.invalid/../x.git", "'..'"),
    ("git@git.invalid:%2e%2e/x.git", "repository URL"),
    ("git@git.invalid:-u/x.git", "repository URL"),
    ("file:///etc/passwd", "repository URL"),
    ("ssh://git:s3cret@git.invalid/acme/shop.git", "password or token"),
    ("git@127.0.0.1:acme/shop.git", "internal address"),
    ("git@localhost:acme/shop.git", "internal address"),
    ("ssh://git@10.0.0.5/acme/shop.git", "internal address"),
    ("ssh://git@[::1]/acme/shop.git", "internal address"),
    ("git@169.254.169.254:latest/meta-data", "link-local"),
    ("ssh://git@169.254.169.254:2222/x", "link-local"),
    ("ssh://git@git.invalid:99999/acme/shop.git", "port"),
]


def _create(persona, url, domain="app.example.com"):
    body = {"domain": domain, "type": "php", "repository": {"url": url}}
    return persona.client().post("/api/v1/sites", body, format="json")


@pytest.mark.parametrize("url", ACCEPTED)
def test_it_accepts_ssh_repository_urls(alice, vps, url):
    response = _create(alice, url)
    assert response.status_code == 202, response.content
    assert Site.objects.get(pk=response.json()["id"]).repository_url == url


@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_it_refuses_hostile_or_internal_ssh_repository_urls(alice, vps, url, why):
    response = _create(alice, url)
    assert response.status_code == 400, response.content
    assert why in " ".join(response.json()["error"]["fields"]["repository"]["url"])
    assert not Site.objects.exists()


def test_an_allowed_network_opens_an_internal_ssh_server_but_never_chom_itself(alice, vps, settings):
    settings.REPOSITORY_ALLOWED_NETWORKS = ["10.251.0.0/16", "127.0.0.0/8"]
    settings.REDIS_URL = settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    assert _create(alice, "ssh://git@10.251.1.1:2222/srv/app.git").status_code == 202
    refused = _create(alice, "ssh://git@127.0.0.1:6379/app.git")
    assert "CHOM's own services" in str(refused.json()), refused.content
    # scp-like URLs have no port: 22, which is not one of CHOM's services here.
    assert _create(alice, "git@127.0.0.1:6379/app.git", domain="two.example.com").status_code == 202


# --- the git source and the pinned host key ------------------------------------------------------


def test_a_deploy_from_an_ssh_url_without_a_key_fails_saying_to_create_one(site):
    with pytest.raises(OperationError) as failure:
        site_type("php").source(site)
    assert "no deploy key" in str(failure.value)
    assert f"/api/v1/sites/{site.pk}/deploy-key" in str(failure.value)


def test_the_git_source_carries_the_key_and_the_pin_only_for_ssh_urls(alice, site):
    _create_key(alice, site)
    site.refresh_from_db()
    source = site_type("php").source(site)
    assert source["ssh"] == {"private_key": site.deploy_key_private, "known_hosts": ""}
    site.git_host_key = f"git.invalid ssh-ed25519 {HOST_BLOB}\n"
    assert site_type("php").source(site)["ssh"]["known_hosts"] == site.git_host_key
    site.repository_url = "https://git.invalid/acme/shop.git"
    assert "ssh" not in site_type("php").source(site)


def test_it_pins_the_host_key_of_the_repositorys_host_only_once(site, tmp_path):
    lines = [
        f"evil.invalid ssh-ed25519 {HOST_BLOB}",  # the site user may write anything into the file
        "git.invalid ssh-ed25519 not-base64!",
        f"git.invalid ssh-ed25519 {HOST_BLOB}",
    ]
    assert site_git_host_key_pin(site=site, lines=lines[:2]) is False
    assert site_git_host_key_pin(site=site, lines=lines) is True
    site.refresh_from_db()
    assert site.git_host_key == f"git.invalid ssh-ed25519 {HOST_BLOB}\n"
    assert site.git_host_key_fingerprint == _ssh_keygen_fingerprint(f"ssh-ed25519 {HOST_BLOB}", tmp_path)
    assert AuditEvent.objects.filter(action="site.git_host_key_pinned").count() == 1
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIB7b2jzB0mO7HZ1gt1jJ3TdQSCqBQ4M6X4eUh2wLtDpY"
    assert site_git_host_key_pin(site=site, lines=[f"git.invalid ssh-ed25519 {other}"]) is False
    site.refresh_from_db()
    assert HOST_BLOB in site.git_host_key


def test_a_port_other_than_22_pins_the_bracketed_host(site):
    site.repository_url = "ssh://git@git.invalid:2222/acme/shop.git"
    site.save()
    assert not site_git_host_key_pin(site=site, lines=[f"git.invalid ssh-ed25519 {HOST_BLOB}"])
    assert site_git_host_key_pin(site=site, lines=[f"[git.invalid]:2222 ssh-ed25519 {HOST_BLOB}"])


def test_the_detail_shows_the_pinned_fingerprint_and_another_host_clears_it(alice, site):
    Site.objects.filter(pk=site.pk).update(
        git_host_key=f"git.invalid ssh-ed25519 {HOST_BLOB}\n", git_host_key_fingerprint="SHA256:pinned"
    )
    client = alice.client()
    assert client.get(f"/api/v1/sites/{site.pk}").json()["git_host_key"] == {"fingerprint": "SHA256:pinned"}
    # Same host, another repository: the server is the same, so is its key.
    same_host = {"repository": {"url": "ssh://git@git.invalid/acme/other.git", "branch": "main"}}
    assert client.patch(f"/api/v1/sites/{site.pk}", same_host, format="json").status_code == 202
    site.refresh_from_db()
    assert site.git_host_key_fingerprint == "SHA256:pinned"
    other_host = {"repository": {"url": "git@git2.invalid:acme/shop.git", "branch": "main"}}
    assert client.patch(f"/api/v1/sites/{site.pk}", other_host, format="json").status_code == 202
    site.refresh_from_db()
    assert (site.git_host_key, site.git_host_key_fingerprint) == ("", "")
    assert client.get(f"/api/v1/sites/{site.pk}").json()["git_host_key"] is None


# --- clearing the pin (DELETE /git-host-key) -----------------------------------------------------

PINNED = {
    "git_host_key": f"git.invalid ssh-ed25519 {HOST_BLOB}\n",
    "git_host_key_fingerprint": "SHA256:pinned",
}


def _pinned(site) -> Site:
    Site.objects.filter(pk=site.pk).update(**PINNED)
    site.refresh_from_db()
    return site


def test_it_clears_the_pinned_host_key_so_the_next_deploy_pins_the_servers_key_again(bob, site):
    _pinned(site)
    response = bob.client().delete(f"/api/v1/sites/{site.pk}/git-host-key")
    assert (response.status_code, response.content) == (204, b"")
    site.refresh_from_db()
    assert (site.git_host_key, site.git_host_key_fingerprint) == ("", "")
    event = AuditEvent.objects.get(action="site.git_host_key_cleared")
    assert (event.actor, event.tenant, event.data) == (bob.user, bob.tenant, {"fingerprint": "SHA256:pinned"})
    assert event.target == f"site:{site.domain}"
    assert bob.client().get(f"/api/v1/sites/{site.pk}").json()["git_host_key"] is None
    # The deploy key stays: only the server's key is forgotten.
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIB7b2jzB0mO7HZ1gt1jJ3TdQSCqBQ4M6X4eUh2wLtDpY"
    assert site_git_host_key_pin(site=site, lines=[f"git.invalid ssh-ed25519 {other}"]) is True
    site.refresh_from_db()
    assert other in site.git_host_key and HOST_BLOB not in site.git_host_key


def test_clearing_nothing_pinned_answers_204_and_records_nothing(alice, site):
    assert alice.client().delete(f"/api/v1/sites/{site.pk}/git-host-key").status_code == 204
    assert not AuditEvent.objects.filter(action="site.git_host_key_cleared").exists()


def test_another_tenant_gets_404_and_the_pin_stays(charlie, site):
    _pinned(site)
    response = charlie.client().delete(f"/api/v1/sites/{site.pk}/git-host-key")
    assert response.status_code == 404 and response.json()["error"]["code"]
    site.refresh_from_db()
    assert site.git_host_key_fingerprint == "SHA256:pinned"
    assert not AuditEvent.objects.filter(action="site.git_host_key_cleared").exists()


def test_a_viewer_may_not_clear_the_pin(victor, site):
    _pinned(site)
    assert victor.client().delete(f"/api/v1/sites/{site.pk}/git-host-key").status_code == 403
    site.refresh_from_db()
    assert site.git_host_key == PINNED["git_host_key"]


def test_it_refuses_to_clear_the_pin_of_a_site_being_deleted(alice, site):
    _pinned(site)
    Site.objects.filter(pk=site.pk).update(status=Site.Status.DELETING)
    response = alice.client().delete(f"/api/v1/sites/{site.pk}/git-host-key")
    assert response.status_code == 409 and response.json()["error"]["code"] == "site_deleting"
    site.refresh_from_db()
    assert site.git_host_key_fingerprint == "SHA256:pinned"


def test_a_changed_host_key_failure_names_the_route_that_clears_the_pin(site):
    refused = AgentError(
        "release-create", "host_key_changed", "not the one pinned (SHA256:x)", step="git-clone"
    )
    error = git_host_key_changed_error(site, refused)
    assert error is not None and not error.transient
    assert str(error).startswith(str(refused))
    assert f"DELETE /api/v1/sites/{site.pk}/git-host-key" in str(error)
    other = AgentError("release-create", "source_failed", "refused the deploy key", step="git-clone")
    assert git_host_key_changed_error(site, other) is None


def test_the_agent_client_masks_the_deploy_key_in_agent_errors(alice, site):
    _create_key(alice, site)
    site.refresh_from_db()
    key = site.deploy_key_private
    body_line = key.splitlines()[1]

    def respond(command: Command, stdin: bytes | None) -> Result:
        if command.argv[0] == "sha256sum":
            return installed_agent_checksums()
        payload = json.loads(stdin or b"{}")
        leaked = payload["source"]["ssh"]["private_key"]
        return agent_answer(error={"code": "source_failed", "message": f"{leaked} | {body_line}"})

    agent = Agent(RecordingTransport(respond))
    with pytest.raises(AgentError) as failure:
        agent.call("release-create", {"name": "site1", "source": site_type("php").source(site)})
    assert body_line not in str(failure.value) and "OPENSSH PRIVATE KEY" not in str(failure.value)
    assert "***" in str(failure.value)
