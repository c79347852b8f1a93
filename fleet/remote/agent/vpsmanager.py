#!/usr/bin/env python3
"""vpsmanager: the agent CHOM installs on every managed VPS.

CHOM copies this single file to /usr/local/sbin/vpsmanager (checksum-verified) and runs it over
SSH as root:

    python3 /usr/local/sbin/vpsmanager SUBCOMMAND  < input.json

Standard library only, Python >= 3.9 (it runs on the VPS's system python3).

Protocol
--------
* argv holds only the subcommand. Input is one JSON object on stdin (may be empty for
  `version`/`facts`); secrets such as DB passwords therefore never appear in argv or `ps`.
  Unknown input fields are rejected so typos in CHOM fail loudly.
* stdout carries exactly one JSON object:
    success: {"ok": true,  "changed": bool, "data": {...}, "log": ["step lines"]}   exit 0
    failure: {"ok": false, "changed": bool, "error": {"code", "message", "step"},
              "log": [...]}                                                        exit 1
  `changed` is truthful: a second identical call reports false and reloads nothing.
* Error codes: invalid_input, unknown_command, missing_binary, timeout, command_failed,
  nginx_invalid, php_fpm_invalid, sshd_invalid, sshd_overridden, reload_failed,
  ufw_unavailable, user_conflict, conflict, db_error, busy, internal_error.

Configuration (environment variables; production defaults in brackets)
----------------------------------------------------------------------
Command values are argv prefixes: a JSON array (`["nginx","-p","/tmp/x"]`) or a
shell-like string split with shlex (never run through a shell).

  VPSMANAGER_ROOT               prefix for every /etc, /var/www, /home, /run path  ["/"]
  VPSMANAGER_NGINX              nginx argv prefix; `-t` is appended            [nginx]
  VPSMANAGER_NGINX_RELOAD       full argv reloading nginx       [systemctl reload nginx]
  VPSMANAGER_PHP_FPM            php-fpm argv prefix, "{version}" substituted, `-t` appended
                                                                          [php-fpm{version}]
  VPSMANAGER_PHP_FPM_RELOAD     full argv reloading a pool master, "{version}" substituted
                                                             [systemctl reload php{version}-fpm]
  VPSMANAGER_SSHD               sshd argv prefix; `-t` / `-T` appended                  [sshd]
  VPSMANAGER_SSHD_RELOAD        full argv reloading sshd          [systemctl reload ssh]
  VPSMANAGER_SYSTEMCTL          systemctl argv prefix                              [systemctl]
  VPSMANAGER_APT_GET            apt-get argv prefix                                  [apt-get]
  VPSMANAGER_DPKG_QUERY         dpkg-query argv prefix                            [dpkg-query]
  VPSMANAGER_MYSQL              MariaDB client argv prefix, connects as root over the socket
                                                                                     [mariadb]
  VPSMANAGER_UFW                ufw argv prefix                                          [ufw]
  VPSMANAGER_TIMEOUT            seconds allowed per command                               [60]
  VPSMANAGER_APT_TIMEOUT        seconds allowed per apt-get run                          [1200]

When VPSMANAGER_ROOT is not "/", useradd/usermod/userdel/groupdel get `--prefix ROOT` so user
management happens inside that tree too (used by the tests).

Ownership markers: CHOM's vhosts are sites-available/chom-NAME.conf (enabled through a
relative symlink in sites-enabled), pools are pool.d/chom-NAME.conf (so a site called "www"
can never clobber Debian's default pool) and CHOM's system users carry the GECOS comment
"CHOM managed"; the agent refuses to modify or delete accounts without it.
"""

from __future__ import annotations

import configparser
import contextlib
import datetime
import fcntl
import glob
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from re import Pattern
from typing import Any, Callable

VERSION = "1.0.0"

SITE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
DB_IDENT_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
ACCOUNT_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]{1,62}$")
SERVICE_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9@._-]{0,63}$")
PHP_VERSION_RE = re.compile(r"^[5-9]\.[0-9]$")
MODE_RE = re.compile(r"^0?[0-7]{3}$")
PATH_CHARS_RE = re.compile(r"^[A-Za-z0-9_./@+-]+$")

FILE_WRITE_ROOTS = (
    "/etc/nginx",
    "/etc/php",
    "/var/www",
    "/etc/supervisor",
    "/etc/cron.d",
    "/etc/prometheus",
    "/etc/promtail",
    "/usr/local/lib/chom",
    "/home",
)
HOME_ROOTS = ("/home", "/var/www")
SHELLS = ("/usr/sbin/nologin", "/bin/false", "/bin/sh", "/bin/bash", "/usr/bin/bash")
USER_MARKER = "CHOM managed"
MAX_CONTENT_BYTES = 4 * 1024 * 1024
INTERESTING_PACKAGES = (
    "nginx",
    "php*-fpm",
    "mariadb-server",
    "supervisor",
    "certbot",
    "ufw",
    "prometheus-node-exporter",
    "prometheus-nginx-exporter",
    "prometheus-mysqld-exporter",
)
INTERESTING_SERVICES = (
    "nginx",
    "mariadb",
    "supervisor",
    "ssh",
    "cron",
    "ufw",
    "prometheus-node-exporter",
    "prometheus-nginx-exporter",
    "prometheus-mysqld-exporter",
)
SSHD_SETTINGS = (
    ("PasswordAuthentication", "no"),
    ("PermitRootLogin", "prohibit-password"),
    ("KbdInteractiveAuthentication", "no"),
)
# `sshd -T` spells some values by their older synonyms.
SSHD_SYNONYMS = {"without-password": "prohibit-password"}


# Drops to the site user by numeric id, so it also works for users that exist only under
# VPSMANAGER_ROOT's /etc/passwd (runuser needs the name in the host's passwd).
DEFAULT_RUNAS = ("setpriv", "--reuid={uid}", "--regid={gid}", "--clear-groups", "--")


# --------------------------------------------------------------------------- configuration


def _argv_env(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return list(default)
    if raw.startswith("["):
        value = json.loads(raw)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name} must be a JSON array of strings")
        return value
    return shlex.split(raw)


