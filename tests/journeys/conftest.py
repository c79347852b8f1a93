"""Journeys over HTTP: one real CHOM stack per test session, driven only through its front door.

The `stack` fixture (session-scoped) starts CHOM as production runs it: gunicorn with
deploy/gunicorn.conf.py (the chom-web unit's config), the Celery worker of queues default and remote
(chom-worker@), the notification worker of queue notify (chom-notify@) and Celery beat (chom-beat),
on a PostgreSQL database created for the session on the server of DATABASE_URL (127.0.0.1:5432
here; dropped after) and a Redis db of its own (claimed, see `_claim_redis_db`). The settings module
is chom.settings.local with DEBUG off: production settings refuse the local VPS provider, which is
how this machine has servers. Around it, the stand-ins `make demo` uses, started with devstack's
own functions on this session's fleet bridge: pebble (a real ACME CA) and its DNS, moto's S3
server, the DigitalOcean and Cloudflare DNS API fakes; plus the Stripe fake of tests/billing
(billing is on: STRIPE_* point at it, `stack.stripe` / `stack.stripe_webhook_secret`). No Prometheus
or Loki: a journey that needs them starts its own. Every process logs in the session's tmp folder
(`stack.folder`) and is stopped at the end; VPSes the stack created are destroyed, the bridge removed.

The test process never runs an operation: it talks HTTP, as a tenant's script or a staff member
would. How a journey (tests/journeys/test_*.py, one file per journey) uses it:

    def test_it_...(stack, git_server):
        staff = stack.staff()                        # manage.py create_staff_token, once per session
        owner = stack.tenant("acme")                 # manage.py create_tenant acme-N --tier pro
        vps = stack.create_vps(unique("j-web"))      # POST /api/v1/vps (local provider), waits: active
        body, op = owner.act("/api/v1/sites", {...}) # 202 + Operation, polled until final (bounded)
        owner.wait_operation(op_id, expect="failed") # the operation's log and the stack's logs on failure
        site_get(vps["ip_address"], "shop.test")     # a visitor, Host header to the VPS
        vps_shell(stack, vps, "mariadb ...")         # a root shell on the server (nsenter), not CHOM

Processes by name (web, worker, notify, beat): `stack.stop(name)`, `stack.start(name)` then
`stack.ready(name)`, `stack.processes[name]` (e.g. to SIGKILL its process group), `stack.log_tail(name)`.
A journey that stops one must start it again before it ends: the next journeys share the stack.
Domains and tenant slugs must be unique in the session (`unique()`, `stack.tenant` numbers slugs).
Mark each journey `pytest.mark.timeout(...)` generously: whichever runs first also waits for the
stack to start (15-40 s on a busy 2-core machine), beyond the suite's 300 s default. The ACME CA's
issuing root (to verify a site's HTTPS, `https_get`) is `stack.pebble.issuing_root()`.
"""

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest
import redis
from cryptography.fernet import Fernet

from devstack.demo import Demo, start_demo_dns
from devstack.pebble import start_pebble
from devstack.s3 import start_s3
from fleet import localfleet
from tests.billing.fake_stripe import FakeStripe
from tests.deploy import harness
from tests.journeys.support import Stack
from tests.support.git import GitServer
from tests.support.processes import BIN, ROOT, celery_worker_argv, free_port, worker_env

SUPPORTED, WHY = localfleet.host_supports_fleet()
# Redis dbs a journeys stack may take (pytest runs use their own, given by REDIS_URL): the first
# one that is empty, or held by a journeys session that is gone (its leftovers are flushed).
# CHOM_JOURNEYS_REDIS_DB forces one.
REDIS_DBS = (15, 8, 7)
REDIS_CLAIM_KEY = "chom-journeys-session"
PRICES = {"starter": "price_starter", "pro": "price_pro", "enterprise": "price_enterprise"}


def pytest_collection_modifyitems(config, items):
    journeys = [item for item in items if "tests/journeys/" in str(item.fspath).replace(os.sep, "/")]
    if not journeys:
        return
    why = None if SUPPORTED else f"local test fleet unavailable on this machine: {WHY}"
    why = why or harness.unreachable_services()
    if why:
        for item in journeys:
            item.add_marker(pytest.mark.skip(reason=f"journeys need a real stack: {why}"))


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("journeys")
    with _StackResources(folder) as resources:
        started = time.monotonic()
        stack = resources.start()
        print(f"\njourneys: CHOM stack up in {time.monotonic() - started:.1f}s ({stack.url}, logs {folder})")
        yield stack


@pytest.fixture(scope="session")
def git_server(stack, tmp_path_factory):
    """A git daemon on the fleet bridge's gateway, as a forge is for the VPSes."""
    server = GitServer(tmp_path_factory.mktemp("git-served"), stack.gateway)
    yield server
    server.stop()


