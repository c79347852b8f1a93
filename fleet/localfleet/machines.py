"""The fleet bridge and the VPSes on it: network namespaces, overlay roots, systemd-nspawn
boot/stop/kill/destroy, each VPS's processes in its own cgroup."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fleet.localfleet.base import (
    _MARKER,
    _NAME_RE,
    BOOT_TIMEOUT,
    NSPAWN,
    PREFIX,
    PROBE_TIMEOUT,
    STOP_TIMEOUT,
    LocalFleetError,
    _run,
    _wait_until,
    _write,
)
from fleet.localfleet.image import ensure_image

# --------------------------------------------------------------------------- network


@dataclass
class Network:
    name: str  # the bridge; <= 15 chars (IFNAMSIZ)
    cidr: str  # "10.251.X.1/24"
    gateway: str  # "10.251.X.1", the host's address on the bridge


def _link_exists(name: str, netns: str | None = None) -> bool:
    args = ["ip", "-n", netns] if netns else ["ip"]
    return _run([*args, "link", "show", "dev", name], check=False).returncode == 0


def network_up(name: str, subnet: str = "10.251.0") -> Network:
    """Create (or reuse) a bridge with SUBNET.1/24. No NAT, no forwarding: VPSes reach only the
    host and each other."""
    if not name.startswith(PREFIX) or len(name) > 15:
        raise ValueError(f"bridge name must start with {PREFIX!r} and be <= 15 chars: {name!r}")
    net = Network(name=name, cidr=f"{subnet}.1/24", gateway=f"{subnet}.1")
    if not _link_exists(name):
        _run(["ip", "link", "add", name, "type", "bridge"])
    addrs = _run(["ip", "-br", "addr", "show", "dev", name]).stdout
    if net.cidr not in addrs.split():
        _run(["ip", "addr", "add", net.cidr, "dev", name])
    _run(["ip", "link", "set", name, "up"])
    return net


def network_down(net: Network) -> None:
    if _link_exists(net.name):
        _run(["ip", "link", "del", net.name], check=False)


# --------------------------------------------------------------------------- VPS


@dataclass
class LocalVps:
    name: str
    ip: str
    netns: str
    root: Path  # overlay mount point, the container's /
    pid: int  # systemd-nspawn's pid (0 when stopped)
    workdir: Path


# Popen objects of nspawns started by this process, so they are reaped (no zombies that look
# alive to /proc) and their exit is seen immediately.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _netns_name(name: str) -> str:
    return f"{PREFIX}-{name}"


def _veth_name(netns: str) -> str:
    # IFNAMSIZ is 16; the host side only needs to be unique, it dies with the netns.
    return "chv" + hashlib.sha256(netns.encode()).hexdigest()[:10]


def vps_create(
    *,
    name: str,
    ip: str,
    network: Network,
    authorized_keys: str,
    workdir: Path,
    host_key_private: str | None = None,
    image: Path | None = None,
) -> LocalVps:
    """Boot a fresh VPS NAME at IP on NETWORK and return once its sshd sends a banner.

    Anything already created is torn down again when a later step fails."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"VPS name must match {_NAME_RE.pattern}: {name!r}")
    image = image or ensure_image()
    workdir = Path(workdir)
    vps = LocalVps(name=name, ip=ip, netns=_netns_name(name), root=workdir / "root", pid=0, workdir=workdir)
    # Checked before creating anything: the cleanup below must never tear down a live VPS of
    # the same name that belongs to someone else.
    if Path(f"/run/netns/{vps.netns}").exists() or _is_mounted(vps.root):
        raise LocalFleetError(f"{vps.netns} already exists (running elsewhere, or crashed: run gc)")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / _MARKER).write_text(name + "\n")
        (workdir / "ip").write_text(ip + "\n")
        _netns_create(vps, network)
        _overlay_mount(vps, image)
        _personalize(vps, authorized_keys, host_key_private)
        vps_start(vps)
    except BaseException:
        vps_destroy(vps)
        raise
    return vps


def vps_load(workdir: Path) -> LocalVps | None:
    """The VPS created in WORKDIR by any process (None when there is none), e.g. to destroy it."""
    workdir = Path(workdir)
    marker, ip_file = workdir / _MARKER, workdir / "ip"
    if not marker.exists() or not ip_file.exists():
        return None
    name = marker.read_text().strip()
    pid_file = workdir / "nspawn.pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else 0
    return LocalVps(
        name=name,
        ip=ip_file.read_text().strip(),
        netns=_netns_name(name),
        root=workdir / "root",
        pid=pid,
        workdir=workdir,
    )


def vps_is_running(vps: LocalVps) -> bool:
    return bool(_cgroup_pids(vps.netns))