@dataclass(frozen=True)
class Config:
    root: str
    nginx: list[str]
    nginx_reload: list[str]
    php_fpm: list[str]
    php_fpm_reload: list[str]
    sshd: list[str]
    sshd_reload: list[str]
    systemctl: list[str]
    apt_get: list[str]
    dpkg_query: list[str]
    mysql: list[str]
    ufw: list[str]
    timeout: float
    apt_timeout: float
    runas: list[str]
    git: list[str]
    php: list[str]
    composer: list[str]
    certbot: list[str]
    supervisorctl: list[str]
    build_timeout: float
    acme_timeout: float
    download_max_bytes: int

    @classmethod
    def from_env(cls) -> Config:
        systemctl = _argv_env("VPSMANAGER_SYSTEMCTL", ["systemctl"])
        return cls(
            root=os.path.abspath(os.environ.get("VPSMANAGER_ROOT") or "/"),
            nginx=_argv_env("VPSMANAGER_NGINX", ["nginx"]),
            nginx_reload=_argv_env("VPSMANAGER_NGINX_RELOAD", [*systemctl, "reload", "nginx"]),
            php_fpm=_argv_env("VPSMANAGER_PHP_FPM", ["php-fpm{version}"]),
            php_fpm_reload=_argv_env("VPSMANAGER_PHP_FPM_RELOAD", [*systemctl, "reload", "php{version}-fpm"]),
            sshd=_argv_env("VPSMANAGER_SSHD", ["sshd"]),
            sshd_reload=_argv_env("VPSMANAGER_SSHD_RELOAD", [*systemctl, "reload", "ssh"]),
            systemctl=systemctl,
            apt_get=_argv_env("VPSMANAGER_APT_GET", ["apt-get"]),
            dpkg_query=_argv_env("VPSMANAGER_DPKG_QUERY", ["dpkg-query"]),
            mysql=_argv_env("VPSMANAGER_MYSQL", ["mariadb"]),
            ufw=_argv_env("VPSMANAGER_UFW", ["ufw"]),
            timeout=float(os.environ.get("VPSMANAGER_TIMEOUT") or 60),
            apt_timeout=float(os.environ.get("VPSMANAGER_APT_TIMEOUT") or 1200),
            runas=_argv_env("VPSMANAGER_RUNAS", list(DEFAULT_RUNAS)),
            git=_argv_env("VPSMANAGER_GIT", ["git"]),
            php=_argv_env("VPSMANAGER_PHP", ["php"]),
            composer=_argv_env("VPSMANAGER_COMPOSER", ["composer"]),
            certbot=_argv_env("VPSMANAGER_CERTBOT", ["certbot"]),
            supervisorctl=_argv_env("VPSMANAGER_SUPERVISORCTL", ["supervisorctl"]),
            build_timeout=float(os.environ.get("VPSMANAGER_BUILD_TIMEOUT") or 900),
            acme_timeout=float(os.environ.get("VPSMANAGER_ACME_TIMEOUT") or 300),
            download_max_bytes=int(os.environ.get("VPSMANAGER_DOWNLOAD_MAX_BYTES") or 512 * 1024 * 1024),
        )

    def path(self, absolute: str) -> str:
        """Map a production path (/etc/nginx/...) into the configured root."""
        return os.path.join(self.root, absolute.lstrip("/"))

    def account_prefix(self) -> list[str]:
        return [] if self.root == "/" else ["--prefix", self.root]


# --------------------------------------------------------------------------- errors and context


