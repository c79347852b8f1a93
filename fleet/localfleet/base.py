"""Constants and small helpers shared by the local fleet's modules."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
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
    # WordPress from the distribution, as the agent's "distro-package" source installs it on a
    # real VPS (the test VPSes cannot reach a mirror): "php" keeps Apache's PHP module out.
    "php",
    "wordpress",
    "wordpress-theme-twentytwentythree",
    "composer",
    # The real Laravel framework (8.83 and its php-illuminate-* parts) that the e2e Laravel app
    # autoloads from /usr/share/php: Packagist is unreachable here, as a mirror is for the VPSes.
    "php-laravel-framework",
    "unzip",
    "mariadb-server",
    "mariadb-client",
    "supervisor",
    "certbot",
    "ufw",
    "prometheus-node-exporter",
    "prometheus-nginx-exporter",
    "prometheus-mysqld-exporter",
    "mtail",  # per-site request metrics from the nginx access logs (observability/monitoring.py)
    "git",
    "openssh-client",  # git over SSH with a site's deploy key
    "curl",
    "cron",
    "logrotate",
    "quota",
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
