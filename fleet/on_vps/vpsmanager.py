#!/usr/bin/env python3
"""vpsmanager: the agent CHOM installs on every managed VPS.

CHOM copies this single file to /usr/local/lib/vpsmanager/vpsmanager.py (checksum-verified,
byte-compiled with a checked hash) and runs it over SSH as root through a tiny launcher
that imports it, so every call loads cached bytecode instead of compiling this file:

    python3 /usr/local/sbin/vpsmanager SUBCOMMAND  < input.json

Running this file as a script works too (slower). Standard library only, Python >= 3.9 (it runs
on the VPS's system python3). A call costs a python3 start-up: keep module-level work small and
import anything beyond the basics inside the functions that need it.

Index
-----
Sections, in file order (each starts with a `# ----- NAME` line):
  configuration · errors and context · input validation · files · accounts · locking · version /
  facts · packages / services · users · file-write · validated configs · MariaDB · sshd / ufw ·
  host hardening · sites: layout · sites: logs and limits · sites: as the site user ·
  sites: sources · sites: releases · sites: exec · sites: environment and hooks ·
  sites: certificates · sites: supervisor · sites: workers · sites: cron jobs · sites: removal · dispatch

Subcommands (lock scope: none = reads only, global = VPS-wide, site = that site only,
site+global = the site's lock then the VPS lock; see take_locks), and the section that
implements each:
  version            none    version / facts
  facts              none    version / facts
  packages-ensure    global  packages / services
  service-ensure     global  packages / services
  user-ensure        global  users
  user-remove        global  users
  file-write         global  file-write
  file-remove        global  file-write
  vhost-apply        global  validated configs
  vhost-remove       global  validated configs
  pool-apply         global  validated configs
  pool-remove        global  validated configs
  htpasswd-apply     global  validated configs
  db-ensure          global  MariaDB
  db-remove          global  MariaDB
  db-monitor-ensure  global  MariaDB (the exporter's least-privilege account)
  sshd-harden        global  sshd / ufw
  ufw-apply          global  sshd / ufw
  host-harden        global  host hardening
  reload             global  packages / services
  site-ensure        site+global  sites: layout
  release-create     site    sites: releases
  release-activate   site    sites: releases
  releases-list      none    sites: releases
  site-exec          site    sites: exec
  env-apply          site    sites: environment and hooks (then the VPS lock to reload)
  hook-run           site    sites: environment and hooks
  cert-issue         global  sites: certificates
  cert-csr           global  sites: certificates (DNS-01: key + CSR, the key stays here)
  cert-install       global  sites: certificates (DNS-01: the chain CHOM obtained)
  workers-apply      site    sites: workers (then the VPS lock to change units)
  workers-status     none    sites: workers
  cron-apply         site+global  sites: cron jobs
  cron-status        none    sites: cron jobs
  site-remove        site+global  sites: removal

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
  ufw_unavailable, user_conflict, conflict, db_error, busy, interrupted (the server was shutting down:
  worth retrying once it is back), internal_error, and for sites:
  not_found, source_failed, host_key_changed, checksum_mismatch, unsafe_archive, build_failed,
  acme_failed.
* Secrets (env file contents, every site variable, WordPress admin password, a git source's
  deploy key, the monitoring account's password) arrive only on
  stdin and are replaced by *** in every log line and error message.

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
  VPSMANAGER_RUNAS              argv prefix running a command as the site user; {uid}, {gid},
                                {user} substituted
                      [setpriv --reuid={uid} --regid={gid} --clear-groups --]
  VPSMANAGER_GIT / _PHP / _COMPOSER / _CERTBOT / _SUPERVISORCTL     argv prefixes of those tools
                                                 [git] [php] [composer] [certbot] [supervisorctl]
  VPSMANAGER_BUILD_TIMEOUT      seconds allowed per build step / archive extraction       [900]
  VPSMANAGER_ACME_TIMEOUT       seconds allowed per certbot run                           [300]
  VPSMANAGER_DOWNLOAD_MAX_BYTES size cap of a release archive                      [536870912]
  VPSMANAGER_SYSTEMD_RUN / _PRLIMIT / _SETQUOTA / _LOGROTATE    argv prefixes of those tools
                                     [systemd-run] [prlimit] [setquota] [logrotate]

When VPSMANAGER_ROOT is not "/", useradd/usermod/userdel/groupdel get `--prefix ROOT` so user
management happens inside that tree too (used by the tests).

Sites (site-ensure, release-create, release-activate, releases-list, site-exec, cert-issue,
workers-apply/-status, site-remove): see the "sites: layout" section for the directory
convention. Everything below a site's home is created by the site user (git, php and composer
through VPSMANAGER_RUNAS, Python file work in a forked child that dropped to the user); root
only creates the layout, swaps `current`, runs certbot and installs the packages a
"distro-package" source names. release-create's sources ("sites: sources"): placeholder, git,
archive (downloaded, sha256-verified, extracted member by member), upload (an archive CHOM
copied to the VPS, extracted the same way), distro-package (a package the VPS's apt installs and
verifies, e.g. WordPress, copied in with every symlink resolved) and copy (the site's current
release copied as it is, never following a link: a site without a repository keeps its content).

Isolation model (README "Isolation" has the table): a site user owns its home and may change
anything in it at any moment, so root touches it only as that user or by file descriptor
(O_NOFOLLOW|O_NONBLOCK, fstat, fchown/fchmod), never by a path re-resolved after a check; nginx
reads the document root only (vhosts: disable_symlinks if_not_owner); logs and certbot's
webroot live outside the home, root-owned. See "host hardening", "sites: layout" and "sites:
logs and limits".

Ownership markers: CHOM's vhosts are sites-available/chom-NAME.conf (enabled through a
relative symlink in sites-enabled), pools are pool.d/chom-NAME.conf (so a site called "www"
can never clobber Debian's default pool) and CHOM's system users carry the GECOS comment
"CHOM managed"; the agent refuses to modify or delete accounts without it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import sys
import time

# Every call pays for its imports (a cold python3 per call): heavier modules (subprocess,
# hashlib, tarfile, urllib, ssl, ...) are imported inside the functions that need them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from typing import Any, Callable

VERSION = "1.0.0"


class LazyRe:
    """A regex compiled on first use: a call needs only a few of the agent's patterns."""

    __slots__ = ("pattern", "flags", "_compiled")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.pattern = pattern
        self.flags = flags
        self._compiled: re.Pattern[str] | None = None

    def compiled(self) -> re.Pattern[str]:
        if self._compiled is None:
            self._compiled = re.compile(self.pattern, self.flags)
        return self._compiled

    def fullmatch(self, text: str) -> re.Match[str] | None:
        """The whole text, always: `match` with `$` lets "value\n" through."""
        return self.compiled().fullmatch(text)

    def search(self, text: str) -> re.Match[str] | None:
        return self.compiled().search(text)

    def findall(self, text: str) -> list[Any]:
        return self.compiled().findall(text)


SITE_NAME_RE = LazyRe(r"^[a-z][a-z0-9-]{0,31}$")
DB_IDENT_RE = LazyRe(r"^[a-z][a-z0-9_]{0,31}$")
ACCOUNT_RE = LazyRe(r"^[a-z_][a-z0-9_-]{0,31}$")
PACKAGE_RE = LazyRe(r"^[a-z0-9][a-z0-9+.-]{1,62}$")
SERVICE_RE = LazyRe(r"^[a-zA-Z0-9][a-zA-Z0-9@._-]{0,63}$")
PHP_VERSION_RE = LazyRe(r"^[5-9]\.[0-9]$")
MODE_RE = LazyRe(r"^0?[0-7]{3}$")
PATH_CHARS_RE = LazyRe(r"^[A-Za-z0-9_./@+-]+$")

FILE_WRITE_ROOTS = (
    "/etc/nginx",
    "/etc/php",
    "/var/www",
    "/etc/supervisor",
    "/etc/cron.d",
    "/etc/prometheus",
    "/etc/promtail",
    "/etc/mtail",
    "/usr/local/lib/chom",
    "/home",
)
# Single files outside those roots that file-write may replace: Debian's exporter packages read
# their command-line arguments (ARGS=...) from /etc/default.
FILE_WRITE_FILES = ("/etc/default/prometheus-mysqld-exporter", "/etc/default/mtail")
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
    import shlex

    return shlex.split(raw)


class Config:
    """Read once per call from the environment (a plain class: importing dataclasses costs more
    than the rest of a `version` call)."""

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
    systemd_run: list[str]
    systemd_analyze: list[str]
    journalctl: list[str]
    prlimit: list[str]
    setquota: list[str]
    logrotate: list[str]
    __slots__ = tuple(__annotations__)

    def __init__(self, **values: Any) -> None:
        for name in self.__slots__:
            setattr(self, name, values[name])

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
            systemd_run=_argv_env("VPSMANAGER_SYSTEMD_RUN", ["systemd-run"]),
            systemd_analyze=_argv_env("VPSMANAGER_SYSTEMD_ANALYZE", ["systemd-analyze"]),
            journalctl=_argv_env("VPSMANAGER_JOURNALCTL", ["journalctl"]),
            prlimit=_argv_env("VPSMANAGER_PRLIMIT", ["prlimit"]),
            setquota=_argv_env("VPSMANAGER_SETQUOTA", ["setquota"]),
            logrotate=_argv_env("VPSMANAGER_LOGROTATE", ["logrotate"]),
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
        import subprocess

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

    def match(self, key: str, pattern: LazyRe, what: str, default: Any = _REQUIRED) -> str:
        value = self.get(key, str, default)
        if not pattern.fullmatch(value):
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
    if not path.startswith("/") or not PATH_CHARS_RE.fullmatch(path):
        raise invalid(f"path {path!r} must be absolute and use only [A-Za-z0-9_./@+-]")
    parts = path.split("/")[1:]
    if any(part in ("", ".", "..") for part in parts):
        raise invalid(f"path {path!r} must be normalised (no '..', '.', or '//')")
    if not any(path.startswith(root + "/") for root in roots):
        raise invalid("path {!r} is outside the allowed roots: {}".format(path, ", ".join(roots)))
    return path


def parse_mode(value: str) -> int:
    if not MODE_RE.fullmatch(value):
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
    import tempfile

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
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


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
                import shlex

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
    import glob

    found = [
        os.path.basename(os.path.dirname(path))
        for path in glob.glob(config.path("/etc/php/*/fpm"))
        if os.path.isdir(path)
    ]
    return sorted((v for v in found if PHP_VERSION_RE.fullmatch(v)), key=_version_key)


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
    import glob

    pattern = os.path.join(directory, glob.escape(prefix) + "*.conf")
    names = (os.path.basename(p)[len(prefix) : -len(".conf")] for p in glob.glob(pattern))
    return sorted(n for n in names if SITE_NAME_RE.fullmatch(n))


def cmd_facts(ctx: Context, args: Input) -> dict[str, Any]:
    args.finish()
    config = ctx.config
    versions = php_versions(config)
    units = list(INTERESTING_SERVICES) + [f"php{v}-fpm" for v in versions]
    disk = os.statvfs(config.root)
    return {
        "os": read_os_release(config),
        "kernel": os.uname().release,
        "hostname": os.uname().nodename,
        "cpu_count": os.cpu_count() or 1,
        "memory": read_meminfo(),
        "disk": {
            "path": "/",
            "total_bytes": disk.f_blocks * disk.f_frsize,
            "free_bytes": disk.f_bavail * disk.f_frsize,  # what shutil.disk_usage calls free
        },
        "load": [round(x, 2) for x in os.getloadavg()],
        "packages": installed_packages(ctx, list(INTERESTING_PACKAGES)),
        "php_versions": versions,
        "services": service_states(ctx, units),
        "sites": managed_names(config.path("/etc/nginx/sites-available")),
        "pools": {v: managed_names(pool_dir(config, v)) for v in versions},
        "site_releases": site_release_facts(ctx),
        "agent_version": VERSION,
    }


# --------------------------------------------------------------------------- packages / services


def cmd_packages_ensure(ctx: Context, args: Input) -> dict[str, Any]:
    packages = args.get("packages", list)
    update = args.get("update", bool, default=True)
    args.finish()
    if not packages or not all(isinstance(p, str) and PACKAGE_RE.fullmatch(p) for p in packages):
        raise invalid("packages must be a non-empty list of Debian package names")
    return {"installed": install_packages(ctx, packages, update=update)}


def install_packages(ctx: Context, packages: list[str], *, update: bool = True) -> list[str]:
    """Install those of PACKAGES that are missing (apt verifies their signatures); the names
    installed. The caller holds the VPS lock: apt is VPS-wide."""
    present = installed_packages(ctx, packages)
    missing = [p for p in dict.fromkeys(packages) if p not in present]
    if not missing:
        ctx.log(f"all {len(packages)} packages already installed")
        return []
    apt = ctx.config.apt_get
    if update:
        run_apt(ctx, [*apt, "update"], "apt-update")
        ctx.log("apt-get update")
    # confold: never let a package upgrade replace a config CHOM wrote; lock timeout: wait for
    # unattended-upgrades instead of failing.
    run_apt(
        ctx,
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
        "apt-install",
    )
    ctx.change("installed {}".format(" ".join(missing)))
    return missing


def run_apt(ctx: Context, argv: list[str], step: str) -> None:
    """Run apt-get; its failure names apt's own "E:" lines (a hash mismatch, an unknown package,
    a held lock), which its progress output would otherwise push out of the message."""
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    proc = ctx.run(argv, step=step, env=env, timeout=ctx.config.apt_timeout, check=False)
    if proc.returncode != 0:
        errors = [line.strip() for line in (proc.stderr or "").splitlines() if line.startswith("E:")]
        reason = " | ".join(errors[-4:]) if errors else _tail(proc)
        raise AgentError("command_failed", f"{' '.join(argv[:3])} exited {proc.returncode}: {reason}", step)


def unit_states(ctx: Context, verb: str, names: list[str]) -> dict[str, str]:
    """One `systemctl is-enabled|is-active` for all units; each prints one state per unit."""
    proc = ctx.run([*ctx.config.systemctl, verb, "--", *names], step="systemctl", check=False)
    states = proc.stdout.split()
    if len(states) != len(names) and len(names) > 1:
        # is-enabled stops at a unit without a unit file: ask one by one to keep units and
        # states paired.
        return {name: unit_states(ctx, verb, [name])[name] for name in names}
    return {name: states[i] if i < len(states) else "unknown" for i, name in enumerate(names)}


def service_spec(args: Input) -> tuple[str, bool | None, bool | None]:
    name = args.match("name", SERVICE_RE, "service name")
    enabled = args.get("enabled", bool, None)
    running = args.get("running", bool, None)
    args.finish()
    return name, enabled, running


def service_specs(args: Input) -> list[tuple[str, bool | None, bool | None]]:
    raw = args.get("services", list)
    args.finish()
    if not 1 <= len(raw) <= 100 or not all(isinstance(item, dict) for item in raw):
        raise invalid("services must be a list of 1-100 objects with name, enabled and running")
    specs = [service_spec(Input(item)) for item in raw]
    if len({name for name, _, _ in specs}) != len(specs):
        raise invalid("services must not name a unit twice")
    return specs


def cmd_service_ensure(ctx: Context, args: Input) -> dict[str, Any]:
    """Enable/start (or disable/stop) one unit ({"name", "enabled", "running"}) or a batch
    ({"services": [{...}, ...]}); a batch reads every unit's state with one systemctl call per
    question instead of one agent call per unit."""
    batch = "services" in args.raw
    specs = service_specs(args) if batch else [service_spec(args)]
    names = [name for name, _, _ in specs]
    wants_enabled = [name for name, enabled, _ in specs if enabled is not None]
    is_enabled = unit_states(ctx, "is-enabled", wants_enabled) if wants_enabled else {}
    is_active = unit_states(ctx, "is-active", names)
    changed = [spec[0] for spec in specs if ensure_unit(ctx, *spec, is_enabled, is_active)]
    if changed:
        is_active.update(unit_states(ctx, "is-active", changed))
    if not batch:
        return {"name": names[0], "state": is_active[names[0]]}
    return {"services": [{"name": n, "state": is_active[n], "changed": n in changed} for n in names]}


def ensure_unit(
    ctx: Context,
    name: str,
    enabled: bool | None,
    running: bool | None,
    is_enabled: dict[str, str],
    is_active: dict[str, str],
) -> bool:
    systemctl = ctx.config.systemctl
    changed = False
    if enabled is not None and (is_enabled[name] == "enabled") != enabled:
        verb = "enable" if enabled else "disable"
        ctx.run([*systemctl, verb, "--", name], step="systemctl-" + verb)
        ctx.change(f"{verb}d {name}")
        changed = True
    if running is not None and (is_active[name] == "active") != running:
        verb = "start" if running else "stop"
        ctx.run([*systemctl, verb, "--", name], step="systemctl-" + verb)
        ctx.change("{} {}".format("started" if running else "stopped", name))
        changed = True
    return changed


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
    inside = any(parent == a or parent.startswith(a + os.sep) for a in allowed)
    if not inside and path not in FILE_WRITE_FILES:
        raise invalid(f"{path} resolves through a symlink to {parent}, outside the allowed roots")
    return os.path.join(parent, os.path.basename(target))


def cmd_file_write(ctx: Context, args: Input) -> dict[str, Any]:
    path = args.get("path", str)
    if path not in FILE_WRITE_FILES:
        validate_abs_path(path, FILE_WRITE_ROOTS)
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
    return {"path": path, "sha256": sha256_hex(data)}


def sha256_hex(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


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


def reload_nginx(ctx: Context, timeout: float = 10.0) -> None:
    """Reload nginx and return once it serves the new configuration.

    `nginx -s reload` (what systemd's reload runs) only signals the master, which starts new
    workers and ~100 ms later tells the old ones to stop accepting: a request sent right after
    the reload command returns may still meet the old configuration.
    """
    before = nginx_accepting_workers(ctx.config)
    reload(ctx, ctx.config.nginx_reload, "nginx")
    if not before:
        return  # no pid file or no workers: nothing to compare with
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = nginx_accepting_workers(ctx.config)
        if now is None or (now and not now & before):
            return
        time.sleep(0.02)
    ctx.log(f"nginx workers did not switch to the new configuration within {timeout:.0f}s")


def nginx_accepting_workers(config: Config) -> set[int] | None:
    """PIDs of the nginx master's workers that accept connections (a worker that was told to
    stop renames itself "worker process is shutting down"); None without a master pid."""
    master = (read_bytes(config.path("/run/nginx.pid")) or b"").strip()
    if not master.isdigit():
        return None
    workers = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                parent = fh.read().rsplit(b")", 1)[1].split()[1]
            if parent != master:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                title = fh.read()
        except (OSError, IndexError):
            continue  # exited meanwhile
        if title.startswith(b"nginx: worker process") and b"shutting down" not in title:
            workers.add(int(entry))
    return workers


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
    reload_nginx(ctx)
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
    reload_nginx(ctx)
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


HTPASSWD_KEY_RE = LazyRe(r"^[0-9a-f]{16}$")
HTPASSWD_USER_RE = LazyRe(r"^[A-Za-z0-9._@-]{1,64}$")
BCRYPT_RE = LazyRe(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
HTPASSWD_MAX_USERS = 500


def htpasswd_dir(config: Config, name: str) -> str:
    return config.path(f"/var/lib/chom/htpasswd/{name}")


def parse_htpasswd_files(raw: dict[str, Any]) -> dict[str, bytes]:
    """Realm file name -> its lines `user:bcrypt-hash` (the hashes are never echoed back)."""
    files = {}
    for key, users in raw.items():
        if not HTPASSWD_KEY_RE.fullmatch(key):
            raise invalid(f"htpasswd file name {key!r} is invalid (must match {HTPASSWD_KEY_RE.pattern})")
        if not isinstance(users, list) or not users or len(users) > HTPASSWD_MAX_USERS:
            raise invalid(f"htpasswd file {key}: 1 to {HTPASSWD_MAX_USERS} [user, hash] pairs")
        lines = []
        for entry in users:
            if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(v, str) for v in entry)):
                raise invalid(f"htpasswd file {key}: entries are [user, hash] pairs")
            user, hashed = entry
            if not HTPASSWD_USER_RE.fullmatch(user):
                raise invalid(f"htpasswd user {user!r} is invalid (must match {HTPASSWD_USER_RE.pattern})")
            if not BCRYPT_RE.fullmatch(hashed):
                raise invalid(f"htpasswd user {user!r}: the hash is not a bcrypt hash")
            lines.append(f"{user}:{hashed}\n")
        files[key] = "".join(lines).encode("ascii")
    return files


def cmd_htpasswd_apply(ctx: Context, args: Input) -> dict[str, Any]:
    """A site's basic-auth files: root:www-data 0640 in a root-owned directory outside the site's
    home (/var/lib/chom/htpasswd/NAME, root:www-data 0750), so only root and nginx read them.
    PRUNE removes the files not named (and the directory once none is left)."""
    name = args.match("name", SITE_NAME_RE, "site name")
    files = parse_htpasswd_files(args.get("files", dict))
    prune = args.get("prune", bool, True)
    args.finish()
    config = ctx.config
    directory = htpasswd_dir(config, name)
    if not files and not os.path.lexists(directory):
        ctx.log(f"no basic-auth files for {name}")
        return {"name": name, "files": []}
    gid = lookup_gid(config, "www-data")
    for path in ("/var/lib/chom", "/var/lib/chom/htpasswd"):
        os.makedirs(config.path(path), 0o755, exist_ok=True)
        ensure_layout_dir(ctx, config.path(path), 0, 0, 0o755)
    ensure_layout_dir(ctx, directory, 0, gid, 0o750)
    for key, data in sorted(files.items()):
        write_if_different(ctx, os.path.join(directory, key), f"htpasswd {name}/{key}", data, 0o640, 0, gid)
    if prune:
        for entry in sorted(os.listdir(directory)):
            if entry not in files:
                os.unlink(os.path.join(directory, entry))
                ctx.change(f"removed htpasswd {name}/{entry}")
        if not files:
            os.rmdir(directory)
            ctx.change(f"removed /var/lib/chom/htpasswd/{name}")
    return {"name": name, "files": sorted(files)}


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
    import hashlib

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


# The mysqld exporter's account: exactly what it needs to read server status and nothing else.
# MariaDB >= 10.5 stores REPLICATION CLIENT under its new name, BINLOG MONITOR.
MONITOR_HOST = "localhost"
MONITOR_GLOBAL = "PROCESS, REPLICATION CLIENT"
MONITOR_GLOBAL_SETS = ({"PROCESS", "REPLICATION CLIENT"}, {"PROCESS", "BINLOG MONITOR"})
MONITOR_SCHEMA = "performance_schema"
MONITOR_MAX_CONNECTIONS = 3


def cmd_db_monitor_ensure(ctx: Context, args: Input) -> dict[str, Any]:
    """{"user", "password"}: 'user'@'localhost' (unix socket or loopback only) with PROCESS and
    REPLICATION CLIENT globally, SELECT on performance_schema, MAX_USER_CONNECTIONS 3. Any other
    privilege, role or host of that user is taken away."""
    user = args.match("user", DB_IDENT_RE, "database user")
    password = args.get("password", str)
    args.finish()
    if not 16 <= len(password) <= 256 or "\x00" in password:
        raise invalid("password must be 16-256 characters without NUL")
    ctx.secret(password)
    statements = monitor_statements(ctx, user, password, monitor_state(ctx, user))
    if statements:
        mysql(ctx, "".join(s + ";\n" for s in statements), "db-apply")
    else:
        ctx.log(f"monitoring account {user}@{MONITOR_HOST} unchanged")
    return {"user": user, "host": MONITOR_HOST, "max_user_connections": MONITOR_MAX_CONNECTIONS}


