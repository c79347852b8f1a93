#!/usr/bin/env python
"""A hostile tenant's builds against a co-tenant's vhost change, on one real local VPS (nspawn,
Debian 12, real sshd/nginx). Needs root and the fleet image (`python -m fleet.localfleet image`).

Tenant A has --sites sites, tenant B one (layouts made with the agent's site-ensure). A git
daemon on the bridge's gateway serves a PHP repository (2,000 files plus an 11 MB
public/index.php for the php-lint step; 46 MB checked out, a 27 MB pack). While each of A's sites
runs `release-create` (git clone + php-lint) back to back, each over its own SSH connection,
tenant B's vhost is changed --rounds times (`vhost-apply` with a new server name: nginx -t,
reload); every call is timed from CHOM's side, then checked served. The same vhost change with
nothing running is the baseline. A `version` call (the agent's start-up; it takes no lock) before
each change tells CPU contention from lock waits. With --old-waves N, N waves of builds then run
holding the VPS lock shared, as the agent did before builds took only their site's lock, and one
vhost change per wave is timed. Cleans up its VPS, bridge and git daemon.
"""

import argparse
import base64
import itertools
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="chom-cotenant-"))
for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
    os.environ.pop(name, None)
BRIDGE, SUBNET = "chomcotenant", "10.251.251"
os.environ.update(
    DJANGO_SETTINGS_MODULE="chom.settings.local",
    CHOM_VAR_DIR=str(WORK),
    CHOM_LOCAL_PROVIDER="1",
    LOCAL_FLEET_DIR=str(WORK / "fleet"),
    LOCAL_FLEET_BRIDGE=BRIDGE,
    LOCAL_FLEET_SUBNET=SUBNET,
    DEBUG="0",
)

import django  # noqa: E402

django.setup()
logging.getLogger("paramiko").setLevel(logging.WARNING)

import requests  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402

from chom.models import Operation  # noqa: E402
from chom.operations import operation_execute  # noqa: E402
from devstack.processes import free_port, spawn, stop_processes, wait_tcp  # noqa: E402
from fleet import localfleet, services  # noqa: E402
from fleet.remote.agent_client import AGENT_PATH, Agent, AgentError  # noqa: E402
from fleet.remote.commands import Command  # noqa: E402
from sites.configs import SERVED_BY_HEADER, VhostSpec, render_vhost  # noqa: E402

TENANT_B = "tenant-b"
B_DOMAIN = "b.cotenant.test"
BUILD_TIMEOUT = 600.0  # one build, seen from CHOM (the agent's own limit is 900 s)
VHOST_TIMEOUT = 180.0  # above the agent's 120 s wait for the VPS lock
SERVED_TIMEOUT = 10.0
JOIN_TIMEOUT = BUILD_TIMEOUT + 60
PAUSE = 0.2  # between two vhost changes, so they sample every phase of the builds
VPS_LOCK = "/run/lock/vpsmanager.lock"
RELEASE_STAMP = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
_release_numbers = itertools.count(1)


def new_release() -> str:
    return f"{RELEASE_STAMP}-r{next(_release_numbers)}"


# --------------------------------------------------------------------------- the repository


def make_repository(folder: Path) -> None:
    """A PHP project big enough that a clone and its php-lint take seconds, packed once (so the
    git daemon streams the pack instead of compressing loose objects for every clone)."""
    src = folder / "src"
    rng = random.Random(14)
    for module in range(40):
        directory = src / "lib" / f"m{module:02d}"
        directory.mkdir(parents=True)
        for n in range(50):
            blob = base64.b64encode(rng.randbytes(12000)).decode()
            (directory / f"c{n:02d}.php").write_text(
                f"<?php\n// {blob}\nfunction f{module}_{n}() {{ return {n}; }}\n"
            )
    (src / "public").mkdir()
    with open(src / "public" / "index.php", "w") as fh:
        fh.write("<?php\n$t = [\n")
        fh.writelines(f"  'k{i}' => ['a' => {i}, 'b' => 'v{i}'],\n" for i in range(300_000))
        fh.write("];\necho count($t);\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(folder),
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@localhost",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@localhost",
    }
    for argv in (
        ["git", "init", "-q", "-b", "main", str(src)],
        ["git", "-C", str(src), "add", "-A"],
        ["git", "-C", str(src), "commit", "-q", "-m", "app"],
        ["git", "clone", "-q", "--bare", str(src), str(folder / "app.git")],
        ["git", "-C", str(folder / "app.git"), "gc", "-q"],
    ):
        subprocess.run(argv, check=True, env=env, timeout=120)
    shutil.rmtree(src)


