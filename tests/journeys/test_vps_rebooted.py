"""Journey: the VPS reboots while a site deploy runs on it (an operator's `systemctl reboot`, an
unattended upgrade, the provider's maintenance). The SSH session under the deploy dies with the
server; the deploy either resumes once the server is back (a transient failure, retried) or ends
failed with an error a human can act on. Whichever: after the boot the site serves release 1 or
release 2 in full, never a half-built one (`current` points at a release with its completion
marker, and the page nginx serves is that release's), and the next deploy through the API works.

The reboot is the server's own (`systemctl reboot` inside it): systemd stops every unit and the
SSH sessions, then systemd-nspawn exits as a rebooted container does (the power-cycle half of a
real reboot), and the local fleet boots the same disk again, as the provider's hypervisor would.
The VPS is a dedicated one of this journey's tenant, so no other journey's site is on it."""

import json
import time

import pytest

from fleet import localfleet
from tests.journeys.faults import Steps, deploy_building
from tests.journeys.support import site_get, unique, vps_shell
from tests.support.git import git_repo
from tests.support.processes import wait_for

pytestmark = pytest.mark.timeout(1500)  # the first journey of a session also waits for the stack

BUILD_SECONDS = 20  # the build hook that keeps the deploy busy on the VPS while it reboots
SHUTDOWN_TIMEOUT = 90.0  # systemd stopping nginx, php-fpm, MariaDB & co on a busy machine
# How CHOM words a failure the reboot caused: the agent's commands killed by the shutdown, the SSH
# session cut, the server not answering while it boots.
REBOOT_SIGNS = ("the server is shutting down or rebooting", "broke during", "cannot connect to")


def test_it_survives_a_vps_reboot_during_a_deploy_serving_a_whole_release(stack, git_server, tmp_path):
    steps = Steps("VPS rebooted mid-deploy")
    staff = stack.staff()
    owner = stack.tenant("reboot", tier="enterprise")
    _, op = staff.act(
        "/api/v1/vps",
        {"name": unique("j-reboot"), "provider": "local", "kind": "dedicated", "tenant": owner.slug},
        timeout=600,
    )
    vps = staff.get(f"/api/v1/vps/{op['target_id']}")
    steps("dedicated VPS created and bootstrapped")

    repo = tmp_path / "site"
    git_repo(repo, {"index.html": "<h1>version 1</h1>\n"}, "version 1")
    domain = f"{unique('rebooted')}.test"
    url = git_server.publish(repo, f"{unique('rebooted')}.git")
    created, _ = owner.act(
        "/api/v1/sites",
        {"domain": domain, "type": "static", "tls": "manual", "repository": {"url": url, "branch": "main"}},
    )
    site_id, user, ip = created["id"], f"site{created['id']}", vps["ip_address"]
    assert created["vps"]["id"] == vps["id"], created
    first = owner.get(f"/api/v1/sites/{site_id}")["current_release"]
    _assert_serves(stack, vps, domain, user, first, "version 1")
    steps("site deployed from git (release 1)")

    op_id, second = deploy_building(
        owner, site_id=site_id, repo=repo, git_server=git_server, url=url, build_seconds=BUILD_SECONDS
    )
    assert second != first
    # The agent is in the build hook on the VPS now: the server reboots under it.
    wait_for(lambda: _building(stack, vps, user), timeout=60, interval=0.3, what="the build hook")
    rebooted = _reboot(stack, vps)
    steps(f"VPS rebooted while the deploy builds release 2 (down {rebooted:.1f}s)")

    done = owner.wait_operation(op_id, expect=None)
    print(
        f"\n  the deploy {done['status']} after {done['attempts']} attempt(s): {done['error'] or 'no error'}"
    )
    log = [entry["message"] for entry in done["log"]]
    site = owner.get(f"/api/v1/sites/{site_id}")
    # The deploy met the reboot (else this journey proves nothing) and says so.
    met = [m for m in log if any(sign in m for sign in REBOOT_SIGNS)]
    assert met, f"no attempt of the deploy saw the reboot: {log}"
    print("\n".join(f"    {m}" for m in met))
    if done["status"] == "succeeded":  # resumed: a later attempt found the server back
        assert done["attempts"] > 1 and any("retrying in" in m for m in met), log
        assert site["current_release"] == second, site
        _assert_serves(stack, vps, domain, user, second, "version 2")
    else:  # failed cleanly: a reason naming what happened, release 1 serving
        assert done["status"] == "failed", done
        assert any(sign in done["error"] for sign in REBOOT_SIGNS), done["error"]
        assert ip in done["error"] or "rebooting" in done["error"], done["error"]
        assert site["current_release"] == first and site["last_deploy"]["status"] == "failed", site
        _assert_serves(stack, vps, domain, user, first, "version 1")
    names = [r["name"] for r in site["releases"]]
    assert len(names) == len(set(names)) and set(names) <= {first, second}, names
    steps(f"deploy {done['status']}; the site serves a whole release")

    owner.request("PATCH", f"/api/v1/sites/{site_id}", json={"hooks": {"build": []}}, expect=200)
    _, again = owner.act(f"/api/v1/sites/{site_id}/deploy")
    site = owner.get(f"/api/v1/sites/{site_id}")
    assert again["attempts"] == 1, again
    _assert_serves(stack, vps, domain, user, site["current_release"], "version 2")
    on_disk = _releases(stack, vps, user).split()
    incomplete = [r for r in on_disk if _marker(stack, vps, user, r) is None]
    assert not incomplete, f"half-built releases left on disk: {incomplete} of {on_disk}"
    steps("the next deploy succeeds, no half-built release left")
    steps.report()


