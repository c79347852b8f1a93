"""Journey: the Celery worker is SIGKILLed in the middle of a site deploy (the OOM killer, a power
cut): the operation's row is left `running` with nobody working on it. The site keeps serving its
previous release; the reclaim job (the one beat runs every minute) requeues the operation once its
deadline passed, a new worker runs it again, and it ends cleanly with one release per deploy.

The deploy's deadline (the site.deploy time limit, 21 minutes) is not waited for: the reclaim job
runs once in an operator's process whose OPERATION_STALE_GRACE_SECONDS moves its clock past it.
The stack's worker and beat keep their own settings."""

import pytest

from tests.journeys.faults import (
    Steps,
    deploy_building,
    shared_vps,
    task_run_once,
    worker_kill,
    worker_restart,
)
from tests.journeys.support import site_get, unique, vps_shell
from tests.support.git import git_repo
from tests.support.processes import wait_for

pytestmark = pytest.mark.timeout(1500)  # the first journey of a session also waits for the stack

BUILD_SECONDS = 15  # the build hook that keeps the deploy busy on the VPS while the worker dies
PAST_DEADLINE = str(-(1260 + 120))  # minus (site.deploy's time limit + margin): every deadline passed


def test_it_reclaims_a_deploy_whose_worker_was_killed_and_keeps_the_site_serving(stack, git_server, tmp_path):
    steps = Steps("worker killed mid-deploy")
    shared_vps(stack)
    repo = tmp_path / "site"
    git_repo(repo, {"index.html": "<h1>version 1</h1>\n"}, "version 1")
    owner = stack.tenant("reclaim")
    domain = f"{unique('killed')}.test"
    url = git_server.publish(repo, f"{unique('killed')}.git")
    created, _ = owner.act(
        "/api/v1/sites",
        {"domain": domain, "type": "static", "tls": "manual", "repository": {"url": url, "branch": "main"}},
    )
    site_id, user = created["id"], f"site{created['id']}"
    site = owner.get(f"/api/v1/sites/{site_id}")
    first, ip = site["current_release"], site["vps"]["ip_address"]
    vps = stack.staff().get(f"/api/v1/vps/{site['vps']['id']}")
    _assert_serves(ip, domain, user, "version 1")
    steps("site deployed from git (release 1)")

    op_id, second = deploy_building(
        owner, site_id=site_id, repo=repo, git_server=git_server, url=url, build_seconds=BUILD_SECONDS
    )
    assert second != first
    # The agent is in the build hook on the VPS now: the worker dies under it.
    wait_for(lambda: _releases(stack, vps, user).count(second) == 1, timeout=30, what="the new release dir")
    worker_kill(stack)
    steps("worker SIGKILLed while the deploy builds release 2")

    try:
        stuck = owner.get(f"/api/v1/operations/{op_id}")
        assert (stuck["status"], stuck["attempts"]) == ("running", 1), stuck
        assert owner.get(f"/api/v1/sites/{site_id}")["current_release"] == first
        assert _current(stack, vps, user) == first
        _assert_serves(ip, domain, user, "version 1")
        steps("row left running; release 1 still serving")

        # Within its deadline the operation is left alone: its worker may only be slow.
        task_run_once(stack, "chom.reclaim_stale_operations")
        assert owner.get(f"/api/v1/operations/{op_id}")["status"] == "running"
    finally:
        worker_restart(stack)  # the stack's own worker again, whatever happened
    steps("new worker started")

    reclaimed = task_run_once(
        stack, "chom.reclaim_stale_operations", OPERATION_STALE_GRACE_SECONDS=PAST_DEADLINE
    )
    assert op_id in reclaimed, f"the reclaim job did not take {op_id}: {reclaimed}"
    done = owner.wait_operation(op_id, expect=None)
    steps("reclaimed and run again by the new worker")

    log = [entry["message"] for entry in done["log"]]
    assert any(m.startswith("reclaimed: worker lost") and m.endswith("requeued") for m in log), log
    site = owner.get(f"/api/v1/sites/{site_id}")
    on_disk = sorted(_releases(stack, vps, user).split())
    if done["status"] == "succeeded":
        assert done["attempts"] == 2, done
        assert site["current_release"] == second and _current(stack, vps, user) == second
        _assert_serves(ip, domain, user, "version 2")
        assert on_disk == sorted([first, second]), on_disk
        # Both attempts built the same release 2 (the second found it built or rebuilt it).
        assert log.count(f"step: release {second}") == 2, log
    else:  # failing is clean too: a reason a human can act on, release 1 serving, no half release
        assert done["status"] == "failed" and done["error"], done
        assert site["current_release"] == first and _current(stack, vps, user) == first
        _assert_serves(ip, domain, user, "version 1")
        assert set(on_disk) <= {first, second}, on_disk
    names = [r["name"] for r in site["releases"]]
    assert len(names) == len(set(names)) and set(names) <= {first, second}, names
    print(f"\n  the reclaimed deploy {done['status']} after {done['attempts']} attempts")
    steps("one release per deploy, the site serving")
    steps.report()


def _assert_serves(ip: str, domain: str, user: str, text: str) -> None:
    page = site_get(ip, domain)
    assert page.status_code == 200 and page.headers.get("X-Chom-Site") == user, (
        page.status_code,
        page.headers,
    )
    assert text in page.text, page.text[:300]


def _releases(stack, vps: dict, user: str) -> str:
    return vps_shell(stack, vps, 'ls -1 "$1/releases"', f"/var/www/{user}")


def _current(stack, vps: dict, user: str) -> str:
    return (
        vps_shell(stack, vps, 'readlink "$1/current"', f"/var/www/{user}").strip().removeprefix("releases/")
    )