def _netns_create(vps: LocalVps, network: Network) -> None:
    ns, veth = vps.netns, _veth_name(vps.netns)
    _run(["ip", "netns", "add", ns])
    _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
    _run(["ip", "link", "set", veth, "master", network.name, "up"])
    prefix = network.cidr.split("/")[1]
    _run(["ip", "-n", ns, "addr", "add", f"{vps.ip}/{prefix}", "dev", "eth0"])
    _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    _run(["ip", "-n", ns, "link", "set", "lo", "up"])


def _overlay_mount(vps: LocalVps, image: Path) -> None:
    for sub in ("upper", "work", "root"):
        (vps.workdir / sub).mkdir(exist_ok=True)
    opts = f"lowerdir={image},upperdir={vps.workdir / 'upper'},workdir={vps.workdir / 'work'}"
    # The source name lets gc recognise our overlays in /proc/mounts.
    _run(["mount", "-t", "overlay", vps.netns, "-o", opts, str(vps.root)])


def _personalize(vps: LocalVps, authorized_keys: str, host_key_private: str | None) -> None:
    root = vps.root
    _write(root / "etc/hostname", vps.name + "\n")
    hosts = f"127.0.0.1\tlocalhost\n127.0.1.1\t{vps.name}\n::1\tlocalhost ip6-localhost\n"
    _write(root / "etc/hosts", hosts)
    # A fixed, unique machine id: journald and friends want one, and an empty file would
    # trigger systemd's first-boot presets on every boot.
    _write(root / "etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    _write(ssh_dir / "authorized_keys", authorized_keys.rstrip("\n") + "\n", 0o600)
    if host_key_private:
        _install_host_key(root, host_key_private)


def _install_host_key(root: Path, private_key: str) -> None:
    """Make the pinned ed25519 key the only host key, so every client negotiates that one."""
    for old in (root / "etc/ssh").glob("ssh_host_*"):
        old.unlink()
    key = root / "etc/ssh/ssh_host_ed25519_key"
    _write(key, private_key.rstrip("\n") + "\n", 0o600)
    pub = _run(["chroot", str(root), "ssh-keygen", "-y", "-f", "/etc/ssh/ssh_host_ed25519_key"])
    _write(key.with_name(key.name + ".pub"), pub.stdout)


def vps_start(vps: LocalVps, timeout: float = BOOT_TIMEOUT) -> None:
    """Boot the container on its existing overlay and wait for the SSH banner."""
    if _cgroup_pids(vps.netns):
        raise LocalFleetError(f"{vps.name} is already running (processes in its cgroup)")
    cgroups = _cgroup_create(vps.netns)
    log_path = vps.workdir / "nspawn.log"
    # With --keep-unit and no systemd on the host, nspawn puts the container in "payload" under
    # its *own* cgroup. Started from a shared cgroup, all VPSes would share /payload/system.slice
    # /nginx.service & co. So the shell joins a per-VPS cgroup first, then execs nspawn (same
    # pid). That cgroup is also how stop/kill/gc find a container whose nspawn died.
    join = 'for f in $CHOM_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done; exec "$@"'
    args = [
        "/bin/sh", "-c", join, "sh",
        NSPAWN, "-D", str(vps.root), "--boot", "--register=no", "--keep-unit",
        f"--network-namespace-path=/run/netns/{vps.netns}", "-M", vps.name,
        "--console=passive",
        # nspawn grants this only with --private-network; without it iptables (and so ufw)
        # fails with "Permission denied (you must be root)". It is scoped to the VPS's netns.
        "--capability=CAP_NET_ADMIN",
    ]  # fmt: skip
    # Likewise /proc/sys/net stays read-only unless asked, and sysctl -w net.* would fail.
    env = {
        **os.environ,
        "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network",
        "CHOM_CGROUP_PROCS": " ".join(str(c / "cgroup.procs") for c in cgroups),
    }
    with open(log_path, "ab") as out:
        # A new session: Ctrl-C in a test run must not hit the container before we clean up.
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True
        )
    _children[proc.pid] = proc
    vps.pid = proc.pid
    (vps.workdir / "nspawn.pid").write_text(f"{proc.pid}\n")
    _wait_for_ssh(vps, timeout, log_path)


