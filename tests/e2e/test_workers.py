"""Workers end to end on a real VPS: a PHP site from git whose worker script (run by systemd as
the site user, in the site's slice) processes jobs the site's page queues; it follows a deploy,
is restarted by systemd after a SIGKILL (the API shows the restart), refuses an .env the site
made a symlink to /etc/shadow, stops when disabled and is gone when deleted."""

import uuid

import pytest
import requests
from django.test import override_settings

from chom.models import Operation
from chom.operations import operation_execute
from fleet.remote.commands import Command
from fleet.services import transport_for
from sites.models import Site
from tests.support.git import GitServer, git_repo
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e

DOMAIN = "workers.test"
# The page queues a job (a file in shared/jobs) and shows its result (shared/done).
PAGE = """<?php
$shared = realpath(__DIR__ . '/../../shared');
$name = preg_replace('/[^a-z0-9-]/', '', $_GET['job'] ?? $_GET['done'] ?? '');
if (isset($_GET['job'])) {
    @mkdir("$shared/jobs", 0770);
    file_put_contents("$shared/jobs/$name.job", 'x');
    echo 'queued';
} elseif (isset($_GET['done'])) {
    echo (string) @file_get_contents("$shared/done/$name.done");
} else {
    echo 'v' . trim(file_get_contents(__DIR__ . '/VERSION'));
}
"""
# The worker: started by systemd in current/, it records which release, process, user and
# environment processed each job.
WORKER = """<?php
$shared = realpath(getcwd() . '/../../shared');
$version = trim(file_get_contents('VERSION'));
@mkdir("$shared/jobs", 0770);
@mkdir("$shared/done", 0770);
while (true) {
    foreach (glob("$shared/jobs/*.job") as $job) {
        $name = basename($job, '.job');
        $line = sprintf('release=%s pid=%d greeting=%s shadow=%s', $version, getmypid(),
            getenv('GREETING') ?: 'unset', getenv('root') === false ? 'no' : 'yes');
        file_put_contents("$shared/done/$name.tmp", $line);
        rename("$shared/done/$name.tmp", "$shared/done/$name.done");
        unlink($job);
    }
    usleep(200000);
}
"""


def _ok(response) -> Operation:
    assert response.status_code == 202, response.content
    op_id = response.json()["operation"]["id"]
    operation_execute(operation_id=op_id)
    op = Operation.objects.get(id=op_id)
    assert op.status == "succeeded", f"{op.error}\n" + "\n".join(e.message for e in op.log_entries.all())
    return op


def _sh(vps, *argv) -> tuple[int, str]:
    with transport_for(vps) as transport:
        result = transport.run(Command.of(*argv))
    return result.exit_code, result.stdout + result.stderr


def _get(vps, query: str) -> str:
    url = f"http://{vps.ip_address}/?{query}"
    return requests.get(url, headers={"Host": DOMAIN}, timeout=10).text


def _job(vps) -> dict[str, str]:
    """Queue a job through the page; the worker's record of it, once processed."""
    name = uuid.uuid4().hex[:10]
    assert _get(vps, f"job={name}") == "queued"
    line = wait_for(lambda: _get(vps, f"done={name}"), timeout=30, interval=0.3, what=f"job {name} processed")
    return dict(part.split("=", 1) for part in line.split())


def _status(client, url: str) -> dict:
    response = client.get(url)
    assert response.status_code == 200, response.content
    return response.json()["status"]


def _repo(repo, version: str) -> None:
    files = {"index.php": PAGE, "worker.php": WORKER, "VERSION": f"{version}\n"}
    git_repo(repo, files, f"v{version}")


