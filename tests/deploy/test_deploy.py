"""deploy/deploy.sh for real: a local target directory (CHOM_SERVICE_MANAGER=local) with real
gunicorn, Celery worker and beat, PostgreSQL and Redis; deploys of commits of a throwaway clone
while a request loop counts every failed request."""

import http.client
import os
import re
import secrets
import subprocess
import urllib.parse

import pytest

from tests.deploy import harness
from tests.deploy.harness import RequestLoop, Target, commit, get

REASON = harness.unreachable_services()
pytestmark = pytest.mark.skipif(
    REASON is not None, reason=f"deploy tests need PostgreSQL, pg_dump and Redis: {REASON}"
)


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    base = tmp_path_factory.mktemp("deploy")
    repo = harness.make_source_repo(base / "src")
    database = harness.create_database()
    target = Target(
        root=base / "chom",
        repo=repo,
        database=database,
        redis_db=10 + secrets.randbelow(5),  # 10-14: tests/journeys claims 15, 8 or 7
        wheels=harness.wheelhouse(),
    )
    try:
        yield target
    finally:
        try:
            target.stop()
        finally:
            harness.drop_database(database)


@pytest.fixture(scope="module")
def deployed(target):
    """The first deploy, plus an enterprise tenant's API token (1200 requests/min). Releases share
    one virtualenv here (CHOM_SHARE_VENVS=1): one pip install for the whole module."""
    first = target.deploy()
    print(first.output)
    assert first.returncode == 0, first.output
    print(f"first deploy: {first.seconds:.1f}s")
    token = target.manage("create_tenant", "loadtest", "--tier", "enterprise", "--owner-email", "o@load.test")
    return {"first": first, "token": token.strip().splitlines()[-1]}


def _assert_serving(target, token):
    status, _, body = get(target.url, "/health")
    assert status == 200, body
    status, _, body = get(target.url, "/api/v1/tenant", token=token)
    assert (status, b'"slug":"loadtest"' in body.replace(b" ", b"")) == (200, True), body


def test_first_deploy_builds_a_release_and_serves_health_and_api(target, deployed):
    release = target.current()
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{12}", release)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=target.repo, capture_output=True, text=True)
    assert (target.root / "current" / "REVISION").read_text().strip() == head.stdout.strip()
    assert (target.root / "current" / "static" / "staticfiles.json").exists()
    assert os.readlink(target.root / "releases" / release / "venv").startswith("../../venvs/")
    assert list((target.root / "backups").glob("db-*.dump"))
    for step in ("free disk", "database reachable", "redis reachable", "migration plan", "check --deploy"):
        assert f"==> {step}" in deployed["first"].output
    _assert_serving(target, deployed["token"])
    assert target.pid("web") and target.pid(f"worker-{release}") and target.pid("beat")
    assert target.pid(f"notify-{release}"), "notifications have a worker of their own"


def test_a_deploy_under_load_drops_no_request(target, deployed):
    before, old_master = target.current(), target.pid("web")
    sha = commit(target.repo, "second release")
    loop = RequestLoop(target.url, deployed["token"], rate=20)
    loop.start()
    try:
        result = target.deploy()
    finally:
        loop.stop()
    print(result.output)
    print(f"deploy under load: {loop.summary()}; deploy took {result.seconds:.1f}s")
    assert result.returncode == 0, result.output
    assert loop.failures == [], loop.failures[:10]
    assert loop.ok >= 100
    assert target.current() != before and target.current().endswith(sha[:12])
    assert "reusing" in result.output, "same requirements.txt: the virtualenv is not built again"
    assert target.pid("web") != old_master, "the web master must be re-executed from the new release"
    assert not target.pid(f"worker-{before}"), "the old release's worker must be stopped"
    assert not target.pid(f"notify-{before}") and target.pid(f"notify-{target.current()}")
    _assert_serving(target, deployed["token"])


def test_a_release_failing_its_health_check_never_takes_traffic(target, deployed):
    before, releases = target.current(), target.releases()
    edits = {"chom/health.py": harness.BROKEN_HEALTH}
    sha = commit(target.repo, "broken /health", branch="broken-health", edits=edits)
    loop = RequestLoop(target.url, deployed["token"], rate=20)
    loop.start()
    try:
        result = target.deploy("--ref", sha)
    finally:
        loop.stop()
    print(result.output)
    print(f"rejected release under load: {loop.summary()}")
    assert result.returncode != 0
    assert "broken on purpose" in result.output and "nothing was switched" in result.output
    assert (target.current(), target.releases()) == (before, releases)
    assert loop.failures == [], loop.failures[:10]
    _assert_serving(target, deployed["token"])


def test_a_release_failing_after_the_switch_is_rolled_back(target, deployed):
    before, releases, worker = target.current(), target.releases(), target.pid(f"worker-{target.current()}")
    edits = {"chom/celery.py": harness.BROKEN_WORKER}
    sha = commit(target.repo, "broken worker", branch="broken-worker", edits=edits)
    loop = RequestLoop(target.url, deployed["token"], rate=20)
    loop.start()
    try:
        result = target.deploy("--ref", sha)
    finally:
        loop.stop()
    print(result.output)
    print(
        f"rollback under load: {loop.summary()}; deploy + rollback took {result.seconds:.1f}s, "
        f"rollback {result.rollback_seconds()}s"
    )
    assert result.returncode != 0
    assert "==> switch current" in result.output and f"ROLLED BACK to {before}" in result.output
    assert target.current() == before
    assert target.releases() == releases, "the failed release is removed"
    assert target.pid(f"worker-{before}") == worker, "the old worker never stopped"
    assert loop.failures == [], loop.failures[:10]
    _assert_serving(target, deployed["token"])