def _reboot(stack, vps: dict) -> float:
    """`systemctl reboot` on the server; once systemd-nspawn has exited (a rebooted container's
    nspawn exits, its supervisor starts it again), boot the same disk. Seconds without SSH."""
    local = localfleet.vps_load(stack.vps_workdir(vps))
    assert local and localfleet.vps_is_running(local), local
    vps_shell(stack, vps, "systemctl --no-block reboot")
    started = time.monotonic()
    wait_for(
        lambda: not localfleet.vps_is_running(local),
        timeout=SHUTDOWN_TIMEOUT,
        interval=0.5,
        what="the shutdown",
    )
    localfleet.vps_start(local)
    return time.monotonic() - started


def _assert_serves(stack, vps: dict, domain: str, user: str, release: str, text: str) -> None:
    """nginx serves RELEASE's page for the site, and `current` is RELEASE, built to the end."""
    page = site_get(vps["ip_address"], domain)
    assert page.status_code == 200 and page.headers.get("X-Chom-Site") == user, (
        page.status_code,
        page.headers,
    )
    assert text in page.text, page.text[:300]
    current = vps_shell(stack, vps, 'readlink "$1/current"', f"/var/www/{user}").strip()
    assert current == f"releases/{release}", current
    marker = _marker(stack, vps, user, release)
    assert marker and marker["release"] == release, f"release {release} has no completion marker: {marker}"
    on_disk = vps_shell(stack, vps, 'cat "$1/current/index.html"', f"/var/www/{user}")
    assert text in on_disk, on_disk


def _building(stack, vps: dict, user: str) -> bool:
    """The site's build hook (`sleep`) runs on the VPS."""
    return bool(vps_shell(stack, vps, 'pgrep -u "$1" -x sleep || true', user).strip())


def _releases(stack, vps: dict, user: str) -> str:
    return vps_shell(stack, vps, 'ls -1 "$1/releases"', f"/var/www/{user}")


def _marker(stack, vps: dict, user: str, release: str) -> dict | None:
    """The release's completion marker (the agent writes it last), None when there is none."""
    text = vps_shell(
        stack, vps, 'cat "$1/.chom-release.json" 2>/dev/null || true', f"/var/www/{user}/releases/{release}"
    )
    return json.loads(text) if text.strip() else None
