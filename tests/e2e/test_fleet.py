"""Fleet end to end: real sshd, systemd, nginx, php-fpm and MariaDB in VPSes the suite boots."""

import hashlib
import io
import os
import threading
import time
from pathlib import Path

import pytest
from django.db import connection, transaction

from chom.models import Operation
from chom.operations import operation_execute
from fleet import localfleet, services
from fleet.models import Vps
from fleet.remote.commands import Command
from observability.models import Alert
from tests.support.fleet import vps_name
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e


def _create(name: str) -> tuple[Vps, Operation]:
    with transaction.atomic():
        return services.vps_create(name=vps_name(name), provider="local", kind="shared")


def _run(op: Operation) -> Operation:
    operation_execute(operation_id=op.id)
    op.refresh_from_db()
    return op


def _log(op: Operation) -> list[str]:
    return [e.message for e in op.log_entries.all()]


def _active_vps(name: str) -> Vps:
    vps, op = _create(name)
    op = _run(op)
    assert op.status == "succeeded", f"{op.error}\n" + "\n".join(_log(op))
    vps.refresh_from_db()
    return vps


def test_it_bootstraps_a_fresh_vps_to_active_and_a_second_run_changes_nothing(db, local_fleet):
    started = time.monotonic()
    vps, op = _create("e2e-boot")
    op = _run(op)
    first = time.monotonic() - started
    assert op.status == "succeeded", f"{op.error}\n" + "\n".join(_log(op))
    vps.refresh_from_db()
    assert vps.status == "active"
    assert vps.ip_address and vps.host_key.startswith("ssh-ed25519 ")
    assert vps.os.startswith("Debian GNU/Linux 12") and vps.php_versions == ["8.2"]
    assert vps.facts["services"]["nginx"] == "active"
    log = _log(op)
    for step in ("agent", "facts", "packages", "services", "firewall", "ssh hardening", "mariadb"):
        assert f"step: {step}" in log
    assert "agent: changed" in log

    with transaction.atomic():
        again = services.vps_bootstrap_request(vps=vps)
    started = time.monotonic()
    again = _run(again)
    second = time.monotonic() - started
    assert again.status == "succeeded", again.error
    assert again.result == {"changed_steps": 0}
    log = _log(again)
    for step in ("agent", "packages", "services", "firewall", "ssh hardening", "mariadb"):
        assert f"{step}: no change" in log
    assert "bootstrap finished: no changes" in log
    print(f"\nfirst bootstrap (boot + bootstrap) {first:.2f}s, re-run {second:.2f}s")

    with services.transport_for(vps) as transport:
        hardened = transport.run(Command.of("sshd", "-T")).stdout
        firewall = transport.run(Command.of("ufw", "status")).stdout
    assert "passwordauthentication no" in hardened
    assert "Status: active" in firewall and "80/tcp" in firewall


def test_it_streams_large_data_in_and_out_over_ssh(db, local_fleet, make_vps):
    vps = make_vps("e2e-stream")
    payload = os.urandom(5 * 1024 * 1024 + 17)
    received = bytearray()
    with services.transport_for(vps) as transport:
        sent = transport.stream_in(
            Command.of("sh", "-c", 'cat > "$1"', "sh", "/root/blob"), io.BytesIO(payload)
        )
        assert sent.exit_code == 0, sent.stderr
        got = transport.stream_out(Command.of("cat", "/root/blob"), received.extend)
        assert got.exit_code == 0
        failed = transport.stream_out(Command.of("cat", "/nonexistent"), received.extend)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    assert failed.exit_code == 1 and "No such file" in failed.stderr


def test_it_refuses_a_changed_host_key_with_a_clear_error_and_an_alert(db, local_fleet):
    vps = _active_vps("e2e-hostkey")
    key = "/etc/ssh/ssh_host_ed25519_key"
    with services.transport_for(vps) as transport:  # the server is rebuilt (or intercepted)
        transport.run(Command.of("rm", "-f", key, f"{key}.pub"))
        transport.run(Command.of("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key))
        transport.run(Command.of("systemctl", "restart", "ssh"))
    with transaction.atomic():
        op = services.vps_bootstrap_request(vps=vps)
    op = _run(op)
    assert op.status == "failed"
    assert f"host key of {vps.ip_address} changed" in op.error
    assert "refusing to connect" in op.error
    alert = Alert.objects.get(name="vps_host_key_changed")
    assert alert.severity == "critical" and alert.status == "firing"


def test_it_marks_a_dead_vps_unreachable_within_two_checks_and_active_after_restart(
    db, local_fleet, settings
):
    settings.FLEET_UNREACHABLE_AFTER = 2
    vps = _active_vps("e2e-health")
    local = localfleet.vps_load(Path(local_fleet) / vps.name)
    assert services.fleet_health_check() == {vps.name: "active"}

    localfleet.vps_kill(local)
    assert services.fleet_health_check() == {vps.name: "active"}  # one miss is not an outage
    assert services.fleet_health_check() == {vps.name: "unreachable"}
    vps.refresh_from_db()
    assert vps.missed_checks == 2
    assert Alert.objects.get(name="vps_unreachable").status == "firing"

    localfleet.vps_start(local)
    # Right after boot MariaDB may still be starting (degraded); the next runs see it active.
    wait_for(
        lambda: services.fleet_health_check() == {vps.name: "active"}, timeout=30, interval=1, what="active"
    )
    vps.refresh_from_db()
    assert vps.missed_checks == 0 and vps.last_seen is not None
    assert Alert.objects.get(name="vps_unreachable").status == "resolved"


@pytest.mark.django_db(transaction=True)
def test_it_bootstraps_two_vpses_concurrently(local_fleet):
    ops = [_create(name)[1] for name in ("e2e-par-a", "e2e-par-b")]
    outcomes = {}

    def run(op):
        try:
            outcomes[op.id] = operation_execute(operation_id=op.id)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(op,)) for op in ops]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    for op in ops:
        op.refresh_from_db()
        assert op.status == "succeeded", op.error
    statuses = sorted(Vps.objects.values_list("status", flat=True))
    assert statuses == ["active", "active"]
    ips = set(Vps.objects.values_list("ip_address", flat=True))
    assert len(ips) == 2


def test_it_destroys_a_local_vps_and_forgets_it(db, local_fleet):
    vps = _active_vps("e2e-destroy")
    workdir = Path(local_fleet) / vps.name
    op = services.vps_delete_request(vps=vps)
    op = _run(op)
    assert op.status == "succeeded", op.error
    assert not Vps.objects.filter(pk=vps.pk).exists()
    assert not workdir.exists()
    assert not Path(f"/run/netns/chom-{vps.name}").exists()