def test_a_rerun_with_nothing_new_changes_nothing(target, deployed):
    before = (target.current(), target.releases(), sorted(os.listdir(target.root / "backups")))
    pids = (target.pid("web"), target.pid("beat"))
    result = target.deploy()
    assert result.returncode == 0, result.output
    assert "already current" in result.output and "nothing to do" in result.output
    assert "==> export" not in result.output and "==> database backup" not in result.output
    after = (target.current(), target.releases(), sorted(os.listdir(target.root / "backups")))
    assert (after, (target.pid("web"), target.pid("beat"))) == (before, pids)


def test_only_the_last_five_releases_are_kept(target, deployed):
    for n in range(6):  # older than any real release (names sort by their UTC timestamp)
        old = target.root / "releases" / f"20000101T00000{n}Z-{n:012x}"
        old.mkdir()
        (old / "REVISION").write_text(f"{n:040x}\n")
    everything = target.releases()
    sha = commit(target.repo, "a release that prunes")
    result = target.deploy()
    assert result.returncode == 0, result.output
    assert target.current().endswith(sha[:12])
    assert target.releases() == sorted([*everything, target.current()])[-5:]
    _assert_serving(target, deployed["token"])


def _cookies(headers) -> dict[str, str]:
    jar = {}
    for header in headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        jar[name.strip()] = rest.split(";", 1)[0]
    return jar


def _login(base: str, username: str, password: str) -> dict[str, str]:
    """The staff login form on one instance, the way a browser behind TLS submits it."""
    status, headers, body = get(base, "/login/")
    assert status == 200, body
    jar = _cookies(headers)
    csrf = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    form = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": csrf})
    host = urllib.parse.urlsplit(base).netloc
    conn = http.client.HTTPConnection(*host.split(":"), timeout=5)
    try:
        conn.request(
            "POST",
            "/login/",
            body=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={jar['csrftoken']}",
                "Referer": f"https://{host}/login/",
                "X-Forwarded-Proto": "https",
            },
        )
        response = conn.getresponse()
        response.read()
        assert response.status == 302, response.status
        jar.update(_cookies(response.headers))
    finally:
        conn.close()
    return jar


def test_two_web_instances_share_sessions_and_api_tokens(target, deployed, tmp_path):
    """Stateless web: two gunicorns (think: two hosts behind a load balancer) on one PostgreSQL
    and one Redis; a login on one is valid on the other, and so is an API token."""
    password = secrets.token_urlsafe(16)
    target.manage(
        "createsuperuser",
        "--noinput",
        "--username",
        "ops",
        "--email",
        "ops@chom.test",
        extra_env={"DJANGO_SUPERUSER_PASSWORD": password},
    )
    release = target.root / "current"
    ports = [harness.free_port(), harness.free_port()]
    procs = []
    try:
        for port in ports:
            argv = [
                str(release / "venv" / "bin" / "python"),
                str(release / "venv" / "bin" / "gunicorn"),
                "-c",
                str(release / "deploy" / "gunicorn.conf.py"),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
            ]
            log = open(tmp_path / f"web-{port}.log", "wb")
            procs.append((subprocess.Popen(argv, env=target.settings_env(), stdout=log, stderr=log,
                                           start_new_session=True), log))  # fmt: skip
        a, b = (f"http://127.0.0.1:{port}" for port in ports)
        for base in (a, b):
            harness.wait_healthy(base)

        session = _login(a, "ops", password)
        cookie = {"Cookie": f"sessionid={session['sessionid']}"}
        # Production asks staff for the second factor next: b knows the session a signed in.
        status, headers, _ = get(b, "/", headers=cookie)
        assert status == 302 and headers["Location"].startswith("/account/2fa/"), (status, headers)
        status, _, body = get(b, "/account/2fa/", headers=cookie)
        assert status == 200 and b"Set up two-factor sign-in" in body, (status, body[:300])
        status, headers, _ = get(b, "/")
        assert status == 302 and "/login/" in headers["Location"], "no session cookie: the login page"

        token = deployed["token"]
        answers = [get(base, "/api/v1/tenant", token=token) for base in (a, b)]
        assert [status for status, _, _ in answers] == [200, 200]
        assert answers[0][2] == answers[1][2]
    finally:
        for proc, log in procs:
            harness.stop_process_group(proc)
            log.close()


def test_a_manual_rollback_returns_to_the_previous_release_without_dropping_requests(target, deployed):
    releases = [r for r in target.releases() if (target.root / "releases" / r / "venv").exists()]
    assert len(releases) >= 2 and target.current() == releases[-1]
    loop = RequestLoop(target.url, deployed["token"], rate=20)
    loop.start()
    try:
        result = target.deploy("rollback")
    finally:
        loop.stop()
    print(f"manual rollback under load: {loop.summary()}; {result.seconds:.1f}s")
    assert result.returncode == 0, result.output
    assert target.current() == releases[-2]
    assert loop.failures == [], loop.failures[:10]
    _assert_serving(target, deployed["token"])
