"""Can this host run the local fleet, and cleaning up after a crashed run (gc)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from pathlib import Path

from fleet.localfleet.base import (
    NSPAWN,
    PREFIX,
    LocalFleetError,
    Log,
    _run,
)
from fleet.localfleet.image import _cache_dir, _remove_tree, image_recipe_hash
from fleet.localfleet.machines import (
    _cgroup_kill,
    _cgroup_remove,
    _cgroup_roots,
    _mounts,
    _netns_delete,
    _remove_workdir,
    _umount,
)

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
    _remove_stale_images(_cache_dir(None), log)


def _remove_stale_images(cache: Path, log) -> None:
    """Only while no image is being built: a builder (any checkout, any recipe) holds image.lock,
    and its tmp-* directory is not stale."""
    if not cache.exists():
        return
    with open(cache / "image.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("gc: an image is being built; old images left for the next gc")
            return
        for stale in _stale_images(cache):
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