def monitor_state(ctx: Context, user: str) -> dict[str, Any]:
    grantee = sql_string(f"'{user}'@'{MONITOR_HOST}'")
    account = f"User = {sql_string(user)} AND Host = {sql_string(MONITOR_HOST)}"
    # Values are escaped literals, never raw input.
    sql = (
        "SELECT 'user', Host, plugin, authentication_string, max_user_connections FROM mysql.user"  # noqa: S608
        f" WHERE User = {sql_string(user)};\n"
        "SELECT 'global', PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.USER_PRIVILEGES"
        f" WHERE GRANTEE = {grantee};\n"
        "SELECT 'schema', TABLE_SCHEMA, PRIVILEGE_TYPE, IS_GRANTABLE"
        f" FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = {grantee};\n"
        f"SELECT 'table', TABLE_NAME FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE = {grantee};\n"
        f"SELECT 'column', COLUMN_NAME FROM information_schema.COLUMN_PRIVILEGES WHERE GRANTEE = {grantee};\n"
        f"SELECT 'role', Role FROM mysql.roles_mapping WHERE {account};\n"
    )
    state: dict[str, Any] = {"hosts": {}, "global": set(), "schema": set(), "other": 0, "roles": []}
    for row in mysql(ctx, sql, "db-read"):
        kind = row[0]
        if kind == "user" and len(row) == 5:
            state["hosts"][row[1]] = (row[2], row[3], row[4])
        elif kind == "global" and row[1] != "USAGE":
            state["global"].add(row[1] if row[2] == "NO" else row[1] + " WITH GRANT OPTION")
        elif kind == "schema":
            state["schema"].add((row[1], row[2] if row[3] == "NO" else row[2] + " WITH GRANT OPTION"))
        elif kind == "role":
            state["roles"].append(row[1])
        elif kind in ("table", "column"):
            state["other"] += 1
    return state


def monitor_privileges_exact(state: dict[str, Any]) -> bool:
    return (
        state["global"] in MONITOR_GLOBAL_SETS
        and state["schema"] == {(grant_pattern(MONITOR_SCHEMA), "SELECT")}
        and not state["other"]
        and not state["roles"]
    )


