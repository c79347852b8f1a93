"""A private repository on a git server reachable only over SSH (its own sshd on the fleet bridge,
git-shell, the site's deploy key as its only authorized key), deployed to a real local VPS: the
deploy key, the host key pinned on first use, a changed host key refused while the previous
release keeps serving until the tenant clears the pin (then the new key is pinned), and the key on
the VPS readable by its site user only."""

import pytest
import requests

from chom.models import Operation
from chom.operations import operation_execute
from fleet.remote.commands import Command
from fleet.services import transport_for
from sites.models import Site
from tests.support.git import GitSshServer, git_repo

pytestmark = pytest.mark.e2e


def _execute(op_id) -> Operation:
    operation_execute(operation_id=op_id)
    return Operation.objects.get(id=op_id)


def _deploy(persona, site) -> Operation:
    response = persona.client().post(f"/api/v1/sites/{site.pk}/deploy")
    assert response.status_code == 202, response.content
    return _execute(response.json()["operation"]["id"])


def _log(op: Operation) -> str:
    return "\n".join(entry.message for entry in op.log_entries.all())


def _get(vps, domain) -> str:
    return requests.get(f"http://{vps.ip_address}/", headers={"Host": domain}, timeout=5).text


def _sh(vps, *argv) -> str:
    with transport_for(vps) as transport:
        result = transport.run(Command.of(*argv))
    return result.stdout + result.stderr


def test_it_deploys_a_private_repository_over_ssh_with_the_sites_deploy_key(
    alice, make_vps, fleet_network, tmp_path
):
    network, _, _ = fleet_network
    vps = make_vps("e2e-private")
    repo = tmp_path / "app"
    first = git_repo(repo, {"index.php": "<?php echo 'private v1';"}, "v1")
    server = GitSshServer(tmp_path / "sshd", network.gateway)
    try:
        url = server.publish(repo, "app.git")
        assert url.startswith(f"ssh://{server.user}@{network.gateway}:{server.port}/")
        body = {"domain": "private.test", "type": "php", "repository": {"url": url, "branch": "main"}}
        response = alice.client().post("/api/v1/sites", body, format="json")
        assert response.status_code == 202, response.content
        site = Site.objects.get(pk=response.json()["id"])

        # No deploy key yet: the first deploy says what to do.
        op = _execute(response.json()["operation"]["id"])
        assert op.status == "failed" and "no deploy key" in op.error
        assert f"/api/v1/sites/{site.pk}/deploy-key" in op.error

        # A key the git server does not know (yet): refused, in words.
        key = alice.client().post(f"/api/v1/sites/{site.pk}/deploy-key").json()
        op = _deploy(alice, site)
        assert op.status == "failed" and "refused the site's deploy key" in op.error, op.error

        # Registered: the deploy clones over SSH, serves the commit and pins the host key.
        server.authorize(key["public_key"])
        op = _deploy(alice, site)
        assert op.status == "succeeded", f"{op.error}\n{_log(op)}"
        assert op.result["commit"] == first
        assert _get(vps, "private.test") == "private v1"
        detail = alice.client().get(f"/api/v1/sites/{site.pk}").json()
        assert detail["git_host_key"] == {"fingerprint": server.fingerprint}
        assert detail["deploy_key"]["fingerprint"] == key["fingerprint"]
        site.refresh_from_db()
        assert site.git_host_key == f"[{network.gateway}]:{server.port} {server.host_key}\n"
        served_release = site.current_release

        # On the VPS the key is the site user's alone: 0600, and another site's user cannot read it.
        key_path = f"/var/www/{site.unix_user}/.chom-ssh/deploy_key"
        assert _sh(vps, "stat", "-c", "%a %U", key_path).strip() == f"600 {site.unix_user}"
        other = alice.client().post(
            "/api/v1/sites", {"domain": "other.test", "type": "static"}, format="json"
        )
        assert _execute(other.json()["operation"]["id"]).status == "succeeded"
        other_user = Site.objects.get(pk=other.json()["id"]).unix_user
        stolen = _sh(vps, "runuser", "-u", other_user, "--", "cat", key_path)
        assert "Permission denied" in stolen and "PRIVATE KEY" not in stolen

        # Rotation: the new key replaces the old one on the VPS, so the old registration no
        # longer opens the repository.
        rotated = alice.client().post(f"/api/v1/sites/{site.pk}/deploy-key").json()
        op = _deploy(alice, site)
        assert op.status == "failed" and "refused the site's deploy key" in op.error
        server.authorize(rotated["public_key"])
        second = git_repo(repo, {"index.php": "<?php echo 'private v2';"}, "v2")
        server.publish(repo, "app.git")
        op = _deploy(alice, site)
        assert op.status == "succeeded", op.error
        assert op.result["commit"] == second and _get(vps, "private.test") == "private v2"
        site.refresh_from_db()
        served_release = site.current_release

        # The server's host key changes: refused, naming the pinned key; v2 keeps serving.
        server.rotate_host_key()
        git_repo(repo, {"index.php": "<?php echo 'private v3';"}, "v3")
        server.publish(repo, "app.git")
        op = _deploy(alice, site)
        assert op.status == "failed"
        assert (
            "host key is not the one pinned" in op.error and detail["git_host_key"]["fingerprint"] in op.error
        )
        assert server.fingerprint not in op.error
        assert _get(vps, "private.test") == "private v2"
        site.refresh_from_db()
        assert (site.status, site.current_release) == ("active", served_release)
        assert site.git_host_key_fingerprint == detail["git_host_key"]["fingerprint"]
        # The refusal says how to trust the new key, and that way works: the pin is cleared, the
        # next deploy pins the server's new key and serves the commit.
        reset = f"/api/v1/sites/{site.pk}/git-host-key"
        assert f"DELETE {reset}" in op.error, op.error
        assert alice.client().delete(reset).status_code == 204
        assert alice.client().get(f"/api/v1/sites/{site.pk}").json()["git_host_key"] is None
        op = _deploy(alice, site)
        assert op.status == "succeeded", f"{op.error}\n{_log(op)}"
        assert _get(vps, "private.test") == "private v3"
        assert f"git host key pinned: {server.fingerprint}" in _log(op)
        site.refresh_from_db()
        assert site.git_host_key == f"[{network.gateway}]:{server.port} {server.host_key}\n"
        assert alice.client().get(f"/api/v1/sites/{site.pk}").json()["git_host_key"] == {
            "fingerprint": server.fingerprint
        }

        # The private key never reached an operation's log or error.
        site.refresh_from_db()
        secret_lines = [line for line in site.deploy_key_private.splitlines() if "OPENSSH" not in line]
        for logged in Operation.objects.filter(target_type="sites.site", target_id=str(site.pk)):
            text = _log(logged) + logged.error
            assert not any(line in text for line in secret_lines)
    finally:
        server.stop()