def start_git_daemon(folder: Path, host: str) -> tuple[subprocess.Popen, str]:
    port = free_port(host)
    proc = spawn(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={folder}", f"--listen={host}",
         f"--port={port}", str(folder)],
        folder.parent / "git-daemon.log",
    )  # fmt: skip
    wait_tcp(host, port)
    return proc, f"git://{host}:{port}/app.git"


# --------------------------------------------------------------------------- helpers


def run_op(op_id) -> Operation:
    operation_execute(operation_id=op_id)
    op = Operation.objects.get(id=op_id)
    if op.status != "succeeded":
        raise SystemExit(f"operation {op.kind} failed: {op.error}")
    return op


def build_payload(site: str, url: str) -> dict:
    source = {"type": "git", "url": url, "branch": "main"}
    return {"name": site, "release": new_release(), "source": source, "build": ["php-lint"]}


def call_holding_vps_lock_shared(transport, subcommand: str, payload: dict) -> None:
    """The agent as it was before: the whole build holds the VPS lock in shared mode (its own
    site lock is still taken inside), so a vhost change, which needs it exclusively, waits."""
    command = Command.of("flock", "--shared", "--timeout", "120", VPS_LOCK, "python3", AGENT_PATH, subcommand)
    result = transport.run(command, stdin=json.dumps(payload).encode(), timeout=BUILD_TIMEOUT)
    answer = json.loads(result.stdout or "{}")
    if not answer.get("ok"):
        raise RuntimeError(f"{subcommand} (old lock) failed: {answer.get('error') or result.stderr_tail()}")


@dataclass
class Build:
    site: str
    started: float
    ended: float = 0.0
    error: str = ""

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class BuildLoad:
    """One thread per site of tenant A, each building release after release on its own SSH
    connection until stopped (or once, with once=True)."""

    def __init__(self, transports: dict, url: str, *, once: bool = False, old_lock: bool = False):
        self.transports, self.url, self.once, self.old_lock = transports, url, once, old_lock
        self.stop = threading.Event()
        self.builds: list[Build] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, args=(site,), daemon=True) for site in transports]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        deadline = time.monotonic() + JOIN_TIMEOUT
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self.threads):
            raise SystemExit(f"builds still running after {JOIN_TIMEOUT:.0f} s")

    def running(self) -> int:
        with self.lock:
            return sum(1 for build in self.builds if not build.ended)

    def _loop(self, site: str) -> None:
        transport = self.transports[site]
        while not self.stop.is_set():
            build = Build(site, time.perf_counter())
            with self.lock:
                self.builds.append(build)
            try:
                payload = build_payload(site, self.url)
                if self.old_lock:
                    call_holding_vps_lock_shared(transport, "release-create", payload)
                else:
                    Agent(transport).call("release-create", payload, timeout=BUILD_TIMEOUT)
            except Exception as exc:  # reported with the results; the thread stops
                build.error = str(exc)
            build.ended = time.perf_counter()
            if build.error or self.once:
                return


