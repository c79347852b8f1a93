"""`make demo`'s first step: check this machine and install the Debian packages the demo needs,
before anything else runs (the virtualenv, the fleet image, the stand-ins).

    python3.11 -m devstack.preflight     # what `make demo` runs first, on the system Python
    python -m devstack                   # runs it first too

Standard library only (plus fleet.localfleet's host check, which is too), so it runs before the
virtualenv exists. Every problem is one sentence on stderr saying what to do, exit status 1;
never a traceback. As root it installs what is missing with apt-get, with a policy-rc.d in place
so no package starts a daemon on its default port (nginx :80, ...).

CHOM_PREFLIGHT_APT_GET: the apt-get argv prefix, a JSON array or shell-like words [apt-get].
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

# (command, the Debian/Ubuntu package that ships it): the local fleet (systemd-nspawn VPSes on
# a debootstrap image, packed with zstd, in network namespaces) and the demo's stand-ins (ACME
# CA, Prometheus, Alertmanager, the blackbox exporter, their certificates), plus the tools the
# README's walkthrough uses.
REQUIRED: tuple[tuple[str, str], ...] = (
    ("systemd-nspawn", "systemd-container"),
    ("debootstrap", "debootstrap"),
    ("zstd", "zstd"),
    ("tar", "tar"),
    ("ip", "iproute2"),
    ("unshare", "util-linux"),
    ("chroot", "coreutils"),
    ("mount", "mount"),
    ("pebble", "pebble"),
    ("pebble-challtestsrv", "pebble"),
    ("prometheus", "prometheus"),
    ("prometheus-alertmanager", "prometheus-alertmanager"),
    ("prometheus-blackbox-exporter", "prometheus-blackbox-exporter"),
    ("openssl", "openssl"),
    ("git", "git"),
    ("curl", "curl"),
)
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
APT_TIMEOUT = 1800
PREFIX = "preflight: "


class Problem(Exception):
    """A prerequisite is missing; the message is the one sentence the user reads."""


def missing() -> dict[str, str]:
    """{what is missing: the package that brings it}: the commands not on PATH, and `venv` when
    this Python, outside a virtualenv, cannot create one (Debian ships ensurepip separately)."""
    found = {command: package for command, package in REQUIRED if shutil.which(command) is None}
    if sys.prefix == sys.base_prefix and importlib.util.find_spec("ensurepip") is None:
        found[f"python3 -m venv (for {sys.executable})"] = f"python3.{sys.version_info.minor}-venv"
    return found


def apt_get() -> list[str]:
    raw = os.environ.get("CHOM_PREFLIGHT_APT_GET", "").strip()
    if not raw:
        return ["apt-get"]
    argv = json.loads(raw) if raw.startswith("[") else shlex.split(raw)
    if not argv or not all(isinstance(part, str) for part in argv):
        raise Problem("CHOM_PREFLIGHT_APT_GET must be a command: a JSON array of strings or words.")
    return argv


def install(packages: list[str], log=print) -> None:
    """apt-get update + install PACKAGES; a failure is a Problem naming apt's own last line."""
    apt = apt_get()
    by_hand = f"apt-get install {' '.join(packages)}"
    if shutil.which(apt[0]) is None:
        raise Problem(
            f"This machine has no {apt[0]} to install {' '.join(packages)}: make demo needs "
            f"Debian 12 or Ubuntu, or install the equivalent of `{by_hand}` yourself."
        )
    log(f"{PREFIX}installing {' '.join(packages)} (apt-get)")
    created = not POLICY_RC_D.exists()
    if created:  # no package may start its daemon on a default port
        POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
    try:
        wait = ["-o", "DPkg::Lock::Timeout=300"]  # unattended-upgrades may hold the lock a while
        for args in (
            ["update", "-qq", *wait],
            ["install", "-y", "-qq", *wait, "--no-install-recommends", *packages],
        ):
            _apt(apt, args, by_hand)
    finally:
        if created:
            POLICY_RC_D.unlink(missing_ok=True)


def _apt(apt: list[str], args: list[str], by_hand: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        proc = subprocess.run(
            [*apt, *args], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
            timeout=APT_TIMEOUT,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise Problem(
            f"apt-get {args[0]} took longer than {APT_TIMEOUT} s: check this machine's network and "
            f"apt sources, then run make demo again (or `{by_hand}` yourself)."
        ) from None
    if proc.returncode != 0:
        # apt's reason is its last "E:" line on stderr (stdout has only progress).
        lines = [line.strip() for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("E:")] or lines
        said = f": {errors[-1]}" if errors else ""
        raise Problem(
            f"apt-get {args[0]} failed (exit {proc.returncode}{said}); fix apt (network, sources, "
            f"a held dpkg lock) and run make demo again, or run `{by_hand}` yourself."
        )


def check(log=print) -> None:
    """Raise Problem for the first prerequisite this machine lacks, installing packages first."""
    if not sys.platform.startswith("linux"):
        raise Problem(
            "make demo runs its VPSes as Linux containers: run it on a Debian 12 or Ubuntu machine."
        )
    if os.geteuid() != 0:
        raise Problem(
            "make demo needs root (it creates network namespaces, a bridge and systemd-nspawn "
            "containers): run it as root, e.g. `sudo make demo`."
        )
    lacking = missing()
    if lacking:
        packages = list(dict.fromkeys(lacking.values()))
        install(packages, log)
        still = missing()
        if still:
            raise Problem(
                f"{', '.join(still)} still missing after apt-get installed {' '.join(packages)}: "
                "install what provides it by hand and run make demo again."
            )
    from fleet.localfleet import host_supports_fleet

    supported, why = host_supports_fleet()
    if not supported:
        raise Problem(
            f"This machine cannot run the local test fleet ({why}): make demo needs a Linux host or "
            "VM where root may create namespaces, overlay mounts and cgroups (not an unprivileged "
            "container)."
        )


def main() -> int:
    try:
        check()
    except Problem as problem:
        print(f"{PREFIX}{problem}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the user reads one sentence, never a traceback
        print(
            f"{PREFIX}the prerequisite check failed unexpectedly ({type(exc).__name__}: {exc}).",
            file=sys.stderr,
        )
        return 1
    print(f"{PREFIX}prerequisites present", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