class _StackResources:
    """Everything the stack needs, torn down in reverse order whatever happened."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.demo = Demo(env={}, stoppers=[], description=[])
        self.stack: Stack | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.stack is not None:
            self.stack.stop_all()
            self.stack.destroy_vpses()
        for stop in reversed(self.demo.stoppers):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - every other resource must still go
                print(f"journeys: teardown step failed: {exc!r}")

    def _defer(self, stop) -> None:
        self.demo.stoppers.append(stop)

    def start(self) -> Stack:
        network, subnet = self._network()
        database = harness.create_database()
        self._defer(lambda: harness.drop_database(database))
        redis_url = self._claim_redis_db()
        pebble = start_pebble(self.folder / "pebble", listen_ip=network.gateway, validation_port=80)
        self._defer(pebble.stop)
        start_demo_dns(self.demo, challtestsrv=pebble.dns_management_url)
        s3_env, stop_s3, _ = start_s3(self.folder / "s3")
        self._defer(stop_s3)
        stripe = FakeStripe().start()
        self._defer(stripe.stop)
        webhook_secret = f"whsec_{secrets.token_hex(16)}"
        port, fleet_dir = free_port(), self.folder / "fleet"
        var = self.folder / "var"
        env = worker_env(
            {
                **self.demo.env,  # the DNS API fakes
                **s3_env,
                **stack_env(
                    var=var, port=port, database_url=harness.database_url(database), redis_url=redis_url
                ),
                # the local fleet on this session's bridge
                "CHOM_LOCAL_PROVIDER": "1",
                "LOCAL_FLEET_DIR": str(fleet_dir),
                "LOCAL_FLEET_BRIDGE": network.name,
                "LOCAL_FLEET_SUBNET": subnet,
                "FLEET_MONITORING_SOURCE": network.gateway,
                "REPOSITORY_ALLOWED_NETWORKS": f"{subnet}.0/24",
                # the ACME CA, and the DNS it validates through (where CHOM points the sites)
                "ACME_DIRECTORY_URL": pebble.directory_url,
                "ACME_CA_BUNDLE_FILE": str(pebble.ca_bundle),
                "LOCAL_DNS_MANAGEMENT_URL": pebble.dns_management_url,
                "TLS_DNS_RESOLVERS": pebble.dns.dns_server,
                # billing against the Stripe fake
                "STRIPE_SECRET_KEY": stripe.api_key,
                "STRIPE_API_BASE": stripe.url,
                "STRIPE_WEBHOOK_SECRET": webhook_secret,
                "STRIPE_PRICE_STARTER": PRICES["starter"],
                "STRIPE_PRICE_PRO": PRICES["pro"],
                "STRIPE_PRICE_ENTERPRISE": PRICES["enterprise"],
                "STRIPE_TIMEOUT": "5",
            }
        )
        (var / "prometheus").mkdir(parents=True)
        self.stack = Stack(
            url=f"http://127.0.0.1:{port}",
            env=env,
            folder=self.folder,
            fleet_dir=fleet_dir,
            gateway=network.gateway,
            argv=stack_argv(var),
            stripe=stripe,
            stripe_webhook_secret=webhook_secret,
            pebble=pebble,
        )
        self.stack.manage("migrate", "--noinput", timeout=600)
        for name in ("worker", "notify", "beat", "web"):
            self.stack.start(name)
        for name in ("worker", "notify", "beat", "web"):
            self.stack.ready(name)
        return self.stack

    def _network(self) -> tuple[localfleet.Network, str]:
        """This session's fleet bridge, on a /24 no interface of this machine uses yet (the e2e
        suite takes 10.251.100-149, make demo 10.251.1)."""
        addresses = subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True, check=True).stdout
        for offset in range(50):
            subnet = f"10.251.{150 + (os.getpid() + offset) % 50}"
            if f"{subnet}.1/24" not in addresses:
                break
        else:
            raise RuntimeError("no free 10.251.150-199 subnet for the journeys' fleet bridge")
        network = localfleet.network_up(f"chomj{os.getpid() % 10000}", subnet)
        self._defer(lambda: localfleet.network_down(network))
        return network, subnet

    def _claim_redis_db(self) -> str:
        base = harness.redis_base_url()
        forced = os.environ.get("CHOM_JOURNEYS_REDIS_DB")
        for db in (int(forced),) if forced else REDIS_DBS:
            client = redis.Redis.from_url(f"{base}/{db}")
            owner = client.get(REDIS_CLAIM_KEY)
            if owner and _alive(int(owner)):
                continue
            if not owner and client.dbsize() and not forced:
                continue  # someone else's data (another test run's CHOM): never flushed by us
            client.delete(REDIS_CLAIM_KEY)
            if client.set(REDIS_CLAIM_KEY, os.getpid(), nx=True):
                # A crashed session's queued tasks must not run against this session's database.
                client.pipeline(transaction=True).flushdb().set(REDIS_CLAIM_KEY, os.getpid()).execute()
                self._defer(client.flushdb)
                return f"{base}/{db}"
        raise RuntimeError(f"every Redis db of {REDIS_DBS} is held by a live journeys session")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stack_env(*, var: Path, port: int, database_url: str, redis_url: str) -> dict[str, str]:
    """What every journeys stack runs with: CHOM's local settings with DEBUG off, its own var dir,
    keys, datastores, and gunicorn (deploy/gunicorn.conf.py) as chom.env configures it in production."""
    return {
        "DJANGO_SETTINGS_MODULE": "chom.settings.local",
        "DEBUG": "0",
        "CHOM_VAR_DIR": str(var),
        "STATIC_ROOT": str(var / "static"),
        "SECRET_KEY": secrets.token_urlsafe(60),
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SITE_URL": f"http://127.0.0.1:{port}",
        "METRICS_TOKEN": secrets.token_urlsafe(24),
        "CHOM_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "WEB_THREADS": "4",
        "PROMETHEUS_MULTIPROC_DIR": str(var / "prometheus"),
    }


def stack_argv(var: Path) -> dict[str, list[str]]:
    """The commands of deploy/systemd/*.service, from this checkout's virtualenv."""
    worker = celery_worker_argv("journeys-worker")
    worker[worker.index("--concurrency") + 1] = "2"
    return {
        "web": [str(BIN / "python"), str(BIN / "gunicorn"), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
                "--pid", str(var / "web.pid")],
        "worker": worker,
        "notify": celery_worker_argv("journeys-notify", queues="notify"),
        "beat": [str(BIN / "celery"), "-A", "chom", "beat", "--loglevel", "INFO",
                 "--schedule", str(var / "celerybeat-schedule")],
    }  # fmt: skip