def _wait_for_ssh(vps: LocalVps, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(vps.pid):
            raise LocalFleetError(f"{vps.name}: systemd-nspawn exited during boot:\n{_tail(log_path)}")
        if _ssh_banner(vps.ip):
            return
        time.sleep(PROBE_TIMEOUT)
    raise LocalFleetError(f"{vps.name}: no SSH banner on {vps.ip}:22 after {timeout:.0f}s")


def _ssh_banner(ip: str) -> bool:
    try:
        with socket.create_connection((ip, 22), timeout=PROBE_TIMEOUT) as sock:
            sock.settimeout(PROBE_TIMEOUT * 5)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _pid_alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _is_our_nspawn(pid: int, netns: str) -> bool:
    """Guard against pid reuse: only ever signal the nspawn that runs this VPS's netns."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"--network-namespace-path=/run/netns/{netns}".encode() in cmdline


def vps_stop(vps: LocalVps, timeout: float = STOP_TIMEOUT) -> None:
    """Power the container off cleanly (SIGTERM makes nspawn ask systemd to shut down); the
    overlay stays, so vps_start boots the same disk. Whatever still runs after TIMEOUT, or was
    orphaned by a dead nspawn, gets SIGKILL."""
    if vps.pid and _pid_alive(vps.pid) and _is_our_nspawn(vps.pid, vps.netns):
        os.kill(vps.pid, signal.SIGTERM)
        _wait_until(lambda: not _pid_alive(vps.pid), timeout)
    vps_kill(vps)


def vps_kill(vps: LocalVps) -> None:
    """Pull the plug: SIGKILL every process of the VPS (no shutdown, like a crashed host).
    The overlay stays; vps_start boots it again (MariaDB then runs crash recovery)."""
    _cgroup_kill(vps.netns)
    if vps.pid:
        _pid_alive(vps.pid)  # reaps our own nspawn child
    vps.pid = 0
    (vps.workdir / "nspawn.pid").unlink(missing_ok=True)


def _cgroup_roots() -> list[Path]:
    """Hierarchies nspawn places the container in: the unified one on a pure cgroup v2 host,
    else (hybrid, as on this CI machine) the name=systemd one and the unified one."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():
        return [base]
    return [base / h for h in ("systemd", "unified") if (base / h / "cgroup.procs").exists()]


def _cgroup_create(netns: str) -> list[Path]:
    dirs = [root / netns for root in _cgroup_roots()]
    for path in dirs:
        path.mkdir(exist_ok=True)
    return dirs


def _cgroup_pids(netns: str) -> set[int]:
    pids: set[int] = set()
    for root in _cgroup_roots():
        top = root / netns
        if not top.is_dir():
            continue
        # os.walk, not rglob: a container shutting down removes cgroups while we walk them.
        for directory, _, files in os.walk(top):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError, ValueError):
                    procs = Path(directory, "cgroup.procs").read_text()
                    pids.update(int(pid) for pid in procs.split())
    return pids


def _cgroup_kill(netns: str, timeout: float = 10) -> None:
    # Repeat: a dying systemd or a fork in flight can add a process after one pass.
    def gone() -> bool:
        pids = _cgroup_pids(netns)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return not pids

    if not _wait_until(gone, timeout, step=0.05):
        raise LocalFleetError(f"{netns}: processes survive SIGKILL: {sorted(_cgroup_pids(netns))}")


def _cgroup_remove(netns: str) -> None:
    for root in _cgroup_roots():
        top = root / netns
        if not top.is_dir():
            continue
        subdirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for path in [*subdirs, top]:
            with contextlib.suppress(OSError):
                path.rmdir()


def vps_destroy(vps: LocalVps) -> None:
    """Remove everything the VPS owns. Idempotent; never raises."""
    steps: list[Callable[[], None]] = [
        lambda: vps_stop(vps),
        lambda: _umount(vps.root),
        lambda: _cgroup_remove(vps.netns),
        lambda: _netns_delete(vps.netns),
        lambda: _remove_workdir(vps.workdir),
    ]
    for step in steps:
        with contextlib.suppress(Exception):
            step()


def _umount(mountpoint: Path) -> None:
    if not _is_mounted(mountpoint):
        return
    # Right after nspawn exits the overlay can still be busy for a moment.
    if not _wait_until(lambda: _run(["umount", str(mountpoint)], check=False).returncode == 0, 5):
        _run(["umount", "--lazy", str(mountpoint)], check=False)


def _is_mounted(mountpoint: Path) -> bool:
    target = str(mountpoint)
    return any(m[1] == target for m in _mounts())


def _mounts() -> list[list[str]]:
    lines = Path("/proc/self/mounts").read_text().splitlines()
    return [line.split() for line in lines]


def _netns_delete(netns: str) -> None:
    if Path(f"/run/netns/{netns}").exists():
        _run(["ip", "netns", "del", netns], check=False)


def _remove_workdir(workdir: Path) -> None:
    # Refuse to rmtree anything we did not create, or anything still holding a mount.
    if not (workdir / _MARKER).exists() or _is_mounted(workdir / "root"):
        return
    shutil.rmtree(workdir, ignore_errors=True)
