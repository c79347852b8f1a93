"""The local test fleet itself: a real systemd-nspawn VPS boots, serves, survives a restart with
its disk, and leaves nothing behind when destroyed."""

from __future__ import annotations

import io
import os
import socket
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:  # runnable without the project's conftest / pytest-django
    sys.path.insert(0, _REPO)

from fleet import localfleet  # noqa: E402

_SUPPORTED, _WHY = localfleet.host_supports_fleet()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.real,
    pytest.mark.skipif(not _SUPPORTED, reason=f"local fleet unsupported on this host: {_WHY}"),
]

# Unique per process so parallel runs (xdist workers, other suites) never share a bridge/subnet;
# 10.251.0.0/16 is the range reserved for test networks, .200-.249 for this module.
_RUN = os.getpid() % 50
SUBNET = f"10.251.{200 + _RUN}"


def _openssh_private_key() -> str:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()


def _paramiko_key(private_openssh: str) -> paramiko.Ed25519Key:
    return paramiko.Ed25519Key.from_private_key(io.StringIO(private_openssh))


def _public_line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


@pytest.fixture(scope="module")
def image() -> Path:
    return localfleet.ensure_image()


@pytest.fixture
def network() -> Iterator[localfleet.Network]:
    net = localfleet.network_up(f"chomt{os.getpid()}"[:15], SUBNET)
    yield net
    localfleet.network_down(net)


def _ssh(vps: localfleet.LocalVps, client_key: paramiko.PKey, host_key: paramiko.PKey):
    client = paramiko.SSHClient()
    client.get_host_keys().add(vps.ip, host_key.get_name(), host_key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        vps.ip,
        username="root",
        pkey=client_key,
        timeout=5,
        banner_timeout=5,
        auth_timeout=5,
        allow_agent=False,
        look_for_keys=False,
    )
    return client


def _run(client: paramiko.SSHClient, command: str) -> tuple[int, str]:
    _, stdout, stderr = client.exec_command(command, timeout=30)
    out = stdout.read().decode() + stderr.read().decode()
    return stdout.channel.recv_exit_status(), out


def _port_open(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.timeout(300)
def test_vps_boots_serves_survives_stop_and_power_cut_and_leaves_nothing_behind(
    image: Path, network: localfleet.Network, tmp_path: Path
) -> None:
    client_key = _paramiko_key(_openssh_private_key())
    host_private = _openssh_private_key()
    host_key = _paramiko_key(host_private)
    workdir = tmp_path / "vps"
    vps = localfleet.vps_create(
        name=f"t{os.getpid()}",
        ip=f"{SUBNET}.10",
        network=network,
        authorized_keys=_public_line(client_key),
        workdir=workdir,
        host_key_private=host_private,
        image=image,
    )
    try:
        with _ssh(vps, client_key, host_key) as client:
            _, state = _run(client, "timeout 60 systemctl is-system-running --wait")
            _, failed = _run(client, "systemctl --failed --no-legend --plain")
            assert state.strip() == "running", f"failed units: {failed}"
            for unit in ("nginx", "php8.2-fpm", "mariadb", "ssh"):
                assert _run(client, f"systemctl is-active {unit}") == (0, "active\n"), unit
            assert _run(client, "ip route show default") == (0, ""), "VPS must have no route out"
            assert _run(client, "echo kept > /root/disk-survives")[0] == 0

        with urllib.request.urlopen(f"http://{vps.ip}/", timeout=5) as response:
            assert response.status == 200

        localfleet.vps_stop(vps)
        assert not _port_open(vps.ip, 22)

        localfleet.vps_start(vps)
        with _ssh(vps, client_key, host_key) as client:
            assert _run(client, "cat /root/disk-survives") == (0, "kept\n")

        localfleet.vps_kill(vps)  # power cut: no shutdown at all
        assert not _port_open(vps.ip, 22)

        localfleet.vps_start(vps)
        with _ssh(vps, client_key, host_key) as client:
            assert _run(client, "cat /root/disk-survives") == (0, "kept\n")
            _, out = _run(client, "timeout 60 systemctl is-system-running --wait")
            assert out.strip() == "running", out  # MariaDB recovered from the crash, too
    finally:
        pid = vps.pid
        localfleet.vps_destroy(vps)

    assert not Path(f"/proc/{pid}").exists()
    cgroups = [*Path("/sys/fs/cgroup").glob(f"*/{vps.netns}"), Path("/sys/fs/cgroup", vps.netns)]
    assert not any(c.exists() for c in cgroups), "the container's cgroup (processes) is left"
    assert not Path(f"/run/netns/{vps.netns}").exists()
    assert str(vps.root) not in Path("/proc/self/mounts").read_text()
    assert not workdir.exists()
    localfleet.vps_destroy(vps)  # idempotent: a second call on a gone VPS is harmless


def test_network_up_is_idempotent_and_network_down_removes_the_bridge() -> None:
    name = f"chomn{os.getpid()}"[:15]
    first = localfleet.network_up(name, SUBNET)
    try:
        assert localfleet.network_up(name, SUBNET) == first
        assert first.gateway in Path("/proc/net/fib_trie").read_text()
    finally:
        localfleet.network_down(first)
    assert not Path(f"/sys/class/net/{name}").exists()


def test_gc_leaves_images_alone_while_one_is_being_built(tmp_path: Path) -> None:
    """A builder (any checkout, any recipe) holds image.lock; its tmp-* directory is not stale."""
    import fcntl

    from fleet.localfleet.housekeeping import _remove_stale_images

    building = tmp_path / "tmp-0123456789abcdef-42"
    (building / "usr").mkdir(parents=True)
    lines: list[str] = []
    with open(tmp_path / "image.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _remove_stale_images(tmp_path, lines.append)
        assert building.exists() and lines == ["gc: an image is being built; old images left for the next gc"]
    _remove_stale_images(tmp_path, lines.append)
    assert not building.exists()
