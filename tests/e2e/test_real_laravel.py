"""A real Laravel 8 application (tests/support/laravel.py, Debian's framework) deployed by CHOM
from git onto a real VPS: its migrations, queue worker (systemd), cron-driven scheduler and
production caches all run as they would for a customer."""

import time

import pytest
import requests

from chom.models import Operation
from chom.operations import operation_execute
from fleet.remote.commands import Command
from fleet.services import transport_for
from sites.models import Site
from tests.support.git import GitServer
from tests.support.laravel import APP_TABLES, laravel_repo, migration, queue_job, sql
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e
QUEUE = ["php", "artisan", "queue:work", "--sleep=3", "--tries=3", "--max-time=3600"]


def _run(response) -> Operation:
    assert response.status_code == 202, response.content
    op_id = response.json()["operation"]["id"]
    operation_execute(operation_id=op_id)
    op = Operation.objects.get(id=op_id)
    assert op.status == "succeeded", f"{op.error}\n" + "\n".join(e.message for e in op.log_entries.all())
    return op


def _sh(vps, *argv) -> str:
    with transport_for(vps) as transport:
        result = transport.run(Command.of(*argv))
    assert result.exit_code == 0, result.stdout + result.stderr
    return result.stdout


def _page(vps) -> requests.Response:
    return requests.get(f"http://{vps.ip_address}/", headers={"Host": "laravel.test"}, timeout=10)


def test_it_runs_a_real_laravel_app_with_migrations_queue_worker_scheduler_and_caches(
    alice, make_vps, fleet_network, tmp_path
):
    network, _, _ = fleet_network
    vps = make_vps("e2e-reallaravel")
    repo = tmp_path / "app"
    started = time.monotonic()
    laravel_repo(repo, "1", "v1")
    (tmp_path / "srv").mkdir()
    server = GitServer(tmp_path / "srv", network.gateway)
    url = server.publish(repo, "app.git")
    repo_seconds = time.monotonic() - started
    try:
        started = time.monotonic()
        response = alice.client().post(
            "/api/v1/sites",
            {"domain": "laravel.test", "type": "laravel", "repository": {"url": url, "branch": "main"}},
            format="json",
        )
        _run(response)
        deploy_seconds = time.monotonic() - started
        site = Site.objects.get(pk=response.json()["id"])
        page = _page(vps)
        assert (page.status_code, page.text) == (200, "version 1 greeting=hello key=ok")

        # artisan migrate created the app's tables in the site's own database.
        tables = {row[0] for row in sql(vps, site, "SHOW TABLES")}
        assert tables >= set(APP_TABLES), tables
        assert sql(vps, site, "SELECT COUNT(*), MAX(batch) FROM migrations") == [["4", "1"]]

        # artisan optimize ran as in production: config and routes come from bootstrap/cache.
        release = f"/var/www/{site.unix_user}/releases/{site.current_release}"
        cached = _sh(vps, "ls", f"{release}/bootstrap/cache").split()
        assert {"config.php", "routes-v7.php"} <= set(cached), cached
        assert "laravel.test" in _sh(vps, "cat", f"{release}/bootstrap/cache/config.php")

        # A job queued through the page is processed by queue:work, the site's default worker
        # (a systemd unit in the site's slice).
        row, queue_seconds = queue_job(vps, site)
        assert row == ["1", "1"]
        unit = f"chom-{site.unix_user}-worker-queue@1.service"
        assert _sh(vps, "systemctl", "is-active", unit).strip() == "active"
        slice_ = _sh(vps, "systemctl", "show", "-p", "Slice", unit).strip()
        assert slice_ == f"Slice=chom-{site.unix_user}.slice"

        # The scheduler runs from /etc/cron.d every minute: app:tick leaves its row.
        started = time.monotonic()
        ticks = wait_for(
            lambda: sql(vps, site, "SELECT `release` FROM schedule_ticks"),
            timeout=75,
            interval=1,
            what="a scheduler tick from cron",
        )
        tick_seconds = time.monotonic() - started
        assert ticks[0] == ["1"]

        # As on a site of an older CHOM: its queue worker a supervisor program, no Worker row.
        # The next deploy removes the program and adopts it as the site's `queue` worker.
        site.workers.all().delete()
        legacy = f"/etc/supervisor/conf.d/chom-{site.unix_user}.conf"
        program = (
            f"[program:chom-{site.unix_user}-queue]\nuser={site.unix_user}\n"
            f"command=/usr/bin/php /var/www/{site.unix_user}/current/artisan queue:work\n"
        )
        with transport_for(vps) as transport:
            transport.put_file(program.encode(), legacy, mode=0o644)
        _sh(vps, "supervisorctl", "update")

        # A second release with a new migration: migrate runs it (batch 2), and the queue worker
        # is restarted into the new code (the job row says which release processed it).
        laravel_repo(repo, "2", "v2", migration("notes"))
        server.publish(repo, "app.git")
        started = time.monotonic()
        _run(alice.client().post(f"/api/v1/sites/{site.pk}/deploy"))
        redeploy_seconds = time.monotonic() - started
        assert list(site.workers.values_list("name", "command")) == [("queue", QUEUE)]
        _sh(vps, "test", "!", "-e", legacy)
        assert _sh(vps, "systemctl", "is-active", unit).strip() == "active"
        page = _page(vps)
        assert page.text == "version 2 greeting=hello key=ok"
        assert sql(vps, site, "SELECT COUNT(*), MAX(batch) FROM migrations") == [["5", "2"]]
        assert ["notes"] in sql(vps, site, "SHOW TABLES")

        assert queue_job(vps, site)[0] == ["2", "2"]

        # A rollback takes the worker back too.
        _run(alice.client().post(f"/api/v1/sites/{site.pk}/rollback"))
        assert _page(vps).text == "version 1 greeting=hello key=ok"
        assert queue_job(vps, site)[0] == ["1", "1"]
    finally:
        server.stop()
    print(
        f"\nreal Laravel: repo with vendor/ {repo_seconds:.1f}s, first deploy {deploy_seconds:.1f}s,"
        f" queued job processed {queue_seconds:.1f}s, first scheduler tick {tick_seconds:.1f}s,"
        f" second deploy {redeploy_seconds:.1f}s"
    )