def wait_served(ip: str, host: str, timeout: float = SERVED_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = requests.get(f"http://{ip}/", headers={"Host": host}, timeout=2)
            if response.headers.get(SERVED_BY_HEADER) == TENANT_B:
                return
        except requests.RequestException:
            pass
        time.sleep(0.01)
    raise SystemExit(f"{host} not served by {TENANT_B} after {timeout} s")


@dataclass
class Apply:
    started: float
    ended: float
    served: float
    startup: float  # a `version` call just before: the agent's start-up, which takes no lock

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def apply_vhost(agent: Agent, ip: str, n: int) -> Apply:
    """Tenant B adds a new alias hostname: a real change (nginx -t + reload), checked served."""
    alias = f"r{n}.{B_DOMAIN}"
    content = render_vhost(VhostSpec(name=TENANT_B, domains=(B_DOMAIN, alias), php=False))
    probe = time.perf_counter()
    agent.call("version", timeout=VHOST_TIMEOUT)
    started = time.perf_counter()
    result = agent.call("vhost-apply", {"name": TENANT_B, "content": content}, timeout=VHOST_TIMEOUT)
    ended = time.perf_counter()
    if not result.changed:
        raise SystemExit(f"vhost-apply round {n} changed nothing")
    wait_served(ip, alias)
    return Apply(started, ended, time.perf_counter(), started - probe)


# --------------------------------------------------------------------------- measuring


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=10, help="tenant A's sites, all building at once")
    parser.add_argument("--rounds", type=int, default=20, help="vhost changes, baseline and under load")
    parser.add_argument(
        "--old-waves", type=int, default=2, help="waves with the old shared VPS lock (0: skip)"
    )
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    network = localfleet.network_up(BRIDGE, SUBNET)
    git_daemon = None
    transports: list = []
    try:
        make_repository(WORK / "git")
        git_daemon, url = start_git_daemon(WORK / "git", network.gateway)
        measure(args, url, transports)
    finally:
        for transport in transports:
            transport.close()
        if git_daemon is not None:
            stop_processes([git_daemon])
        for workdir in (WORK / "fleet").glob("*"):
            vps = localfleet.vps_load(workdir)
            if vps:
                localfleet.vps_destroy(vps)
        localfleet.network_down(network)
        shutil.rmtree(WORK, ignore_errors=True)


def measure(args, url: str, transports: list) -> None:
    started = time.perf_counter()
    with transaction.atomic():
        vps, op = services.vps_create(name="cotenant1", provider="local")
    run_op(op.id)
    vps.refresh_from_db()
    print(f"VPS booted and bootstrapped in {time.perf_counter() - started:.1f} s ({vps.ip_address})")

    b_transport = services.transport_for(vps)
    transports.append(b_transport)
    agent_b = Agent(b_transport)
    sites_a = [f"tenant-a-{n:02d}" for n in range(1, args.sites + 1)]
    for site in [*sites_a, TENANT_B]:
        agent_b.call("site-ensure", {"name": site})
    release = new_release()
    placeholder = {"type": "placeholder", "html": "<h1>tenant B</h1>"}
    agent_b.call("release-create", {"name": TENANT_B, "release": release, "source": placeholder})
    agent_b.call("release-activate", {"name": TENANT_B, "release": release})
    rounds = itertools.count()
    apply_vhost(agent_b, vps.ip_address, next(rounds))  # first apply: the vhost did not exist

    a_transports = {}
    for site in sites_a:
        a_transports[site] = services.transport_for(vps)
        transports.append(a_transports[site])
        a_transports[site].connect()

    alone = BuildLoad({sites_a[0]: a_transports[sites_a[0]]}, url, once=True)
    alone.start()
    alone.finish()
    report_errors(alone.builds)
    seconds = alone.builds[0].seconds
    print(f"one build alone (git clone, 46 MB checked out, + php-lint of an 11 MB file): {seconds:.1f} s")

    baseline = []
    for _ in range(args.rounds):
        baseline.append(apply_vhost(agent_b, vps.ip_address, next(rounds)))
        time.sleep(PAUSE)

    load = BuildLoad(a_transports, url)
    load.start()
    try:
        deadline = time.monotonic() + 30
        while load.running() < len(sites_a) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # every build's agent is past its start-up and cloning
        loaded = []
        for _ in range(args.rounds):
            loaded.append(apply_vhost(agent_b, vps.ip_address, next(rounds)))
            time.sleep(PAUSE)
        loadavg = Path("/proc/loadavg").read_text().split()[0]
    finally:
        load.finish()
    report_errors(load.builds)

    old = []
    for _ in range(args.old_waves):
        wave = BuildLoad(a_transports, url, once=True, old_lock=True)
        wave.start()
        time.sleep(1.0)  # every build holds the VPS lock (shared) by now
        try:
            change: Apply | str = apply_vhost(agent_b, vps.ip_address, next(rounds))
        except AgentError as exc:  # the agent gives up waiting for the VPS lock after 120 s
            change = str(exc)
        wave.finish()
        report_errors(wave.builds)
        old.append((change, wave.builds))

    report(baseline, loaded, load.builds, len(sites_a), loadavg, old)


