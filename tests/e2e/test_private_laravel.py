"""Issue 16's joined proof: the real Laravel app (tests/support/laravel.py) from a *private*
repository on a git server reachable only over SSH (tests/support/git.py GitSshServer), deployed
with the site's deploy key onto a real VPS; its page prints a value set through the environment
API, and changing the value changes the page (Laravel's config cache rebuilt) and what the queue
worker sees, without a new release."""

import time

import pytest
import requests

from chom.models import Operation
from chom.operations import operation_execute
from fleet.remote.commands import Command
from fleet.services import transport_for
from sites.models import Site
from tests.support.git import GitSshServer
from tests.support.laravel import APP_DIR, laravel_repo, queue_job

pytestmark = pytest.mark.e2e

DOMAIN = "private-laravel.test"
JOB = "app/Jobs/RecordMessage.php"


def _job_recording_the_greeting() -> dict[str, str]:
    """The app's own job, recording which greeting the queue worker's config holds next to the
    release that processed it (this test's repository only; the shared app stays as it is)."""
    source = (APP_DIR / JOB).read_text()
    original = "'processed_by' => config('app.version'),"
    assert original in source, "the app's job changed: adapt this test"
    return {
        JOB: source.replace(
            original, "'processed_by' => config('app.version') . ' ' . config('app.greeting'),"
        )
    }


def _ok(response) -> Operation:
    assert response.status_code == 202, response.content
    op_id = response.json()["operation"]["id"]
    operation_execute(operation_id=op_id)
    op = Operation.objects.get(id=op_id)
    assert op.status == "succeeded", f"{op.error}\n" + "\n".join(e.message for e in op.log_entries.all())
    return op


def _page(vps) -> str:
    response = requests.get(f"http://{vps.ip_address}/", headers={"Host": DOMAIN}, timeout=10)
    assert response.status_code == 200, response.text[:500]
    return response.text


def _sh(vps, *argv) -> str:
    with transport_for(vps) as transport:
        result = transport.run(Command.of(*argv))
    assert result.exit_code == 0, result.stdout + result.stderr
    return result.stdout


def _served(vps, site) -> tuple[str, int, str]:
    """(current_release, Release rows, the release `current` points to on the VPS)."""
    site.refresh_from_db()
    target = _sh(vps, "readlink", f"/var/www/{site.unix_user}/current").strip()
    return site.current_release, site.releases.count(), target.rstrip("/").rsplit("/", 1)[-1]


def test_it_deploys_a_private_laravel_app_over_ssh_and_applies_its_environment_without_a_release(
    alice, make_vps, fleet_network, tmp_path
):
    network, _, _ = fleet_network
    vps = make_vps("e2e-privlaravel")
    repo = tmp_path / "app"
    commit = laravel_repo(repo, "1", "v1", _job_recording_the_greeting())
    server = GitSshServer(tmp_path / "sshd", network.gateway)
    client = alice.client()
    timings = {}
    try:
        url = server.publish(repo, "app.git")
        assert url.startswith("ssh://")
        response = client.post(
            "/api/v1/sites",
            {"domain": DOMAIN, "type": "laravel", "repository": {"url": url, "branch": "main"}},
            format="json",
        )
        assert response.status_code == 202, response.content
        site = Site.objects.get(pk=response.json()["id"])

        # The deploy key is created before the first deploy runs, and is the only key the git
        # server lets in: the clone can only have used it.
        key = client.post(f"/api/v1/sites/{site.pk}/deploy-key")
        assert key.status_code == 200, key.content
        server.authorize(key.json()["public_key"])
        started = time.monotonic()
        op = _ok(response)
        timings["first deploy"] = time.monotonic() - started
        assert op.result["commit"] == commit
        assert _page(vps) == "version 1 greeting=hello key=ok"
        assert f"Accepted publickey for {server.user}" in server.log()
        assert key.json()["fingerprint"] in server.log()
        site.refresh_from_db()
        assert site.git_host_key_fingerprint == server.fingerprint
        release, releases, linked = _served(vps, site)
        assert linked == release and releases == 1

        # Set through the environment API: the page prints it, from the same release.
        env = f"/api/v1/sites/{site.pk}/environment"
        started = time.monotonic()
        op = _ok(client.put(env, {"variables": {"GREETING": "private-1"}}, format="json"))
        assert _page(vps) == "version 1 greeting=private-1 key=ok"
        timings["PUT → page changed"] = time.monotonic() - started
        assert op.kind == "site.environment"
        assert _served(vps, site) == (release, 1, release)
        listed = client.get(env).json()["variables"]
        assert [(v["name"], v["secret"]) for v in listed] == [("GREETING", True)]
        assert "private-1" not in str(listed)

        # Changed again: Laravel's cached config is rebuilt (the page reads config, not .env) ...
        started = time.monotonic()
        _ok(client.patch(env, {"variables": {"GREETING": "private-2"}}, format="json"))
        assert _page(vps) == "version 1 greeting=private-2 key=ok"
        timings["PATCH → page changed"] = time.monotonic() - started
        assert _served(vps, site) == (release, 1, release)
        cached = _sh(vps, "cat", f"/var/www/{site.unix_user}/releases/{release}/bootstrap/cache/config.php")
        assert "private-2" in cached and "private-1" not in cached

        # ... and the queue worker was restarted into it: the job it processes sees the new value.
        row, timings["queued job processed"] = queue_job(vps, site)
        assert row == ["1", "1 private-2"]
    finally:
        server.stop()
    print("\nprivate Laravel: " + ", ".join(f"{what} {seconds:.1f}s" for what, seconds in timings.items()))
