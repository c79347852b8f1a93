"""CHOM deployed under real systemd: a local VPS (systemd-nspawn, systemd as PID 1, Debian 12)
gets CHOM the way deploy/README.md tells an operator (its packages, the `chom` user, /srv/chom,
/etc/chom/chom.env, the shipped units and nginx vhost, `deploy/deploy.sh` as root over SSH as
.github/workflows/deploy.yml runs it), then takes a deploy of a commit with a migration under load
and a release whose health check fails. It runs in the serial pass (Makefile SERIAL_TESTS).

What differs from the README, and why:
- No internet on the VPS: the README's `apt-get install` gets its .debs (downloaded on this machine,
  systemd_vps.vps_debs) and deploy.sh its wheels (`CHOM_WHEELHOUSE`, systemd_vps.vps_wheelhouse) copied in.
  Debian 12's python3 is the pinned 3.11, so no deadsnakes PPA.
- PostgreSQL and Redis are this machine's, reached through a TCP relay the test owns on the
  bridge's gateway (they listen on 127.0.0.1 only): the README's "managed PostgreSQL/Redis: put
  their URLs in the env file" path, with a role and database of this test's own. Installing both
  servers into the VPS would add a ~60 MB download and a cluster initdb per run and test Debian's
  packaging, not CHOM's deploy; the relay keeps the run short and the database real.
- The TLS certificate is self-signed (no ACME CA is reachable); the client checks it by name.
- Worker sizes come from drop-ins (`systemctl edit`, as the README says for NOTIFY_CONCURRENCY):
  2 + 1 processes instead of 4 + 4 on this 2-core machine.
- The long task is an Operation of a kind added by a commit of the throwaway repository only
  (`deploytest.hold`, PROBE below): it runs through CHOM's real operation path (queue `remote`,
  acks_late, claim, step log) and finishes only when the test says so, so it is provably in
  flight when the deploy asks its worker for a warm shutdown.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shlex
import shutil
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet import localfleet
from tests.deploy import harness, systemd_vps
from tests.deploy.systemd_vps import Front, FrontLoop, Ssh, TcpRelay, new_ssh_key, public_line

SUPPORTED, WHY = localfleet.host_supports_fleet()
REASON = harness.unreachable_services()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.real,
    pytest.mark.skipif(not SUPPORTED, reason=f"local fleet unavailable on this machine: {WHY}"),
    pytest.mark.skipif(REASON is not None, reason=f"needs PostgreSQL, pg_dump and Redis: {REASON}"),
]

DOMAIN = "chom.test"
DEPLOY = "/srv/chom/repo/deploy/deploy.sh"
# The README's deploy line, offline: wheels from the copied wheelhouse, one shared virtualenv.
DEPLOY_ENV = "env CHOM_WHEELHOUSE=/root/wheels CHOM_SHARE_VENVS=1"
# The README's way to run manage.py: as chom, with the service environment.
MANAGE = (
    "systemd-run --quiet --pipe --wait --uid=chom -p EnvironmentFile=/etc/chom/chom.env "
    "-E DJANGO_SETTINGS_MODULE=chom.settings.production -p WorkingDirectory=/srv/chom/current "
    "/srv/chom/current/venv/bin/python manage.py"
)
UNITS = ("chom-web.service", "chom-worker@.service", "chom-notify@.service", "chom-beat.service")

PROBE = """

# --- tests/deploy/test_systemd_deploy.py: a long operation (this throwaway repository only) ---
import os as _os  # noqa: E402
import time as _time  # noqa: E402

from chom.operations import register as _register  # noqa: E402


@_register("deploytest.hold", queue="remote", soft_time_limit=240, time_limit=270, max_attempts=1)
def _deploytest_hold(ctx):
    ctx.log(f"ran in {_os.path.realpath(_os.getcwd())}")
    deadline = _time.monotonic() + 200
    while not _os.path.exists(ctx.params["release_file"]):
        if _time.monotonic() > deadline:
            raise RuntimeError("the test never released this operation")
        _time.sleep(0.5)
    return {}
"""
# Writes into its own release directory, which only root (the deploy) may write: deploy.sh's
# canary runs as root and passes, chom-web runs as User=chom and fails /health after the switch.
BROKEN_HEALTH = """

def check_release_writes_its_own_directory() -> str:
    (Path(__file__).resolve().parent / ".health-probe").write_text("broken on purpose")
    return "ok"


