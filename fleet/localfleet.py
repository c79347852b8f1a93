"""The local test fleet: disposable Debian 12 "VPSes" on this machine.

Each VPS is a systemd-nspawn container booted with real systemd as PID 1, living in its own
network namespace attached to a Linux bridge, on an overlayfs over a cached, read-only
debootstrap image. The bridge has no NAT and the VPSes get no default route, so they can reach
the host and each other but never the internet.

Plain Python (stdlib + subprocess), no Django: the e2e tests, the ``local`` provider and
``make demo`` all use it. Everything created carries the ``chom`` prefix so ``gc`` can find what
a crashed run left behind.

CLI:
    python -m fleet.localfleet image   # build (or unpack) the cached image, print path + seconds
    python -m fleet.localfleet gc      # remove leftover chom netns/mounts/processes/bridges
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

PREFIX = "chom"
SUITE = "bookworm"
# Bump when the build steps change in a way IMAGE_PACKAGES does not show.
RECIPE_VERSION = 1

IMAGE_PACKAGES: tuple[str, ...] = (
    "openssh-server",
    "iproute2",
    "python3",
    "sudo",
    "ca-certificates",
    "systemd",
    "systemd-sysv",
    "dbus",
    "nginx",
    "php8.2-fpm",
    "php8.2-cli",
    "php8.2-mysql",
    "php8.2-mbstring",
    "php8.2-xml",
    "php8.2-curl",
    "php8.2-zip",
    "php8.2-gd",
    "php8.2-intl",
    "composer",
    "unzip",
    "mariadb-server",
    "mariadb-client",
    "supervisor",
    "certbot",
    "ufw",
    "prometheus-node-exporter",
    "prometheus-nginx-exporter",
    "prometheus-mysqld-exporter",
    "git",
    "curl",
    "cron",
)
# Installed by debootstrap itself (the rest goes through apt inside the chroot).
_DEBOOTSTRAP_INCLUDE = (
    "openssh-server",
    "iproute2",
    "python3",
    "sudo",
    "ca-certificates",
    "systemd",
    "systemd-sysv",
    "dbus",
)
# Services a freshly created VPS must run, as on a real server after our bootstrap.
ENABLED_UNITS = ("ssh.service", "nginx.service", "php8.2-fpm.service", "mariadb.service")
# Disabled, not masked, so the agent can still enable them:
# - the exporters fail until configured (stub_status page, DB credentials), which would leave
#   every fresh VPS "degraded";
# - the apt timers would run apt-get at random moments (Persistent=, never run yet) and hold
#   the dpkg lock while a test installs or checks packages; there is no mirror to reach anyway.
DISABLED_UNITS = (
    "prometheus-nginx-exporter.service",
    "prometheus-mysqld-exporter.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
)
# Small redo log so every VPS's copy-up of the InnoDB files stays small; written before
# mariadb-server is installed so mariadb-install-db already creates the small log.
MARIADB_CONF = "[mysqld]\ninnodb_log_file_size = 8M\n"
MARIADB_CONF_PATH = "etc/mysql/mariadb.conf.d/99-chom-fleet.cnf"

DEFAULT_CACHE = Path("/var/cache/chom-fleet")
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
FALLBACK_MIRROR = "http://deb.debian.org/debian"
FALLBACK_SECURITY = "http://deb.debian.org/debian-security"
NSPAWN = "systemd-nspawn"
BOOT_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0
PROBE_TIMEOUT = 0.2
_MARKER = ".chom-localfleet"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")

Log = Callable[[str], object]


class LocalFleetError(RuntimeError):
    """A local fleet operation failed; the message says what and where to look."""


# --------------------------------------------------------------------------- helpers


def _run(
    args: list[str], *, timeout: float = 60, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
    )
    if check and proc.returncode != 0:
        out = (proc.stderr or proc.stdout).strip()[-2000:]
        raise LocalFleetError(f"{' '.join(args)} exited {proc.returncode}: {out}")
    return proc


def _wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


# --------------------------------------------------------------------------- image


def image_recipe_hash() -> str:
    """Short hash of everything that shapes the image; the cache key."""
    recipe = {
        "version": RECIPE_VERSION,
        "suite": SUITE,
        "arch": os.uname().machine,
        "include": _DEBOOTSTRAP_INCLUDE,
        "packages": IMAGE_PACKAGES,
        "enabled": ENABLED_UNITS,
        "disabled": DISABLED_UNITS,
        "mariadb": MARIADB_CONF,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _cache_dir(cache_dir: Path | None) -> Path:
    return Path(cache_dir or os.environ.get("CHOM_FLEET_CACHE") or DEFAULT_CACHE)


def _host_mirrors() -> tuple[str, str]:
    """(main mirror, security mirror) from the host's deb822 sources, so the image uses the
    same (possibly the only reachable) mirror as the host."""
    main, security = FALLBACK_MIRROR, FALLBACK_SECURITY
    try:
        text = DEBIAN_SOURCES.read_text()
    except OSError:
        return main, security
    for stanza in text.split("\n\n"):
        fields = dict(line.split(":", 1) for line in stanza.splitlines() if ":" in line and line[0] != "#")
        uris = fields.get("URIs", "").split()
        suites = fields.get("Suites", "").split()
        if not uris:
            continue
        if f"{SUITE}-security" in suites:
            security = uris[0]
        elif SUITE in suites:
            main = uris[0]
    return main, security


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_image(cache_dir: Path | None = None, log: Log = print) -> Path:
    """Return the read-only rootfs of the current recipe, building or unpacking it if needed."""
    cache = _cache_dir(cache_dir)
    key = image_recipe_hash()
    rootfs = cache / f"image-{key}"
    tarball = cache / f"image-{key}.tar.zst"
    if (rootfs / _MARKER).exists():
        return rootfs
    with _locked(cache / "image.lock"):
        if (rootfs / _MARKER).exists():  # another process finished it while we waited
            return rootfs
        # Holding the lock, any tmp-* is a leftover of a build that was killed.
        for leftover in [*cache.glob("tmp-*"), *cache.glob("*.tar.zst.tmp*"), rootfs]:
            _remove_tree(leftover)
        tmp = cache / f"tmp-{key}-{os.getpid()}"
        try:
            if tarball.exists():
                log(f"localfleet: unpacking {tarball}")
                _unpack(tarball, tmp)
            else:
                log(f"localfleet: building image {key} (debootstrap, ~1-2 min)")
                _build(tmp, log)
                _pack(tmp, tarball)
            (tmp / _MARKER).write_text(key + "\n")
            tmp.rename(rootfs)
        finally:
            _remove_tree(tmp)
    return rootfs


def _remove_tree(path: Path) -> None:
    # Only ever called on our own cache/work dirs; an image tree holds no mounts.
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _pack(rootfs: Path, tarball: Path) -> None:
    tmp = tarball.with_name(tarball.name + f".tmp{os.getpid()}")
    _run(
        ["tar", "-C", str(rootfs), "--numeric-owner", "--xattrs", "--xattrs-include=*",
         "-I", "zstd -T0 -3", "-cf", str(tmp), "."],
        timeout=600,
    )  # fmt: skip
    tmp.rename(tarball)


def _unpack(tarball: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    _run(
        ["tar", "-C", str(dest), "--numeric-owner", "--xattrs", "--xattrs-include=*",
         "-I", "zstd -T0", "-xpf", str(tarball)],
        timeout=600,
    )  # fmt: skip


def _build(root: Path, log: Log) -> None:
    mirror, security = _host_mirrors()
    started = time.monotonic()
    _run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(_DEBOOTSTRAP_INCLUDE)}",
         SUITE, str(root), mirror],
        timeout=1200,
    )  # fmt: skip
    log(f"localfleet: debootstrap done in {time.monotonic() - started:.1f}s")
    _write_sources(root, mirror, security)
    # Keep package post-install scripts from starting daemons inside the build chroot.
    _write(root / "usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)
    _write(root / MARIADB_CONF_PATH, MARIADB_CONF)
    _chroot_sh(root, "apt-get update -q")
    rest = [p for p in IMAGE_PACKAGES if p not in _DEBOOTSTRAP_INCLUDE]
    _chroot_sh(root, "apt-get install -y -q --no-install-recommends " + " ".join(rest))
    log(f"localfleet: packages installed at {time.monotonic() - started:.1f}s")
    (root / "usr/sbin/policy-rc.d").unlink()
    _configure_units(root)
    _scrub(root)


def _write_sources(root: Path, mirror: str, security: str) -> None:
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    _write(
        root / "etc/apt/sources.list.d/debian.sources",
        f"Types: deb\nURIs: {mirror}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
        f"Signed-By: {keyring}\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {SUITE}-security\nComponents: main\n"
        f"Signed-By: {keyring}\n",
    )


def _chroot_sh(root: Path, script: str, timeout: float = 1200) -> None:
    """Run a shell script in the image with /proc mounted in a private mount namespace, so a
    crash can never leave a mount behind on the host."""
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LANG": "C.UTF-8",
        "HOME": "/root",
    }
    inner = f"mount -t proc proc /proc && {script}"
    _run(
        ["unshare", "--mount", "--propagation", "private", "--fork",
         "chroot", str(root), "/bin/sh", "-ec", inner],
        timeout=timeout,
        env=env,
    )  # fmt: skip


def _configure_units(root: Path) -> None:
    # systemctl works offline inside a chroot: it only edits symlinks.
    script = f"systemctl enable {' '.join(ENABLED_UNITS)}"
    script += f" && systemctl disable {' '.join(DISABLED_UNITS)}"
    _chroot_sh(root, script, timeout=60)


def _scrub(root: Path) -> None:
    """Drop what is per-host or per-build: apt caches, the build host's identity and resolver
    (the VPS has no route to any nameserver anyway), logs."""
    _chroot_sh(root, "apt-get clean", timeout=60)
    for pattern in ("var/cache/apt/*.bin", "var/log/apt/*", "var/log/*.log", "tmp/*"):
        for path in root.glob(pattern):
            _remove_tree(path)
    _write(root / "etc/hostname", "localhost\n")
    _write(root / "etc/resolv.conf", "")
    # minbase has no locales package; without this pam_env warns on every SSH login.
    _write(root / "etc/default/locale", "LANG=C.UTF-8\n")
    # Written per VPS at create time; an empty file here would mean "first boot" semantics.
    _write(root / "etc/machine-id", "")


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
    if not _NAME_RE.match(name):
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
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(pid) for pid in procs.read_text().split())
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


# --------------------------------------------------------------------------- host checks, gc


def host_supports_fleet() -> tuple[bool, str]:
    """(True, "") when this host can run the local fleet, else (False, why)."""
    if os.geteuid() != 0:
        return False, "local fleet needs root (netns, bridges, overlayfs, systemd-nspawn)"
    tools = (NSPAWN, "debootstrap", "ip", "zstd", "tar", "unshare", "chroot", "mount")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return False, f"missing binaries: {', '.join(missing)} (apt systemd-container debootstrap)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return False, "overlayfs is not available in this kernel"
    if not _cgroup_roots():
        return False, "no writable cgroup hierarchy under /sys/fs/cgroup"
    probe = _run(["unshare", "--net", "--mount", "--uts", "--pid", "--fork", "true"], check=False)
    if probe.returncode != 0:
        return False, f"namespaces not usable: {probe.stderr.strip()}"
    return True, ""


def gc(log: Log = print) -> None:
    """Remove what crashed runs left behind: chom nspawns, overlays, netns, bridges.

    Do not run it while a test run is using the fleet: it cannot tell crashed from live."""
    for netns in _leftover_cgroups():
        log(f"gc: killing processes of {netns}")
        with contextlib.suppress(LocalFleetError):
            _cgroup_kill(netns)
        _cgroup_remove(netns)
    for target, options in _leftover_overlays():
        log(f"gc: unmounting {target}")
        _umount(Path(target))
        upper = re.search(r"upperdir=([^,]+)", options)
        if upper:
            _remove_workdir(Path(upper.group(1)).parent)
    for netns in _leftover_netns():
        log(f"gc: deleting netns {netns}")
        _netns_delete(netns)
    for bridge in _leftover_bridges():
        log(f"gc: deleting bridge {bridge}")
        _run(["ip", "link", "del", bridge], check=False)
    for stale in _stale_images(_cache_dir(None)):
        log(f"gc: removing old image {stale}")
        _remove_tree(stale)


def _stale_images(cache: Path) -> list[Path]:
    """Images and tarballs of other recipes; all overlays are gone by now, so none is in use."""
    current = f"image-{image_recipe_hash()}"
    candidates = [*cache.glob("image-*"), *cache.glob("tmp-*")] if cache.exists() else []
    return [p for p in candidates if not p.name.startswith(current)]


def _leftover_cgroups() -> list[str]:
    names = {p.name for root in _cgroup_roots() for p in root.glob(f"{PREFIX}-*") if p.is_dir()}
    return sorted(names)


def _leftover_overlays() -> list[tuple[str, str]]:
    """(mount point, options) of overlays whose source name carries our prefix."""
    mounts = _mounts()
    return [(m[1], m[3]) for m in mounts if m[2] == "overlay" and m[0].startswith(f"{PREFIX}-")]


def _leftover_netns() -> list[str]:
    run = Path("/run/netns")
    if not run.exists():
        return []
    return sorted(p.name for p in run.iterdir() if p.name.startswith(f"{PREFIX}-"))


def _leftover_bridges() -> list[str]:
    out = _run(["ip", "-br", "link", "show", "type", "bridge"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def _main(argv: list[str]) -> int:
    if argv == ["image"]:
        started = time.monotonic()
        path = ensure_image()
        print(f"{path}\n{time.monotonic() - started:.1f}s")
        return 0
    if argv == ["gc"]:
        gc()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