def monitor_statements(ctx: Context, user: str, password: str, state: dict[str, Any]) -> list[str]:
    account = f"{sql_string(user)}@{sql_string(MONITOR_HOST)}"
    identified = f"IDENTIFIED VIA mysql_native_password USING PASSWORD({sql_string(password)})"
    limit = f"WITH MAX_USER_CONNECTIONS {MONITOR_MAX_CONNECTIONS}"
    statements: list[str] = []
    for host in sorted(set(state["hosts"]) - {MONITOR_HOST}):
        statements.append(f"DROP USER {sql_string(user)}@{sql_string(host)}")
        ctx.change(f"dropped {user}@{host}: the exporter logs in on this host only")
    current = state["hosts"].get(MONITOR_HOST)
    if current is None:
        statements.append(f"CREATE USER {account} {identified} {limit}")
        ctx.change(f"created user {user}@{MONITOR_HOST}")
    else:
        if current[:2] != ("mysql_native_password", native_hash(password)):
            statements.append(f"ALTER USER {account} {identified}")
            ctx.change(f"updated password of {user}@{MONITOR_HOST}")
        if current[2] != str(MONITOR_MAX_CONNECTIONS):
            statements.append(f"ALTER USER {account} {limit}")
            ctx.change(f"limited {user}@{MONITOR_HOST} to {MONITOR_MAX_CONNECTIONS} connections")
    if current is None or not monitor_privileges_exact(state):
        if current is not None:
            statements += [f"REVOKE {sql_identifier(role)} FROM {account}" for role in state["roles"]]
            statements.append(f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {account}")
        statements.append(f"GRANT {MONITOR_GLOBAL} ON *.* TO {account}")
        statements.append(f"GRANT SELECT ON `{grant_pattern(MONITOR_SCHEMA)}`.* TO {account}")
        ctx.change(f"granted {user}@{MONITOR_HOST} {MONITOR_GLOBAL} and SELECT on {MONITOR_SCHEMA} only")
    return statements


def sql_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


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
        import ipaddress

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
    # Every ufw run costs ~150 ms: read the state once and add only the rules it lacks. An
    # inactive ufw lists no rules, so then every rule is (idempotently) added before enabling.
    status = ufw_status(ctx)
    active = "Status: active" in status
    listed = ufw_listed_rules(status) if active else set()
    ipv6 = ufw_ipv6(ctx.config)
    missing = [rule for rule in rules if not ufw_status_lines(*rule, ipv6=ipv6) <= listed]
    for rule in missing:
        proc = ctx.run(ufw + ufw_argv(*rule), step="ufw-allow")
        if re.search(r"Rules? (added|updated)", proc.stdout):
            ctx.change("ufw {}".format(" ".join(ufw_argv(*rule))))
    if not active:
        ctx.run([*ufw, "--force", "enable"], step="ufw-enable")
        ctx.change("enabled ufw")
    elif not missing:
        ctx.log(f"ufw active with all {len(rules)} rules")
    return {"rules": len(rules)}


UFW_LISTED_RULE_RE = LazyRe(r"^(\S.*?)\s+ALLOW(?: IN)?\s+(\S.*?)\s*(?:#.*)?$")


def ufw_listed_rules(status: str) -> set[tuple[str, str]]:
    """(To, From) of the ALLOW rules `ufw status` lists, e.g. ("22/tcp (v6)", "Anywhere (v6)")."""
    found = set()
    for line in status.splitlines():
        match = UFW_LISTED_RULE_RE.fullmatch(line)
        if match:
            found.add((match.group(1), match.group(2)))
    return found


def ufw_status_lines(port: int, proto: str, source: str | None, ipv6: bool) -> set[tuple[str, str]]:
    """How `ufw status` lists the rule(s) `ufw_argv` adds: ufw shows host addresses without
    their /32 or /128 and adds a "(v6)" twin of rules open to anywhere when IPv6 is on."""
    to = f"{port}/{proto}"
    if source is None:
        return {(to, "Anywhere"), (f"{to} (v6)", "Anywhere (v6)")} if ipv6 else {(to, "Anywhere")}
    address, _, bits = source.partition("/")
    return {(to, address if bits == ("128" if ":" in address else "32") else source)}


def ufw_ipv6(config: Config) -> bool:
    data = read_bytes(config.path("/etc/default/ufw")) or b""
    lines = data.decode("utf-8", "replace").splitlines()
    return any(line.replace(" ", "").replace('"', "") == "IPV6=yes" for line in lines)


def ufw_status(ctx: Context) -> str:
    try:
        proc = ctx.run([*ctx.config.ufw, "status"], step="ufw-status", check=False)
    except AgentError as exc:
        raise AgentError("ufw_unavailable", f"ufw is not usable on this host: {exc.message}", "ufw-status")
    if proc.returncode != 0:
        raise AgentError("ufw_unavailable", f"ufw status failed: {_tail(proc)}", "ufw-status")
    return proc.stdout


# --------------------------------------------------------------------------- host hardening
#
# What every shared VPS needs before a tenant's code runs there:
# - the kernel's link protections (fs.protected_hardlinks/symlinks/fifos/regular): a site user
#   cannot hard-link another user's file into its tree (nginx would then serve it as the site's
#   own), nor make root follow its symlinks or open its FIFOs in sticky directories. They are
#   checked, set through /etc/sysctl.d and /proc/sys where missing, and a VPS where
#   protected_hardlinks stays 0 fails (the isolation model depends on it).
# - /proc mounted hidepid=invisible: a site user sees only its own processes (no other site's
#   command lines, environment or php-fpm workers). Persisted in /etc/fstab; where the mount
#   cannot be changed (some containers) the result says "unavailable" with the reason.

SYSCTLS = {
    "fs.protected_hardlinks": "1",
    "fs.protected_symlinks": "1",
    "fs.protected_fifos": "1",
    "fs.protected_regular": "2",
}
SYSCTL_FILE = "/etc/sysctl.d/60-chom-isolation.conf"
PROC_FSTAB_LINE = "proc /proc proc defaults,hidepid=invisible 0 0"


def cmd_host_harden(ctx: Context, args: Input) -> dict[str, Any]:
    args.finish()
    config = ctx.config
    content = "# Managed by CHOM: link protections every shared VPS relies on.\n" + "".join(
        f"{key} = {value}\n" for key, value in SYSCTLS.items()
    )
    os.makedirs(config.path("/etc/sysctl.d"), 0o755, exist_ok=True)
    write_if_different(ctx, config.path(SYSCTL_FILE), SYSCTL_FILE, content.encode(), 0o644, 0, 0)
    sysctls = {}
    for key, wanted in SYSCTLS.items():
        path = "/proc/sys/" + key.replace(".", "/")
        current = (read_bytes(path) or b"").decode().strip()
        if current != wanted and config.root == "/":  # never the test host's kernel
            try:
                with open(path, "w") as handle:
                    handle.write(wanted)
                ctx.change(f"{key} = {wanted} (was {current})")
            except OSError as exc:
                ctx.log(f"{key} stays {current}: {exc.strerror}")
            current = (read_bytes(path) or b"").decode().strip()
        sysctls[key] = current
    if sysctls["fs.protected_hardlinks"] != "1":
        raise AgentError(
            "conflict",
            "fs.protected_hardlinks is 0 and cannot be set: a site user could hard-link other users' "
            "files into its document root",
            "sysctl",
        )
    return {"sysctl": sysctls, "hidepid": ensure_hidepid(ctx)}


def proc_hidepid() -> str:
    for line in (read_bytes("/proc/self/mounts") or b"").decode().splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[1] == "/proc" and fields[2] == "proc":
            options = dict((o.split("=", 1) + [""])[:2] for o in fields[3].split(","))
            return options.get("hidepid", "off")
    return "off"


def ensure_hidepid(ctx: Context) -> str:
    config = ctx.config
    fstab = config.path("/etc/fstab")
    lines = (read_bytes(fstab) or b"").decode().splitlines()
    kept = [line for line in lines if not (line.split()[:2] == ["proc", "/proc"])]
    if kept + [PROC_FSTAB_LINE] != lines:
        write_if_different(
            ctx, fstab, "/etc/fstab", ("\n".join([*kept, PROC_FSTAB_LINE]) + "\n").encode(), 0o644, 0, 0
        )
    if proc_hidepid() in ("invisible", "2"):
        return "invisible"
    if config.root != "/":
        return "unavailable: not the real root (VPSMANAGER_ROOT is set)"
    proc = ctx.run(["mount", "-o", "remount,hidepid=invisible", "/proc"], step="hidepid", check=False)
    if proc.returncode != 0 or proc_hidepid() not in ("invisible", "2"):
        return f"unavailable: {_tail(proc, 2) or 'the mount kept its options'}"
    ctx.change("/proc remounted hidepid=invisible")
    return "invisible"


# --------------------------------------------------------------------------- sites: layout
#
# A site NAME is also its unix user (GECOS "CHOM managed", shell nologin). Layout:
#
#   /var/www/NAME/            NAME:www-data 2750  setgid: new files get group www-data, so nginx
#                                                  (www-data) can read them; other sites cannot
#     releases/RELEASE/       NAME:www-data 2750  one per deploy, built as NAME, never as root
#       public/               THE document root of every site type (nginx: root
#                                                  /var/www/NAME/current/public). A release
#                                                  whose docroot is elsewhere gets `public` as
#                                                  a relative symlink to it ("." for WordPress)
#       .chom-release.json                          completion marker, written last
#     current -> releases/RELEASE                   swapped atomically by release-activate
#     shared/                 NAME:www-data 2750  persistent paths symlinked into each release
#     tmp/                    NAME:NAME     0700  PHP sessions and uploads (pool settings)
#     .chom-ssh/              NAME:NAME     0700  a private repository's deploy key and pinned
#                                                  known_hosts (both 0600), written as NAME
#   /var/log/chom/NAME/       root:NAME     0750  nginx and php-fpm per-site logs (other sites
#                                                  cannot read them: request URLs carry tokens)
#   /var/lib/chom/acme/NAME/  root:www-data 0750  certbot's HTTP-01 webroot: outside the home,
#                                                  so root's certbot never writes in a directory
#                                                  the site user could swap for a symlink
#
# Logs live outside the home on purpose: NAME owns its home and could swap a logs/ directory for
# a symlink, making nginx's root master open (and append to) any file on the next reload.

RELEASE_RE = LazyRe(r"^[0-9]{8}T?[0-9]{6}[a-z0-9-]{0,20}$")
BRANCH_RE = LazyRe(r"^[A-Za-z0-9][A-Za-z0-9._/+-]{0,199}$")
REL_PATH_RE = LazyRe(r"^[A-Za-z0-9_.@+-][A-Za-z0-9_./@+-]{0,254}$")
DOMAIN_RE = LazyRe(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$")
EMAIL_RE = LazyRe(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
SHA256_RE = LazyRe(r"^[0-9a-f]{64}$")
SITE_UMASK = 0o027
RELEASE_MARKER = ".chom-release.json"
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OUTPUT_TAIL_LINES = 20
MAX_EXTRACT_BYTES = 4 * 1024 * 1024 * 1024
# Entries of an archive extracted, or of a release copied; levels of directories copied; symlinks
# followed to resolve one archive symlink (Linux's own limit per lookup).
MAX_TREE_ENTRIES = 100000
MAX_TREE_DEPTH = 64
SYMLINK_HOPS = 40
BUILD_STEPS = ("composer-install", "artisan-migrate", "artisan-storage-link", "artisan-optimize", "php-lint")
# artisan-queue-restart: after a switch, Laravel queue workers finish their job and exit
# (supervisor starts them again in the new current/): a worker keeps the code it started with.
EXEC_STEPS = (*BUILD_STEPS, "artisan-queue-restart", "wp-install")


class Site:
    __slots__ = ("name", "uid", "gid", "www_gid", "home")

    def __init__(self, name: str, uid: int, gid: int, www_gid: int, home: str) -> None:
        self.name = name
        self.uid = uid
        self.gid = gid
        self.www_gid = www_gid
        self.home = home  # the real path (under VPSMANAGER_ROOT)

    @property
    def public_home(self) -> str:
        return f"/var/www/{self.name}"

    def sub(self, *parts: str) -> str:
        return os.path.join(self.home, *parts)


def site_home(config: Config, name: str) -> str:
    return config.path(f"/var/www/{name}")


def site_log_dir(config: Config, name: str) -> str:
    return config.path(f"/var/log/chom/{name}")


def acme_webroot(config: Config, name: str) -> str:
    return config.path(f"/var/lib/chom/acme/{name}")


def ensure_acme_webroot(ctx: Context, name: str) -> str:
    """Root-owned all the way down (no site user can swap a component); nginx reads it."""
    config = ctx.config
    for path in ("/var/lib/chom", "/var/lib/chom/acme"):
        os.makedirs(config.path(path), 0o755, exist_ok=True)
        ensure_layout_dir(ctx, config.path(path), 0, 0, 0o755)
    webroot = acme_webroot(config, name)
    ensure_layout_dir(ctx, webroot, 0, lookup_gid(config, "www-data"), 0o750)
    return webroot


def load_site(ctx: Context, name: str) -> Site:
    """The site's account and home, or not_found when site-ensure has not run."""
    config = ctx.config
    entry = read_db(config.path("/etc/passwd")).get(name)
    home = site_home(config, name)
    if entry is None or not os.path.isdir(os.path.join(home, "releases")):
        raise AgentError("not_found", f"site {name!r} does not exist; run site-ensure first", "validate")
    require_managed(name, entry)
    site = Site(name, int(entry[2]), int(entry[3]), lookup_gid(config, "www-data"), home)
    for path in (site.home, site.sub("releases"), site.sub("shared")):
        if os.path.islink(path) or not os.path.isdir(path):
            raise AgentError("conflict", f"{path} must be a real directory, not a symlink", "validate")
    return site


def ensure_layout_dir(ctx: Context, path: str, uid: int, gid: int, mode: int) -> None:
    """PATH is a directory owned UID:GID with MODE. Its parent may belong to the site user, who can
    swap PATH for a symlink at any moment: everything happens by descriptor (lstat relative to
    the parent, open with O_NOFOLLOW, fchown/fchmod), so root never changes a file a link points at."""
    parent, name = os.path.split(path)
    parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            st: os.stat_result | None = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            # Only the site user can have put something else here: replace it, never follow it.
            os.unlink(name, dir_fd=parent_fd)
            ctx.change(f"removed non-directory {path}")
            st = None
        if st is None:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
            ctx.change(f"created {path}")
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
        except OSError as exc:  # swapped for a symlink or a file since the check
            raise AgentError(
                "conflict", f"{path} changed while being prepared ({exc.strerror}); retry"
            ) from exc
    finally:
        os.close(parent_fd)
    try:
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.fchown(fd, uid, gid)
            ctx.change(f"chown {uid}:{gid} {path}")
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
            ctx.change(f"chmod {mode:o} {path}")
    finally:
        os.close(fd)


def cmd_site_ensure(ctx: Context, args: Input) -> dict[str, Any]:
    name = args.match("name", SITE_NAME_RE, "site name")
    php_version = args.get("php_version", str, default=None)
    limits = parse_limits(args.get("limits", dict, default=None))
    readers = args.get("log_readers", list, default=[])
    # Accounts that read the logs where they exist (a metrics reader whose package may be absent).
    optional = args.get("log_readers_if_present", list, default=[])
    args.finish()
    for key, names in (("log_readers", readers), ("log_readers_if_present", optional)):
        if len(names) > 8 or not all(isinstance(r, str) and ACCOUNT_RE.fullmatch(r) for r in names):
            raise invalid(f"{key} must be up to 8 account names")
    if php_version is not None and not PHP_VERSION_RE.fullmatch(php_version):
        raise invalid(f"php_version {php_version!r} is invalid (must match {PHP_VERSION_RE.pattern})")
    config = ctx.config
    if php_version is not None and not os.path.isdir(config.path(f"/etc/php/{php_version}/fpm")):
        raise invalid(f"PHP {php_version} FPM is not installed")
    www_gid = lookup_gid(config, "www-data")
    public_home = f"/var/www/{name}"
    os.makedirs(config.path("/var/www"), 0o755, exist_ok=True)
    ensure_user(ctx, name, public_home, "/usr/sbin/nologin")
    uid, gid = lookup_uid(config, name), lookup_gid(config, name)
    home = site_home(config, name)
    ensure_layout_dir(ctx, home, uid, www_gid, 0o2750)
    for sub in ("releases", "shared"):
        ensure_layout_dir(ctx, os.path.join(home, sub), uid, www_gid, 0o2750)
    ensure_acme_webroot(ctx, name)
    ensure_layout_dir(ctx, os.path.join(home, "tmp"), uid, gid, 0o700)
    os.makedirs(config.path("/var/log/chom"), 0o755, exist_ok=True)
    # Root writes (nginx's master, supervisor); the site reads its own logs; no other site can.
    ensure_layout_dir(ctx, site_log_dir(config, name), 0, gid, 0o750)
    accounts = read_db(config.path("/etc/passwd"))
    readers += [r for r in optional if r in accounts and r not in readers]
    ensure_log_acl(ctx, site_log_dir(config, name), [lookup_uid(config, r) for r in readers], gid)
    ensure_logrotate(ctx, name)
    enforced = ensure_limits(ctx, name, limits) if limits is not None else {}
    if not ctx.changed:
        ctx.log(f"site {name} layout unchanged")
    return enforced | {
        "user": name,
        "uid": uid,
        "gid": gid,
        "home": public_home,
        "docroot": f"{public_home}/current/public",
        "acme_webroot": f"/var/lib/chom/acme/{name}",
        "tmp": f"{public_home}/tmp",
        "logs": f"/var/log/chom/{name}",
    }


# --------------------------------------------------------------------------- sites: logs and limits
#
# Logs: /var/log/chom/NAME is root:NAME 0750; accounts named in site-ensure's log_readers (the
# metrics reader, never another site) get read access through a POSIX ACL written by descriptor
# (the "system.posix_acl_access/default" xattrs), so files nginx creates later inherit it.
# logrotate rotates them daily, and hourly once a file passes 64 MiB, keeping 14 compressed.
#
# Limits: a site's builds and Composer/artisan/PHP commands run in the systemd slice
# chom-NAME.slice (MemoryMax, CPUQuota, TasksMax from the tier) through `systemd-run --scope`,
# so a fork bomb or a runaway build of one site hits its own ceiling, not the VPS's. Where
# systemd is not PID 1 (containers without it, the agent's tests) they fall back to prlimit:
# address space and process count per process/user, no CPU cap, and the result says so.
# Disk: setquota on the filesystem holding /var/www when it has user quotas enabled; otherwise
# the result says "unavailable" with the reason (overlayfs, as on the local test fleet, has none).

LOGROTATE_TEMPLATE = """\
# Managed by CHOM (vpsmanager site-ensure); changes are overwritten.
/var/log/chom/{name}/*.log {{
    daily
    maxsize 64M
    rotate 14
    missingok
    notifempty
    compress
    delaycompress
    create 0640 root {name}
    sharedscripts
    postrotate
        [ ! -s /run/nginx.pid ] || kill -USR1 "$(cat /run/nginx.pid)"
    endscript
}}
"""
# logrotate's own timer is daily: this makes maxsize bite within the hour.
LOGROTATE_CRON = (
    "# Managed by CHOM.\n"
    "17 * * * * root test -x /usr/sbin/logrotate && /usr/sbin/logrotate /etc/logrotate.conf\n"
)
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF


def posix_acl(
    owner: int, user_perms: dict[int, int], group: int, other: int, group_perms: dict[int, int] | None = None
) -> bytes:
    """The kernel's posix_acl_xattr format (version 2, entries sorted by tag then id)."""
    import struct

    group_perms = group_perms or {}
    mask = group
    for perms in (*user_perms.values(), *group_perms.values()):
        mask |= perms
    entries = [(ACL_USER_OBJ, owner, ACL_UNDEFINED_ID)]
    entries += [(ACL_USER, perms, uid) for uid, perms in sorted(user_perms.items())]
    entries += [(ACL_GROUP_OBJ, group, ACL_UNDEFINED_ID)]
    entries += [(ACL_GROUP, perms, gid) for gid, perms in sorted(group_perms.items())]
    entries += [(ACL_MASK, mask, ACL_UNDEFINED_ID), (ACL_OTHER, other, ACL_UNDEFINED_ID)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


def set_acl(ctx: Context, fd: int, attr: str, value: bytes | None, label: str) -> None:
    import errno

    try:
        current: bytes | None = os.getxattr(fd, attr)
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, errno.EOPNOTSUPP):
            raise
        current = None
    if current == value:
        return
    try:
        if value is None:
            os.removexattr(fd, attr)
        else:
            os.setxattr(fd, attr, value)
    except OSError as exc:
        raise AgentError("conflict", f"cannot set the ACL of {label}: {exc.strerror}", "log acl") from exc
    ctx.change(f"{'removed' if value is None else 'set'} {attr.rsplit('.', 1)[1]} ACL of {label}")


def ensure_log_acl(ctx: Context, directory: str, readers: list[int], site_gid: int) -> None:
    """READERS (uids) may list and read the site's logs, and the site (SITE_GID) keeps reading
    its own; nobody else gains anything. The directory is root's (the site cannot write there),
    but files are still opened O_NOFOLLOW."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if readers:
            rx = {uid: 5 for uid in readers}
            set_acl(ctx, fd, "system.posix_acl_access", posix_acl(7, rx, 5, 0), directory)
            # Files nginx creates inherit exactly what the loop below gives existing ones. nginx
            # creates them root:root, and the default ACL leaves "other" nothing: the site's own
            # group is named, or the site could no longer read its own logs.
            readable = {uid: 4 for uid in readers}
            default = posix_acl(6, readable, 4, 0, {site_gid: 4})
            set_acl(ctx, fd, "system.posix_acl_default", default, directory)
        else:
            set_acl(ctx, fd, "system.posix_acl_default", None, directory)
            set_acl(ctx, fd, "system.posix_acl_access", None, directory)
        for entry in os.listdir(fd):
            try:
                file_fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
            except OSError:
                continue
            try:
                st = os.fstat(file_fd)
                if not stat.S_ISREG(st.st_mode):
                    continue
                group = (stat.S_IMODE(st.st_mode) >> 3) & 7
                value = (
                    posix_acl(6, {uid: 4 for uid in readers}, group, 0, {site_gid: 4}) if readers else None
                )
                set_acl(ctx, file_fd, "system.posix_acl_access", value, f"{directory}/{entry}")
            finally:
                os.close(file_fd)
    finally:
        os.close(fd)


def ensure_logrotate(ctx: Context, name: str) -> None:
    config = ctx.config
    os.makedirs(config.path("/etc/logrotate.d"), 0o755, exist_ok=True)
    os.makedirs(config.path("/etc/cron.d"), 0o755, exist_ok=True)
    write_if_different(
        ctx, config.path(f"/etc/logrotate.d/chom-{name}"), f"/etc/logrotate.d/chom-{name}",
        LOGROTATE_TEMPLATE.format(name=name).encode(), 0o644, 0, 0,
    )  # fmt: skip
    write_if_different(
        ctx, config.path("/etc/cron.d/chom-logrotate"), "/etc/cron.d/chom-logrotate",
        LOGROTATE_CRON.encode(), 0o644, 0, 0,
    )  # fmt: skip


LIMIT_KEYS = ("memory_max_mb", "cpu_quota_percent", "tasks_max", "disk_quota_mb")


def parse_limits(raw: dict[str, Any] | None) -> dict[str, int] | None:
    if raw is None:
        return None
    if set(raw) != set(LIMIT_KEYS):
        raise invalid("limits needs exactly: {}".format(", ".join(LIMIT_KEYS)))
    if not all(type(raw[key]) is int and 1 <= raw[key] <= 10_000_000 for key in LIMIT_KEYS):
        raise invalid("limits must be positive integers")
    return {key: raw[key] for key in LIMIT_KEYS}


def systemd_is_init(config: Config) -> bool:
    return os.path.isdir(config.path("/run/systemd/system"))


def cgroup_limits_unavailable() -> str | None:
    """None when systemd can enforce a slice's MemoryMax here, else why it cannot. Inside an
    nspawn container on a hybrid (cgroup v1) host, as on the local test fleet, the controllers are
    mounted read-only: a slice then groups processes but limits nothing."""
    controllers = read_bytes("/sys/fs/cgroup/cgroup.controllers")
    if controllers is not None:
        return (
            None if b"memory" in controllers.split() else "the cgroup v2 hierarchy has no memory controller"
        )
    if os.path.isdir("/sys/fs/cgroup/memory") and os.access("/sys/fs/cgroup/memory", os.W_OK):
        return None
    return "the cgroup memory controller is read-only here (a container on a cgroup v1 host)"


def limits_path(config: Config, name: str) -> str:
    return config.path(f"/var/lib/chom/limits/{name}.json")


def slice_name(name: str) -> str:
    return f"chom-{name}.slice"


def ensure_limits(ctx: Context, name: str, limits: dict[str, int]) -> dict[str, Any]:
    config = ctx.config
    os.makedirs(config.path("/var/lib/chom/limits"), 0o755, exist_ok=True)
    write_if_different(
        ctx, limits_path(config, name), f"/var/lib/chom/limits/{name}.json",
        json.dumps(limits, sort_keys=True).encode(), 0o644, 0, 0,
    )  # fmt: skip
    if systemd_is_init(config):
        unit = (
            f"# Managed by CHOM: resource ceiling of everything site {name} runs.\n[Slice]\n"
            f"MemoryAccounting=yes\nMemoryMax={limits['memory_max_mb']}M\nMemorySwapMax=0\n"
            f"CPUAccounting=yes\nCPUQuota={limits['cpu_quota_percent']}%\n"
            f"TasksAccounting=yes\nTasksMax={limits['tasks_max']}\n"
        )
        label = f"/etc/systemd/system/{slice_name(name)}"
        path = config.path(label)
        if read_bytes(path) != unit.encode():
            write_if_different(ctx, path, label, unit.encode(), 0o644, 0, 0)
            ctx.run([*config.systemctl, "daemon-reload"], step="limits")
        why_not = cgroup_limits_unavailable()
        enforced = f"systemd slice {slice_name(name)}"
        if why_not:
            enforced = f"prlimit (per process: address space and process count; no CPU cap): {why_not}"
    else:
        enforced = "prlimit (per process: address space and process count; no CPU cap)"
    quota = ensure_quota(ctx, name, limits["disk_quota_mb"])
    return {"limits": {"enforced_by": enforced, "disk_quota": quota}}


def ensure_quota(ctx: Context, name: str, megabytes: int) -> str:
    """setquota on the filesystem of /var/www; "unavailable: why" where it has no user quotas."""
    target = ctx.config.path("/var/www")
    mount = mount_point(target)
    blocks = megabytes * 1024  # 1 KiB quota blocks
    argv = [*ctx.config.setquota, "-u", name, str(blocks), str(blocks), "0", "0", mount]
    try:
        proc = ctx.run(argv, step="quota", check=False, timeout=30)
    except AgentError as exc:
        return f"unavailable: {exc.message}"
    if proc.returncode != 0:
        return f"unavailable: {_tail(proc, 2) or 'setquota exited ' + str(proc.returncode)}"
    return f"{megabytes} MiB on {mount}"


def mount_point(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def limit_prefix(ctx: Context, site: Site) -> list[str]:
    """What wraps every command a site's own code runs in (builds, artisan, wp-install)."""
    config = ctx.config
    raw = read_bytes(limits_path(config, site.name))
    if raw is None:
        return []
    limits = parse_limits(json.loads(raw))
    assert limits is not None
    unit = slice_name(site.name)
    scope: list[str] = []
    if systemd_is_init(config) and os.path.exists(config.path(f"/etc/systemd/system/{unit}")):
        scope = [*config.systemd_run, "--scope", "--quiet", "--collect", f"--slice={unit}", "--"]
        if cgroup_limits_unavailable() is None:
            return scope
    # The slice still groups the processes; rlimits do the limiting. Address space is virtual
    # size (PHP and Composer map far more than they touch), hence 4x the tier's memory.
    address_space = max(limits["memory_max_mb"], 256) * 1024 * 1024 * 4
    return [*scope, *config.prlimit, f"--as={address_space}", f"--nproc={limits['tasks_max']}", "--"]


# --------------------------------------------------------------------------- sites: as the site user


def site_env(site: Site) -> dict[str, str]:
    """The whole environment of site-user commands: nothing of root's leaks into builds."""
    return {
        "HOME": site.home,
        "USER": site.name,
        "LOGNAME": site.name,
        "PATH": SAFE_PATH,
        "LANG": "C.UTF-8",
        "TMPDIR": site.sub("tmp"),
        "GIT_TERMINAL_PROMPT": "0",
        "COMPOSER_NO_INTERACTION": "1",
    }


def run_as_site(
    ctx: Context,
    site: Site,
    argv: list[str],
    *,
    step: str,
    cwd: str,
    stdin: str | None = None,
    timeout: float | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    prefix = [
        part.replace("{uid}", str(site.uid)).replace("{gid}", str(site.gid)).replace("{user}", site.name)
        for part in ctx.config.runas
    ]
    env = dict(site_env(site), **(extra_env or {}))
    return ctx.run(
        [*limit_prefix(ctx, site), *prefix, *argv],
        step=step,
        stdin=stdin,
        timeout=timeout,
        env=env,
        exact_env=True,
        check=False,
        cwd=cwd,
    )


def in_site_process(site: Site, step: str, func: Callable[[], Any], timeout: float = 600) -> Any:
    """Run Python file operations in a forked child that has dropped to the site user.

    Everything under the site's home is writable by that user, so root never creates, extracts
    or deletes files there itself: a symlink planted by the site cannot redirect root's writes.
    The child reports a JSON-able result or an AgentError back through a pipe.
    """
    preload_modules("shutil", "signal", "tempfile")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        status = 0
        try:
            os.close(read_fd)
            signal_alarm(timeout)
            os.setgroups([])
            os.setgid(site.gid)
            os.setuid(site.uid)
            os.umask(SITE_UMASK)
            os.chdir(site.home)
            reply: dict[str, Any] = {"result": func()}
        except AgentError as exc:
            reply = {"error": [exc.code, exc.message, exc.step]}
        except BaseException as exc:  # noqa: B036 - the child must always report and exit
            reply = {"error": ["internal_error", f"{type(exc).__name__}: {exc}", step]}
        try:
            with os.fdopen(write_fd, "w") as pipe:
                pipe.write(json.dumps(reply))
        except BaseException:  # noqa: B036
            status = 1
        os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        raw = pipe.read()
    _, wait_status = os.waitpid(pid, 0)
    if not raw:
        if os.WIFSIGNALED(wait_status) and os.WTERMSIG(wait_status) == 14:
            raise AgentError("timeout", f"{step} timed out after {timeout}s", step)
        raise AgentError("internal_error", f"{step}: site-user process died ({wait_status})", step)
    reply = json.loads(raw)
    if "error" in reply:
        raise AgentError(*reply["error"])
    return reply["result"]


def preload_modules(*names: str) -> None:
    """Import what a site-user child may need while still root: once it has dropped privileges
    it may not be able to read this Python's library (e.g. an interpreter under /root in the
    tests), and the agent imports most modules lazily."""
    for name in names:
        __import__(name)


def signal_alarm(seconds: float) -> None:
    import signal

    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(max(1, int(seconds)))


def rmtree_writable(path: str) -> None:
    """shutil.rmtree that also removes read-only directories (archives ship 0555 dirs)."""

    def retry(func: Callable[..., Any], target: str, _exc: Any) -> None:
        parent = os.path.dirname(target)
        os.chmod(parent, stat.S_IMODE(os.lstat(parent).st_mode) | stat.S_IRWXU)
        if os.path.isdir(target) and not os.path.islink(target):
            os.chmod(target, stat.S_IMODE(os.lstat(target).st_mode) | stat.S_IRWXU)
        func(target)

    import shutil

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=retry)


def output_tail(proc: subprocess.CompletedProcess, lines: int = OUTPUT_TAIL_LINES) -> list[str]:
    text = (proc.stdout or "") + (proc.stderr or "")
    return [line.rstrip() for line in text.strip().splitlines()[-lines:] if line.strip()]


# --------------------------------------------------------------------------- sites: sources


# A "distro-package" source takes the code from the VPS's own distribution packages, which apt
# verifies against the distribution's signing keys: name -> (packages apt must have installed,
# the tree the release is copied from, top-level entries of that tree left out). Only the names
# listed here are accepted, so CHOM can never ask for an arbitrary system directory.
DISTRO_SOURCES: dict[str, tuple[tuple[str, ...], str, tuple[str, ...]]] = {
    # Debian/Ubuntu's WordPress. "php" meets the package's "libapache2-mod-php | php" through the
    # installed php-fpm instead of pulling in Apache's module; the default theme is only a
    # Recommends (never installed: --no-install-recommends). Left out: Debian's wp-config.php,
    # which loads /etc/wordpress/config-HOST.php (CHOM writes the site's own), and .htaccess, a
    # link to /etc/wordpress/htaccess that nginx never reads.
    "wordpress": (
        ("php", "wordpress", "wordpress-theme-twentytwentythree"),
        "/usr/share/wordpress",
        ("wp-config.php", ".htaccess"),
    ),
}
SOURCE_FIELDS = {
    "placeholder": {"type", "html"},
    "git": {"type", "url", "branch", "ssh"},
    "archive": {"type", "url", "sha256", "strip_components"},
    "distro-package": {"type", "package"},
    "upload": {"type", "path", "sha256", "format"},
    "copy": {"type", "release"},
}
# An archive a tenant uploaded, copied here (root-only) by CHOM; already inspected by CHOM.
UPLOAD_PATH_RE = LazyRe(r"^/var/lib/chom/uploads/[0-9]{8}T?[0-9]{6}[a-z0-9-]{0,20}\.(tar\.gz|zip)$")
UPLOAD_MAGIC = {"tar.gz": b"\x1f\x8b", "zip": b"PK\x03\x04"}


def parse_source(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or raw.get("type") not in SOURCE_FIELDS:
        raise invalid(
            'source must be an object with type "placeholder", "git", "archive", "distro-package", '
            '"upload" or "copy"'
        )
    extra = sorted(set(raw) - SOURCE_FIELDS[raw["type"]])
    if extra:
        raise invalid("unknown source field(s): {}".format(", ".join(extra)))
    if raw["type"] == "distro-package":
        if raw.get("package") not in DISTRO_SOURCES:
            raise invalid(
                "distro-package source: package {!r} is not one of {}".format(
                    raw.get("package"), ", ".join(DISTRO_SOURCES)
                )
            )
    elif raw["type"] == "placeholder":
        html = raw.get("html")
        if not isinstance(html, str) or len(html.encode()) > MAX_CONTENT_BYTES:
            raise invalid("placeholder source needs html text")
    elif raw["type"] == "git":
        validate_git_url(raw.get("url"))
        branch = raw.get("branch")
        if not isinstance(branch, str) or not BRANCH_RE.fullmatch(branch) or ".." in branch:
            raise invalid(f"git branch {branch!r} is invalid (must match {BRANCH_RE.pattern}, no '..')")
        if is_ssh_git_url(raw["url"]) != ("ssh" in raw):
            raise invalid("a git source has an ssh part (deploy key, known hosts) iff its url is ssh")
        if "ssh" in raw:
            parse_git_ssh(raw["ssh"])
    elif raw["type"] == "upload":
        parse_upload_source(raw)
    elif raw["type"] == "copy":
        if not isinstance(raw.get("release"), str) or not RELEASE_RE.fullmatch(raw["release"]):
            raise invalid(f"copy source: release {raw.get('release')!r} is not a release id")
    else:
        url = raw.get("url")
        if not isinstance(url, str) or url_scheme(url) not in ("https", "http"):
            raise invalid(f"archive url {url!r} must be http:// or https://")
        validate_url_chars(url)
        if not isinstance(raw.get("sha256"), str) or not SHA256_RE.fullmatch(raw["sha256"]):
            raise invalid("archive sha256 must be 64 lowercase hex digits")
        strip = raw.get("strip_components", 0)
        if not isinstance(strip, int) or isinstance(strip, bool) or not 0 <= strip <= 5:
            raise invalid("strip_components must be an integer 0-5")
    return raw


def parse_upload_source(raw: dict[str, Any]) -> None:
    path, fmt = raw.get("path"), raw.get("format")
    if fmt not in UPLOAD_MAGIC:
        raise invalid('upload format must be "tar.gz" or "zip"')
    if not isinstance(path, str) or not UPLOAD_PATH_RE.fullmatch(path) or not path.endswith("." + fmt):
        raise invalid(f"upload path {path!r} must be /var/lib/chom/uploads/RELEASE.{fmt}")
    if not isinstance(raw.get("sha256"), str) or not SHA256_RE.fullmatch(raw["sha256"]):
        raise invalid("upload sha256 must be 64 lowercase hex digits")


def url_scheme(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).scheme


def validate_url_chars(url: str) -> None:
    if len(url) > 2048 or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise invalid("url must be at most 2048 characters without whitespace or control characters")


def validate_git_url(url: Any) -> None:
    if not isinstance(url, str):
        raise invalid("git url must be a string")
    validate_url_chars(url)
    scheme = url_scheme(url)
    # Never git's ext:: or fd:: transports; ssh only in the shapes is_ssh_git_url accepts.
    if url.startswith("/"):
        if any(part in ("", ".", "..") for part in url.split("/")[1:]):
            raise invalid(f"git url {url!r} must be a normalised absolute path")
    elif is_ssh_git_url(url):
        if ".." in re.split("[/:]", url):
            raise invalid(f"git url {url!r} may not contain '..'")
    elif scheme not in ("https", "http", "git", "file") or "::" in url:
        raise invalid(
            f"git url {url!r} must be https://, http://, git://, ssh://, user@host:path, file:// or an "
            "absolute path"
        )


# SSH git URLs: ssh://[user@]host[:port]/path or scp-like user@host:path (always with a user, so
# git never takes it for a local path). Neither host nor user starts with "-": ssh would read an
# option (-oProxyCommand=...). No "%" escapes, no "..".
GIT_SSH_URL_RE = LazyRe(
    r"ssh://([A-Za-z0-9_][A-Za-z0-9._-]{0,63}@)?[A-Za-z0-9][A-Za-z0-9.-]{0,252}(:[0-9]{1,5})?"
    r"/[A-Za-z0-9._~+/-]{1,1000}"
)
GIT_SCP_URL_RE = LazyRe(
    r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}@[A-Za-z0-9][A-Za-z0-9.-]{0,252}:[A-Za-z0-9._~+/][A-Za-z0-9._~+/-]{0,1000}"
)
OPENSSH_KEY_RE = LazyRe(
    r"-----BEGIN OPENSSH PRIVATE KEY-----\n[A-Za-z0-9+/=\n]{1,8000}-----END OPENSSH PRIVATE KEY-----\n?"
)
# As ssh writes it with HashKnownHosts=no: "host[,host] type base64" ("[host]:port" off port 22).
KNOWN_HOSTS_LINE_RE = LazyRe(r"[A-Za-z0-9.:\[\],-]{1,300} [a-z0-9@.-]{1,60} [A-Za-z0-9+/]{16,8000}={0,2}")
GIT_SSH_DIR = ".chom-ssh"


def is_ssh_git_url(url: str) -> bool:
    return bool(GIT_SSH_URL_RE.fullmatch(url) or GIT_SCP_URL_RE.fullmatch(url))


def parse_git_ssh(raw: Any) -> None:
    """{"private_key": OpenSSH ed25519/any key, "known_hosts": pinned lines, "" before the first
    clone pins them}."""
    if not isinstance(raw, dict) or set(raw) != {"private_key", "known_hosts"}:
        raise invalid('git ssh must be {"private_key": "...", "known_hosts": "..."}')
    if not isinstance(raw["private_key"], str) or not OPENSSH_KEY_RE.fullmatch(raw["private_key"]):
        raise invalid("git ssh private_key must be an unencrypted key in OpenSSH format")
    hosts = raw["known_hosts"]
    if not isinstance(hosts, str) or len(hosts) > 65536:
        raise invalid("git ssh known_hosts must be text")
    if not all(KNOWN_HOSTS_LINE_RE.fullmatch(line) for line in hosts.splitlines()):
        raise invalid("git ssh known_hosts must be lines of 'host type base64-key'")


def key_fingerprint(blob_b64: str) -> str:
    import base64
    import hashlib

    digest = hashlib.sha256(base64.b64decode(blob_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def git_ssh_prepare(ctx: Context, site: Site, ssh: dict[str, str]) -> dict[str, str]:
    """Write the deploy key and the pinned known_hosts into the site's home AS the site user
    (root never opens a path there), and return the environment that makes git use only them:
    `-F /dev/null` so no ~/.ssh/config (the tenant's) or system ssh_config is read, the key alone
    (IdentitiesOnly), no prompt (BatchMode), and the pinned host key or, with none pinned yet,
    whatever the server shows now (accept-new into an empty file: trust on first use)."""
    import shlex

    key, hosts = ssh["private_key"], ssh["known_hosts"]
    ctx.secret(key)
    for line in key.splitlines():
        if len(line) >= 16 and "OPENSSH" not in line:
            ctx.secret(line)
    directory = site.sub(GIT_SSH_DIR)
    key_path, hosts_path = os.path.join(directory, "deploy_key"), os.path.join(directory, "known_hosts")

    def write() -> None:
        if os.path.islink(directory) or (os.path.lexists(directory) and not os.path.isdir(directory)):
            os.unlink(directory)
        if not os.path.isdir(directory):
            os.mkdir(directory, 0o700)
        os.chown(directory, -1, site.gid)
        os.chmod(directory, 0o700)
        write_file_as_user(key_path, key.encode(), 0o600, gid=site.gid)
        write_file_as_user(hosts_path, hosts.encode(), 0o600, gid=site.gid)

    in_site_process(site, "git-ssh-key", write, timeout=60)
    pinned = bool(hosts.strip())
    command = [
        "ssh", "-F", "/dev/null", "-i", key_path, "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        "-o", "BatchMode=yes", "-o", f"StrictHostKeyChecking={'yes' if pinned else 'accept-new'}",
        "-o", f"UserKnownHostsFile={hosts_path}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "HashKnownHosts=no", "-o", "UpdateHostKeys=no", "-o", "ConnectTimeout=30",
    ]  # fmt: skip
    ctx.log(f"git over ssh with the site's deploy key, host key {'pinned' if pinned else 'not pinned yet'}")
    # GIT_SSH_COMMAND beats a core.sshCommand in the tenant's ~/.gitconfig; no global config at all.
    return {
        "GIT_SSH_COMMAND": shlex.join(command),
        "GIT_SSH_VARIANT": "ssh",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
    }


def git_clone_error(source: dict[str, Any], proc: subprocess.CompletedProcess) -> AgentError:
    """git's failure in words a customer can act on (the pinned fingerprint, the deploy key)."""
    output = (proc.stderr or "") + (proc.stdout or "")
    message = f"git clone of branch {source['branch']!r} exited {proc.returncode}: {_tail(proc, 6)}"
    ssh = source.get("ssh")
    changed = "REMOTE HOST IDENTIFICATION HAS CHANGED" in output or "Host key verification failed" in output
    if ssh and changed:
        lines = ssh["known_hosts"].splitlines()
        pinned = [key_fingerprint(line.split()[2]) for line in lines if line.strip()]
        return AgentError(
            "host_key_changed",
            "the git server's host key is not the one pinned for this site ({}): it changed, or "
            "someone is in between; nothing was cloned. ({})".format(", ".join(pinned) or "none", message),
            "git-clone",
        )
    if ssh and "Permission denied (publickey" in output:
        return AgentError(
            "source_failed",
            "the git server refused the site's deploy key: add its public key to the repository's "
            f"deploy keys (read access) and deploy again. ({message})",
            "git-clone",
        )
    if "terminal prompts disabled" in output or "could not read Username" in output:
        return AgentError(
            "source_failed",
            "the repository asks for credentials: for a private repository use its SSH URL "
            f"(git@host:owner/repo.git) with the site's deploy key. ({message})",
            "git-clone",
        )
    return AgentError("source_failed", message, "git-clone")


def git_ssh_facts(site: Site, source: dict[str, Any]) -> dict[str, Any]:
    """The host key lines ssh accepted for an ssh source (what CHOM pins after a first clone),
    read as the site user: the file is the site's, may be a FIFO or a link, and is checked."""
    if source.get("type") != "git" or "ssh" not in source:
        return {}
    path = site.sub(GIT_SSH_DIR, "known_hosts")

    def read() -> str:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError:
            return ""
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return ""
            return os.read(fd, 65536).decode("utf-8", "replace")
        finally:
            os.close(fd)

    try:
        text = in_site_process(site, "git-known-hosts", read, timeout=30)
    except AgentError:  # the release is built; without the lines CHOM just pins nothing yet
        text = ""
    lines = [line.strip() for line in text.splitlines() if KNOWN_HOSTS_LINE_RE.fullmatch(line.strip())]
    return {"git_host_keys": lines[:10]}


def validate_rel_path(path: Any, what: str) -> str:
    if not isinstance(path, str) or not REL_PATH_RE.fullmatch(path):
        raise invalid(f"{what} {path!r} must be a relative path using [A-Za-z0-9_./@+-]")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise invalid(f"{what} {path!r} must be normalised (no '..', '.', '//' or trailing '/')")
    return path


def fetch_git(ctx: Context, site: Site, source: dict[str, Any], dest: str) -> str:
    ssh_env = git_ssh_prepare(ctx, site, source["ssh"]) if "ssh" in source else None
    argv = [
        *ctx.config.git,
        "-c",
        "protocol.file.allow=always",
        "clone",
        "--quiet",
        "--depth",
        "1",
        "--branch",
        source["branch"],
        "--",
        source["url"],
        dest,
    ]
    proc = run_as_site(ctx, site, argv, step="git-clone", cwd=site.sub("releases"), extra_env=ssh_env)
    if proc.returncode != 0:
        raise git_clone_error(source, proc)
    rev = run_as_site(ctx, site, [*ctx.config.git, "rev-parse", "HEAD"], step="git-rev-parse", cwd=dest)
    if rev.returncode != 0:
        raise AgentError(
            "source_failed", f"git rev-parse exited {rev.returncode}: {_tail(rev)}", "git-rev-parse"
        )
    commit = rev.stdout.strip()
    # The history is not needed at runtime, and a served .git would leak it.
    in_site_process(site, "git-clean", lambda: rmtree_writable(os.path.join(dest, ".git")))
    ctx.log(f"cloned {source['url']} branch {source['branch']} at {commit}")
    return commit


def download(ctx: Context, url: str, sha256: str) -> Any:
    """Stream `url` into an anonymous root-only temp file, verifying size and sha256 first."""
    import hashlib
    import tempfile
    import urllib.error
    import urllib.request

    limit = ctx.config.download_max_bytes
    digest = hashlib.sha256()
    # Unbuffered: the extracting child shares the file offset, so a buffered parent would try to
    # seek back over read-ahead it no longer owns when the file is closed.
    handle = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115 - the caller closes it
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=ctx.config.timeout) as response:  # noqa: S310
            while True:
                chunk = response.read(1024 * 1024)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise AgentError("source_failed", f"archive is larger than {limit} bytes", "download")
                digest.update(chunk)
                handle.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        handle.close()
        raise AgentError("source_failed", f"download of {url} failed: {exc}", "download")
    except BaseException:
        handle.close()
        raise
    if digest.hexdigest() != sha256:
        handle.close()
        raise AgentError(
            "checksum_mismatch",
            f"archive sha256 is {digest.hexdigest()}, expected {sha256}; nothing was extracted",
            "verify",
        )
    handle.flush()
    handle.seek(0)
    ctx.log(f"downloaded {url} ({size} bytes, sha256 verified)")
    return handle


def unsafe(message: str) -> AgentError:
    return AgentError("unsafe_archive", message, "extract")


def member_parts(name: str, strip: int) -> list[str] | None:
    """Path components below the release dir; None when stripped away entirely."""
    if name.startswith("/"):
        raise unsafe(f"archive member {name!r} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise unsafe(f"archive member {name!r} contains '..'")
    return parts[strip:] or None


class ArchiveTree:
    """An archive's members as the tree they make below the release (after strip_components),
    checked before anything is written: each path once (a directory may repeat), nothing below
    a symlink or a file, every symlink followed through the archive's other symlinks as the
    kernel would (the whole set, whatever their order: `q -> p/../x` is only harmless while `p`
    is a directory) and kept inside, a hard link only to a regular file earlier in the archive,
    at most MAX_TREE_ENTRIES members. The text of a link alone proves nothing: `p -> .` plus
    `q -> p/../etc` reads as "etc" and leads out."""

    def __init__(self) -> None:
        self.kinds: dict[tuple[str, ...], str] = {}  # "dir", "file" or "symlink"
        self.links: dict[tuple[str, ...], str] = {}
        self.count = 0

    def add(self, parts: list[str], kind: str, target: str = "") -> None:
        """KIND "hardlink": TARGET is the linked member's path, as components joined by "/"."""
        self.count += 1
        if self.count > MAX_TREE_ENTRIES:
            raise unsafe(f"archive has more than {MAX_TREE_ENTRIES} entries")
        key, name = tuple(parts), "/".join(parts)
        if kind == "hardlink":
            if self.kinds.get(tuple(target.split("/"))) != "file":
                raise unsafe(f"archive hard link {name!r} -> {target!r}: not a file earlier in the archive")
            kind = "file"
        seen = self.kinds.get(key)
        if seen is not None and not seen == kind == "dir":
            raise unsafe(f"archive member {name!r} appears twice")
        self.kinds[key] = kind
        if kind == "symlink":
            self.links[key] = target

    def check(self) -> None:
        for key in self.kinds:
            for depth in range(1, len(key)):
                above = self.kinds.get(key[:depth], "dir")
                if above != "dir":
                    raise unsafe(
                        "archive member {!r} lies below {!r}, a {}".format(
                            "/".join(key), "/".join(key[:depth]), above
                        )
                    )
        resolved: dict[tuple[str, ...], tuple[str, ...]] = {}
        for key in self.links:
            self.resolve(key, resolved, set())

    def resolve(self, link: tuple[str, ...], resolved: dict, active: set) -> tuple[str, ...]:
        """Where the symlink LINK leads, as components below the release; refused when it leads
        outside or loops. A name the archive does not declare counts as a directory."""
        if link in resolved:
            return resolved[link]
        name, target = "/".join(link), self.links[link]
        if link in active or len(active) > SYMLINK_HOPS:
            raise unsafe(f"archive symlink {name!r} is part of a loop")
        active.add(link)
        escape = unsafe(f"archive symlink {name!r} -> {target!r} points outside the release")
        if target.startswith("/"):
            raise escape
        where = list(link[:-1])
        for component in target.split("/"):
            if component in ("", "."):
                continue
            if component == "..":
                if not where:
                    raise escape
                where.pop()
                continue
            where.append(component)
            if tuple(where) in self.links:
                where = list(self.resolve(tuple(where), resolved, active))
        active.discard(link)
        resolved[link] = tuple(where)
        return resolved[link]


class Extractor:
    """Writes validated members below `dest`; runs as the site user (see in_site_process)."""

    def __init__(self, dest: str) -> None:
        self.dest = dest
        self.total = 0

    def path(self, parts: list[str]) -> str:
        target = os.path.join(self.dest, *parts)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target) and not os.path.isdir(target):
            os.unlink(target)
        return target

    def directory(self, parts: list[str]) -> None:
        target = os.path.join(self.dest, *parts)
        if os.path.islink(target):
            os.unlink(target)
        os.makedirs(target, exist_ok=True)

    def file(self, parts: list[str], source: Any, mode: int) -> None:
        target = self.path(parts)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with os.fdopen(os.open(target, flags, (mode & 0o777) | 0o600), "wb") as out:
            while True:
                chunk = source.read(1024 * 1024)
                if not chunk:
                    break
                self.total += len(chunk)
                if self.total > MAX_EXTRACT_BYTES:
                    raise unsafe(f"archive expands to more than {MAX_EXTRACT_BYTES} bytes")
                out.write(chunk)

    def symlink(self, parts: list[str], target: str) -> None:
        os.symlink(target, self.path(parts))


def extract_tar(handle: Any, dest: str, strip: int) -> int:
    import tarfile

    with tarfile.open(fileobj=handle, mode="r:*") as archive:
        tree, plan = ArchiveTree(), []
        for member in archive:  # validate everything before writing anything
            parts = member_parts(member.name, strip)
            if member.islnk():
                try:
                    link_parts = member_parts(member.linkname, strip)
                except AgentError:
                    link_parts = None
                if parts is not None and link_parts is None:
                    raise unsafe(f"archive hard link {member.name!r} points outside the release")
            elif not (member.isdir() or member.isfile() or member.issym()):
                raise unsafe(f"archive member {member.name!r} is a device, fifo or other special file")
            if parts is None:
                continue
            if member.issym():
                tree.add(parts, "symlink", member.linkname)
            elif member.islnk():
                tree.add(parts, "hardlink", "/".join(link_parts or []))
            else:
                tree.add(parts, "dir" if member.isdir() else "file")
            plan.append((member, parts))
        tree.check()
        extractor = Extractor(dest)
        for member, parts in plan:
            if member.isdir():
                extractor.directory(parts)
            elif member.issym():
                extractor.symlink(parts, member.linkname)
            elif member.islnk():
                link_parts = member_parts(member.linkname, strip) or []
                flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY
                with os.fdopen(open_below(dest, link_parts, flags), "rb") as source:
                    if not stat.S_ISREG(os.fstat(source.fileno()).st_mode):
                        raise unsafe(f"archive hard link {member.name!r} is not to a regular file")
                    extractor.file(parts, source, member.mode)
            else:
                extractor.file(parts, archive.extractfile(member), member.mode)
        return len(plan)


def extract_zip(handle: Any, dest: str, strip: int) -> int:
    import zipfile

    with zipfile.ZipFile(handle) as archive:
        tree, plan = ArchiveTree(), []
        for info in archive.infolist():
            parts = member_parts(info.filename, strip)
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind == stat.S_IFLNK:
                raise unsafe(f"archive member {info.filename!r} is a symlink (unsupported in zip archives)")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise unsafe(f"archive member {info.filename!r} is a device, fifo or other special file")
            if parts is not None:
                tree.add(parts, "dir" if info.is_dir() else "file")
                plan.append((info, parts))
        tree.check()
        extractor = Extractor(dest)
        for info, parts in plan:
            if info.is_dir():
                extractor.directory(parts)
            else:
                with archive.open(info) as source:
                    extractor.file(parts, source, (info.external_attr >> 16) & 0o777 or 0o644)
        return len(plan)


def preload_archive_modules() -> None:
    """Import the archive modules and their lazily loaded codecs before dropping privileges
    (see preload_modules)."""
    import codecs

    preload_modules("tarfile", "zipfile")
    for module in ("gzip", "bz2", "lzma"):
        try:
            __import__(module)
        except ImportError:
            pass
    codecs.lookup("cp437")


def fetch_archive(ctx: Context, site: Site, source: dict[str, Any], dest: str) -> str:
    with download(ctx, source["url"], source["sha256"]) as handle:
        strip = source.get("strip_components", 0)
        is_zip = handle.read(4) == b"PK\x03\x04"
        handle.seek(0)
        count = extract_archive(ctx, site, handle, dest, strip, is_zip)
    ctx.log(f"extracted {count} entries (strip_components={strip})")
    return "sha256:" + source["sha256"]


def extract_archive(ctx: Context, site: Site, handle: Any, dest: str, strip: int, is_zip: bool) -> int:
    """Extract the open archive HANDLE into the new directory DEST as the site user."""
    import tarfile
    import zipfile

    preload_archive_modules()

    def extract() -> int:
        os.mkdir(dest)
        try:
            return (extract_zip if is_zip else extract_tar)(handle, dest, strip)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
            raise unsafe(f"archive cannot be read: {exc}")

    return in_site_process(site, "extract", extract, timeout=ctx.config.build_timeout)


def fetch_upload(ctx: Context, site: Site, source: dict[str, Any], dest: str) -> str:
    """An archive a tenant uploaded, which CHOM copied to the VPS: checked against its SHA-256,
    extracted as the site user by the same extractors as a downloaded archive, then removed
    whatever happened (CHOM copies it again for another attempt)."""
    try:
        with open_upload(ctx, source) as handle:
            count = extract_archive(ctx, site, handle, dest, 0, source["format"] == "zip")
    finally:
        discard_upload(ctx, source)
    ctx.log(f"extracted {count} entries of the uploaded {source['format']} archive")
    return "sha256:" + source["sha256"]


def open_upload(ctx: Context, source: dict[str, Any]) -> Any:
    """The uploaded archive, opened by descriptor: a root-only regular file with one link (never
    a symlink or a FIFO), its SHA-256 verified, its first bytes those of its format."""
    import hashlib

    try:
        fd = os.open(
            ctx.config.path(source["path"]), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
        )
    except OSError as exc:
        raise AgentError("source_failed", f"uploaded archive {source['path']}: {exc.strerror}", "upload")
    # Unbuffered, as download's: the extracting child shares the descriptor's offset.
    handle = os.fdopen(fd, "rb", buffering=0)
    try:
        info = os.fstat(fd)
        if (
            not stat.S_ISREG(info.st_mode)
            or info.st_uid != os.geteuid()
            or info.st_mode & 0o077
            or info.st_nlink != 1
        ):
            raise AgentError(
                "source_failed",
                f"uploaded archive {source['path']} is not a root-only regular file",
                "upload",
            )
        digest = hashlib.sha256()
        while True:
            chunk = handle.read(1024 * 1024)
            if not chunk:
                break
            digest.update(chunk)
        if digest.hexdigest() != source["sha256"]:
            raise AgentError(
                "checksum_mismatch",
                f"uploaded archive sha256 is {digest.hexdigest()}, expected {source['sha256']}; "
                "nothing was extracted",
                "verify",
            )
        handle.seek(0)
        magic = UPLOAD_MAGIC[source["format"]]
        if handle.read(len(magic)) != magic:
            raise unsafe(f"uploaded archive is not a {source['format']} archive")
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    ctx.log(f"uploaded archive {source['path']} sha256 verified ({info.st_size} bytes)")
    return handle


def discard_upload(ctx: Context, source: dict[str, Any]) -> None:
    try:
        os.unlink(ctx.config.path(source["path"]))
    except FileNotFoundError:
        return
    ctx.log(f"removed {source['path']}")


def fetch_distro_package(ctx: Context, site: Site, name: str, dest: str) -> str:
    """Install the package set if missing, then copy its tree into the release as the site user."""
    packages, tree, left_out = DISTRO_SOURCES[name]
    versions = installed_packages(ctx, list(packages))
    if any(p not in versions for p in packages):
        # apt is VPS-wide: take the VPS lock too (after the site's, the order take_locks keeps).
        lock = acquire_lock(ctx.config)
        try:
            install_packages(ctx, list(packages))
        except AgentError as exc:
            raise AgentError(
                "source_failed",
                "installing {} from the distribution failed: {}".format(" ".join(packages), exc.message),
                exc.step,
            )
        finally:
            os.close(lock)
        versions = installed_packages(ctx, list(packages))
        missing = [p for p in packages if p not in versions]
        if missing:
            raise AgentError(
                "source_failed", "apt-get did not install {}".format(" ".join(missing)), "apt-install"
            )
    source = ctx.config.path(tree)

    def copy() -> int:
        os.mkdir(dest)
        return copy_resolving_links(source, dest, left_out)

    count = in_site_process(site, "copy", copy, timeout=ctx.config.build_timeout)
    ctx.log(f"copied {count} entries of {tree} ({name} {versions[name]}), symlinks resolved")
    return f"deb:{name}={versions[name]}"


def copy_resolving_links(source: str, dest: str, left_out: tuple[str, ...] = ()) -> int:
    """Copy the tree SOURCE into the empty directory DEST, replacing every symlink by a copy of
    what it points at (Debian links its packaged WordPress to /etc, /usr/share/javascript,
    /usr/share/php and the CA bundle): nothing in the release leads outside it, which nginx
    (disable_symlinks if_not_owner) and PHP (open_basedir = the site's home) both require. Runs
    as the site user (in_site_process), so it copies only what any account may read. LEFT_OUT:
    top-level names not copied."""
    extractor = Extractor(dest)
    seen: set[tuple[int, int]] = set()
    pending: list[tuple[str, list[str]]] = [(source, [])]
    count = 0
    path = source
    try:
        while pending:
            path, parts = pending.pop()
            info = os.stat(path)
            if (info.st_dev, info.st_ino) in seen:
                raise AgentError("source_failed", f"{path} is reached twice (a symlink loop?)", "copy")
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(path) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
            for entry in entries:
                if not parts and entry.name in left_out:
                    continue
                path, target = entry.path, [*parts, entry.name]
                info = os.stat(path)  # follows a symlink: its target is what gets copied
                if stat.S_ISDIR(info.st_mode):
                    extractor.directory(target)
                    pending.append((path, target))
                elif stat.S_ISREG(info.st_mode):
                    with open(path, "rb") as data:
                        extractor.file(target, data, info.st_mode)
                else:
                    raise AgentError("source_failed", f"{path} is not a file or a directory", "copy")
                count += 1
    except OSError as exc:
        raise AgentError("source_failed", f"{path} cannot be copied: {exc.strerror}", "copy")
    return count


# A commit as a release marker records it (git sha, sha256:..., deb:...=..., placeholder): the
# site user can write the marker, so anything else is not passed on.
COMMIT_RE = LazyRe(r"^[A-Za-z0-9][A-Za-z0-9:=.+~_-]{0,79}$")
# A directory of a release being copied: never a symlink, never waiting on a FIFO.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK


def fetch_copy(ctx: Context, site: Site, origin: str, dest: str) -> str:
    """A new release with the content of releases/ORIGIN, the site's current release: a site
    without a repository has no other copy of its code (an upload), so a redeploy (new aliases, a
    PHP version) builds from it rather than from the placeholder page. Copied as the site user by
    copy_release_tree; the release marker and the .env link are left out (the build makes them
    again). The commit is ORIGIN's: the content is the same."""
    info = read_marker(site.sub("releases", origin))
    if info is None:
        raise AgentError("source_failed", f"release {origin} to copy does not exist or is incomplete", "copy")

    def copy() -> dict[str, Any]:
        os.mkdir(dest)
        return copy_release_tree(site.home, origin, dest)

    done = in_site_process(site, "copy", copy, timeout=ctx.config.build_timeout)
    ctx.log(f"copied {done['entries']} entries ({done['bytes']} bytes) of release {origin}, links as links")
    if done["skipped"]:
        skipped = ", ".join(map(repr, done["skipped"]))
        ctx.log(f"skipped (not a file, directory or symlink): {skipped}")
    commit = info.get("commit")
    return commit if isinstance(commit, str) and COMMIT_RE.fullmatch(commit) else f"copy:{origin}"


def copy_release_tree(home: str, origin: str, dest: str) -> dict[str, Any]:
    """Copy HOME/releases/ORIGIN into the new, empty directory DEST. Runs as the site user, who
    owns ORIGIN and may change it at any moment, so nothing in it is trusted: every entry is
    opened by descriptor relative to its directory with O_NOFOLLOW|O_NONBLOCK (no link is ever
    followed, inside the tree or out of it, a FIFO never blocks); symlinks are copied as symlinks
    (their target text, unresolved), regular files byte for byte with their permission bits and
    mtime, directories with their permission bits; FIFOs, sockets and devices are skipped. A
    file or directory whose group is not its copy's (the setgid www-data one) gets the site's own
    group, never one that may read more. At most MAX_TREE_ENTRIES entries, MAX_EXTRACT_BYTES bytes
    and MAX_TREE_DEPTH levels. Left out at the top: the release marker and the .env symlink."""
    state: dict[str, Any] = {"entries": 0, "bytes": 0, "skipped": [], "origin": origin}
    src = open_below(home, ["releases", origin], DIR_FLAGS)
    try:
        dst = os.open(dest, DIR_FLAGS)
        try:
            copy_dir(src, dst, [], state)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return {"entries": state["entries"], "bytes": state["bytes"], "skipped": state["skipped"][:20]}


def copy_dir(src: int, dst: int, parts: list[str], state: dict[str, Any]) -> None:
    for name in sorted(os.listdir(src)):
        here = [*parts, name]
        try:
            info = os.stat(name, dir_fd=src, follow_symlinks=False)
            if not parts and (name == RELEASE_MARKER or (name == ENV_FILE and stat.S_ISLNK(info.st_mode))):
                continue
            state["entries"] += 1
            if state["entries"] > MAX_TREE_ENTRIES:
                message = f"release {state['origin']} has more than {MAX_TREE_ENTRIES} entries"
                raise AgentError("source_failed", message, "copy")
            if stat.S_ISLNK(info.st_mode):
                os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
            elif stat.S_ISDIR(info.st_mode):
                if len(here) > MAX_TREE_DEPTH:
                    raise AgentError("source_failed", f"{'/'.join(here)!r} is nested too deeply", "copy")
                copy_subdir(src, dst, name, here, state)
            elif stat.S_ISREG(info.st_mode):
                copy_file(src, dst, name, state)
            else:
                state["skipped"].append("/".join(here))
        except OSError as exc:
            raise AgentError("source_failed", f"{'/'.join(here)!r} cannot be copied: {exc.strerror}", "copy")


def copy_subdir(src: int, dst: int, name: str, parts: list[str], state: dict[str, Any]) -> None:
    inner_src = os.open(name, DIR_FLAGS, dir_fd=src)
    try:
        os.mkdir(name, dir_fd=dst)  # 0777 less the umask, setgid www-data from its parent
        inner_dst = os.open(name, DIR_FLAGS, dir_fd=dst)
        try:
            copy_dir(inner_src, inner_dst, parts, state)
            # Last: a read-only directory is filled first. Changed only when it differs, as a
            # chmod by the site user (not in www-data) also drops the setgid bit.
            copy_attributes(os.fstat(inner_src), inner_dst, mtime=False)
        finally:
            os.close(inner_dst)
    finally:
        os.close(inner_src)


def copy_file(src: int, dst: int, name: str, state: dict[str, Any]) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=src)
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # swapped since it was looked at
            raise AgentError("source_failed", f"{name!r} changed while it was copied", "copy")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with os.fdopen(os.open(name, flags, 0o600, dir_fd=dst), "wb") as out:
            while True:
                chunk = source.read(1024 * 1024)
                if not chunk:
                    break
                state["bytes"] += len(chunk)
                if state["bytes"] > MAX_EXTRACT_BYTES:
                    message = f"release {state['origin']} holds more than {MAX_EXTRACT_BYTES} bytes"
                    raise AgentError("source_failed", message, "copy")
                out.write(chunk)
            out.flush()
            copy_attributes(info, out.fileno(), mtime=True)


def copy_attributes(info: os.stat_result, fd: int, *, mtime: bool) -> None:
    now = os.fstat(fd)
    if now.st_gid != info.st_gid:
        os.fchown(fd, -1, os.getgid())
        now = os.fstat(fd)
    wanted = stat.S_IMODE(info.st_mode) & 0o777
    if stat.S_IMODE(now.st_mode) & 0o777 != wanted:
        os.fchmod(fd, wanted | (stat.S_IMODE(now.st_mode) & stat.S_ISGID if stat.S_ISDIR(now.st_mode) else 0))
    if mtime:
        os.utime(fd, ns=(info.st_atime_ns, info.st_mtime_ns))


def write_placeholder(ctx: Context, site: Site, html: str, dest: str) -> str:
    def write() -> None:
        os.makedirs(os.path.join(dest, "public"))
        write_file_as_user(os.path.join(dest, "public", "index.html"), html.encode("utf-8"), 0o640)

    in_site_process(site, "placeholder", write)
    ctx.log("wrote placeholder public/index.html")
    return "placeholder"


def write_file_as_user(path: str, data: bytes, mode: int, gid: int | None = None) -> None:
    import tempfile

    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".chom-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        if gid is not None:
            os.fchown(fh.fileno(), -1, gid)
        os.fchmod(fh.fileno(), mode)
        os.fsync(fh.fileno())
    os.rename(tmp, path)


# --------------------------------------------------------------------------- sites: releases


def link_docroot(dest: str, docroot: str) -> str:
    """Make `public` the document root whatever the project calls it."""
    public = os.path.join(dest, "public")
    if docroot == "public":
        if os.path.lexists(public) and not os.path.isdir(public):
            raise AgentError("build_failed", "public exists in the release but is not a directory", "docroot")
        if not os.path.lexists(public):
            os.symlink(".", public)  # a plain static/PHP repository: serve its top level
            return "public -> ."
        return "public"
    if not os.path.isdir(os.path.join(dest, docroot)):
        raise AgentError("build_failed", f"docroot {docroot!r} does not exist in the release", "docroot")
    if os.path.lexists(public):
        raise AgentError("build_failed", f"the release has both public/ and docroot {docroot!r}", "docroot")
    os.symlink(docroot, public)
    return f"public -> {docroot}"


def link_shared(site: Site, dest: str, paths: list[str]) -> list[str]:
    """Replace each shared path in the release by a relative symlink into shared/."""
    done = []
    for rel in paths:
        shared = site.sub("shared", rel)
        in_release = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(shared), exist_ok=True)
        os.makedirs(os.path.dirname(in_release), exist_ok=True)
        if not os.path.lexists(shared):
            if os.path.lexists(in_release) and not os.path.islink(in_release):
                os.rename(in_release, shared)  # seed from the first release (e.g. Laravel storage/)
                done.append(f"seeded shared/{rel} from the release")
            else:
                os.mkdir(shared)
                done.append(f"created shared/{rel}/")
        if os.path.isdir(in_release) and not os.path.islink(in_release):
            rmtree_writable(in_release)
        elif os.path.lexists(in_release):
            os.unlink(in_release)
        os.symlink(os.path.relpath(shared, os.path.dirname(in_release)), in_release)
        done.append(f"linked {rel} -> shared/{rel}")
    return done


def parse_env(raw: Any) -> tuple[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"path", "content"} or not isinstance(raw.get("content"), str):
        raise invalid('env must be {"path": ".env", "content": "..."}')
    path = validate_rel_path(raw.get("path", ".env"), "env path")
    if len(raw["content"].encode()) > MAX_CONTENT_BYTES or "\x00" in raw["content"]:
        raise invalid(f"env content must be text under {MAX_CONTENT_BYTES} bytes")
    return path, raw["content"]


_SECRETISH = LazyRe(r"pass|secret|key|token|salt|auth", re.IGNORECASE)
_QUOTED = LazyRe(r"'([^']*)'|\"([^\"]*)\"")


def register_env_secrets(ctx: Context, content: str) -> None:
    """Mask the values of secret-looking settings (KEY=value lines and PHP define()s), not every
    value: masking the site name or the database name would make every log line unreadable."""
    ctx.secret(content.strip())
    for line in content.splitlines():
        if not _SECRETISH.search(line):
            continue
        key, sep, value = line.partition("=")
        if sep and "(" not in key:
            ctx.secret(value.strip().strip("\"'"))
        for groups in _QUOTED.findall(line):
            quoted = groups[0] or groups[1]
            if quoted and not re.fullmatch(r"[A-Z_]+", quoted):
                ctx.secret(quoted)


def cmd_release_create(ctx: Context, args: Input) -> dict[str, Any]:
    """Build releases/RELEASE as the site user. `site_env` (PHP, Laravel) is the site's
    environment: shared/.env, linked from the release (see "sites: environment and hooks"), so
    it is the site's, not a release's. `env` is a configuration file written INTO the release
    (0640, group = the site's own group, so not even nginx can read it): WordPress's
    wp-config.php, which must sit in the release (it loads wp-settings.php from __DIR__).
    `build_hook`: the tenant's build command, run after the fixed build steps."""
    name = args.match("name", SITE_NAME_RE, "site name")
    release = args.match("release", RELEASE_RE, "release id")
    source = parse_source(args.get("source", dict))
    build = args.get("build", list, default=[])
    shared = [validate_rel_path(p, "shared path") for p in args.get("shared", list, default=[])]
    env = parse_env(args.get("env", dict, default=None))
    site_env = parse_site_env(ctx, args.get("site_env", dict, default=None))
    raw_hook = args.get("build_hook", list, default=None)
    hook = parse_hook(raw_hook, "build_hook") if raw_hook is not None else None
    docroot = validate_rel_path(args.get("docroot", str, default="public"), "docroot")
    args.finish()
    if site_env is not None and (ENV_FILE in shared or (env is not None and env[0] == ENV_FILE)):
        raise invalid(f"{ENV_FILE} is the site's environment: not also a shared path or env file")
    if env is not None:
        register_env_secrets(ctx, env[1])
        if env[0] in shared:
            raise invalid(f"env path {env[0]!r} cannot also be a shared path")
    for step in build:
        if step not in BUILD_STEPS:
            raise invalid("build step {!r} is not one of {}".format(step, ", ".join(BUILD_STEPS)))
    if source["type"] == "copy" and source["release"] == release:
        raise invalid(f"release {release} cannot be built from a copy of itself")
    site = load_site(ctx, name)
    dest = site.sub("releases", release)
    info = read_marker(dest)
    if info is not None:
        ctx.log(f"release {release} already built")
        if source["type"] == "upload":
            discard_upload(ctx, source)
        return {
            "release": release,
            "commit": info.get("commit", ""),
            "path": public_release_path(site, release),
        }
    if os.path.lexists(dest):
        in_site_process(site, "cleanup", lambda: rmtree_writable(dest))
        ctx.change(f"removed incomplete release {release} left by an interrupted run")
    try:
        extras = {"site_env": site_env, "hook": hook}
        commit = build_release(ctx, site, release, dest, source, build, shared, env, docroot, **extras)
    except BaseException:
        try:
            in_site_process(site, "cleanup", lambda: rmtree_writable(dest))
            ctx.log(f"removed failed release {release}")
        except AgentError as cleanup:  # report the build's error, not the cleanup's
            ctx.log(f"could not remove failed release {release}: {cleanup.message}")
        raise
    ctx.change(f"release {release} built")
    built = {"release": release, "commit": commit, "path": public_release_path(site, release)}
    return built | git_ssh_facts(site, source)


def public_release_path(site: Site, release: str) -> str:
    return f"{site.public_home}/releases/{release}"


def build_release(
    ctx: Context,
    site: Site,
    release: str,
    dest: str,
    source: dict[str, Any],
    build: list[str],
    shared: list[str],
    env: tuple[str, str] | None,
    docroot: str,
    site_env: dict[str, str] | None = None,
    hook: list[str] | None = None,
) -> str:
    kind = source["type"]
    if kind == "git":
        commit = fetch_git(ctx, site, source, dest)
    elif kind == "archive":
        commit = fetch_archive(ctx, site, source, dest)
    elif kind == "upload":
        commit = fetch_upload(ctx, site, source, dest)
    elif kind == "distro-package":
        commit = fetch_distro_package(ctx, site, source["package"], dest)
    elif kind == "copy":
        commit = fetch_copy(ctx, site, source["release"], dest)
    else:
        commit = write_placeholder(ctx, site, source["html"], dest)

    def arrange() -> list[str]:
        lines = [f"document root: {link_docroot(dest, docroot)}"]
        lines += link_shared(site, dest, shared)
        if env is not None:
            path = os.path.join(dest, env[0])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.isdir(path) and not os.path.islink(path):
                raise AgentError("build_failed", f"env path {env[0]!r} is a directory in the release", "env")
            write_file_as_user(path, env[1].encode("utf-8"), 0o640, gid=site.gid)
            lines.append(f"wrote {env[0]} ({len(env[1])} bytes, mode 0640)")
        if site_env is not None:
            if write_shared_env(site, render_dotenv(site_env)):
                lines.append(f"wrote shared/{ENV_FILE} ({len(site_env)} variables, mode 0640)")
            lines.append(link_env(dest) or f"{ENV_FILE} already linked")
        return lines

    for line in in_site_process(site, "arrange", arrange):
        ctx.log(line)
    for step in build:
        run_step(ctx, site, step, dest, "build_failed")
    if hook is not None:
        run_hook(ctx, site, hook, dest, "build-hook", "build_failed")
    marker = {"release": release, "commit": commit, "created": utc_now(), "source": kind}
    data = (json.dumps(marker, sort_keys=True) + "\n").encode()
    in_site_process(
        site, "marker", lambda: write_file_as_user(os.path.join(dest, RELEASE_MARKER), data, 0o640)
    )
    return commit


def utc_now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def open_below(base: str, parts: list[str], flags: int) -> int:
    """A descriptor of BASE/PARTS..., each component below BASE opened with O_NOFOLLOW by
    descriptor: a symlink a site user put anywhere on the way fails (ELOOP/ENOTDIR) and is never
    followed, and no path is resolved again after it was checked."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        return os.open(parts[-1], flags | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)


def read_marker(release_dir: str) -> dict[str, Any] | None:
    """The release's completion marker, or None. The site user owns the release: the marker may
    be a symlink, a FIFO or a device, and `releases`/the release itself may be symlinks. Opened
    by descriptor without following links and without blocking (O_NONBLOCK: a FIFO answers at
    once), read only when it is a regular file of at most 64 KiB."""
    releases, release = os.path.split(release_dir)
    home, releases_name = os.path.split(releases)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY
    try:
        fd = open_below(home, [releases_name, release, RELEASE_MARKER], flags)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > 65536:
            return None
        value = json.loads(os.read(fd, 65537))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    return value if isinstance(value, dict) else None


def step_argv(ctx: Context, step: str, cwd: str) -> list[str] | None:
    """The fixed vocabulary of build steps; None means "nothing to do in this project"."""
    php = ctx.config.php
    if step == "composer-install":
        if not os.path.exists(os.path.join(cwd, "composer.json")):
            return None
        flags = ["--no-dev", "--no-interaction", "--prefer-dist", "--optimize-autoloader", "--no-progress"]
        return [*ctx.config.composer, "install", *flags]
    if step == "php-lint":
        files = [f for f in ("public/index.php", "index.php") if os.path.isfile(os.path.join(cwd, f))]
        return [*php, "-l", files[0]] if files else None
    if not os.path.isfile(os.path.join(cwd, "artisan")):
        raise AgentError("build_failed", f"{step}: the project has no artisan file (not Laravel?)", step)
    artisan = {
        "artisan-migrate": ["migrate", "--force", "--no-interaction"],
        "artisan-storage-link": ["storage:link", "--no-interaction"],
        "artisan-optimize": ["optimize", "--no-interaction"],
        "artisan-config-cache": ["config:cache", "--no-interaction"],
        "artisan-queue-restart": ["queue:restart", "--no-interaction"],
    }[step]
    return [*php, "artisan", *artisan]


def run_step(
    ctx: Context, site: Site, step: str, cwd: str, error_code: str
) -> subprocess.CompletedProcess | None:
    argv = step_argv(ctx, step, cwd)
    if argv is None:
        ctx.log(f"{step}: skipped (nothing to do in this project)")
        return None
    started = time.monotonic()
    try:
        proc = run_as_site(ctx, site, argv, step=step, cwd=cwd, timeout=ctx.config.build_timeout)
    except AgentError as exc:
        raise AgentError(error_code, f"{step} failed: {exc.message}", step)
    tail = output_tail(proc)
    ctx.log(f"{step}: exit {proc.returncode} in {time.monotonic() - started:.1f}s")
    ctx.log_lines.extend(f"  {line}" for line in tail)
    if proc.returncode != 0:
        raise AgentError(error_code, f"{step} exited {proc.returncode}: {' | '.join(tail[-8:])}", step)
    return proc


def release_dirs(site: Site) -> list[str]:
    """Release ids newest first (ids start with their UTC timestamp, so names sort by age)."""
    names = [n for n in os.listdir(site.sub("releases")) if RELEASE_RE.fullmatch(n)]
    return sorted(names, reverse=True)


def current_release(site: Site) -> str | None:
    current = site.sub("current")
    if not os.path.islink(current):
        return None
    target = os.readlink(current)
    head, _, release = target.rpartition("/")
    return release if head == "releases" and RELEASE_RE.fullmatch(release) else None


def cmd_release_activate(ctx: Context, args: Input) -> dict[str, Any]:
    """Point `current` at the release with one rename(2): every request sees old or new.

    No php-fpm reload is needed: CHOM's vhosts pass `$realpath_root` as DOCUMENT_ROOT and in
    SCRIPT_FILENAME, so PHP sees /var/www/NAME/releases/RELEASE/... paths; OPcache and the
    realpath cache are keyed by those resolved paths, so the new release is never served from
    the old one's cache, and requests already running finish in the release they started in.
    """
    name = args.match("name", SITE_NAME_RE, "site name")
    release = args.match("release", RELEASE_RE, "release id")
    keep = args.get("keep", int, default=5)
    args.finish()
    if not 1 <= keep <= 100:
        raise invalid("keep must be between 1 and 100")
    site = load_site(ctx, name)
    if read_marker(site.sub("releases", release)) is None:
        raise AgentError(
            "not_found", f"release {release} of {name} does not exist or is incomplete", "validate"
        )
    current = site.sub("current")
    if os.path.lexists(current) and not os.path.islink(current):
        raise AgentError("conflict", f"{site.public_home}/current exists and is not a symlink", "validate")
    previous = current_release(site)
    if previous == release:
        ctx.log(f"{release} is already current")
    else:
        tmp = site.sub(f".current-{os.getpid()}-{time.monotonic_ns()}")
        os.symlink(f"releases/{release}", tmp)
        try:
            os.replace(tmp, current)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        fsync_dir(site.home)
        ctx.change(f"current -> releases/{release} (was {previous or 'nothing'})")
    pruned = prune_releases(ctx, site, keep, {release, previous})
    return {"current": release, "previous": previous, "pruned": pruned}


def prune_releases(ctx: Context, site: Site, keep: int, protected: set[str | None]) -> list[str]:
    doomed = [r for r in release_dirs(site)[keep:] if r not in protected]
    if doomed:

        def remove() -> None:
            for release in doomed:
                rmtree_writable(site.sub("releases", release))

        in_site_process(site, "prune", remove)
        ctx.change("pruned {}".format(", ".join(doomed)))
    return doomed


def cmd_releases_list(ctx: Context, args: Input) -> dict[str, Any]:
    name = args.match("name", SITE_NAME_RE, "site name")
    args.finish()
    site = load_site(ctx, name)
    releases = []
    for release in release_dirs(site):
        info = read_marker(site.sub("releases", release))
        if info is not None:
            releases.append(
                {"name": release, "commit": info.get("commit", ""), "created": info.get("created", "")}
            )
    return {"current": current_release(site), "releases": releases}


# --------------------------------------------------------------------------- sites: exec

WP_INSTALLER = r"""<?php
// Written by vpsmanager, run once as the site user, then deleted. Input arrives on stdin.
$in = json_decode(stream_get_contents(STDIN), true);
$url = parse_url($in['url']);
$_SERVER['HTTP_HOST'] = $url['host'] . (isset($url['port']) ? ':' . $url['port'] : '');
$_SERVER['SERVER_NAME'] = $url['host'];
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['HTTPS'] = ($url['scheme'] === 'https') ? 'on' : '';
define('WP_INSTALLING', true);
require getcwd() . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
if (is_blog_installed()) {
    echo "\nCHOM-RESULT " . json_encode(['installed' => false]) . "\n";
    exit(0);
}
$password = wp_slash($in['admin_password']);
$result = wp_install($in['title'], $in['admin_user'], $in['admin_email'], true, '', $password);
update_option('siteurl', $in['url']);
update_option('home', $in['url']);
echo "\nCHOM-RESULT " . json_encode(['installed' => true, 'user_id' => $result['user_id']]) . "\n";
"""


def cmd_site_exec(ctx: Context, args: Input) -> dict[str, Any]:
    """Run one step of the fixed vocabulary as the site user in `current`.

    wp-install (no wp-cli needed): a small PHP file is written to the site's tmp/ and run with
    `php` as the site user; it loads wp-load.php (hence wp-config.php's DB settings) and calls
    wp_install(). The admin password travels on the PHP process's stdin only and is masked.
    """
    name = args.match("name", SITE_NAME_RE, "site name")
    step = args.get("step", str)
    if step not in EXEC_STEPS:
        raise invalid("step {!r} is not one of {}".format(step, ", ".join(EXEC_STEPS)))
    params = wp_params(args) if step == "wp-install" else None
    args.finish()
    site = load_site(ctx, name)
    release = current_release(site)
    if release is None:
        raise AgentError("not_found", f"site {name} has no current release; activate one first", "validate")
    cwd = site.sub("releases", release)
    if params is not None:
        return wp_install(ctx, site, cwd, params) | {"release": release, "step": step}
    proc = run_step(ctx, site, step, cwd, "command_failed")
    ran = proc is not None and step != "php-lint"
    if ran and step == "artisan-migrate" and "Nothing to migrate" in (proc.stdout + proc.stderr):
        ran = False
    if ran:
        ctx.change(f"{step} ran in {release}")
    return {"release": release, "step": step, "ran": proc is not None}


def wp_params(args: Input) -> dict[str, str]:
    params = {
        key: args.get(key, str) for key in ("title", "admin_user", "admin_email", "admin_password", "url")
    }
    if not 1 <= len(params["title"]) <= 200 or not re.fullmatch(
        r"[A-Za-z0-9._@-]{1,60}", params["admin_user"]
    ):
        raise invalid("title must be 1-200 characters and admin_user 1-60 of [A-Za-z0-9._@-]")
    if not EMAIL_RE.fullmatch(params["admin_email"]):
        raise invalid(f"admin_email {params['admin_email']!r} is not an email address")
    if not 8 <= len(params["admin_password"]) <= 256:
        raise invalid("admin_password must be 8-256 characters")
    if url_scheme(params["url"]) not in ("http", "https"):
        raise invalid("url must be http:// or https://")
    validate_url_chars(params["url"])
    return params


def wp_install(ctx: Context, site: Site, cwd: str, params: dict[str, str]) -> dict[str, Any]:
    ctx.secret(params["admin_password"])
    if not os.path.isfile(os.path.join(cwd, "wp-load.php")):
        raise AgentError("command_failed", "wp-install: the current release has no wp-load.php", "wp-install")
    script = site.sub("tmp", f"chom-wp-install-{os.getpid()}.php")
    in_site_process(site, "wp-install", lambda: write_file_as_user(script, WP_INSTALLER.encode(), 0o600))
    try:
        proc = run_as_site(
            ctx, site, [*ctx.config.php, script], step="wp-install", cwd=cwd, stdin=json.dumps(params)
        )
    finally:
        in_site_process(site, "wp-install", lambda: _unlink_quietly(script))
    result = [line for line in proc.stdout.splitlines() if line.startswith("CHOM-RESULT ")]
    if proc.returncode != 0 or not result:
        raise AgentError(
            "command_failed", f"wp-install exited {proc.returncode}: {_tail(proc)}", "wp-install"
        )
    outcome = json.loads(result[-1][len("CHOM-RESULT ") :])
    if outcome.get("installed"):
        ctx.change(f"installed WordPress at {params['url']} (admin {params['admin_user']})")
    else:
        ctx.log("WordPress is already installed")
    return {"installed": bool(outcome.get("installed"))}


# --------------------------------------------------------------------------- sites: environment and hooks
#
# The site's environment lives once per site, outside the releases: /var/www/NAME/shared/.env
# (0640, the site user : the site's own group, so nginx and other sites cannot read it), written
# by the site user (in_site_process: a symlink the site planted there is replaced, never
# followed). Each release has `.env -> ../../shared/.env`, so a rollback keeps the current
# variables. CHOM sends the values, never a file: this agent renders it, each value in phpdotenv's
# double-quoted syntax with `\ " $` and line breaks escaped (bare when it has no character the
# parser treats specially), so no value can end its line, start another variable or expand one.
# env-apply rewrites the file without a new release; for Laravel it rebuilds the cached config
# in current/ (config:cache, as the site user with the site's limits) whenever the file changed
# or the cache is older than it, then reloads PHP-FPM and restarts the site's supervisor
# programs (its queue worker) so the change is visible at once.
#
# Deploy hooks are tenant argv lists (never a shell string): the build hook runs in the new
# release after the fixed build steps (release-create's `build_hook`), the release hook in
# current/ after the switch (hook-run); both as the site user with the site's limits and the
# build timeout, their output tail in the log.

ENV_FILE = ".env"
ENV_NAME_RE = LazyRe(r"^[A-Z_][A-Z0-9_]{0,63}$")
ENV_VALUE_MAX_BYTES = 8192
ENV_MAX_NAMES = 250  # the tenant's 200 plus CHOM's own
HOOK_MAX_ARGS = 50
HOOK_MAX_ARG_CHARS = 1000
_DOTENV_ESCAPES = {"\\": "\\\\", '"': '\\"', "$": "\\$", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_DOTENV_ESCAPES.update({"\f": "\\f", "\v": "\\v"})
_DOTENV_BARE = LazyRe(r"^[A-Za-z0-9_.,:/@+=-]*$")


def parse_env_values(raw: Any, what: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise invalid(f"{what} must be an object of NAME: value")
    for name, value in raw.items():
        if not ENV_NAME_RE.fullmatch(name):
            raise invalid(f"{what}: variable name {name!r} is invalid (must match {ENV_NAME_RE.pattern})")
        if not isinstance(value, str) or "\x00" in value:
            raise invalid(f"{what}: {name} must be text without NUL")
        if len(value.encode("utf-8", "surrogatepass")) > ENV_VALUE_MAX_BYTES:
            raise invalid(f"{what}: {name} is longer than {ENV_VALUE_MAX_BYTES} bytes")
    return raw


def parse_site_env(ctx: Context, raw: Any) -> dict[str, str] | None:
    """{"managed": {...}, "variables": {...}} -> the values in file order (CHOM's, then the
    tenant's). Every tenant value is a secret; CHOM's only when its name looks like one."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"managed", "variables"}:
        raise invalid('site_env must be {"managed": {...}, "variables": {...}}')
    managed = parse_env_values(raw.get("managed", {}), "managed")
    variables = parse_env_values(raw.get("variables", {}), "variables")
    both = sorted(set(managed) & set(variables))
    if both:
        raise invalid("names both managed and set by the site: {}".format(", ".join(both)))
    if len(managed) + len(variables) > ENV_MAX_NAMES:
        raise invalid(f"at most {ENV_MAX_NAMES} variables")
    for name, value in managed.items():
        if _SECRETISH.search(name):
            ctx.secret(value)
    for value in variables.values():
        ctx.secret(value)
    return {**managed, **variables}


def dotenv_quote(value: str) -> str:
    """A value as phpdotenv reads it back: bare when it holds nothing the parser treats specially
    (readable, and what simple readers expect), else double-quoted with escapes."""
    if _DOTENV_BARE.fullmatch(value):
        return value
    return '"' + "".join(_DOTENV_ESCAPES.get(char, char) for char in value) + '"'


def render_dotenv(values: dict[str, str]) -> bytes:
    # No comment line: simple KEY=value readers (a plain PHP site's own) would trip over it.
    lines = [f"{name}={dotenv_quote(value)}" for name, value in values.items()]
    return "".join(line + "\n" for line in lines).encode("utf-8", "surrogatepass")


def read_own_file(path: str) -> bytes | None:
    """The regular file at PATH (not followed if it is a symlink), or None. Site user only."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read()
    finally:
        os.close(fd)


def write_shared_env(site: Site, data: bytes) -> bool:
    """shared/.env = DATA, 0640 site user : site group. Runs as the site user. True if changed."""
    path = site.sub("shared", ENV_FILE)
    if os.path.isdir(path) and not os.path.islink(path):
        raise AgentError("conflict", f"{site.public_home}/shared/{ENV_FILE} is a directory", "env")
    if read_own_file(path) == data:
        st = os.lstat(path)
        if (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, site.gid):
            return False
    write_file_as_user(path, data, 0o640, gid=site.gid)
    return True


def link_env(dest: str) -> str | None:
    """DEST/.env -> ../../shared/.env (a release dir). Runs as the site user. What it did, or None."""
    path = os.path.join(dest, ENV_FILE)
    target = os.path.join("..", "..", "shared", ENV_FILE)
    if os.path.islink(path) and os.readlink(path) == target:
        return None
    if os.path.isdir(path) and not os.path.islink(path):
        raise AgentError("build_failed", f"{ENV_FILE} is a directory in the release", "env")
    tmp = os.path.join(dest, f".chom-env-{os.getpid()}")
    _unlink_quietly(tmp)
    os.symlink(target, tmp)
    os.rename(tmp, path)  # replaces a file the repository or an older CHOM put there
    return f"linked {ENV_FILE} -> shared/{ENV_FILE}"


def config_cache_stale(release_dir: str) -> bool:
    """Laravel's cached config is missing or older than the env file. Runs as the site user."""
    try:
        cached = os.lstat(os.path.join(release_dir, "bootstrap", "cache", "config.php")).st_mtime_ns
        env = os.stat(os.path.join(release_dir, ENV_FILE)).st_mtime_ns
    except OSError:
        return True
    return cached < env


def parse_hook(raw: Any, what: str) -> list[str]:
    """A deploy hook: an argv list of tenant text, never run through a shell."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= HOOK_MAX_ARGS:
        raise invalid(f"{what} must be a list of 1 to {HOOK_MAX_ARGS} arguments")
    for arg in raw:
        if not isinstance(arg, str) or "\x00" in arg or len(arg) > HOOK_MAX_ARG_CHARS:
            raise invalid(
                f"{what}: each argument must be text without NUL, at most {HOOK_MAX_ARG_CHARS} chars"
            )
    if not raw[0]:
        raise invalid(f"{what}: the command (first argument) is empty")
    return raw


def run_hook(ctx: Context, site: Site, argv: list[str], cwd: str, step: str, error_code: str) -> None:
    started = time.monotonic()
    try:
        proc = run_as_site(ctx, site, argv, step=step, cwd=cwd, timeout=ctx.config.build_timeout)
    except AgentError as exc:
        raise AgentError(error_code, f"{step} failed: {exc.message}", step)
    tail = output_tail(proc)
    ctx.log(f"{step} {argv[0]}: exit {proc.returncode} in {time.monotonic() - started:.1f}s")
    ctx.log_lines.extend(f"  {line}" for line in tail)
    if proc.returncode != 0:
        detail = " | ".join(tail[-8:]) or "no output"
        raise AgentError(error_code, f"{step} exited {proc.returncode}: {detail}", step)


def cmd_env_apply(ctx: Context, args: Input) -> dict[str, Any]:
    """Write the site's shared/.env, link it from current/, and make running code see it."""
    name = args.match("name", SITE_NAME_RE, "site name")
    values = parse_site_env(ctx, args.get("site_env", dict))
    php_version = args.get("php_version", str, default="")
    config_cache = args.get("config_cache", bool, default=False)
    args.finish()
    if php_version and not PHP_VERSION_RE.fullmatch(php_version):
        raise invalid(f"php_version {php_version!r} is invalid (must match {PHP_VERSION_RE.pattern})")
    assert values is not None
    site = load_site(ctx, name)
    release = current_release(site)
    data = render_dotenv(values)

    def apply() -> dict[str, Any]:
        lines = []
        if write_shared_env(site, data):
            lines.append(f"wrote shared/{ENV_FILE} ({len(values)} variables, mode 0640)")
        if release is not None:
            linked = link_env(site.sub("releases", release))
            lines += [f"{linked} in {release}"] if linked else []
        stale = release is not None and config_cache and config_cache_stale(site.sub("releases", release))
        return {"lines": lines, "stale": stale}

    done = in_site_process(site, "env", apply)
    for line in done["lines"]:
        ctx.change(line)
    if not done["lines"]:
        ctx.log(f"shared/{ENV_FILE} unchanged")
    cached = False
    if release is not None and (done["lines"] or done["stale"]) and config_cache:
        run_step(ctx, site, "artisan-config-cache", site.sub("releases", release), "command_failed")
        ctx.change(f"config:cache ran in {release}")
        cached = True
    reloaded: list[str] = []
    if ctx.changed:
        reloaded = reload_site_processes(ctx, site, php_version)
    return {
        "path": f"{site.public_home}/shared/{ENV_FILE}",
        "release": release,
        "config_cached": cached,
        "reloaded": reloaded,
    }


def reload_site_processes(ctx: Context, site: Site, php_version: str) -> list[str]:
    """PHP-FPM (a graceful reload), the site's workers and supervisor programs (an older CHOM's),
    under the VPS lock: a
    pool-apply of another site must not be reloaded half-validated."""
    import configparser

    done = []
    lock = acquire_lock(ctx.config)  # site lock first, then the VPS lock (take_locks' order)
    try:
        if php_version:
            reload(ctx, php_argv(ctx.config.php_fpm_reload, php_version), f"php{php_version}-fpm")
            done.append(f"php{php_version}-fpm")
        content = read_bytes(supervisor_path(ctx.config, site.name))
        if content is not None:
            parser = configparser.ConfigParser(interpolation=None, strict=False)
            parser.read_string(content.decode("utf-8", "replace"))
            for section in parser.sections():
                kind, _, program = section.partition(":")
                if kind != "program" or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", program):
                    continue
                argv = [*ctx.config.supervisorctl, "restart", f"{program}:*"]
                proc = ctx.run(argv, step="supervisorctl-restart", check=False)
                if proc.returncode != 0:
                    # The worker is the site's own code: one that will not start (supervisor
                    # keeps retrying it) is the app's failure to show, not the environment's.
                    ctx.log(f"warning: {program} did not restart cleanly: {_tail(proc)}")
                    continue
                ctx.log(f"restarted {program}")
                done.append(program)
        done += restart_site_workers(ctx, site.name)
    finally:
        os.close(lock)
    return done


def cmd_hook_run(ctx: Context, args: Input) -> dict[str, Any]:
    """The release hook: ARGV as the site user in RELEASE, which must be current."""
    name = args.match("name", SITE_NAME_RE, "site name")
    release = args.match("release", RELEASE_RE, "release id")
    argv = parse_hook(args.get("argv", list), "argv")
    args.finish()
    site = load_site(ctx, name)
    if current_release(site) != release:
        raise AgentError("conflict", f"release {release} of {name} is not current", "validate")
    run_hook(ctx, site, argv, site.sub("releases", release), "release-hook", "command_failed")
    return {"release": release}


# --------------------------------------------------------------------------- sites: certificates


def letsencrypt_dirs(config: Config) -> list[str]:
    return [
        config.path("/etc/letsencrypt"),
        config.path("/var/lib/letsencrypt"),
        config.path("/var/log/letsencrypt"),
    ]


def read_cert(path: str) -> tuple[set[str], float] | None:
    """(DNS names, notAfter epoch) of a PEM certificate, via the ssl module's own decoder."""
    import ssl

    try:
        decoded = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
    except (OSError, ssl.SSLError):
        return None
    names = {value for kind, value in decoded.get("subjectAltName", ()) if kind == "DNS"}
    return names, float(ssl.cert_time_to_seconds(decoded["notAfter"]))


def iso_utc(epoch: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cert_input(args: Input) -> tuple[str, list[str], str, str, str | None, int]:
    name = args.match("name", SITE_NAME_RE, "site name")
    domains = args.get("domains", list)
    if not 1 <= len(domains) <= 100 or not all(
        isinstance(d, str) and DOMAIN_RE.fullmatch(d) for d in domains
    ):
        raise invalid("domains must be 1-100 lowercase host names (e.g. example.com)")
    email = args.get("email", str)
    if not EMAIL_RE.fullmatch(email):
        raise invalid(f"email {email!r} is not an email address")
    server = args.get("server", str)
    validate_url_chars(server)
    if url_scheme(server) != "https":
        raise invalid(f"server {server!r} must be an https:// ACME directory URL")
    ca_bundle = args.get("ca_bundle", str, default=None)
    if ca_bundle is not None and (
        "-----BEGIN CERTIFICATE-----" not in ca_bundle or len(ca_bundle) > 1_000_000
    ):
        raise invalid("ca_bundle must be PEM certificates")
    renew = args.get("renew_before_days", int, default=30)
    if not 0 <= renew <= 365:
        raise invalid("renew_before_days must be 0-365")
    args.finish()
    return name, list(dict.fromkeys(domains)), email, server, ca_bundle, renew


def cmd_cert_issue(ctx: Context, args: Input) -> dict[str, Any]:
    """Issue or renew the site's certificate (lineage NAME) with certbot's webroot plugin.

    Idempotent: an existing certificate for exactly these domains that expires more than
    renew_before_days from now is kept (changed false). certbot writes a new lineage version only
    after the order succeeds, so on failure the previous files keep serving.
    """
    name, domains, email, server, ca_bundle, renew = cert_input(args)
    load_site(ctx, name)
    webroot = ensure_acme_webroot(ctx, name)
    config_dir, work_dir, logs_dir = letsencrypt_dirs(ctx.config)
    live = os.path.join(config_dir, "live", name)
    existing = read_cert(os.path.join(live, "fullchain.pem"))
    if existing is not None:
        names, not_after = existing
        if names == set(domains) and not_after - time.time() > renew * 86400:
            ctx.log(f"certificate {name} covers {', '.join(domains)} until {iso_utc(not_after)}")
            return cert_data(name, not_after)
        ctx.log("certificate {} needs {}".format(name, "renewal" if names == set(domains) else "new domains"))
    for directory in (config_dir, work_dir, logs_dir):
        os.makedirs(directory, 0o700, exist_ok=True)
    argv = [
        *ctx.config.certbot,
        "certonly",
        "--webroot",
        "-w",
        webroot,
        "--cert-name",
        name,
        *[arg for domain in domains for arg in ("-d", domain)],
        "--server",
        server,
        "--non-interactive",
        "--agree-tos",
        "--no-eff-email",
        "-m",
        email,
        "--config-dir",
        config_dir,
        "--work-dir",
        work_dir,
        "--logs-dir",
        logs_dir,
    ]
    if existing is not None:
        argv.append("--force-renewal")  # the decision to renew is ours, not certbot's 30 days
    env = {}
    if ca_bundle is not None:
        bundle = os.path.join(work_dir, f"chom-ca-{name}.pem")
        atomic_write(bundle, ca_bundle.encode(), 0o644)
        env["REQUESTS_CA_BUNDLE"] = bundle
    started = time.monotonic()
    proc = ctx.run(argv, step="certbot", env=env, timeout=ctx.config.acme_timeout, check=False)
    if proc.returncode != 0:
        raise AgentError("acme_failed", f"certbot exited {proc.returncode}: {_tail(proc, 10)}", "certbot")
    issued = read_cert(os.path.join(live, "fullchain.pem"))
    if issued is None:
        raise AgentError(
            "acme_failed", f"certbot succeeded but {live}/fullchain.pem is unreadable", "certbot"
        )
    ctx.change(f"issued certificate {name} for {', '.join(domains)} in {time.monotonic() - started:.1f}s")
    return cert_data(name, issued[1])


def cert_data(name: str, not_after: float) -> dict[str, Any]:
    return {
        "cert_path": f"/etc/letsencrypt/live/{name}/fullchain.pem",
        "key_path": f"/etc/letsencrypt/live/{name}/privkey.pem",
        "not_after": iso_utc(not_after),
    }


# DNS-01 certificates (wildcard names): CHOM is the ACME client, because the DNS provider's token
# must never reach a shared VPS; the private key never leaves it. cert-csr makes a key and a CSR
# here, CHOM orders with the CSR and answers the challenges in DNS, cert-install puts the chain
# next to the key, validates nginx and reloads.
#   /var/lib/chom/tls/            root 0700
#   /var/lib/chom/tls/NAME/       root 0700  privkey.pem (0600), fullchain.pem, pending.key/.csr
WILDCARD_DOMAIN_RE = LazyRe(
    r"^(\*\.)?(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$"
)


def tls_dir(config: Config, name: str) -> str:
    return config.path(f"/var/lib/chom/tls/{name}")


def ensure_tls_dir(config: Config, name: str) -> str:
    """The site's key directory, root-only; refuses anything but a real directory on the way."""
    parent = config.path("/var/lib/chom/tls")
    for directory in (parent, tls_dir(config, name)):
        if os.path.islink(directory):
            raise AgentError("conflict", f"{directory} is a symlink", "validate")
        os.makedirs(directory, 0o700, exist_ok=True)
        os.chown(directory, 0, 0)
        os.chmod(directory, 0o700)
    return tls_dir(config, name)


def dns01_domains(args: Input) -> list[str]:
    domains = args.get("domains", list)
    if not 1 <= len(domains) <= 100 or not all(
        isinstance(d, str) and WILDCARD_DOMAIN_RE.fullmatch(d) for d in domains
    ):
        raise invalid("domains must be 1-100 lowercase host names or *.wildcards (e.g. *.example.com)")
    return list(dict.fromkeys(domains))


def openssl_argv() -> list[str]:
    return _argv_env("VPSMANAGER_OPENSSL", ["openssl"])


def cmd_cert_csr(ctx: Context, args: Input) -> dict[str, Any]:
    """A new private key and a CSR for DOMAINS (the key stays here as pending.key), unless the
    installed certificate covers exactly DOMAINS for more than renew_before_days: then "csr" is
    empty and nothing changes."""
    name = args.match("name", SITE_NAME_RE, "site name")
    domains = dns01_domains(args)
    renew = args.get("renew_before_days", int, default=30)
    if not 0 <= renew <= 365:
        raise invalid("renew_before_days must be 0-365")
    args.finish()
    load_site(ctx, name)
    directory = ensure_tls_dir(ctx.config, name)
    existing = read_cert(os.path.join(directory, "fullchain.pem"))
    if existing is not None:
        names, not_after = existing
        if names == set(domains) and not_after - time.time() > renew * 86400:
            ctx.log(f"certificate {name} covers {', '.join(domains)} until {iso_utc(not_after)}")
            return {"csr": "", "not_after": iso_utc(not_after)}
    key, csr = os.path.join(directory, "pending.key"), os.path.join(directory, "pending.csr")
    for path in (key, csr):
        _unlink_quietly(path)
    common = domains[0] if len(domains[0]) <= 64 else ""
    san = "subjectAltName=" + ",".join(f"DNS:{d}" for d in domains)
    ctx.run(
        [*openssl_argv(), "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={common}" if common else "/",
         "-addext", san],
        step="openssl-req",
    )  # fmt: skip
    os.chmod(key, 0o600)
    ctx.change(f"new key and CSR for {', '.join(domains)} (the key stays on this server)")
    with open(csr) as fh:
        return {"csr": fh.read(), "not_after": iso_utc(existing[1]) if existing else ""}


def cmd_cert_install(ctx: Context, args: Input) -> dict[str, Any]:
    """Install CHAIN (PEM, leaf first) for the pending key of cert-csr: the leaf must hold that
    key and exactly DOMAINS. Key and chain are swapped in atomically, nginx -t must pass (else
    both are put back) and nginx reloads. The same chain again changes nothing."""
    name = args.match("name", SITE_NAME_RE, "site name")
    domains = dns01_domains(args)
    chain = args.get("chain", str)
    args.finish()
    if not chain.startswith("-----BEGIN CERTIFICATE-----") or len(chain) > 1_000_000:
        raise invalid("chain must be PEM certificates, leaf first")
    load_site(ctx, name)
    directory = ensure_tls_dir(ctx.config, name)
    fullchain, privkey = os.path.join(directory, "fullchain.pem"), os.path.join(directory, "privkey.pem")
    pending = os.path.join(directory, "pending.key")
    if read_bytes(fullchain) == chain.encode() and os.path.exists(privkey):
        ctx.log(f"certificate {name} already installed")
        return cert_install_data(directory, name)
    if not os.path.isfile(pending) or os.path.islink(pending):
        raise AgentError("conflict", f"no pending key for {name}: run cert-csr first", "validate")
    staged = os.path.join(directory, "staged.pem")
    atomic_write(staged, chain.encode(), 0o644)
    try:
        decoded = read_cert(staged)
        if decoded is None or decoded[0] != set(domains):
            got = ", ".join(sorted(decoded[0])) if decoded else "nothing readable"
            raise invalid(f"the certificate is for {got}, not {', '.join(domains)}")
        leaf = ctx.run([*openssl_argv(), "x509", "-noout", "-pubkey", "-in", staged], step="openssl-x509")
        mine = ctx.run([*openssl_argv(), "pkey", "-pubout", "-in", pending], step="openssl-pkey")
        if leaf.stdout.strip() != mine.stdout.strip():
            raise invalid("the certificate does not belong to the pending key")
        snapshots = [Snapshot(privkey), Snapshot(fullchain)]
        with open(pending, "rb") as fh:
            atomic_write(privkey, fh.read(), 0o600)
        os.rename(staged, fullchain)
    finally:
        _unlink_quietly(staged)
    try:
        check_nginx(ctx)
    except AgentError:
        for snapshot in snapshots:
            snapshot.restore()
        ctx.log("restored previous key and certificate")
        raise
    for path in (pending, os.path.join(directory, "pending.csr")):
        _unlink_quietly(path)
    ctx.change(f"installed certificate {name} for {', '.join(domains)}")
    reload_nginx(ctx)
    return cert_install_data(directory, name)


def cert_install_data(directory: str, name: str) -> dict[str, Any]:
    decoded = read_cert(os.path.join(directory, "fullchain.pem"))
    return {
        "cert_path": f"/var/lib/chom/tls/{name}/fullchain.pem",
        "key_path": f"/var/lib/chom/tls/{name}/privkey.pem",
        "not_after": iso_utc(decoded[1]) if decoded else "",
    }


def remove_cert_lineage(ctx: Context, name: str) -> None:
    import shutil

    config_dir = letsencrypt_dirs(ctx.config)[0]
    paths = [
        os.path.join(config_dir, "live", name),
        os.path.join(config_dir, "archive", name),
        os.path.join(config_dir, "renewal", f"{name}.conf"),
    ]
    for path in paths:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
        else:
            continue
        ctx.change(f"removed {path}")


# --------------------------------------------------------------------------- sites: supervisor
#
# An older CHOM ran Laravel's queue worker as a supervisor program; workers are systemd units now
# ("sites: workers"). What is left: removing such a program (workers-apply, site-remove) and
# restarting it on an environment change until then.


def supervisor_path(config: Config, name: str) -> str:
    return config.path(f"/etc/supervisor/conf.d/chom-{name}.conf")


def supervisor_reload(ctx: Context) -> None:
    for verb in ("reread", "update"):
        proc = ctx.run([*ctx.config.supervisorctl, verb], step=f"supervisorctl-{verb}", check=False)
        if proc.returncode != 0:
            raise AgentError(
                "reload_failed", f"supervisorctl {verb} exited {proc.returncode}: {_tail(proc)}", "reload"
            )
        ctx.log(f"supervisorctl {verb}: {_tail(proc, 4) or 'ok'}")


def remove_supervisor(ctx: Context, name: str) -> bool:
    path = supervisor_path(ctx.config, name)
    if not os.path.lexists(path):
        return False
    os.unlink(path)
    ctx.change(f"removed /etc/supervisor/conf.d/chom-{name}.conf")
    return True


# --------------------------------------------------------------------------- sites: workers
#
# A site's long-running commands (queue workers, node processes) are systemd template units
# /etc/systemd/system/chom-NAME-worker-W@.service, one instance per process (@1, @2, ...), in the
# site's slice (its tier's limits), as the site user, hardened (read-only system, private /tmp
# and devices, no new privileges; only the site's home is writable). workers-apply makes the
# site's units match the list it is given exactly: new or changed units are checked with
# `systemd-analyze verify` before any goes live (a refused unit changes nothing: the previous
# ones keep running), stale ones are stopped, disabled and removed. While the site is suspended
# (`suspended`), every instance is stopped and disabled and its units kept, so lifting the
# suspension starts exactly what the site had.
#
# No tenant text is ever put into a unit: the unit runs WORKER_EXEC (root's, below) with the
# site and worker names (both validated), and WORKER_EXEC reads the argv from the root-owned
# spec /etc/chom/workers/NAME.json (0640 root:NAME). The site's environment comes from its
# shared/.env, read by WORKER_EXEC *as the site user*: systemd reads EnvironmentFile= as root,
# and the site can make .env a symlink to /etc/shadow, so it is never an EnvironmentFile.

WORKER_NAME_RE = LazyRe(r"^[a-z][a-z0-9-]{0,39}$")
WORKER_RESTARTS = ("always", "on-failure")
WORKERS_MAX = 50
WORKER_PROCESSES_MAX = 64
WORKER_EXEC = "/usr/local/lib/chom/worker-exec"
WORKER_UNIT_DIR = "/etc/systemd/system"
WORKER_UNIT_TEMPLATE = """\
# Managed by CHOM (vpsmanager workers-apply): worker {worker} of site {name}, one instance per
# process. Changes are overwritten.
[Unit]
Description=CHOM site {name} worker {worker} (process %i)
After=network.target mariadb.service
StartLimitIntervalSec=0

[Service]
Type=simple
User={name}
Group={name}
Slice=chom-{name}.slice
WorkingDirectory=/var/www/{name}/current
ExecStart=/usr/bin/python3 -I {exec} /etc/chom/workers/{name}.json {worker}
Restart={restart}
RestartSec=3s
KillMode=mixed
TimeoutStopSec=60s
UMask=0027
SyslogIdentifier=chom-{name}-worker-{worker}
NoNewPrivileges=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectSystem=strict
ProtectHome=yes
ReadWritePaths=/var/www/{name}
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
CapabilityBoundingSet=
AmbientCapabilities=

[Install]
WantedBy=multi-user.target
"""
# Runs as the site user (the unit's User=): the argv from the spec, the environment from the
# site's own .env, read with the site user's rights only, then exec. stdlib, Python >= 3.9.
WORKER_EXEC_SOURCE = r"""# Managed by CHOM (vpsmanager workers-apply): starts one worker process of a site.
# Runs as the site user: what it reads, the site could read anyway.
import json
import os
import re
import sys

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAME = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)")
ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "f": "\f", "v": "\v", "\\": "\\", '"': '"', "$": "$"}
KEPT = ("INVOCATION_ID", "JOURNAL_STREAM", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID")


def unquote(raw):
    raw = raw.strip()
    if raw[:1] == '"':
        out, i = [], 1
        while i < len(raw) and raw[i] != '"':
            if raw[i] == "\\" and i + 1 < len(raw):
                out.append(ESCAPES.get(raw[i + 1], "\\" + raw[i + 1]))
                i += 2
                continue
            out.append(raw[i])
            i += 1
        return "".join(out)
    if raw[:1] == "'":
        return raw[1:].split("'", 1)[0]
    return raw.split(" #", 1)[0].strip()


def dotenv(text):
    values = {}
    for line in text.splitlines():
        match = NAME.fullmatch(line.strip())
        if match:
            values[match.group(1)] = unquote(match.group(2))
    return values


def refuse(worker, why):
    sys.stderr.write("chom worker %s: %s; not starting\n" % (worker, why))


def main():
    spec_path, worker = sys.argv[1], sys.argv[2]
    with open(spec_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    argv = spec["workers"][worker]
    env = {k: v for k, v in os.environ.items() if k in KEPT}
    env.update(HOME=spec["home"], USER=spec["user"], LOGNAME=spec["user"], PATH=SAFE_PATH, LANG="C.UTF-8")
    if spec.get("env_file"):
        try:
            fd = os.open(spec["env_file"], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
        except FileNotFoundError:
            fd = None
        except OSError as exc:
            refuse(worker, "cannot read %s: %s" % (spec["env_file"], exc.strerror))
            return 78
        if fd is not None:
            with os.fdopen(fd, "rb") as fh:
                if not os.path.stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    refuse(worker, "%s is not a regular file" % spec["env_file"])
                    return 78
                env.update(dotenv(fh.read(1024 * 1024).decode("utf-8", "replace")))
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        sys.stderr.write("chom worker %s: cannot run %s: %s\n" % (worker, argv[0], exc.strerror))
        return 127


sys.exit(main())
"""


def worker_unit_name(name: str, worker: str, instance: str = "") -> str:
    return f"chom-{name}-worker-{worker}@{instance}.service"


def worker_spec_label(name: str) -> str:
    return f"/etc/chom/workers/{name}.json"


def parse_workers(raw: Any) -> list[dict[str, Any]]:
    """[{name, argv, processes, restart, enabled}] (argv as deploy hooks: tenant text, no NUL
    or line breaks, never run through a shell)."""
    if not isinstance(raw, list) or len(raw) > WORKERS_MAX:
        raise invalid(f"workers must be a list of at most {WORKERS_MAX}")
    keys = {"name", "argv", "processes", "restart", "enabled"}
    workers, total = [], 0
    for item in raw:
        if not isinstance(item, dict) or set(item) != keys:
            raise invalid("each worker needs exactly: {}".format(", ".join(sorted(keys))))
        if not isinstance(item["name"], str) or not WORKER_NAME_RE.fullmatch(item["name"]):
            raise invalid(f"worker name {item['name']!r} is invalid (must match {WORKER_NAME_RE.pattern})")
        argv = parse_hook(item["argv"], f"worker {item['name']} argv")
        if any("\n" in arg or "\r" in arg for arg in argv):
            raise invalid(f"worker {item['name']} argv: no line breaks")
        processes = item["processes"]
        if type(processes) is not int or not 1 <= processes <= WORKER_PROCESSES_MAX:
            raise invalid(f"worker {item['name']}: processes must be 1 to {WORKER_PROCESSES_MAX}")
        if item["restart"] not in WORKER_RESTARTS or not isinstance(item["enabled"], bool):
            raise invalid(f"worker {item['name']}: restart is always|on-failure, enabled a boolean")
        total += processes
        workers.append(dict(item))
    names = [w["name"] for w in workers]
    if len(set(names)) != len(names):
        raise invalid("worker names must be unique")
    if total > WORKER_PROCESSES_MAX:
        raise invalid(f"at most {WORKER_PROCESSES_MAX} worker processes per site")
    return workers


def render_worker_unit(name: str, worker: dict[str, Any]) -> bytes:
    return WORKER_UNIT_TEMPLATE.format(
        name=name, worker=worker["name"], restart=worker["restart"], exec=WORKER_EXEC
    ).encode()


def render_worker_spec(site: Site, workers: list[dict[str, Any]], env: bool) -> bytes:
    spec = {
        "user": site.name,
        "home": site.public_home,
        "env_file": f"{site.public_home}/shared/{ENV_FILE}" if env else None,
        "workers": {w["name"]: w["argv"] for w in workers},
    }
    return (json.dumps(spec, indent=1, sort_keys=True) + "\n").encode()


def worker_units_on_disk(config: Config, name: str) -> dict[str, str]:
    """{worker: unit file path} of the site's worker templates."""
    import glob

    prefix = f"chom-{name}-worker-"
    found = {}
    for path in glob.glob(config.path(f"{WORKER_UNIT_DIR}/{glob.escape(prefix)}*@.service")):
        worker = os.path.basename(path)[len(prefix) : -len("@.service")]
        # Site "a"'s pattern also matches site "a-worker-b"'s units: the unit's User= tells.
        if WORKER_NAME_RE.fullmatch(worker) and f"\nUser={name}\n".encode() in (read_bytes(path) or b""):
            found[worker] = path
    return found


def worker_instances(ctx: Context, name: str) -> set[str]:
    """Instances of the site's workers that systemd knows (loaded, or enabled at boot)."""
    import glob

    pattern = f"chom-{name}-worker-*@*.service"
    proc = ctx.run(
        [*ctx.config.systemctl, "list-units", "--all", "--plain", "--no-legend", "--full", pattern],
        step="workers",
        check=False,
    )
    units = {line.split()[0] for line in proc.stdout.splitlines() if line.split()}
    wants = ctx.config.path(f"{WORKER_UNIT_DIR}/multi-user.target.wants")
    units |= {os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(wants), pattern))}
    ours = {worker_unit_name(name, w) for w in worker_units_on_disk(ctx.config, name)}
    return {u for u in units if u.partition("@")[0] + "@.service" in ours and not u.endswith("@.service")}


def verify_worker_units(ctx: Context, name: str, units: dict[str, bytes]) -> None:
    """systemd-analyze verify on copies of UNITS (file name -> content) in a private directory:
    nothing is installed when one of them has a problem."""
    import shutil
    import tempfile

    analyze = _argv_env("VPSMANAGER_SYSTEMD_ANALYZE", ["systemd-analyze"])
    scratch = tempfile.mkdtemp(prefix=f"chom-verify-{name}-")
    try:
        paths = []
        for filename, data in sorted(units.items()):
            path = os.path.join(scratch, filename)
            with open(path, "wb") as fh:
                fh.write(data)
            paths.append(path)
        proc = ctx.run([*analyze, "verify", *paths], step="verify-units", check=False)
        ours = [
            line.strip()
            for line in (proc.stderr + proc.stdout).splitlines()
            if line.startswith(scratch) or (" " in line and line.split(":")[0].startswith(f"chom-{name}-"))
        ]
        if proc.returncode != 0 or ours:
            detail = " | ".join(line.replace(scratch + "/", "") for line in ours[-6:]) or _tail(proc)
            raise AgentError("unit_invalid", f"systemd-analyze verify refused the units: {detail}", "verify")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def systemctl_units(ctx: Context, verb: str, units: list[str], *, no_block: bool = False) -> None:
    if not units:
        return
    argv = [*ctx.config.systemctl, verb, *(["--no-block"] if no_block else []), "--", *sorted(units)]
    proc = ctx.run(argv, step=f"systemctl-{verb.replace(' ', '-')}", check=False)
    if proc.returncode != 0:
        raise AgentError("command_failed", f"systemctl {verb} exited {proc.returncode}: {_tail(proc)}", verb)


def active_units(ctx: Context, units: list[str]) -> set[str]:
    if not units:
        return set()
    proc = ctx.run([*ctx.config.systemctl, "is-active", "--", *units], step="workers", check=False)
    states = proc.stdout.split()
    live = ("active", "activating", "reloading")
    return {unit for i, unit in enumerate(units) if i < len(states) and states[i] in live}


def cmd_workers_apply(ctx: Context, args: Input) -> dict[str, Any]:
    """The site's worker units = WORKERS exactly; RESTART: restart the running ones anyway (after
    a release switch or an environment change: a worker keeps the code and variables it started
    with). ENV: the workers get the site's shared/.env. SUSPENDED (the site is suspended): the
    units and spec are kept in line all the same, but every instance is stopped and disabled, and
    none is started or restarted, until a run without it."""
    name = args.match("name", SITE_NAME_RE, "site name")
    workers = parse_workers(args.get("workers", list))
    env = args.get("env", bool, default=True)
    restart = args.get("restart", bool, default=False)
    suspended = args.get("suspended", bool, default=False)
    args.finish()
    config = ctx.config
    site = load_site(ctx, name)
    wanted = {w["name"]: render_worker_unit(name, w) for w in workers}
    on_disk = worker_units_on_disk(config, name)
    changed_units = {
        worker: data
        for worker, data in wanted.items()
        if worker not in on_disk or read_bytes(on_disk[worker]) != data
    }
    if changed_units:
        verify_worker_units(ctx, name, {worker_unit_name(name, w): d for w, d in changed_units.items()})
    lock = acquire_lock(config)  # systemd's state is the VPS's: the site lock is held already
    try:
        restarted = apply_workers(ctx, site, workers, env, restart, changed_units, on_disk, suspended)
    finally:
        os.close(lock)
    # The programs of an older CHOM (Laravel's queue worker): CHOM adopts them as workers.
    supervisor_removed = remove_supervisor(ctx, name)
    if supervisor_removed:
        supervisor_reload(ctx)
    if not ctx.changed:
        ctx.log(f"workers of {name} unchanged")
    return {
        "units": [worker_unit_name(name, w["name"]) for w in workers],
        "restarted": sorted(restarted),
        "supervisor_removed": supervisor_removed,
        "suspended": suspended,
    }


def apply_workers(
    ctx: Context,
    site: Site,
    workers: list[dict[str, Any]],
    env: bool,
    restart: bool,
    changed_units: dict[str, bytes],
    on_disk: dict[str, str],
    suspended: bool = False,
) -> list[str]:
    config, name = ctx.config, site.name
    wanted_instances = {
        worker_unit_name(name, w["name"], str(i)): w["name"]
        for w in workers
        if w["enabled"]
        for i in range(1, w["processes"] + 1)
    }
    stale = stoppable_instances(ctx, name, set() if suspended else set(wanted_instances))
    if stale:
        systemctl_units(ctx, "stop", stale)
        systemctl_units(ctx, "disable", stale)
        ctx.change("stopped {}{}".format(", ".join(stale), " (site suspended)" if suspended else ""))
    os.makedirs(config.path("/usr/local/lib/chom"), 0o755, exist_ok=True)
    os.makedirs(config.path("/etc/chom/workers"), 0o755, exist_ok=True)
    os.makedirs(config.path(WORKER_UNIT_DIR), 0o755, exist_ok=True)
    write_if_different(ctx, config.path(WORKER_EXEC), WORKER_EXEC, WORKER_EXEC_SOURCE.encode(), 0o755, 0, 0)
    spec_label = worker_spec_label(name)
    spec_before = read_bytes(config.path(spec_label))
    spec = render_worker_spec(site, workers, env)
    write_if_different(ctx, config.path(spec_label), spec_label, spec, 0o640, 0, site.gid)
    previous_argv = json.loads(spec_before)["workers"] if spec_before else {}
    reload_needed = False
    for worker, data in sorted(changed_units.items()):
        label = f"{WORKER_UNIT_DIR}/{worker_unit_name(name, worker)}"
        atomic_write(config.path(label), data, 0o644)
        ctx.change(f"wrote {label}")
        reload_needed = True
    for worker in sorted(set(on_disk) - {w["name"] for w in workers}):
        os.unlink(on_disk[worker])
        ctx.change(f"removed {WORKER_UNIT_DIR}/{worker_unit_name(name, worker)}")
        reload_needed = True
    if reload_needed:
        ctx.run([*config.systemctl, "daemon-reload"], step="daemon-reload")
    if suspended:
        if wanted_instances:
            ctx.log("site suspended: {} kept stopped".format(", ".join(sorted(wanted_instances))))
        return []
    by_argv = {w["name"] for w in workers if previous_argv.get(w["name"]) != w["argv"]}
    units = sorted(wanted_instances)
    wants = config.path(f"{WORKER_UNIT_DIR}/multi-user.target.wants")
    to_enable = [u for u in units if not os.path.lexists(os.path.join(wants, u))]
    systemctl_units(ctx, "enable", to_enable)
    if to_enable:
        ctx.change("enabled {}".format(", ".join(to_enable)))
    running = active_units(ctx, units)
    outdated = {u for u in units if wanted_instances[u] in changed_units or wanted_instances[u] in by_argv}
    to_restart = sorted(u for u in running if restart or u in outdated)
    to_start = sorted(set(units) - running)
    systemctl_units(ctx, "start", to_start, no_block=True)
    if to_start:
        ctx.change("started {}".format(", ".join(to_start)))
    # --no-block: a queue worker finishes its job first (TimeoutStopSec); the run does not wait.
    systemctl_units(ctx, "restart", to_restart, no_block=True)
    if to_restart:
        ctx.change("restarted {}".format(", ".join(to_restart)))
    return to_start + to_restart


def stoppable_instances(ctx: Context, name: str, kept: set[str]) -> list[str]:
    """The site's worker instances, other than KEPT, that run or are enabled at boot: the ones a
    stop and disable changes (one stopped already, even if systemd still lists it as failed, is
    left alone, so a second run changes nothing)."""
    others = sorted(worker_instances(ctx, name) - kept)
    wants = ctx.config.path(f"{WORKER_UNIT_DIR}/multi-user.target.wants")
    enabled = {u for u in others if os.path.lexists(os.path.join(wants, u))}
    return sorted(enabled | active_units(ctx, others))


def remove_workers(ctx: Context, name: str) -> None:
    """site-remove: the site's worker instances stopped, their units and spec gone."""
    stale = sorted(worker_instances(ctx, name))
    systemctl_units(ctx, "stop", stale)
    systemctl_units(ctx, "disable", stale)
    removed = list(worker_units_on_disk(ctx.config, name).values())
    spec = ctx.config.path(worker_spec_label(name))
    for path in [*removed, spec] if os.path.lexists(spec) else removed:
        os.unlink(path)
        ctx.change(f"removed {path[len(ctx.config.root.rstrip('/')) :]}")
    if removed:
        ctx.run([*ctx.config.systemctl, "daemon-reload"], step="daemon-reload")


def restart_site_workers(ctx: Context, name: str) -> list[str]:
    """Restart the site's running workers (they keep the variables they started with)."""
    running = sorted(active_units(ctx, sorted(worker_instances(ctx, name))))
    systemctl_units(ctx, "restart", running, no_block=True)
    for unit in running:
        ctx.log(f"restarted {unit}")
    return running


EXIT_RE = LazyRe(r"Main process exited, code=(exited|killed|dumped), status=([0-9]+)")


def journal_exits(ctx: Context, units: list[str]) -> dict[str, tuple[str, int]]:
    """{unit: (exit|signal, status)} of each unit's last main process exit, from what systemd
    logged about it ("Main process exited, code=killed, status=9/KILL"); {} without a journal."""
    journalctl = _argv_env("VPSMANAGER_JOURNALCTL", ["journalctl"])
    argv = [*journalctl, "--no-pager", "-o", "json", "-n", "1000", "_PID=1"]
    for unit in units:
        argv += ["UNIT=" + unit]
    try:
        proc = ctx.run(argv, step="workers-journal", check=False, timeout=15)
    except AgentError:
        return {}
    exits: dict[str, tuple[str, int]] = {}
    for line in proc.stdout.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        match = EXIT_RE.search(str(entry.get("MESSAGE", ""))) if isinstance(entry, dict) else None
        if match and entry.get("UNIT") in units:
            exits[entry["UNIT"]] = ("exit" if match.group(1) == "exited" else "signal", int(match.group(2)))
    return exits


WORKER_SHOW = ("Id", "ActiveState", "SubState", "NRestarts", "ExecMainStatus", "ExecMainCode", "MainPID")


def cmd_workers_status(ctx: Context, args: Input) -> dict[str, Any]:
    """Per worker: its instances' states, and running / restarts / last exit / main PIDs summed."""
    name = args.match("name", SITE_NAME_RE, "site name")
    args.finish()
    units = sorted(worker_instances(ctx, name))
    workers: dict[str, dict[str, Any]] = {
        worker: {"running": 0, "restarts": 0, "last_exit": None, "pids": 0, "instances": []}
        for worker in worker_units_on_disk(ctx.config, name)
    }
    if units:
        argv = [*ctx.config.systemctl, "show", "-p", ",".join(WORKER_SHOW), "--", *units]
        proc = ctx.run(argv, step="workers-status")
        exits = journal_exits(ctx, units)
        for block in proc.stdout.strip().split("\n\n"):
            props = dict(line.partition("=")[::2] for line in block.splitlines() if "=" in line)
            unit = props.get("Id", "")
            worker, _, instance = unit[len(f"chom-{name}-worker-") : -len(".service")].partition("@")
            if not unit.startswith(f"chom-{name}-worker-") or not WORKER_NAME_RE.fullmatch(worker):
                continue
            entry = workers.setdefault(
                worker, {"running": 0, "restarts": 0, "last_exit": None, "pids": 0, "instances": []}
            )
            pid = int(props.get("MainPID") or 0)
            state = props.get("ActiveState", "unknown")
            restarts = int(props.get("NRestarts") or 0)
            status = int(props.get("ExecMainStatus") or 0)
            # ExecMainCode: 1 exited (status = exit code), 2 killed / 3 dumped (status = signal);
            # 0 while a restarted process runs: then systemd's journal says how the last one ended.
            code = int(props.get("ExecMainCode") or 0)
            last_exit = {"1": "exit", "2": "signal", "3": "signal"}.get(str(code))
            if last_exit is None and unit in exits:
                last_exit, status = exits[unit]
            entry["instances"].append(
                {
                    "instance": instance,
                    "active_state": state,
                    "sub_state": props.get("SubState", ""),
                    "restarts": restarts,
                    "pid": pid,
                    "last_exit": {"kind": last_exit, "status": status} if last_exit else None,
                }
            )
            entry["running"] += state == "active"
            entry["pids"] += pid != 0
            entry["restarts"] += restarts
            if last_exit:
                entry["last_exit"] = {"kind": last_exit, "status": status}
    return {"workers": dict(sorted(workers.items()))}


# --------------------------------------------------------------------------- sites: cron jobs

# A site's cron jobs are systemd timers: chom-NAME-cron-ID.timer starts the oneshot
# chom-NAME-cron-ID.service (never twice at once: a start while it runs joins that run) as the
# site user, in the site's slice, with a time limit. The argv is not in the unit (unit files are
# world-readable): it is in JOB_DIR/NAME/ID.json, root's, readable by the site's group only, and
# CRON_RUNNER, started by systemd as the site user, reads it and the site's .env, then execs the
# command in current/. So the .env, which the site user may swap for a symlink to any file, is
# only ever opened with the site user's rights: systemd's own EnvironmentFile= would read it as
# root. While the site is suspended (`suspended`), its timers are stopped and disabled (and a run
# in progress stopped), the units kept for when the suspension is lifted.
CRON_JOB_DIR = "/var/lib/chom/cron"
CRON_RUNNER_PATH = "/usr/local/lib/chom/cron-run"
CRON_MAX_JOBS = 200
CRON_TIMEOUT_MAX = 86400
CRON_CALENDAR_RE = LazyRe(r"^[A-Za-z0-9*,./: -]{1,200}$")
CRON_OUTPUT_MAX_CHARS = 4000
CRON_RUNNER = """\
#!/usr/bin/python3 -IS
# Managed by CHOM: runs one cron job of a site. Started by systemd as the site user, so the job
# file (readable by the site's group) and the site's .env (the site's own file, which may be a
# link anywhere) are read with the site user's rights only.
import json
import os
import stat
import sys

ESCAPES = {"n": "\\n", "r": "\\r", "t": "\\t", "f": "\\f", "v": "\\v"}


def unquote(raw):
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    if not (len(raw) >= 2 and raw[0] == raw[-1] == '"'):
        return raw
    out, chars = [], iter(raw[1:-1])
    for char in chars:
        if char == "\\\\":
            char = next(chars, "")
            char = ESCAPES.get(char, char)
        out.append(char)
    return "".join(out)


def dotenv(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}
        text = fh.read(1 << 20).decode("utf-8", "replace")
    values = {}
    for line in text.splitlines():
        name, sep, raw = line.partition("=")
        name = name.strip()
        if name.startswith("export "):
            name = name[7:].strip()
        if sep and name.isascii() and name.isidentifier():
            values[name] = unquote(raw.strip())
    return values


def main():
    with open(sys.argv[1], "rb") as fh:
        job = json.load(fh)
    # The unit's HOME, PATH, USER... win over the file's, as phpdotenv's immutable loader does.
    env = dict(dotenv(job["env_file"]), **os.environ)
    try:
        os.chdir(job["directory"])
        os.execvpe(job["argv"][0], job["argv"], env)
    except OSError as exc:
        sys.stderr.write("chom cron: {}: {}\\n".format(exc.filename or job["argv"][0], exc.strerror))
        return 127 if isinstance(exc, FileNotFoundError) else 126


sys.exit(main())
"""


def cron_unit(name: str, job_id: int) -> str:
    return f"chom-{name}-cron-{job_id}"


def parse_cron_jobs(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or len(raw) > CRON_MAX_JOBS:
        raise invalid(f"jobs must be a list of at most {CRON_MAX_JOBS} objects")
    jobs = []
    for item in raw:
        if not isinstance(item, dict):
            raise invalid("each job must be an object")
        job = Input(item)
        job_id = job.get("id", int)
        calendar = job.get("on_calendar", list)
        argv = parse_hook(job.get("command", list), "command")
        enabled = job.get("enabled", bool)
        timeout = job.get("timeout_seconds", int)
        job.finish()
        if not 1 <= job_id < 2**31:
            raise invalid(f"job id {job_id} is out of range")
        if not 1 <= len(calendar) <= 4 or not all(
            isinstance(c, str) and CRON_CALENDAR_RE.fullmatch(c) for c in calendar
        ):
            raise invalid(f"job {job_id}: on_calendar must be 1-4 calendar expressions")
        if any("\n" in arg or "\r" in arg for arg in argv):
            raise invalid(f"job {job_id}: command arguments may not contain line breaks")
        if not 1 <= timeout <= CRON_TIMEOUT_MAX:
            raise invalid(f"job {job_id}: timeout_seconds must be 1-{CRON_TIMEOUT_MAX}")
        jobs.append({"id": job_id, "on_calendar": calendar, "command": argv, "enabled": enabled,
                     "timeout": timeout})  # fmt: skip
    if len({job["id"] for job in jobs}) != len(jobs):
        raise invalid("jobs must not repeat an id")
    return jobs


def render_cron_service(site: Site, job: dict[str, Any]) -> bytes:
    name, unit = site.name, cron_unit(site.name, job["id"])
    home = site.public_home
    return (
        f"# Managed by CHOM: cron job {job['id']} of site {name}.\n"
        f"[Unit]\nDescription=CHOM cron job {job['id']} of site {name}\n"
        f"[Service]\nType=oneshot\nUser={name}\nSlice={slice_name(name)}\n"
        f"Environment=HOME={home} USER={name} LOGNAME={name} PATH={SAFE_PATH} LANG=C.UTF-8 "
        f"TMPDIR={home}/tmp\n"
        f"UMask=0027\nNoNewPrivileges=yes\nTimeoutStartSec={job['timeout']}\n"
        f"SyslogIdentifier={unit}\n"
        f"ExecStart=/usr/bin/python3 -IS {CRON_RUNNER_PATH} {CRON_JOB_DIR}/{name}/{job['id']}.json\n"
    ).encode()


def render_cron_timer(site: Site, job: dict[str, Any]) -> bytes:
    unit = cron_unit(site.name, job["id"])
    calendars = "".join(f"OnCalendar={c}\n" for c in job["on_calendar"])
    return (
        f"# Managed by CHOM: the schedule of cron job {job['id']} of site {site.name}.\n"
        f"[Unit]\nDescription=Schedule of CHOM cron job {job['id']} of site {site.name}\n"
        f"[Timer]\n{calendars}AccuracySec=1s\nUnit={unit}.service\n"
        "[Install]\nWantedBy=timers.target\n"
    ).encode()


def render_cron_job(site: Site, job: dict[str, Any]) -> bytes:
    data = {
        "argv": job["command"],
        "directory": f"{site.public_home}/current",
        "env_file": f"{site.public_home}/shared/{ENV_FILE}",
    }
    return (json.dumps(data, sort_keys=True) + "\n").encode()


def installed_cron_ids(config: Config, name: str) -> set[int]:
    pattern = re.compile(r"chom-" + re.escape(name) + r"-cron-([0-9]+)\.(?:service|timer)")
    found = set()
    units = config.path("/etc/systemd/system")
    for entry in os.listdir(units) if os.path.isdir(units) else []:
        match = pattern.fullmatch(entry)
        if match:
            found.add(int(match.group(1)))
    jobs = config.path(f"{CRON_JOB_DIR}/{name}")
    if os.path.isdir(jobs):
        found.update(int(e[:-5]) for e in os.listdir(jobs) if re.fullmatch(r"[0-9]+\.json", e))
    return found


def put_root_file(ctx: Context, label: str, data: bytes, mode: int, gid: int = 0) -> bool:
    """LABEL (a root-owned path in a root-owned directory) = DATA. True if it changed."""
    path = ctx.config.path(label)
    try:
        st: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        st = None
    if (
        st is not None
        and stat.S_ISREG(st.st_mode)
        and (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, 0, gid)
        and read_bytes(path) == data
    ):
        return False
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    atomic_write(path, data, mode, 0, gid)
    ctx.change(f"wrote {label}")
    return True


def check_calendars(ctx: Context, jobs: list[dict[str, Any]]) -> None:
    expressions = sorted({c for job in jobs for c in job["on_calendar"]})
    if not expressions:
        return
    argv = [*ctx.config.systemd_analyze, "calendar", "--", *expressions]
    proc = ctx.run(argv, step="calendar", check=False, timeout=30)
    if proc.returncode != 0:
        raise AgentError("config_invalid", f"systemd-analyze calendar refused: {_tail(proc, 4)}", "validate")


def verify_cron_units(ctx: Context, site: Site, files: dict[str, bytes]) -> None:
    """`systemd-analyze verify` of the new units, from a private directory, before any goes live."""
    import shutil
    import tempfile

    units = {label: data for label, data in files.items() if label.endswith((".service", ".timer"))}
    if not units:
        return
    directory = tempfile.mkdtemp(prefix="chom-cron-verify-")
    try:
        paths = []
        for label, data in sorted(units.items()):
            path = os.path.join(directory, os.path.basename(label))
            with open(path, "wb") as fh:
                fh.write(data)
            paths.append(path)
        argv = [*ctx.config.systemd_analyze, "verify", "--man=no", "--", *paths]
        proc = ctx.run(argv, step="verify", check=False, timeout=60)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    problems = [
        line.strip()
        for line in (proc.stderr or "").splitlines()
        if os.path.basename(directory) in line or "chom-" + site.name + "-cron-" in line
    ]
    if proc.returncode != 0 or problems:
        detail = " | ".join(problems[-4:]) or _tail(proc, 4)
        raise AgentError("config_invalid", f"systemd-analyze verify refused the units: {detail}", "validate")


def cmd_cron_apply(ctx: Context, args: Input) -> dict[str, Any]:
    """The site's cron jobs on the VPS = JOBS, exactly: units and job files written (validated
    first, so a refused set leaves the previous one running), stale ones stopped and removed,
    timers enabled or disabled, and the legacy /etc/cron.d/chom-NAME removed. SUSPENDED (the site
    is suspended): the units and job files are kept in line all the same, but every timer is
    stopped and disabled and a run in progress is stopped, until a run without it."""
    name = args.match("name", SITE_NAME_RE, "site name")
    jobs = parse_cron_jobs(args.get("jobs", list))
    suspended = args.get("suspended", bool, default=False)
    args.finish()
    config = ctx.config
    site = load_site(ctx, name)
    legacy = f"/etc/cron.d/chom-{name}"
    if not systemd_is_init(config):
        if jobs:
            raise AgentError(
                "unsupported",
                "cron jobs run as systemd timers, and systemd is not the init system of this server",
                "validate",
            )
        remove_legacy_cron(ctx, legacy)
        return {"jobs": []}
    check_calendars(ctx, jobs)
    files: dict[str, bytes] = {}
    for job in jobs:
        unit = cron_unit(name, job["id"])
        files[f"/etc/systemd/system/{unit}.service"] = render_cron_service(site, job)
        files[f"/etc/systemd/system/{unit}.timer"] = render_cron_timer(site, job)
    verify_cron_units(ctx, site, files)
    stale = sorted(installed_cron_ids(config, name) - {job["id"] for job in jobs})
    reload_needed = remove_cron_jobs(ctx, name, stale)
    changed_timers = set()
    if jobs:
        put_root_file(ctx, CRON_RUNNER_PATH, CRON_RUNNER.encode(), 0o755)
        ensure_root_dir(config.path(CRON_JOB_DIR), 0, 0o755)
        ensure_root_dir(config.path(f"{CRON_JOB_DIR}/{name}"), site.gid, 0o750)
    for job in jobs:
        job_file = f"{CRON_JOB_DIR}/{name}/{job['id']}.json"
        put_root_file(ctx, job_file, render_cron_job(site, job), 0o640, site.gid)
        unit = f"/etc/systemd/system/{cron_unit(name, job['id'])}"
        service, timer = f"{unit}.service", f"{unit}.timer"
        reload_needed |= put_root_file(ctx, service, files[service], 0o644)
        if put_root_file(ctx, timer, files[timer], 0o644):
            reload_needed = True
            changed_timers.add(os.path.basename(timer))
    if reload_needed:
        ctx.run([*config.systemctl, "daemon-reload"], step="daemon-reload")
    states = set_cron_timers(ctx, name, jobs, changed_timers, suspended)
    if suspended:
        stop_cron_runs(ctx, name, jobs)
    remove_legacy_cron(ctx, legacy)
    return {
        "jobs": [{"id": job["id"], "timer": states[timer_of(name, job)]} for job in jobs],
        "suspended": suspended,
    }


def ensure_root_dir(path: str, gid: int, mode: int) -> None:
    """A directory only root writes to, under root-owned parents (so no link can be swapped in)."""
    if not os.path.isdir(path) or os.path.islink(path):
        _unlink_quietly(path)
        os.makedirs(path, mode, exist_ok=True)
    st = os.lstat(path)
    if (st.st_uid, st.st_gid) != (0, gid):
        os.chown(path, 0, gid)
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


def timer_of(name: str, job: dict[str, Any]) -> str:
    return f"{cron_unit(name, job['id'])}.timer"


def set_cron_timers(
    ctx: Context, name: str, jobs: list[dict[str, Any]], changed: set[str], suspended: bool = False
) -> dict[str, str]:
    """Enabled jobs' timers enabled and started, the others' (all while SUSPENDED) disabled and
    stopped; the timers' states after."""
    timers = [timer_of(name, job) for job in jobs]
    if not timers:
        return {}
    systemctl = ctx.config.systemctl
    is_enabled = unit_states(ctx, "is-enabled", timers)
    is_active = unit_states(ctx, "is-active", timers)
    for job in jobs:
        timer = timer_of(name, job)
        if job["enabled"] and not suspended:
            if is_enabled[timer] != "enabled" or is_active[timer] != "active":
                ctx.run([*systemctl, "enable", "--", timer], step="systemctl-enable")
                ctx.run([*systemctl, "start", "--", timer], step="systemctl-start")
                ctx.change(f"enabled and started {timer}")
            elif timer in changed:
                ctx.run([*systemctl, "restart", "--", timer], step="systemctl-restart")
                ctx.change(f"restarted {timer} (new schedule)")
        elif is_enabled[timer] == "enabled" or is_active[timer] == "active":
            ctx.run([*systemctl, "disable", "--", timer], step="systemctl-disable")
            ctx.run([*systemctl, "stop", "--", timer], step="systemctl-stop")
            ctx.change(f"disabled and stopped {timer}{' (site suspended)' if suspended else ''}")
    if suspended:
        ctx.log(f"site suspended: {len(timers)} cron timer(s) kept stopped")
    return unit_states(ctx, "is-active", timers)


def stop_cron_runs(ctx: Context, name: str, jobs: list[dict[str, Any]]) -> None:
    """A suspended site's jobs that are running now are stopped (a job may run for hours)."""
    services = [f"{cron_unit(name, job['id'])}.service" for job in jobs]
    if not services:
        return
    states = unit_states(ctx, "is-active", services)
    for service in services:
        if states[service] in ("active", "activating", "reloading"):
            ctx.run([*ctx.config.systemctl, "stop", "--", service], step="systemctl-stop")
            ctx.change(f"stopped the run in progress of {service} (site suspended)")


def remove_cron_jobs(ctx: Context, name: str, ids: list[int]) -> bool:
    """Stop and remove jobs IDS of site NAME; True if a unit file went (daemon-reload due)."""
    config = ctx.config
    removed_unit = False
    for job_id in ids:
        unit = cron_unit(name, job_id)
        if systemd_is_init(config):
            for verb, what in (("disable", "timer"), ("stop", "timer"), ("stop", "service")):
                ctx.run(
                    [*config.systemctl, verb, "--", f"{unit}.{what}"], step="systemctl-" + verb, check=False
                )
        for label in (f"/etc/systemd/system/{unit}.timer", f"/etc/systemd/system/{unit}.service",
                      f"{CRON_JOB_DIR}/{name}/{job_id}.json"):  # fmt: skip
            if os.path.lexists(config.path(label)):
                os.unlink(config.path(label))
                ctx.change(f"removed {label}")
                removed_unit = removed_unit or label.startswith("/etc/systemd/")
    return removed_unit


def remove_legacy_cron(ctx: Context, label: str) -> None:
    path = ctx.config.path(label)
    if os.path.lexists(path):
        os.unlink(path)
        ctx.change(f"removed {label} (the scheduler is a CHOM cron job now)")


def remove_site_cron(ctx: Context, name: str) -> None:
    """site-remove: every cron job of NAME, its job directory, and the reload."""
    config = ctx.config
    if remove_cron_jobs(ctx, name, sorted(installed_cron_ids(config, name))) and systemd_is_init(config):
        ctx.run([*config.systemctl, "daemon-reload"], step="daemon-reload")
    jobs = config.path(f"{CRON_JOB_DIR}/{name}")
    if os.path.isdir(jobs) and not os.path.islink(jobs):
        os.rmdir(jobs)
        ctx.change(f"removed {CRON_JOB_DIR}/{name}")


def systemctl_show(ctx: Context, units: list[str], props: list[str]) -> list[dict[str, str]]:
    argv = [
        *ctx.config.systemctl,
        "show",
        "--timestamp=unix",
        *(f"--property={p}" for p in props),
        "--",
        *units,
    ]
    proc = ctx.run(argv, step="systemctl-show", timeout=30)
    blocks: list[dict[str, str]] = [{}]
    for line in proc.stdout.splitlines():
        if not line.strip():
            if blocks[-1]:
                blocks.append({})
            continue
        key, _, value = line.partition("=")
        blocks[-1][key] = value
    blocks = [b for b in blocks if b]
    if len(blocks) != len(units):
        raise AgentError(
            "command_failed", f"systemctl show answered {len(blocks)} of {len(units)} units", "status"
        )
    return blocks


def unix_time(value: str) -> str | None:
    if not value.startswith("@") or not value[1:].isdigit() or value == "@0":
        return None
    return iso_utc(int(value[1:]))


def job_output(ctx: Context, invocation: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{32}", invocation):
        return ""
    argv = [
        *ctx.config.journalctl,
        "--no-pager",
        "-o",
        "cat",
        "-n",
        str(OUTPUT_TAIL_LINES),
        f"_SYSTEMD_INVOCATION_ID={invocation}",
    ]
    proc = ctx.run(argv, step="journalctl", check=False, timeout=10)
    return proc.stdout[-CRON_OUTPUT_MAX_CHARS:] if proc.returncode == 0 else ""


def cmd_cron_status(ctx: Context, args: Input) -> dict[str, Any]:
    """Per job of IDS: its last run (start, end, exit code or signal, systemd's result), the
    last run's output tail from the journal, whether it runs now, and its timer's next run."""
    name = args.match("name", SITE_NAME_RE, "site name")
    ids = args.get("ids", list)
    args.finish()
    if len(ids) > CRON_MAX_JOBS or not all(type(i) is int and 1 <= i < 2**31 for i in ids):
        raise invalid(f"ids must be a list of at most {CRON_MAX_JOBS} job ids")
    if not systemd_is_init(ctx.config):
        raise AgentError(
            "unsupported", "cron jobs need systemd as the init system of this server", "validate"
        )
    if not ids:
        return {"jobs": []}
    units = [cron_unit(name, i) for i in ids]
    services = systemctl_show(ctx, [f"{u}.service" for u in units], [
        "LoadState", "ActiveState", "ExecMainStartTimestamp", "ExecMainExitTimestamp",
        "ExecMainCode", "ExecMainStatus", "Result", "InvocationID",
    ])  # fmt: skip
    timers = systemctl_show(ctx, [f"{u}.timer" for u in units], ["ActiveState", "NextElapseUSecRealtime"])
    jobs = []
    for i, job_id in enumerate(ids):
        service, timer = services[i], timers[i]
        started = unix_time(service.get("ExecMainStartTimestamp", ""))
        running = service.get("ActiveState") == "activating"
        code, status = service.get("ExecMainCode", "0"), service.get("ExecMainStatus", "0")
        exit_code = None
        if started and not running and status.lstrip("-").isdigit():
            exit_code = int(status) if code == "1" else -int(status)  # 2, 3: killed by a signal
        jobs.append({
            "id": job_id,
            "installed": service.get("LoadState") == "loaded",
            "last_run_at": started,
            "finished_at": None if running else unix_time(service.get("ExecMainExitTimestamp", "")),
            "exit_code": exit_code,
            "result": service.get("Result", ""),
            "running": running,
            "output": job_output(ctx, service.get("InvocationID", "")) if started else "",
            "timer": timer.get("ActiveState", ""),
            "next_run_at": unix_time(timer.get("NextElapseUSecRealtime", "")),
        })  # fmt: skip
    return {"jobs": jobs}


# --------------------------------------------------------------------------- sites: removal


def cmd_site_remove(ctx: Context, args: Input) -> dict[str, Any]:
    """Remove everything site-ensure, release-*, cert-issue and workers-apply created.

    The vhost and pool must be removed first (vhost-remove, pool-remove): the vhost references
    the certificate, and userdel fails while pool workers run as the user.
    """
    import glob
    import shutil

    name = args.match("name", SITE_NAME_RE, "site name")
    args.finish()
    config = ctx.config
    entry = read_db(config.path("/etc/passwd")).get(name)
    if entry is not None:
        require_managed(name, entry)
    leftovers = [vhost_paths(config, name)[0]]
    leftovers += glob.glob(config.path(f"/etc/php/*/fpm/pool.d/chom-{glob.escape(name)}.conf"))
    still = [path for path in leftovers if os.path.lexists(path)]
    if still:
        raise AgentError(
            "conflict",
            "remove the site's vhost and pool first: {}".format(
                ", ".join(p[len(config.root) :] for p in still)
            ),
            "validate",
        )
    if remove_supervisor(ctx, name):
        supervisor_reload(ctx)
    remove_workers(ctx, name)
    remove_site_cron(ctx, name)
    cron = config.path(f"/etc/cron.d/chom-{name}")
    if os.path.lexists(cron):
        os.unlink(cron)
        ctx.change(f"removed /etc/cron.d/chom-{name}")
    for path in (
        f"/etc/logrotate.d/chom-{name}",
        f"/var/lib/chom/limits/{name}.json",
        f"/etc/systemd/system/{slice_name(name)}",
    ):
        if os.path.lexists(config.path(path)):
            os.unlink(config.path(path))
            ctx.change(f"removed {path}")
    logs = site_log_dir(config, name)
    if os.path.isdir(logs) and not os.path.islink(logs):
        shutil.rmtree(logs)
        ctx.change(f"removed /var/log/chom/{name}")
    if entry is None:
        # Without a CHOM account nothing proves /var/www/NAME or the lineage NAME are ours.
        ctx.log(f"no CHOM user {name}: /var/www/{name} and certificate lineage {name} left alone")
        return {"name": name}
    remove_cert_lineage(ctx, name)
    keys = tls_dir(config, name)
    if os.path.isdir(keys) and not os.path.islink(keys):
        shutil.rmtree(keys)
        ctx.change(f"removed /var/lib/chom/tls/{name}")
    webroot = acme_webroot(config, name)
    if os.path.isdir(webroot) and not os.path.islink(webroot):
        shutil.rmtree(webroot)
        ctx.change(f"removed /var/lib/chom/acme/{name}")
    auth = htpasswd_dir(config, name)
    if os.path.isdir(auth) and not os.path.islink(auth):
        shutil.rmtree(auth)
        ctx.change(f"removed /var/lib/chom/htpasswd/{name}")
    home = site_home(config, name)
    if os.path.islink(home):
        os.unlink(home)
        ctx.change(f"removed symlink /var/www/{name}")
    elif os.path.isdir(home):
        shutil.rmtree(home)  # fd-based on Linux: symlinks inside are removed, never followed
        ctx.change(f"removed /var/www/{name}")
    remove_user(ctx, name)
    return {"name": name}


def site_release_facts(ctx: Context) -> dict[str, Any]:
    """{name: {current_release, releases}} for CHOM users whose home is /var/www/NAME."""
    facts: dict[str, Any] = {}
    for name, entry in read_db(ctx.config.path("/etc/passwd")).items():
        if len(entry) < 6 or entry[4] != USER_MARKER or entry[5] != f"/var/www/{name}":
            continue
        if not SITE_NAME_RE.fullmatch(name) or not os.path.isdir(site_home(ctx.config, name) + "/releases"):
            continue
        site = Site(name, int(entry[2]), int(entry[3]), 0, site_home(ctx.config, name))
        complete = [r for r in release_dirs(site) if read_marker(site.sub("releases", r)) is not None]
        facts[name] = {"current_release": current_release(site), "releases": len(complete)}
    return dict(sorted(facts.items()))


# --------------------------------------------------------------------------- dispatch

COMMANDS: dict[str, tuple[Callable[[Context, Input], dict[str, Any]], str]] = {
    # name: (handler, lock scope: "none" reads only, "global" VPS-wide, "site" per site,
    # "site+global" both - see take_locks)
    "version": (cmd_version, "none"),
    "facts": (cmd_facts, "none"),
    "packages-ensure": (cmd_packages_ensure, "global"),
    "service-ensure": (cmd_service_ensure, "global"),
    "user-ensure": (cmd_user_ensure, "global"),
    "user-remove": (cmd_user_remove, "global"),
    "file-write": (cmd_file_write, "global"),
    "file-remove": (cmd_file_remove, "global"),
    "vhost-apply": (cmd_vhost_apply, "global"),
    "vhost-remove": (cmd_vhost_remove, "global"),
    "pool-apply": (cmd_pool_apply, "global"),
    "pool-remove": (cmd_pool_remove, "global"),
    "htpasswd-apply": (cmd_htpasswd_apply, "global"),
    "db-ensure": (cmd_db_ensure, "global"),
    "db-remove": (cmd_db_remove, "global"),
    "db-monitor-ensure": (cmd_db_monitor_ensure, "global"),
    "sshd-harden": (cmd_sshd_harden, "global"),
    "ufw-apply": (cmd_ufw_apply, "global"),
    "host-harden": (cmd_host_harden, "global"),
    "reload": (cmd_reload, "global"),
    "site-ensure": (cmd_site_ensure, "site+global"),
    "release-create": (cmd_release_create, "site"),
    "release-activate": (cmd_release_activate, "site"),
    "releases-list": (cmd_releases_list, "none"),
    "site-exec": (cmd_site_exec, "site"),
    # Takes the VPS lock itself, after the site lock, only to reload PHP-FPM and supervisor.
    "env-apply": (cmd_env_apply, "site"),
    "hook-run": (cmd_hook_run, "site"),
    # certbot refuses to run twice at once on one config dir.
    "cert-issue": (cmd_cert_issue, "global"),
    "cert-csr": (cmd_cert_csr, "global"),
    "cert-install": (cmd_cert_install, "global"),
    # Takes the VPS lock itself, after the site lock, to change systemd's units.
    "workers-apply": (cmd_workers_apply, "site"),
    "workers-status": (cmd_workers_status, "none"),
    # daemon-reload is VPS-wide: the VPS lock, after the site lock.
    "cron-apply": (cmd_cron_apply, "site+global"),
    "cron-status": (cmd_cron_status, "none"),
    "site-remove": (cmd_site_remove, "site+global"),
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
    if ctx and error["code"] != "invalid_input" and system_stopping(ctx.config):
        # Shutdown's SIGTERM killed our commands ("git ... exited -15"): say why, and that
        # running the call again once the server is back may work.
        message = f"the server is shutting down or rebooting: {error['message']}"
        error = {"code": "interrupted", "message": message, "step": error["step"]}
    changed = ctx.changed if ctx else False
    return {"ok": False, "changed": changed, "error": error, "log": ctx.mask_all() if ctx else []}, 1


def system_stopping(config: Config) -> bool:
    """systemd is shutting the server down (a reboot or power-off is under way)."""
    import subprocess

    try:
        state = subprocess.run(
            [*config.systemctl, "is-system-running"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return False
    return state == "stopping"


def take_locks(config: Config, scope: str, raw: dict[str, Any]) -> list[int]:
    """ "global": the exclusive VPS lock. "site": the site's own lock only, so a tenant's long
    builds (up to VPSMANAGER_BUILD_TIMEOUT) never delay another site's vhost, pool, database or
    certificate change. "site+global": the site's lock, then the VPS lock (site-ensure and
    site-remove change what a running build of that site uses). Locks are always taken in that
    order (site before VPS) and nothing takes a site lock while holding the VPS lock, so waits
    cannot deadlock, and a command waiting for a site's build never holds the VPS lock."""
    if scope == "none":
        return []
    name = raw.get("name")
    has_site = isinstance(name, str) and bool(SITE_NAME_RE.fullmatch(name))
    held: list[int] = []
    try:
        if scope in ("site", "site+global") and has_site:
            held.append(acquire_lock(config, filename=f"vpsmanager-site-{name}.lock"))
        if scope != "site" or not has_site:
            held.append(acquire_lock(config))
    except AgentError:
        for fd in held:
            os.close(fd)
        raise
    return held


def main() -> int:
    result, status = execute(sys.argv[1:], sys.stdin)
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