CHECKS["release"] = check_release_writes_its_own_directory
"""


@dataclass
class Chom:
    vps: localfleet.LocalVps
    ssh: Ssh
    front: Front
    origin: Path  # the repository /srv/chom/repo was cloned from (its "origin")
    database: str
    token: str

    def deploy(self, *args: str, env: str = "", timeout: float = 300) -> tuple[int, str, float]:
        started = time.monotonic()
        command = f"{DEPLOY_ENV} {env} {DEPLOY} {' '.join(shlex.quote(a) for a in args)}"
        status, output = self.ssh.run(command, timeout=timeout, check=False)
        return status, output, time.monotonic() - started

    def current(self) -> str:
        return os.readlink(self.vps.root / "srv/chom/current").removeprefix("releases/")

    def releases(self) -> list[str]:
        return sorted(p.name for p in (self.vps.root / "srv/chom/releases").iterdir())

    def manage(self, *args: str) -> str:
        return self.ssh.run(f"{MANAGE} {' '.join(shlex.quote(a) for a in args)}")[1]

    def unit(self, name: str, *props: str) -> dict[str, str]:
        out = self.ssh.run(f"systemctl show {shlex.quote(name)} " + " ".join(f"-p {p}" for p in props))[1]
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_unit(self, name: str, state: str, *, timeout: float) -> dict[str, str]:
        return harness.wait_for(
            lambda: (u := self.unit(name, "ActiveState", "Result"))["ActiveState"] == state and u,
            timeout=timeout,
            interval=0.5,
            what=f"{name} {state}",
        )

    def failed_units(self) -> str:
        units = "systemctl list-units --failed --plain --no-legend 'chom-*' nginx.service"
        return self.ssh.run(units)[1].strip()

    def status(self) -> str:
        return self.ssh.run("systemctl status --no-pager --lines=3 'chom-*' || true", check=False)[1]

    def journal(self, *units: str, lines: int = 60) -> str:
        names = " ".join(f"-u {shlex.quote(u)}" for u in units)
        return self.ssh.run(f"journalctl --no-pager -n {lines} {names}", check=False)[1]

    def web_master_release(self) -> str:
        """The release the gunicorn master systemd supervises runs (its working directory)."""
        pid = int(self.unit("chom-web", "MainPID")["MainPID"])
        return self.ssh.run(f"readlink /proc/{pid}/cwd")[1].strip().rsplit("/", 1)[-1]

    def operation(self, op_id: str) -> dict:
        return self.front.json(f"/api/v1/operations/{op_id}", token=self.token)


def _psql(url: str, sql: str) -> str:
    result = subprocess.run(["psql", url, "-XAtqc", sql], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _commit_file(origin: Path, path: str, text: str, message: str) -> str:
    (origin / path).write_text(text)
    subprocess.run(["git", "add", path], cwd=origin, check=True)
    return harness.commit(origin, message)


def _free_subnet() -> str:
    """A /24 of 10.251.50-99 that no interface uses yet (tests/e2e takes 100-149, tests/journeys
    150-199, tests/fleet 200-249, the benches 250-253, make demo 1)."""
    addresses = subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True, check=True).stdout
    for offset in range(50):
        subnet = f"10.251.{50 + (os.getpid() + offset) % 50}"
        if f"{subnet}.1/24" not in addresses:
            return subnet
    raise RuntimeError("no free 10.251.50-99 subnet for this module's bridge")


@pytest.fixture(scope="module")
def vps(tmp_path_factory):
    image = localfleet.ensure_image()
    subnet = _free_subnet()
    network = localfleet.network_up(f"chomsd{os.getpid() % 100000}", subnet)
    _, client_key = new_ssh_key()
    host_private, host_key = new_ssh_key()
    machine = None
    try:
        machine = localfleet.vps_create(
            name=f"sd{os.getpid()}",
            ip=f"{subnet}.10",
            network=network,
            authorized_keys=public_line(client_key),
            workdir=tmp_path_factory.mktemp("systemd-deploy") / "vps",
            host_key_private=host_private,
            image=image,
        )
        ssh = Ssh(machine.ip, client_key, host_key)
        try:
            yield machine, network, ssh, image
        finally:
            ssh.close()
    finally:
        if machine is not None:
            localfleet.vps_destroy(machine)
        localfleet.network_down(network)


@pytest.fixture(scope="module")
def chom(vps, tmp_path_factory):
    machine, network, ssh, image = vps
    admin = harness.postgres_admin_url()
    database, role, password = (
        harness.create_database(),
        f"chom_{secrets.token_hex(4)}",
        secrets.token_hex(16),
    )
    redis_db = 10 + secrets.randbelow(5)  # 10-14: tests/journeys claims 15, 8 or 7
    relays = []
    try:
        _psql(admin, f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        _psql(admin, f"ALTER DATABASE {database} OWNER TO {role}")
        pg_port = int(urllib.parse.urlsplit(admin).port or 5432)
        redis_port = int(urllib.parse.urlsplit(harness.redis_base_url()).port or 6379)
        relays = [TcpRelay(network.gateway, pg_port).start(), TcpRelay(network.gateway, redis_port).start()]
        started = time.monotonic()
        _install(machine, ssh, image)
        origin = _origin(machine)
        _write_env(machine, ssh, database_url=f"postgres://{role}:{password}@{network.gateway}:{relays[0].port}/{database}",
                   redis_url=f"redis://{network.gateway}:{relays[1].port}/{redis_db}")  # fmt: skip
        cafile = _units_nginx_tls(machine, ssh, tmp_path_factory.mktemp("tls"))
        installed = time.monotonic() - started
        status, output = ssh.run(f"{DEPLOY_ENV} {DEPLOY}", timeout=420, check=False)
        print(output)
        assert status == 0, output[-6000:]
        print(f"install (packages, user, clone, env, units, nginx): {installed:.1f}s; first deploy: "
              f"{time.monotonic() - started - installed:.1f}s")  # fmt: skip
        created = ssh.run(f"{MANAGE} create_tenant loadtest --tier enterprise --owner-email o@load.test")[1]
        yield Chom(
            vps=machine,
            ssh=ssh,
            front=Front(machine.ip, DOMAIN, cafile),
            origin=origin,
            database=database,
            token=created.strip().splitlines()[-1],
        )
        # Stopped while the relays still run: no worker is left waiting for its broker.
        ssh.run("systemctl stop chom-web chom-beat 'chom-worker@*' 'chom-notify@*'", timeout=120, check=False)
    finally:
        for relay in relays:
            relay.stop()
        harness.drop_database(database)
        _psql(admin, f"DROP ROLE IF EXISTS {role}")
        subprocess.run(["redis-cli", "-u", f"{harness.redis_base_url()}/{redis_db}", "flushdb"],
                       capture_output=True, timeout=15)  # fmt: skip


def _install(machine, ssh: Ssh, image: Path) -> None:
    """deploy/README.md section 1: packages, the chom user, /srv/chom."""
    # Readable by apt's sandbox user (_apt), unlike /root.
    shutil.copytree(systemd_vps.vps_debs(image), machine.root / "var/cache/chom-debs")
    (machine.root / "var/cache/chom-debs").chmod(0o755)
    shutil.copytree(systemd_vps.vps_wheelhouse(), machine.root / "root/wheels")
    apt = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends"
    ssh.run(f"{apt} /var/cache/chom-debs/*.deb", timeout=300)
    ssh.run("useradd --system --home-dir /srv/chom --shell /usr/sbin/nologin chom")
    ssh.run("install -d -o root -g root -m 755 /srv/chom")


def _origin(machine) -> Path:
    """The repository an operator clones: the working tree plus the probe operation."""
    origin = harness.make_source_repo(machine.root / "root/chom-origin")
    harness.commit(origin, "deploy test: a long operation kind", edits={"chom/tasks.py": PROBE})
    return origin


def _write_env(machine, ssh: Ssh, *, database_url: str, redis_url: str) -> None:
    """deploy/README.md section 2, with the URLs of the relayed servers."""
    ssh.run("install -d -m 750 -g chom /etc/chom")
    fernet = base64.urlsafe_b64encode(os.urandom(32)).decode()
    lines = [
        f"SECRET_KEY={secrets.token_urlsafe(64)}",
        f"FIELD_ENCRYPTION_KEY={fernet}",
        f"DATABASE_URL={database_url}",
        f"REDIS_URL={redis_url}",
        f"ALLOWED_HOSTS={DOMAIN},127.0.0.1,localhost",
        f"CSRF_TRUSTED_ORIGINS=https://{DOMAIN}",
        f"SITE_URL=https://{DOMAIN}",
        "CHOM_BIND=127.0.0.1:8000",
        "TRUSTED_PROXIES=127.0.0.1/32,::1/128",
        f"METRICS_TOKEN={secrets.token_urlsafe(32)}",
        "WEB_CONCURRENCY=2",
    ]
    (machine.root / "etc/chom/chom.env").write_text("\n".join(lines) + "\n")
    ssh.run("chmod 640 /etc/chom/chom.env && chgrp chom /etc/chom/chom.env")


def _units_nginx_tls(machine, ssh: Ssh, tls_dir: Path) -> Path:
    """deploy/README.md section 3; returns the certificate clients trust."""
    ssh.run("git clone -q /root/chom-origin /srv/chom/repo && cd /srv/chom/repo && cp "
            + " ".join(f"deploy/systemd/{u}" for u in UNITS) + " /etc/systemd/system/")  # fmt: skip
    for unit, line in (("chom-worker@", "WORKER_CONCURRENCY=2"), ("chom-notify@", "NOTIFY_CONCURRENCY=1")):
        dropin = machine.root / f"etc/systemd/system/{unit}.service.d/size.conf"
        dropin.parent.mkdir(parents=True)
        dropin.write_text(f"[Service]\nEnvironment={line}\n")
    ssh.run("systemctl daemon-reload && cp /srv/chom/repo/deploy/logrotate/chom /etc/logrotate.d/chom")
    live = f"/etc/letsencrypt/live/{DOMAIN}"
    ssh.run(
        f"install -d /var/www/letsencrypt {live} && "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
        f"-subj /CN={DOMAIN} -addext subjectAltName=DNS:{DOMAIN} "
        f"-keyout {live}/privkey.pem -out {live}/fullchain.pem 2>&1"
    )
    ssh.run(
        f"sed 's/chom.example.com/{DOMAIN}/g' /srv/chom/repo/deploy/nginx/chom.conf"
        " > /etc/nginx/sites-available/chom"
        " && ln -s /etc/nginx/sites-available/chom /etc/nginx/sites-enabled/chom"
        " && rm -f /etc/nginx/sites-enabled/default && nginx -t 2>&1 && systemctl reload nginx"
    )
    cafile = tls_dir / "chom.pem"
    shutil.copy(machine.root / live.lstrip("/") / "fullchain.pem", cafile)
    return cafile


def _hold_operation(chom: Chom, release_file: str) -> str:
    """Start a deploytest.hold operation for the load tenant; return its id once it runs."""
    code = (
        "import chom.tasks\n"
        "from chom.models import Tenant\n"
        "from chom.operations import operation_create\n"
        "op = operation_create(kind='deploytest.hold', tenant=Tenant.objects.get(slug='loadtest'),\n"
        f"                      params={{'release_file': {release_file!r}}}, mutating=False)\n"
        "print(op.id)\n"
    )
    op_id = chom.manage("shell", "-c", code).strip().splitlines()[-1]
    harness.wait_for(
        lambda: chom.operation(op_id)["status"] == "running", timeout=60, what="the operation runs"
    )
    return op_id


@pytest.mark.timeout(900)
def test_it_deploys_a_migration_under_load_while_a_long_task_finishes_on_the_old_worker(chom):
    old = chom.current()
    leaf = _chom_leaf_migration(chom.origin)
    migration = "chom/migrations/9000_deploytest_expand.py"
    sha = _commit_file(chom.origin, migration, EXPAND_MIGRATION.format(leaf=leaf), "an expand migration")
    release_file = f"/srv/chom/.deploytest-{secrets.token_hex(4)}"
    op_id = _hold_operation(chom, release_file)
    loop = FrontLoop(chom.front, chom.token, rate=12)
    loop.start()
    try:
        status, output, seconds = chom.deploy("--fetch", "--ref", "origin/main")
        print(output)
        new = chom.current()
        # Still running: the old worker got its warm shutdown (deploy.sh does not wait for it).
        in_flight = chom.operation(op_id)["status"]
        old_worker = chom.unit(f"chom-worker@{old}", "ActiveState")["ActiveState"]
        (chom.vps.root / release_file.lstrip("/")).write_text("go\n")
        finished = harness.wait_for(
            lambda: (op := chom.operation(op_id))["status"] in ("succeeded", "failed") and op,
            timeout=60,
            what="the held operation finishes",
        )
        stopped = chom.wait_unit(f"chom-worker@{old}", "inactive", timeout=60)
        notify_stopped = chom.wait_unit(f"chom-notify@{old}", "inactive", timeout=60)
    finally:
        loop.stop()
    print(f"deploy with a migration under systemd: {loop.summary()}; deploy took {seconds:.1f}s")
    print(chom.status())
    assert status == 0, output[-6000:]
    assert new != old and new.endswith(sha[:12])
    assert "9000_deploytest_expand" in output, "the migration plan names the new migration"
    url = harness.database_url(chom.database)
    assert _psql(url, "select count(*) from django_migrations where name = '9000_deploytest_expand'") == "1"
    assert (
        _psql(url, "select count(*) from information_schema.columns where column_name = 'deploytest_note'")
        == "1"
    )

    assert loop.failures == [], loop.failures[:10]
    assert loop.total >= 100 and all(loop.ok.get(p, 0) >= 20 for _, p, _ in FrontLoop.PLAN), loop.summary()

    assert (in_flight, old_worker) == ("running", "deactivating"), (
        "the task was in flight at the warm shutdown"
    )
    assert finished["status"] == "succeeded" and finished["attempts"] == 1, finished
    assert any(f"ran in /srv/chom/releases/{old}" in str(entry) for entry in finished["log"]), finished["log"]
    assert stopped["Result"] == "success" and notify_stopped["Result"] == "success", (stopped, notify_stopped)

    assert chom.failed_units() == ""
    for unit in ("chom-web", "chom-beat", f"chom-worker@{new}", f"chom-notify@{new}"):
        assert chom.unit(unit, "ActiveState")["ActiveState"] == "active", unit
    web = chom.unit("chom-web", "Result", "NRestarts")
    assert web == {"Result": "success", "NRestarts": "0"}, web
    assert chom.web_master_release() == new, "systemd supervises the new release's gunicorn master"
    assert chom.front.request("GET", "/health")[0] == 200


@pytest.mark.timeout(600)
def test_it_rolls_back_a_release_that_fails_its_health_check_after_the_switch(chom):
    before, releases = chom.current(), chom.releases()
    sha = harness.commit(chom.origin, "broken /health as chom", branch="broken-health",
                         edits={"chom/health.py": BROKEN_HEALTH})  # fmt: skip
    loop = FrontLoop(chom.front, chom.token, rate=12)
    loop.start()
    try:
        status, output, seconds = chom.deploy("--fetch", "--ref", "origin/broken-health",
                                              env="CHOM_HEALTH_TIMEOUT=15")  # fmt: skip
    finally:
        loop.stop()
    print(output)
    rolled = re.search(r"ROLLED BACK to \S+ in ([\d.]+)s", output)
    print(f"rollback under systemd: {loop.summary()}; deploy + rollback took {seconds:.1f}s, "
          f"rollback {rolled and rolled.group(1)}s")  # fmt: skip
    print(chom.status())
    print(chom.journal("chom-web", "chom-beat"))
    assert status != 0
    assert "==> canary" in output and "==> switch current" in output, "the canary (as root) passed it"
    assert "Permission denied" in output and f"ROLLED BACK to {before}" in output, output[-4000:]
    assert (chom.current(), chom.releases()) == (before, releases), "back, and the failed release removed"
    # /health answers 503 while the broken release serves; the API never fails.
    assert loop.failed(except_paths=("/health",)) == [], loop.failures[:10]
    assert loop.ok.get("/api/v1/tokens", 0) >= 20, loop.summary()

    broken = f"chom-worker@{_release_of(output, sha)}"
    assert chom.wait_unit(broken, "inactive", timeout=60)["Result"] == "success"
    assert chom.failed_units() == ""
    for unit in ("chom-web", "chom-beat", f"chom-worker@{before}", f"chom-notify@{before}"):
        assert chom.unit(unit, "ActiveState")["ActiveState"] == "active", unit
    assert chom.web_master_release() == before
    assert chom.front.request("GET", "/health")[0] == 200


def _release_of(output: str, sha: str) -> str:
    found = re.search(rf"releases/(\d{{8}}T\d{{6}}Z-{sha[:12]})", output)
    assert found, output[-3000:]
    return found.group(1)


def _chom_leaf_migration(origin: Path) -> str:
    names = sorted(p.stem for p in (origin / "chom/migrations").glob("[0-9]*.py"))
    return names[-1]


EXPAND_MIGRATION = '''"""Expand only (deploy/README.md): a nullable column the running release ignores."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("chom", "{leaf}")]
    operations = [
        migrations.RunSQL(
            "ALTER TABLE chom_apitoken ADD COLUMN deploytest_note text NULL",
            reverse_sql="ALTER TABLE chom_apitoken DROP COLUMN deploytest_note",
        )
    ]
'''
