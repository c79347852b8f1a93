"""The cached, read-only Debian 12 image every local VPS boots from (debootstrap + apt, packed as
tar.zst, keyed by a hash of its recipe)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from fleet.localfleet.base import (
    _DEBOOTSTRAP_INCLUDE,
    _MARKER,
    DEBIAN_SOURCES,
    DEFAULT_CACHE,
    DISABLED_UNITS,
    ENABLED_UNITS,
    FALLBACK_MIRROR,
    FALLBACK_SECURITY,
    IMAGE_PACKAGES,
    MARIADB_CONF,
    MARIADB_CONF_PATH,
    RECIPE_VERSION,
    SUITE,
    Log,
    _run,
    _write,
)

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