class AgentError(Exception):
    def __init__(self, code: str, message: str, step: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.step = step


def invalid(message: str) -> AgentError:
    return AgentError("invalid_input", message, "validate")


class Context:
    """Per-invocation state: config, the human-readable log and the `changed` flag."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.log_lines: list[str] = []
        self.changed = False
        self.secrets: list[str] = []

    def secret(self, value: str) -> None:
        """Register a value that must never appear in log lines or error messages."""
        if len(value) >= 4:
            self.secrets.append(value)

    def mask_all(self) -> list[str]:
        return [self.mask(line) for line in self.log_lines]

    def mask(self, text: str) -> str:
        for value in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(value, "***")
        return text

    def log(self, line: str) -> None:
        self.log_lines.append(line)

    def change(self, line: str) -> None:
        self.changed = True
        self.log(line)

    def run(
        self,
        argv: list[str],
        *,
        step: str,
        stdin: str | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
        cwd: str | None = None,
        exact_env: bool = False,
    ) -> subprocess.CompletedProcess:
        """Run argv (never through a shell) with a timeout; map failures to AgentError.

        exact_env: `env` is the whole environment (site-user commands), not additions.
        """
        try:
            proc = subprocess.run(
                argv,
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout or self.config.timeout,
                env=env if exact_env else (dict(os.environ, **env) if env else None),
                cwd=cwd,
                umask=SITE_UMASK if exact_env else -1,
            )
        except FileNotFoundError:
            raise AgentError("missing_binary", f"{argv[0]}: command not found", step)
        except subprocess.TimeoutExpired:
            raise AgentError(
                "timeout",
                f"{argv[0]} timed out after {timeout or self.config.timeout}s",
                step,
            )
        if check and proc.returncode != 0:
            raise AgentError(
                "command_failed",
                f"{' '.join(argv[:3])} exited {proc.returncode}: {_tail(proc)}",
                step,
            )
        return proc


def _tail(proc: subprocess.CompletedProcess, lines: int = 8) -> str:
    text = (proc.stderr or "") + (proc.stdout or "")
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


# --------------------------------------------------------------------------- input validation


_REQUIRED = object()


class Input:
    """Typed accessors over the stdin object; each consumed key is tracked to reject extras."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.seen: set[str] = set()

    def get(self, key: str, kind: type, default: Any = _REQUIRED) -> Any:
        self.seen.add(key)
        if key not in self.raw:
            if default is _REQUIRED:
                raise invalid(f"missing field {key!r}")
            return default
        value = self.raw[key]
        # bool is an int subclass: refuse True where a port number is expected.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise invalid(f"field {key!r} must be {kind.__name__}")
        return value

    def match(self, key: str, pattern: Pattern[str], what: str, default: Any = _REQUIRED) -> str:
        value = self.get(key, str, default)
        if not pattern.match(value):
            raise invalid(f"{what} {value!r} is invalid (must match {pattern.pattern})")
        return value

    def content(self, key: str = "content") -> str:
        value = self.get(key, str)
        if len(value.encode("utf-8")) > MAX_CONTENT_BYTES or "\x00" in value:
            raise invalid(f"field {key!r} must be text under {MAX_CONTENT_BYTES} bytes")
        return value

    def finish(self) -> None:
        extra = sorted(set(self.raw) - self.seen)
        if extra:
            raise invalid("unknown field(s): {}".format(", ".join(extra)))


def validate_abs_path(path: str, roots: tuple[str, ...]) -> str:
    """Accept only clean absolute paths strictly below one of `roots`."""
    if not path.startswith("/") or not PATH_CHARS_RE.match(path):
        raise invalid(f"path {path!r} must be absolute and use only [A-Za-z0-9_./@+-]")
    parts = path.split("/")[1:]
    if any(part in ("", ".", "..") for part in parts):
        raise invalid(f"path {path!r} must be normalised (no '..', '.', or '//')")
    if not any(path.startswith(root + "/") for root in roots):
        raise invalid("path {!r} is outside the allowed roots: {}".format(path, ", ".join(roots)))
    return path


def parse_mode(value: str) -> int:
    if not MODE_RE.match(value):
        raise invalid(f'mode {value!r} must be an octal string like "0644" (no setuid/setgid)')
    return int(value, 8)


# --------------------------------------------------------------------------- files


def read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def atomic_write(path: str, data: bytes, mode: int, uid: int = 0, gid: int = 0) -> None:
    """Write via temp file in the same directory + fsync + rename, so readers see old or new."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".chom-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fchown(fh.fileno(), uid, gid)
            os.fsync(fh.fileno())
        os.rename(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(directory)


def fsync_dir(directory: str) -> None:
    # The rename is only durable once the directory entry itself hits the disk.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def ensure_dir(ctx: Context, path: str, mode: int = 0o755) -> None:
    if not os.path.isdir(path):
        os.makedirs(path, mode)
        ctx.change(f"created directory {path}")


class Snapshot:
    """Previous state of one config file (and optional enabling symlink) for rollback."""

    def __init__(self, path: str, link: str | None = None) -> None:
        self.path = path
        self.link = link
        self.data = read_bytes(path)
        self.mode = stat.S_IMODE(os.stat(path).st_mode) if self.data is not None else 0o644
        self.link_target = os.readlink(link) if link and os.path.islink(link) else None

    def restore(self) -> None:
        if self.data is None:
            _unlink_quietly(self.path)
        else:
            atomic_write(self.path, self.data, self.mode)
        if self.link:
            _unlink_quietly(self.link)
            if self.link_target is not None:
                os.symlink(self.link_target, self.link)


# --------------------------------------------------------------------------- accounts


def read_db(path: str) -> dict[str, list[str]]:
    """Parse a passwd/group style file into {name: fields}."""
    entries: dict[str, list[str]] = {}
    data = read_bytes(path) or b""
    for line in data.decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0]:
            entries[fields[0]] = fields
    return entries


def lookup_uid(config: Config, name: str) -> int:
    entry = read_db(config.path("/etc/passwd")).get(name)
    if entry is None:
        raise invalid(f"unknown user {name!r}")
    return int(entry[2])


def lookup_gid(config: Config, name: str) -> int:
    entry = read_db(config.path("/etc/group")).get(name)
    if entry is None:
        raise invalid(f"unknown group {name!r}")
    return int(entry[2])


# --------------------------------------------------------------------------- locking


def acquire_lock(
    config: Config, timeout: float = 120.0, filename: str = "vpsmanager.lock", shared: bool = False
) -> int:
    """Serialise mutating runs: two concurrent vhost swaps must not validate each other's files."""
    lock_dir = config.path("/run/lock")
    os.makedirs(lock_dir, exist_ok=True)
    fd = os.open(os.path.join(lock_dir, filename), os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise AgentError("busy", f"another vpsmanager run holds {filename}", "lock")
            time.sleep(0.1)


# --------------------------------------------------------------------------- version / facts


def cmd_version(ctx: Context, args: Input) -> dict[str, Any]:
    args.finish()
    return {"version": VERSION}


def read_os_release(config: Config) -> dict[str, str]:
    values: dict[str, str] = {}
    for candidate in ("/etc/os-release", "/usr/lib/os-release"):
        data = read_bytes(config.path(candidate))
        if data is None:
            continue
        for line in data.decode("utf-8", "replace").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                parsed = shlex.split(value)
                values[key.strip()] = parsed[0] if parsed else ""
        break
    return {
        "id": values.get("ID", ""),
        "version_id": values.get("VERSION_ID", ""),
        "pretty": values.get("PRETTY_NAME", ""),
    }


def read_meminfo() -> dict[str, int]:
    values: dict[str, int] = {}
    for line in (read_bytes("/proc/meminfo") or b"").decode().splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[key] = int(fields[0]) * 1024
    return {
        "total_bytes": values.get("MemTotal", 0),
        "available_bytes": values.get("MemAvailable", 0),
    }


def installed_packages(ctx: Context, patterns: list[str]) -> dict[str, str]:
    # dpkg-query exits 1 when any pattern matches nothing; the other lines are still valid.
    proc = ctx.run(
        [
            *ctx.config.dpkg_query,
            "-W",
            "-f=${Package}\t${db:Status-Abbrev}\t${Version}\n",
            *patterns,
        ],
        step="dpkg-query",
        check=False,
    )
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[1].startswith("ii"):
            found[fields[0]] = fields[2]
    return found


def php_versions(config: Config) -> list[str]:
    found = [
        os.path.basename(os.path.dirname(path))
        for path in glob.glob(config.path("/etc/php/*/fpm"))
        if os.path.isdir(path)
    ]
    return sorted((v for v in found if PHP_VERSION_RE.match(v)), key=_version_key)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def service_states(ctx: Context, units: list[str]) -> dict[str, str]:
    """`systemctl is-active` prints one state per unit; anything unparsable is "unknown"."""
    try:
        proc = ctx.run([*ctx.config.systemctl, "is-active", "--", *units], step="systemctl", check=False)
        states = proc.stdout.split()
    except AgentError:
        states = []
    if len(states) != len(units):
        states = ["unknown"] * len(units)
    return {unit: states[i] for i, unit in enumerate(units)}


def managed_names(directory: str, prefix: str = "chom-") -> list[str]:
    pattern = os.path.join(directory, glob.escape(prefix) + "*.conf")
    names = (os.path.basename(p)[len(prefix) : -len(".conf")] for p in glob.glob(pattern))
    return sorted(n for n in names if SITE_NAME_RE.match(n))


def cmd_facts(ctx: Context, args: Input) -> dict[str, Any]:
    args.finish()
    config = ctx.config
    versions = php_versions(config)
    units = list(INTERESTING_SERVICES) + [f"php{v}-fpm" for v in versions]
    disk = shutil.disk_usage(config.root)
    return {
        "os": read_os_release(config),
        "kernel": os.uname().release,
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count() or 1,
        "memory": read_meminfo(),
        "disk": {"path": "/", "total_bytes": disk.total, "free_bytes": disk.free},
        "load": [round(x, 2) for x in os.getloadavg()],
        "packages": installed_packages(ctx, list(INTERESTING_PACKAGES)),
        "php_versions": versions,
        "services": service_states(ctx, units),
        "sites": managed_names(config.path("/etc/nginx/sites-available")),
        "pools": {v: managed_names(pool_dir(config, v)) for v in versions},
        "agent_version": VERSION,
    }


# --------------------------------------------------------------------------- packages / services


def cmd_packages_ensure(ctx: Context, args: Input) -> dict[str, Any]:
    packages = args.get("packages", list)
    update = args.get("update", bool, default=True)
    args.finish()
    if not packages or not all(isinstance(p, str) and PACKAGE_RE.match(p) for p in packages):
        raise invalid("packages must be a non-empty list of Debian package names")
    present = installed_packages(ctx, packages)
    missing = [p for p in dict.fromkeys(packages) if p not in present]
    if not missing:
        ctx.log(f"all {len(packages)} packages already installed")
        return {"installed": []}
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    apt = ctx.config.apt_get
    if update:
        ctx.run([*apt, "update"], step="apt-update", env=env, timeout=ctx.config.apt_timeout)
        ctx.log("apt-get update")
    # confold: never let a package upgrade replace a config CHOM wrote; lock timeout: wait for
    # unattended-upgrades instead of failing.
    ctx.run(
        [
            *apt,
            "install",
            "-y",
            "--no-install-recommends",
            "-o",
            "DPkg::Lock::Timeout=300",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            *missing,
        ],
        step="apt-install",
        env=env,
        timeout=ctx.config.apt_timeout,
    )
    ctx.change("installed {}".format(" ".join(missing)))
    return {"installed": missing}


def unit_state(ctx: Context, verb: str, name: str) -> str:
    proc = ctx.run([*ctx.config.systemctl, verb, "--", name], step="systemctl", check=False)
    return proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else "unknown"


def cmd_service_ensure(ctx: Context, args: Input) -> dict[str, Any]:
    name = args.match("name", SERVICE_RE, "service name")
    enabled = args.get("enabled", bool, None)
    running = args.get("running", bool, None)
    args.finish()
    systemctl = ctx.config.systemctl
    if enabled is not None:
        is_enabled = unit_state(ctx, "is-enabled", name) == "enabled"
        if is_enabled != enabled:
            verb = "enable" if enabled else "disable"
            ctx.run([*systemctl, verb, "--", name], step="systemctl-" + verb)
            ctx.change(f"{verb}d {name}")
    if running is not None:
        is_running = unit_state(ctx, "is-active", name) == "active"
        if is_running != running:
            verb = "start" if running else "stop"
            ctx.run([*systemctl, verb, "--", name], step="systemctl-" + verb)
            ctx.change("{} {}".format("started" if running else "stopped", name))
    return {"name": name, "state": unit_state(ctx, "is-active", name)}


def cmd_reload(ctx: Context, args: Input) -> dict[str, Any]:
    name = args.match("service", SERVICE_RE, "service name")
    args.finish()
    ctx.run([*ctx.config.systemctl, "reload", "--", name], step="reload")
    ctx.change(f"reloaded {name}")
    return {"service": name}


# --------------------------------------------------------------------------- users


def cmd_user_ensure(ctx: Context, args: Input) -> dict[str, Any]:
    name = args.match("name", SITE_NAME_RE, "user name")
    home = validate_abs_path(args.get("home", str), HOME_ROOTS)
    shell = args.get("shell", str, default="/usr/sbin/nologin")
    args.finish()
    if shell not in SHELLS:
        raise invalid("shell {!r} must be one of {}".format(shell, ", ".join(SHELLS)))
    ensure_user(ctx, name, home, shell)
    ensure_home(ctx, name, ctx.config.path(home))
    config = ctx.config
    return {"name": name, "uid": lookup_uid(config, name), "gid": lookup_gid(config, name), "home": home}


def ensure_user(ctx: Context, name: str, home: str, shell: str) -> None:
    config = ctx.config
    entry = read_db(config.path("/etc/passwd")).get(name)
    if entry is None:
        ctx.run(
            [
                "useradd",
                *config.account_prefix(),
                "--system",
                "--user-group",
                "--home-dir",
                home,
                "--shell",
                shell,
                "--comment",
                USER_MARKER,
                "--",
                name,
            ],
            step="useradd",
        )
        ctx.change(f"created system user {name}")
    else:
        update_user(ctx, name, entry, home, shell)


def require_managed(name: str, entry: list[str]) -> None:
    # Never touch root, service accounts or the cloud image's admin user.
    if len(entry) < 5 or entry[4] != USER_MARKER:
        raise AgentError(
            "user_conflict",
            f"user {name!r} exists and is not managed by CHOM (GECOS is not {USER_MARKER!r})",
            "validate",
        )


def update_user(ctx: Context, name: str, entry: list[str], home: str, shell: str) -> None:
    require_managed(name, entry)
    changes: list[str] = []
    if entry[5] != home:
        changes += ["--home", home]
    if entry[6] != shell:
        changes += ["--shell", shell]
    if changes:
        ctx.run(["usermod", *ctx.config.account_prefix(), *changes, "--", name], step="usermod")
        ctx.change("updated user {}: {}".format(name, " ".join(changes)))


def ensure_home(ctx: Context, name: str, path: str) -> None:
    uid, gid = lookup_uid(ctx.config, name), lookup_gid(ctx.config, name)
    if not os.path.isdir(path):
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        os.mkdir(path, 0o750)
        ctx.change(f"created home {path}")
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise invalid(f"home {path} is a symlink")
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid)
        ctx.change(f"chowned {path} to {name}")
    if stat.S_IMODE(st.st_mode) != 0o750:
        os.chmod(path, 0o750)  # noqa: S103 - group access lets nginx/php-fpm read the site
        ctx.change(f"chmod 0750 {path}")


def cmd_user_remove(ctx: Context, args: Input) -> dict[str, Any]:
    name = args.match("name", SITE_NAME_RE, "user name")
    args.finish()
    remove_user(ctx, name)
    return {"name": name}


def remove_user(ctx: Context, name: str) -> None:
    prefix = ctx.config.account_prefix()
    entry = read_db(ctx.config.path("/etc/passwd")).get(name)
    if entry is not None:
        require_managed(name, entry)
        ctx.run(["userdel", *prefix, "--", name], step="userdel")
        ctx.change(f"removed user {name} (home kept)")
    # userdel keeps the group when USERGROUPS_ENAB is off; remove it only if nobody else uses it.
    group = read_db(ctx.config.path("/etc/group")).get(name)
    if group is not None and (len(group) < 4 or not group[3]):
        ctx.run(["groupdel", *prefix, "--", name], step="groupdel")
        ctx.change(f"removed group {name}")


# --------------------------------------------------------------------------- file-write


def resolve_target(config: Config, path: str) -> str:
    """Map `path` under the root and refuse parents that symlink outside the allowed roots."""
    target = config.path(path)
    parent = os.path.realpath(os.path.dirname(target))
    allowed = [os.path.realpath(config.path(root)) for root in FILE_WRITE_ROOTS]
    if not any(parent == a or parent.startswith(a + os.sep) for a in allowed):
        raise invalid(f"{path} resolves through a symlink to {parent}, outside the allowed roots")
    return os.path.join(parent, os.path.basename(target))


def cmd_file_write(ctx: Context, args: Input) -> dict[str, Any]:
    path = validate_abs_path(args.get("path", str), FILE_WRITE_ROOTS)
    data = args.content().encode("utf-8")
    mode = parse_mode(args.get("mode", str, default="0644"))
    owner = args.match("owner", ACCOUNT_RE, "owner", default="root")
    group = args.match("group", ACCOUNT_RE, "group", default="root")
    args.finish()
    uid, gid = lookup_uid(ctx.config, owner), lookup_gid(ctx.config, group)
    # Resolve before creating anything so a symlinked parent cannot steer makedirs elsewhere.
    target = resolve_target(ctx.config, path)
    ensure_dir(ctx, os.path.dirname(target))
    write_if_different(ctx, target, path, data, mode, uid, gid)
    return {"path": path, "sha256": hashlib.sha256(data).hexdigest()}


def write_if_different(
    ctx: Context, target: str, label: str, data: bytes, mode: int, uid: int, gid: int
) -> None:
    try:
        st: os.stat_result | None = os.lstat(target)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise invalid(f"{label} is a directory")
    # A symlink is replaced, never written through: rename swaps the link itself.
    if st is None or not stat.S_ISREG(st.st_mode) or read_bytes(target) != data:
        atomic_write(target, data, mode, uid, gid)
        ctx.change(f"wrote {label} ({len(data)} bytes)")
        return
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(target, mode)
        ctx.change(f"chmod {mode:o} {label}")
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(target, uid, gid)
        ctx.change(f"chown {uid}:{gid} {label}")
    if not ctx.changed:
        ctx.log(f"{label} unchanged")


def cmd_file_remove(ctx: Context, args: Input) -> dict[str, Any]:
    path = validate_abs_path(args.get("path", str), FILE_WRITE_ROOTS)
    args.finish()
    target = resolve_target(ctx.config, path)
    if os.path.isdir(target) and not os.path.islink(target):
        raise invalid(f"{path} is a directory")
    if os.path.lexists(target):
        os.unlink(target)
        fsync_dir(os.path.dirname(target))
        ctx.change(f"removed {path}")
    else:
        ctx.log(f"{path} already absent")
    return {"path": path}


# --------------------------------------------------------------------------- validated configs


def validate_or_rollback(ctx: Context, snapshot: Snapshot, validate: Callable[[], None], what: str) -> None:
    """Run `validate`; on failure put the previous file back so nothing reloads a broken config.

    Callers only log the staged write and call ctx.change() after this returns, so a rejected
    config leaves `changed` as it was.
    """
    try:
        validate()
    except AgentError:
        snapshot.restore()
        ctx.log(f"restored previous {what}")
        raise


def check_config(ctx: Context, argv: list[str], code: str, label: str) -> None:
    proc = ctx.run(argv, step="validate-config", check=False)
    if proc.returncode != 0:
        raise AgentError(code, f"{label} failed: {config_errors(proc)}", "validate-config")
    ctx.log(f"{label} ok")


def config_errors(proc: subprocess.CompletedProcess) -> str:
    """Keep the lines that say what is wrong, minus the tool's noise prefixes."""
    lines = (proc.stderr + proc.stdout).strip().splitlines()
    wanted = [ln for ln in lines if re.search(r"\[(emerg|alert|crit|error)\]|ERROR:|line \d+", ln)]
    cleaned = [re.sub(r"^(nginx: \[\w+\] |\[[^\]]*\] ERROR: )", "", ln).strip() for ln in wanted or lines]
    return "; ".join(dict.fromkeys(ln for ln in cleaned if ln)) or f"exit {proc.returncode}"


def reload(ctx: Context, argv: list[str], what: str) -> None:
    proc = ctx.run(argv, step="reload", check=False)
    if proc.returncode != 0:
        raise AgentError(
            "reload_failed",
            f"{what} reload failed (config is valid and in place): {_tail(proc)}",
            "reload",
        )
    ctx.log(f"reloaded {what}")


def check_nginx(ctx: Context) -> None:
    check_config(ctx, [*ctx.config.nginx, "-t"], "nginx_invalid", "nginx -t")


def vhost_paths(config: Config, name: str) -> tuple[str, str]:
    filename = f"chom-{name}.conf"
    return (
        config.path("/etc/nginx/sites-available/" + filename),
        config.path("/etc/nginx/sites-enabled/" + filename),
    )


def cmd_vhost_apply(ctx: Context, args: Input) -> dict[str, Any]:
    name = args.match("name", SITE_NAME_RE, "site name")
    data = args.content().encode("utf-8")
    args.finish()
    available, enabled = vhost_paths(ctx.config, name)
    link_target = os.path.join("..", "sites-available", os.path.basename(available))
    for directory in (os.path.dirname(available), os.path.dirname(enabled)):
        os.makedirs(directory, 0o755, exist_ok=True)
    is_enabled = os.path.islink(enabled) and os.readlink(enabled) == link_target
    if read_bytes(available) == data and is_enabled:
        ctx.log(f"vhost {name} unchanged")
        return {"name": name}
    if os.path.lexists(enabled) and not os.path.islink(enabled):
        raise AgentError("conflict", f"{enabled} is a regular file, not CHOM's symlink", "validate")
    snapshot = Snapshot(available, enabled)
    atomic_write(available, data, 0o644)
    if not is_enabled:
        _unlink_quietly(enabled)
        os.symlink(link_target, enabled)
    ctx.log(f"staged vhost {name}")
    validate_or_rollback(ctx, snapshot, lambda: check_nginx(ctx), "vhost")
    ctx.change(f"vhost {name} written and enabled")
    reload(ctx, ctx.config.nginx_reload, "nginx")
    return {"name": name}


def cmd_vhost_remove(ctx: Context, args: Input) -> dict[str, Any]:
    name = args.match("name", SITE_NAME_RE, "site name")
    args.finish()
    available, enabled = vhost_paths(ctx.config, name)
    if not os.path.lexists(available) and not os.path.lexists(enabled):
        ctx.log(f"vhost {name} already absent")
        return {"name": name}
    snapshot = Snapshot(available, enabled)
    _unlink_quietly(enabled)
    _unlink_quietly(available)
    ctx.log(f"staged removal of vhost {name}")
    validate_or_rollback(ctx, snapshot, lambda: check_nginx(ctx), "vhost")
    ctx.change(f"removed vhost {name}")
    reload(ctx, ctx.config.nginx_reload, "nginx")
    return {"name": name}


def pool_dir(config: Config, version: str) -> str:
    return config.path(f"/etc/php/{version}/fpm/pool.d")


def php_argv(template: list[str], version: str) -> list[str]:
    return [part.replace("{version}", version) for part in template]


def pool_input(args: Input) -> tuple[str, str]:
    name = args.match("name", SITE_NAME_RE, "pool name")
    version = args.match("php_version", PHP_VERSION_RE, "php_version")
    return name, version


def cmd_pool_apply(ctx: Context, args: Input) -> dict[str, Any]:
    name, version = pool_input(args)
    data = args.content().encode("utf-8")
    args.finish()
    directory = pool_dir(ctx.config, version)
    if not os.path.isdir(directory):
        raise AgentError(
            "invalid_input",
            f"PHP {version} FPM is not installed ({directory} missing)",
            "validate",
        )
    path = os.path.join(directory, f"chom-{name}.conf")
    if read_bytes(path) == data:
        ctx.log(f"pool {name} unchanged")
        return {"name": name, "php_version": version}
    snapshot = Snapshot(path)
    atomic_write(path, data, 0o644)
    ctx.log(f"staged pool {name} for PHP {version}")
    apply_pool_change(ctx, snapshot, version, f"pool {name} written")
    return {"name": name, "php_version": version}


def apply_pool_change(ctx: Context, snapshot: Snapshot, version: str, change: str) -> None:
    label = f"php-fpm{version} -t"
    fpm_t = [*php_argv(ctx.config.php_fpm, version), "-t"]
    validate_or_rollback(ctx, snapshot, lambda: check_config(ctx, fpm_t, "php_fpm_invalid", label), "pool")
    ctx.change(change)
    reload(ctx, php_argv(ctx.config.php_fpm_reload, version), f"php{version}-fpm")


def cmd_pool_remove(ctx: Context, args: Input) -> dict[str, Any]:
    name, version = pool_input(args)
    args.finish()
    path = os.path.join(pool_dir(ctx.config, version), f"chom-{name}.conf")
    if not os.path.lexists(path):
        ctx.log(f"pool {name} already absent")
        return {"name": name, "php_version": version}
    snapshot = Snapshot(path)
    os.unlink(path)
    ctx.log(f"staged removal of pool {name}")
    # php-fpm refuses a config without pools: validation keeps the last pool in place.
    apply_pool_change(ctx, snapshot, version, f"removed pool {name}")
    return {"name": name, "php_version": version}


# --------------------------------------------------------------------------- MariaDB


def sql_string(value: str) -> str:
    """Quote a value as a MariaDB string literal (backslash escapes are forced on per session)."""
    replacements = {
        "\\": "\\\\",
        "'": "\\'",
        "\x00": "\\0",
        "\n": "\\n",
        "\r": "\\r",
        "\x1a": "\\Z",
    }
    return "'" + "".join(replacements.get(ch, ch) for ch in value) + "'"


def native_hash(password: str) -> str:
    """mysql_native_password's stored form, to compare without sending anything to the server."""
    inner = hashlib.sha1(password.encode("utf-8"), usedforsecurity=False).digest()
    return "*" + hashlib.sha1(inner, usedforsecurity=False).hexdigest().upper()


def grant_pattern(db: str) -> str:
    # In GRANT ... ON `db`.*, "_" is a wildcard: a_b would also match axb. Escape it.
    return db.replace("_", "\\_")


SESSION_SETUP = "SET SESSION sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '');\n"
DB_HOSTS = ("localhost", "127.0.0.1")


def mysql(ctx: Context, sql: str, step: str) -> list[list[str]]:
    proc = ctx.run(
        [*ctx.config.mysql, "--batch", "--skip-column-names", "--raw"],
        stdin=SESSION_SETUP + sql,
        step=step,
        check=False,
    )
    if proc.returncode != 0:
        raise AgentError("db_error", f"mariadb client failed: {_tail(proc, 4)}", step)
    return [line.split("\t") for line in proc.stdout.splitlines()]


def db_state(ctx: Context, name: str, user: str) -> tuple[bool, dict[str, tuple[str, str]]]:
    # Values are escaped literals, never raw input, so S608's string-built SQL is safe here.
    sql = (
        "SELECT 'db', SCHEMA_NAME, '' FROM information_schema.SCHEMATA"  # noqa: S608
        f" WHERE SCHEMA_NAME = {sql_string(name)};\n"
        "SELECT Host, plugin, authentication_string FROM mysql.user"
        f" WHERE User = {sql_string(user)};\n"
    )
    rows = mysql(ctx, sql, "db-read")
    db_exists = any(row[0] == "db" for row in rows)
    users = {row[0]: (row[1], row[2]) for row in rows if row[0] in DB_HOSTS and len(row) == 3}
    return db_exists, users


def has_grant(ctx: Context, name: str, user: str, host: str) -> bool:
    rows = mysql(ctx, f"SHOW GRANTS FOR {sql_string(user)}@{sql_string(host)};\n", "db-read")
    wanted = f"GRANT ALL PRIVILEGES ON `{grant_pattern(name)}`.*"
    return any(row[0].startswith(wanted) for row in rows)


def cmd_db_ensure(ctx: Context, args: Input) -> dict[str, Any]:
    name = args.match("name", DB_IDENT_RE, "database name")
    user = args.match("user", DB_IDENT_RE, "database user")
    password = args.get("password", str)
    args.finish()
    if not 8 <= len(password) <= 256 or "\x00" in password:
        raise invalid("password must be 8-256 characters without NUL")
    db_exists, users = db_state(ctx, name, user)
    statements: list[str] = []
    if not db_exists:
        statements.append(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        ctx.change(f"created database {name}")
    for host in DB_HOSTS:
        statements += user_statements(ctx, name, user, host, password, users.get(host))
    if statements:
        mysql(ctx, "".join(s + ";\n" for s in statements), "db-apply")
    else:
        ctx.log(f"database {name} and user {user} unchanged")
    return {"name": name, "user": user, "hosts": list(DB_HOSTS)}


def user_statements(
    ctx: Context, name: str, user: str, host: str, password: str, current: tuple[str, str] | None
) -> list[str]:
    account = f"{sql_string(user)}@{sql_string(host)}"
    identified = f"IDENTIFIED VIA mysql_native_password USING PASSWORD({sql_string(password)})"
    statements: list[str] = []
    if current is None:
        statements.append(f"CREATE USER {account} {identified}")
        ctx.change(f"created user {user}@{host}")
    elif current != ("mysql_native_password", native_hash(password)):
        statements.append(f"ALTER USER {account} {identified}")
        ctx.change(f"updated password of {user}@{host}")
    if current is None or not has_grant(ctx, name, user, host):
        statements.append(f"GRANT ALL PRIVILEGES ON `{grant_pattern(name)}`.* TO {account}")
        ctx.change(f"granted {user}@{host} all on {name}")
    return statements


def cmd_db_remove(ctx: Context, args: Input) -> dict[str, Any]:
    name = args.match("name", DB_IDENT_RE, "database name")
    user = args.match("user", DB_IDENT_RE, "database user")
    args.finish()
    db_exists, users = db_state(ctx, name, user)
    statements = [f"DROP USER {sql_string(user)}@{sql_string(host)}" for host in users]
    if db_exists:
        statements.append(f"DROP DATABASE `{name}`")
    if statements:
        mysql(ctx, "".join(s + ";\n" for s in statements), "db-apply")
        ctx.change(f"dropped {len(statements)} object(s): database {name}, user {user}")
    else:
        ctx.log(f"database {name} and user {user} already absent")
    return {"name": name, "user": user}


# --------------------------------------------------------------------------- sshd / ufw


SSHD_DROPIN = "/etc/ssh/sshd_config.d/50-chom.conf"


def sshd_content() -> bytes:
    # sshd keeps the first value it reads; Debian includes sshd_config.d/*.conf at the top of
    # sshd_config, and "50-chom" sorts before Ubuntu cloud images' "50-cloud-init".
    lines = ["# Managed by CHOM (vpsmanager); manual edits are overwritten."]
    lines += ["{} {}".format(*pair) for pair in SSHD_SETTINGS]
    return ("\n".join(lines) + "\n").encode()


def cmd_sshd_harden(ctx: Context, args: Input) -> dict[str, Any]:
    args.finish()
    path = ctx.config.path(SSHD_DROPIN)
    data = sshd_content()
    if read_bytes(path) == data:
        ctx.log("sshd hardening unchanged")
        return {"path": SSHD_DROPIN}
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    snapshot = Snapshot(path)
    atomic_write(path, data, 0o644)
    ctx.log(f"staged {SSHD_DROPIN}")
    validate_or_rollback(ctx, snapshot, lambda: validate_sshd(ctx), "sshd drop-in")
    ctx.change(f"wrote {SSHD_DROPIN}")
    reload(ctx, ctx.config.sshd_reload, "ssh")
    return {"path": SSHD_DROPIN}


def validate_sshd(ctx: Context) -> None:
    check_config(ctx, [*ctx.config.sshd, "-t"], "sshd_invalid", "sshd -t")
    proc = ctx.run([*ctx.config.sshd, "-T"], step="sshd-effective")
    effective = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        effective[key] = SSHD_SYNONYMS.get(value, value)
    wrong = [
        f"{key} is {effective.get(key.lower())}"
        for key, value in SSHD_SETTINGS
        if effective.get(key.lower()) != value
    ]
    if wrong:
        raise AgentError(
            "sshd_overridden",
            "sshd -T: {}; a file read earlier than {} sets it first".format("; ".join(wrong), SSHD_DROPIN),
            "validate-config",
        )


def parse_rule(rule: Any) -> tuple[int, str, str | None]:
    if not isinstance(rule, dict) or set(rule) - {"port", "proto", "from"}:
        raise invalid("each allow rule is an object with port, proto and optional from")
    port, proto, source = rule.get("port"), rule.get("proto", "tcp"), rule.get("from")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise invalid(f"rule port {port!r} must be an integer 1-65535")
    if proto not in ("tcp", "udp"):
        raise invalid(f"rule proto {proto!r} must be tcp or udp")
    if source is not None:
        try:
            source = str(ipaddress.ip_network(source, strict=False))
        except (TypeError, ValueError):
            raise invalid(f"rule from {source!r} must be an IP address or CIDR")
    return port, proto, source


def ufw_argv(port: int, proto: str, source: str | None) -> list[str]:
    if source is None:
        return ["allow", f"{port}/{proto}"]
    return ["allow", "proto", proto, "from", source, "to", "any", "port", str(port)]


def cmd_ufw_apply(ctx: Context, args: Input) -> dict[str, Any]:
    rules = [parse_rule(r) for r in args.get("allow", list)]
    ssh_port = args.get("ssh_port", int, default=22)
    args.finish()
    # Enabling ufw without an SSH rule would cut CHOM off from the server for good.
    if not any(port == ssh_port and proto == "tcp" for port, proto, _ in rules):
        raise invalid(f"allow must include {ssh_port}/tcp (the SSH port) before ufw is enabled")
    ufw = ctx.config.ufw
    status = ufw_status(ctx)
    for rule in rules:
        proc = ctx.run(ufw + ufw_argv(*rule), step="ufw-allow")
        if re.search(r"Rules? (added|updated)", proc.stdout):
            ctx.change("ufw {}".format(" ".join(ufw_argv(*rule))))
    if "Status: active" not in status:
        ctx.run([*ufw, "--force", "enable"], step="ufw-enable")
        ctx.change("enabled ufw")
    return {"rules": len(rules)}


def ufw_status(ctx: Context) -> str:
    try:
        proc = ctx.run([*ctx.config.ufw, "status"], step="ufw-status", check=False)
    except AgentError as exc:
        raise AgentError("ufw_unavailable", f"ufw is not usable on this host: {exc.message}", "ufw-status")
    if proc.returncode != 0:
        raise AgentError("ufw_unavailable", f"ufw status failed: {_tail(proc)}", "ufw-status")
    return proc.stdout


# --------------------------------------------------------------------------- dispatch

COMMANDS: dict[str, tuple[Callable[[Context, Input], dict[str, Any]], bool]] = {
    # name: (handler, needs the lock because it mutates)
    "version": (cmd_version, False),
    "facts": (cmd_facts, False),
    "packages-ensure": (cmd_packages_ensure, True),
    "service-ensure": (cmd_service_ensure, True),
    "user-ensure": (cmd_user_ensure, True),
    "user-remove": (cmd_user_remove, True),
    "file-write": (cmd_file_write, True),
    "file-remove": (cmd_file_remove, True),
    "vhost-apply": (cmd_vhost_apply, True),
    "vhost-remove": (cmd_vhost_remove, True),
    "pool-apply": (cmd_pool_apply, True),
    "pool-remove": (cmd_pool_remove, True),
    "db-ensure": (cmd_db_ensure, True),
    "db-remove": (cmd_db_remove, True),
    "sshd-harden": (cmd_sshd_harden, True),
    "ufw-apply": (cmd_ufw_apply, True),
    "reload": (cmd_reload, True),
}


def read_input(stream: Any) -> dict[str, Any]:
    # An interactive run without redirection would otherwise block on the terminal.
    text = "" if stream.isatty() else stream.read()
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise invalid(f"stdin is not valid JSON: {exc}")
    if not isinstance(value, dict):
        raise invalid("stdin must be a JSON object")
    return value


def execute(argv: list[str], stdin: Any) -> tuple[dict[str, Any], int]:
    ctx: Context | None = None
    try:
        if len(argv) != 1:
            raise invalid("usage: vpsmanager SUBCOMMAND < input.json")
        if argv[0] not in COMMANDS:
            raise AgentError(
                "unknown_command",
                "unknown subcommand {!r}; known: {}".format(argv[0], ", ".join(COMMANDS)),
                "dispatch",
            )
        handler, scope = COMMANDS[argv[0]]
        try:
            ctx = Context(Config.from_env())
        except ValueError as exc:
            raise AgentError("invalid_input", f"bad VPSMANAGER_* environment: {exc}", "config")
        args = Input(read_input(stdin))
        locks_held = take_locks(ctx.config, scope, args.raw)
        try:
            data = handler(ctx, args)
        finally:
            for fd in locks_held:
                os.close(fd)
        return {"ok": True, "changed": ctx.changed, "data": data, "log": ctx.mask_all()}, 0
    except AgentError as exc:
        error = {"code": exc.code, "message": ctx.mask(exc.message) if ctx else exc.message, "step": exc.step}
    except Exception as exc:
        error = {
            "code": "internal_error",
            "message": f"{type(exc).__name__}: {exc}",
            "step": "",
        }
    changed = ctx.changed if ctx else False
    return {"ok": False, "changed": changed, "error": error, "log": ctx.mask_all() if ctx else []}, 1


def take_locks(config: Config, scope: str, raw: dict[str, Any]) -> list[int]:
    """"global": exclusive VPS lock. "site": the VPS lock shared plus the site's own lock, so
    long builds of different sites run side by side while global changes wait for them."""
    if scope == "none":
        return []
    name = raw.get("name")
    if scope == "global" or not isinstance(name, str) or not SITE_NAME_RE.match(name):
        return [acquire_lock(config)]
    held = [acquire_lock(config, shared=True)]
    try:
        held.append(acquire_lock(config, filename=f"vpsmanager-site-{name}.lock"))
    except AgentError:
        os.close(held[0])
        raise
    return held


def main() -> int:
    result, status = execute(sys.argv[1:], sys.stdin)
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