@override_settings(WORKER_STATUS_MAX_AGE=0)  # every read of the API asks the VPS
def test_it_runs_a_worker_that_follows_deploys_restarts_after_a_kill_and_stops(
    alice, make_vps, fleet_network, tmp_path
):
    network, _, _ = fleet_network
    vps = make_vps("e2e-workers")
    repo = tmp_path / "app"
    _repo(repo, "1")
    (tmp_path / "srv").mkdir()
    server = GitServer(tmp_path / "srv", network.gateway)
    url = server.publish(repo, "app.git")
    client = alice.client()
    try:
        body = {"domain": DOMAIN, "type": "php", "repository": {"url": url, "branch": "main"}}
        response = client.post("/api/v1/sites", body, format="json")
        _ok(response)
        site = Site.objects.get(pk=response.json()["id"])
        user = site.unix_user
        _ok(
            client.patch(
                f"/api/v1/sites/{site.pk}/environment", {"variables": {"GREETING": "hi"}}, format="json"
            )
        )

        # A worker through the API: a systemd unit per process, as the site user in its slice.
        response = client.post(
            f"/api/v1/sites/{site.pk}/workers",
            {"name": "jobs", "command": ["php", "worker.php"]},
            format="json",
        )
        _ok(response)
        worker_url = f"/api/v1/sites/{site.pk}/workers/{response.json()['id']}"
        unit = f"chom-{user}-worker-jobs@1.service"
        first = _job(vps)
        assert (first["release"], first["greeting"], first["shadow"]) == ("1", "hi", "no")
        _, shown = _sh(
            vps, "systemctl", "show", "-p", "User,Slice,NoNewPrivileges,ProtectSystem,PrivateTmp", unit
        )
        assert set(shown.split()) == {
            f"User={user}",
            f"Slice=chom-{user}.slice",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
        }
        status = _status(client, worker_url)
        assert (status["state"], status["running"], status["processes"][0]["pid"]) == (
            "running", 1, int(first["pid"]),
        )  # fmt: skip

        # A deploy restarts it into the new release.
        _repo(repo, "2")
        server.publish(repo, "app.git")
        _ok(client.post(f"/api/v1/sites/{site.pk}/deploy"))
        second = wait_for(
            lambda: (job := _job(vps))["release"] == "2" and job,
            timeout=60,
            interval=0.5,
            what="release 2's worker",
        )
        assert second["pid"] != first["pid"]

        # SIGKILL: systemd starts it again, and the API counts the restart.
        assert _sh(vps, "kill", "-KILL", second["pid"])[0] == 0
        third = wait_for(
            lambda: (job := _job(vps))["pid"] != second["pid"] and job,
            timeout=60,
            interval=0.5,
            what="a new worker",
        )
        assert third["release"] == "2"
        status = wait_for(
            lambda: (s := _status(client, worker_url))["restarts"] >= 1 and s, timeout=30, interval=1,
            what="the restart in the API",
        )  # fmt: skip
        assert status["state"] == "running" and status["last_exit"] == {"kind": "signal", "status": 9}

        # The site makes its .env a symlink to /etc/shadow: the worker (reading it as the site
        # user) refuses to start rather than follow it, and nothing of the file reaches it.
        link = f"/var/www/{user}/shared/.env"
        setpriv = ("setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--")
        assert _sh(vps, *setpriv, "ln", "-sfn", "/etc/shadow", link)[0] == 0
        assert _sh(vps, "systemctl", "restart", unit)[0] == 0
        refused = wait_for(
            lambda: (s := _status(client, worker_url))["last_exit"] == {"kind": "exit", "status": 78} and s,
            timeout=30,
            interval=1,
            what="the worker refusing the symlinked .env",
        )
        assert refused["running"] == 0 or refused["processes"][0]["state"] != "active"
        _, journal = _sh(vps, "journalctl", "-u", unit, "--no-pager", "-n", "50")
        assert "not starting" in journal and "root:" not in journal
        # An environment change writes a real .env again (as the site user) and restarts it.
        _ok(
            client.patch(
                f"/api/v1/sites/{site.pk}/environment", {"variables": {"GREETING": "back"}}, format="json"
            )
        )
        fourth = wait_for(
            lambda: (job := _job(vps))["greeting"] == "back" and job,
            timeout=60,
            interval=0.5,
            what="the new env",
        )
        assert fourth["shadow"] == "no"

        # Disabled: stopped (and not started at boot); deleted: its unit is gone.
        _ok(client.patch(worker_url, {"enabled": False}, format="json"))
        wait_for(
            lambda: _sh(vps, "systemctl", "is-active", unit)[0] != 0, timeout=70, what="the worker stopped"
        )
        assert _status(client, worker_url)["state"] == "stopped"
        _ok(client.delete(worker_url))
        code, _ = _sh(vps, "test", "-e", f"/etc/systemd/system/chom-{user}-worker-jobs@.service")
        assert code != 0
        assert client.get(worker_url).status_code == 404
    finally:
        server.stop()
