"""The environment API and deploy hooks end to end: a PHP site from a git server on the fleet's
bridge, in a real nspawn VPS, whose page prints a value read from its .env."""

import pytest
import requests

from chom.models import Operation
from chom.operations import operation_execute
from sites.models import Site
from tests.support.git import GitServer, git_repo

pytestmark = pytest.mark.e2e

PAGE = """<?php
$env = (string) @file_get_contents(__DIR__ . '/.env');
preg_match('/^GREETING=(.*)$/m', $env, $m);
echo 'v%s greeting=' . ($m[1] ?? 'unset');
"""


def _execute(response) -> Operation:
    assert response.status_code == 202, response.content
    operation_execute(operation_id=response.json()["operation"]["id"])
    return Operation.objects.get(id=response.json()["operation"]["id"])


def _ok(response) -> Operation:
    op = _execute(response)
    assert op.status == "succeeded", f"{op.error}\n" + "\n".join(e.message for e in op.log_entries.all())
    return op


def _page(vps) -> str:
    return requests.get(f"http://{vps.ip_address}/", headers={"Host": "env.test"}, timeout=5).text


def _log(op: Operation) -> str:
    return "\n".join(e.message for e in op.log_entries.all())


def test_it_applies_the_environment_without_a_release_and_runs_deploy_hooks(
    alice, make_vps, fleet_network, tmp_path
):
    network, _, _ = fleet_network
    vps = make_vps("e2e-appenv")
    repo = tmp_path / "app"
    git_repo(repo, {"index.php": PAGE % 1}, "v1")
    (tmp_path / "srv").mkdir()
    server = GitServer(tmp_path / "srv", network.gateway)
    url = server.publish(repo, "app.git")
    client = alice.client()
    try:
        body = {"domain": "env.test", "type": "php", "repository": {"url": url, "branch": "main"}}
        response = client.post("/api/v1/sites", body, format="json")
        _ok(response)
        site = Site.objects.get(pk=response.json()["id"])
        assert _page(vps) == "v1 greeting=unset"
        first = site.current_release

        # Set through the API: served at once, no new release.
        env = f"/api/v1/sites/{site.pk}/environment"
        op = _ok(client.put(env, {"variables": {"GREETING": "hello-1"}}, format="json"))
        assert _page(vps) == "v1 greeting=hello-1"
        site.refresh_from_db()
        assert site.current_release == first and site.releases.count() == 1
        assert "hello-1" not in _log(op) + op.error
        shared = f"/var/www/{site.unix_user}/shared/.env"
        stat = _sh(vps, "stat", "-c", "%a %U %G", shared)
        assert stat.strip() == f"640 {site.unix_user} {site.unix_user}"
        # The same set again changes nothing on the VPS.
        assert "no changes" in _log(_ok(client.patch(env, {"variables": {}}, format="json")))

        git_repo(repo, {"index.php": PAGE % 2}, "v2")
        server.publish(repo, "app.git")
        _ok(client.post(f"/api/v1/sites/{site.pk}/deploy"))
        assert _page(vps) == "v2 greeting=hello-1"

        _ok(client.patch(env, {"variables": {"GREETING": "hello-2"}}, format="json"))
        assert _page(vps) == "v2 greeting=hello-2"

        # A rollback brings back the code, not the variables.
        _ok(client.post(f"/api/v1/sites/{site.pk}/rollback"))
        assert _page(vps) == "v1 greeting=hello-2"
        site.refresh_from_db()
        assert site.current_release == first

        # A failing build hook: the release never goes live, the previous one keeps serving.
        hooks = {"build": ["php", "-r", "echo 'hook says no', PHP_EOL; exit(3);"]}
        assert client.patch(f"/api/v1/sites/{site.pk}", {"hooks": hooks}, format="json").status_code == 200
        git_repo(repo, {"index.php": PAGE % 3}, "v3")
        server.publish(repo, "app.git")
        op = _execute(client.post(f"/api/v1/sites/{site.pk}/deploy"))
        assert op.status == "failed" and "exited 3" in op.error and "hook says no" in op.error
        assert _page(vps) == "v1 greeting=hello-2"
        assert op.params["release"] not in _sh(vps, "ls", f"/var/www/{site.unix_user}/releases")

        # A release hook runs in current/ after the switch; its output is in the operation log.
        hooks = {"build": [], "release": ["php", "-r", "echo 'release hook in ', getcwd(), PHP_EOL;"]}
        client.patch(f"/api/v1/sites/{site.pk}", {"hooks": hooks}, format="json")
        op = _ok(client.post(f"/api/v1/sites/{site.pk}/deploy"))
        assert f"release hook in /var/www/{site.unix_user}/releases/{op.params['release']}" in _log(op)
        assert _page(vps) == "v3 greeting=hello-2"
        serving = Site.objects.get(pk=site.pk).current_release

        # A failing release hook switches back to the release before.
        hooks = {"release": ["php", "-r", "echo 'release hook failed', PHP_EOL; exit(5);"]}
        client.patch(f"/api/v1/sites/{site.pk}", {"hooks": hooks}, format="json")
        op = _execute(client.post(f"/api/v1/sites/{site.pk}/deploy"))
        assert op.status == "failed" and "exited 5" in op.error, op.error
        assert f"switched back to release {serving}" in op.error
        assert _page(vps) == "v3 greeting=hello-2"
    finally:
        server.stop()


def _sh(vps, *argv) -> str:
    from fleet.remote.commands import Command
    from fleet.services import transport_for

    with transport_for(vps) as transport:
        result = transport.run(Command.of(*argv))
    return result.stdout + result.stderr
