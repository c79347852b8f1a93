"""mtail's part of bootstrap step "monitoring" as given facts → agent calls, against a recording
transport: CHOM's program and the settings Debian's unit reads, the service running, a restart
when either changed, nothing changed on a configured server."""

import json

import pytest

from fleet.remote.agent_client import AGENT_PATH, AGENT_SHA256, Agent
from fleet.remote.transport import Result
from fleet.services import EXPORTER_PORTS, bootstrap_packages
from observability.monitoring import MTAIL_DEFAULTS, MTAIL_PROGRAM, MTAIL_SOURCE, monitoring_bootstrap
from sites.services import site_ensure_payload
from tests.observability.factories import make_site, make_vps
from tests.support.recording import RecordingTransport, agent_answer


def _transport(*, changed_paths: tuple[str, ...] = (), mtail_state: str = "active"):
    """An agent where file-write changes only CHANGED_PATHS and mtail is in MTAIL_STATE."""

    def respond(command, stdin):
        if command.argv[0] == "sha256sum":
            return Result(0, f"{AGENT_SHA256}  {AGENT_PATH}\n", "")
        if command.argv[0] in ("test", "id"):
            return Result(0, "", "")
        payload = json.loads(stdin or b"{}")
        if command.argv[2] == "file-write":
            return agent_answer(changed=payload["path"] in changed_paths)
        starts = payload.get("name") == "mtail" and mtail_state != "active" and payload.get("running")
        return agent_answer(changed=bool(starts), data={"state": "active"})

    return RecordingTransport(respond)


def _mtail_calls(transport) -> list[tuple[str, dict]]:
    return [
        (sub, payload)
        for sub, payload in transport.agent_calls()
        if payload.get("path") in (MTAIL_PROGRAM, MTAIL_DEFAULTS) or payload.get("name") == "mtail"
    ]


def _run(vps, transport) -> tuple[bool, list[str]]:
    lines: list[str] = []
    return monitoring_bootstrap(vps=vps, agent=Agent(transport), log=lines.append), lines


@pytest.fixture
def vps(db, settings):
    settings.LOKI_URL = settings.LOKI_PUSH_URL = ""
    return make_vps("web1")


def test_it_installs_chom_program_and_the_log_glob_and_runs_mtail(vps):
    transport = _transport(changed_paths=(MTAIL_PROGRAM, MTAIL_DEFAULTS), mtail_state="inactive")
    changed, lines = _run(vps, transport)
    assert changed is True
    program = transport.assert_agent_called("file-write", path=MTAIL_PROGRAM)
    assert program["content"] == MTAIL_SOURCE.read_text() and program["mode"] == "0644"
    defaults = transport.assert_agent_called("file-write", path=MTAIL_DEFAULTS)["content"]
    assert "\nLOGS=/var/log/chom/*/access.log\n" in defaults and "\nPORT=3903\n" in defaults
    transport.assert_agent_called("service-ensure", name="mtail", enabled=True, running=True)
    # Started now: it reads the new files as it starts, no restart.
    assert [p for _, p in _mtail_calls(transport) if "path" not in p] == [
        {"name": "mtail", "enabled": True, "running": True}
    ]
    assert f"  wrote {MTAIL_PROGRAM}" in lines


def test_it_restarts_a_running_mtail_when_its_program_changed(vps):
    transport = _transport(changed_paths=(MTAIL_PROGRAM,))
    changed, lines = _run(vps, transport)
    assert changed is True
    services = [p for sub, p in _mtail_calls(transport) if sub == "service-ensure"]
    assert services[1:] == [{"name": "mtail", "running": False}, {"name": "mtail", "running": True}]
    assert "  restarted mtail for its new config" in lines


def test_it_changes_nothing_when_mtail_is_configured_and_running(vps):
    transport = _transport()
    _run(vps, transport)
    assert [sub for sub, _ in _mtail_calls(transport)] == ["file-write", "file-write", "service-ensure"]
    assert not any(p.get("running") is False for _, p in _mtail_calls(transport))


def test_it_installs_mtail_opens_its_port_to_monitoring_and_makes_it_a_reader_of_every_sites_logs(alice):
    assert "mtail" in bootstrap_packages("8.2")
    assert 3903 in EXPORTER_PORTS
    site = make_site(alice.tenant, make_vps("web1"), "shop.acme.test")
    payload = site_ensure_payload(site)
    # Where the package is missing the agent skips the account instead of failing.
    assert payload["log_readers_if_present"] == ["mtail"] and "mtail" not in payload["log_readers"]
