"""Journey: the server behind a VPS's address presents another SSH host key (it was rebuilt, or
someone is in the middle). CHOM refuses to talk to it: a tenant's deploy through the API ends failed
with a clear host-key error, staff's re-bootstrap too, a critical alert fires, and the impostor
receives nothing: no login, no agent call, no new release on its disk.

The VPS is a dedicated one of this journey's tenant, so no other journey's site lands on it."""

import re
import time

import pytest

from tests.journeys.faults import Steps
from tests.journeys.support import site_get, unique, vps_shell
from tests.support.processes import wait_for

pytestmark = pytest.mark.timeout(1500)  # the first journey of a session also waits for the stack

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
ALERT_WAIT = 10.0  # the refused operation raises it itself, not the next health check


def test_it_refuses_a_vps_whose_host_key_changed_alerts_and_sends_it_nothing(stack):
    steps = Steps("host key changed")
    staff = stack.staff()
    owner = stack.tenant("hostkey", tier="enterprise")
    _, op = staff.act(
        "/api/v1/vps",
        {"name": unique("j-hostkey"), "provider": "local", "kind": "dedicated", "tenant": owner.slug},
        timeout=600,
    )
    vps = staff.get(f"/api/v1/vps/{op['target_id']}")
    assert vps["status"] == "active" and vps["host_key"].startswith("ssh-ed25519 "), vps
    steps("dedicated VPS created and bootstrapped")

    created, _ = owner.act(
        "/api/v1/sites", {"domain": f"{unique('pinned')}.test", "type": "static", "tls": "manual"}
    )
    site_id, user = created["id"], f"site{created['id']}"
    assert created["vps"]["id"] == vps["id"], created
    before = site_get(vps["ip_address"], created["domain"])
    assert before.status_code == 200 and before.headers.get("X-Chom-Site") == user, before.headers
    steps("site deployed on it")

    # The server is rebuilt (or intercepted): a new host key, sshd restarted. From now on every
    # SSH login and every agent run on it is in sshd's journal and on its disk.
    vps_shell(
        stack,
        vps,
        'rm -f "$1" "$1.pub" && ssh-keygen -q -t ed25519 -N "" -f "$1" && systemctl restart ssh',
        HOST_KEY,
    )
    new_key = vps_shell(stack, vps, 'cut -d" " -f1,2 "$1.pub"', HOST_KEY).strip()
    assert new_key != vps["host_key"]
    since = vps_shell(stack, vps, "date +%s").strip()
    releases = _releases(stack, vps, user)
    steps("host key regenerated on the VPS")

    _, deploy = owner.act(f"/api/v1/sites/{site_id}/deploy", expect="failed")
    assert f"host key of {vps['ip_address']} changed" in deploy["error"], deploy["error"]
    assert "refusing to connect" in deploy["error"], deploy["error"]
    assert deploy["attempts"] == 1, "a changed host key is not a transient failure to retry"
    site = owner.get(f"/api/v1/sites/{site_id}")
    assert site["last_deploy"]["status"] == "failed", site["last_deploy"]
    steps("deploy refused with a host-key error")

    alert = _wait_alert(staff, vps["name"])
    assert alert["severity"] == "critical" and alert["status"] == "firing", alert
    assert "changed" in alert["summary"] and "refusing to connect" in alert["summary"], alert
    steps("critical alert firing")

    _, bootstrap = staff.act(f"/api/v1/vps/{vps['id']}/bootstrap", expect="failed")
    assert f"host key of {vps['ip_address']} changed" in bootstrap["error"], bootstrap["error"]
    assert staff.get(f"/api/v1/vps/{vps['id']}")["host_key"] == vps["host_key"], "the new key was pinned"
    steps("re-bootstrap refused, the old key still pinned")

    # Nothing reached the impostor: CHOM did connect (sshd saw the key exchange) but never
    # authenticated, so no command, no agent call and no release. (CHOM's connections come from
    # the fleet bridge's gateway.)
    journal = vps_shell(stack, vps, 'journalctl --no-pager -o cat -u ssh --since "@$1"', since)
    assert not re.search(r"Accepted \S+ for", journal), f"someone logged in to the impostor:\n{journal}"
    assert stack.gateway in journal, (
        f"sshd never saw CHOM's connection attempts, so the test proves nothing:\n{journal}"
    )
    assert _releases(stack, vps, user) == releases, "the refused deploy left a release on the impostor"
    after = site_get(vps["ip_address"], created["domain"])
    assert (after.status_code, after.text) == (before.status_code, before.text)
    steps("the impostor received nothing: no login, no new release")
    steps.report()


def _releases(stack, vps: dict, user: str) -> str:
    return vps_shell(stack, vps, 'ls -la --time-style=+%s "$1/releases"', f"/var/www/{user}")


def _wait_alert(staff, vps_name: str) -> dict:
    found: dict = {}

    def firing():
        nonlocal found
        listed = staff.get("/api/v1/alerts?status=firing")
        alerts = listed["results"] if isinstance(listed, dict) else listed
        found = next(
            (a for a in alerts if a["name"] == "vps_host_key_changed" and a["labels"].get("vps") == vps_name),
            {},
        )
        return found

    started = time.monotonic()
    try:
        wait_for(firing, timeout=ALERT_WAIT, interval=2, what="the vps_host_key_changed alert")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {staff.get('/api/v1/alerts')}") from None
    print(f"\n  (alert seen {time.monotonic() - started:.0f}s after the refused deploy)")
    return found