def report_errors(builds: list[Build]) -> None:
    failed = [build for build in builds if build.error]
    if failed:
        raise SystemExit("builds failed:\n" + "\n".join(f"  {b.site}: {b.error}" for b in failed))


def spread(values: list[float]) -> tuple[float, float, float]:
    """Median, p95, max."""
    p95 = statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 else values[0]
    return statistics.median(values), p95, max(values)


def covering(apply: Apply, builds: list[Build]) -> int:
    """Builds that ran from before the vhost change started until after it returned."""
    return sum(1 for b in builds if b.started <= apply.started and b.ended >= apply.ended)


def report(baseline, loaded, builds, sites, loadavg, old) -> None:
    rows = [
        ("vhost-apply, baseline (no builds)", baseline, lambda a: a.seconds),
        (f"vhost-apply, while {sites} builds run", loaded, lambda a: a.seconds),
        ("  until served, baseline", baseline, lambda a: a.served - a.started),
        ("  until served, under load", loaded, lambda a: a.served - a.started),
        ("version (agent start, no lock), baseline", baseline, lambda a: a.startup),
        ("version (agent start, no lock), under load", loaded, lambda a: a.startup),
    ]
    print(f"\n{'tenant B, timed from CHOM':44} {'runs':>4} {'median':>8} {'p95':>8} {'max':>8}")
    for label, applies, value in rows:
        median, p95, top = spread([value(a) for a in applies])
        print(f"{label:44} {len(applies):4d} {median:7.3f}s {p95:7.3f}s {top:7.3f}s")
    durations = [b.seconds for b in builds]
    overlap = [covering(a, builds) for a in loaded]
    print(
        f"\nbuilds under load: {len(builds)} release-create calls on {sites} sites, "
        f"{statistics.median(durations):.1f} s median ({min(durations):.1f}-{max(durations):.1f} s); "
        f"builds running through each vhost change: min {min(overlap)}, median "
        f"{statistics.median(overlap):g} of {sites}; host load average at the end: {loadavg}"
    )
    base_median, _, base_max = spread([a.seconds for a in baseline])
    _, load_p95, load_max = spread([a.seconds for a in loaded])
    delay_p95, delay_max = load_p95 - base_median, load_max - base_max
    verdict = "met" if min(delay_p95, delay_max) <= 2.0 else "NOT met"
    print(
        f"delay of a co-tenant's vhost change: p95 - baseline median = {delay_p95:.3f} s, "
        f"max - baseline max = {delay_max:.3f} s; target <= 2 s: {verdict}"
    )
    for n, (change, wave) in enumerate(old, 1):
        if isinstance(change, str):
            print(f"old lock, wave {n}: vhost-apply refused: {change}")
            continue
        last = max(b.ended for b in wave)
        print(
            f"old lock (builds hold the VPS lock shared), wave {n}: vhost-apply took {change.seconds:.1f} s, "
            f"returned {change.ended - last:+.2f} s after the last of {len(wave)} builds "
            f"({min(b.seconds for b in wave):.1f}-{max(b.seconds for b in wave):.1f} s)"
        )


if __name__ == "__main__":
    main()
