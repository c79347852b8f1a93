"""The agent's protocol, run as a subprocess like CHOM runs it: its version, Python 3.9 stdlib-only
source, one JSON object in and out, and refusal of every invalid input before anything changes.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from typing import Any

import pytest

from tests.fleet.agent_fixtures import AGENT, PYTHON, Agent

# --------------------------------------------------------------------------- protocol


def test_it_reports_its_version() -> None:
    source = AGENT.read_text()
    version = next(
        node.value.value
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "VERSION"
    )
    proc = subprocess.run(
        [PYTHON, str(AGENT), "version"], input="", capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {
        "ok": True,
        "changed": False,
        "data": {"version": version},
        "log": [],
    }


def test_it_stays_python39_syntax_and_stdlib_only() -> None:
    tree = ast.parse(AGENT.read_text(), feature_version=(3, 9))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


def test_it_rejects_unknown_subcommands(agent: Agent) -> None:
    result = agent("frobnicate")
    assert (result.rc, result.error["code"]) == (1, "unknown_command")


def test_it_rejects_input_that_is_not_a_json_object(agent: Agent) -> None:
    for raw in ("[1, 2]", "{not json", '"x"'):
        result = agent("version", raw=raw)
        assert (result.rc, result.error["code"]) == (1, "invalid_input"), raw


VALID_VHOST = "server { listen 127.0.0.1:1; }\n"
INVALID_INPUTS = [
    ("vhost-apply", {"name": "a;rm -rf /", "content": VALID_VHOST}),
    ("vhost-apply", {"name": "$(reboot)", "content": VALID_VHOST}),
    ("vhost-apply", {"name": "../etc", "content": VALID_VHOST}),
    ("vhost-apply", {"name": "Upper", "content": VALID_VHOST}),
    ("vhost-apply", {"name": "", "content": VALID_VHOST}),
    ("vhost-apply", {"name": "a" * 33, "content": VALID_VHOST}),
    ("vhost-apply", {"name": "site", "content": 42}),
    ("vhost-apply", {"name": "site", "content": VALID_VHOST, "extra": 1}),
    ("vhost-remove", {"name": "-rf"}),
    ("file-write", {"path": "/etc/nginx/../shadow", "content": "x"}),
    ("file-write", {"path": "/etc/shadow", "content": "x"}),
    ("file-write", {"path": "etc/nginx/x.conf", "content": "x"}),
    ("file-write", {"path": "/etc/nginx/x.conf;id", "content": "x"}),
    ("file-write", {"path": "/etc/nginx/a b.conf", "content": "x"}),
    ("file-write", {"path": "/etc/nginx//x.conf", "content": "x"}),
    ("file-write", {"path": "/etc/nginx", "content": "x"}),
    ("file-write", {"path": "/etc/nginxx/x.conf", "content": "x"}),
    ("file-write", {"path": "/var/www/x", "content": "x", "mode": "4755"}),
    ("file-write", {"path": "/var/www/x", "content": "x", "mode": "rwx"}),
    ("file-write", {"path": "/var/www/x", "content": "x", "owner": "root;id"}),
    ("file-write", {"path": "/var/www/x", "content": "x", "owner": "nosuchuser"}),
    ("file-remove", {"path": "/root/.ssh/authorized_keys"}),
    ("pool-apply", {"name": "site", "php_version": "8.2;id", "content": "[x]"}),
    ("pool-apply", {"name": "site", "php_version": "../8.2", "content": "[x]"}),
    ("db-ensure", {"name": "db;drop", "user": "u", "password": "secret-password"}),
    ("db-ensure", {"name": "db", "user": "u'--", "password": "secret-password"}),
    ("db-ensure", {"name": "db", "user": "u`x", "password": "secret-password"}),
    ("db-ensure", {"name": "db-1", "user": "u", "password": "secret-password"}),
    ("db-ensure", {"name": "db", "user": "u"}),
    ("db-ensure", {"name": "db", "user": "u", "password": "short"}),
    ("db-remove", {"name": "db", "user": "root@'%'"}),
    ("db-monitor-ensure", {"user": "root'@'%", "password": "a-long-enough-secret"}),
    ("db-monitor-ensure", {"user": "chom_exporter", "password": "too-short"}),
    ("db-monitor-ensure", {"user": "chom_exporter"}),
    ("db-monitor-ensure", {"user": "chom_exporter", "password": "a-long-enough-secret", "host": "%"}),
    ("db-monitor-ensure", {"user": "chom_exporter\n", "password": "a-long-enough-secret"}),
    ("packages-ensure", {"packages": ["nginx; rm -rf /"]}),
    ("packages-ensure", {"packages": ["-oAPT::Foo=1"]}),
    ("packages-ensure", {"packages": []}),
    ("service-ensure", {"name": "--now", "running": True}),
    ("service-ensure", {"name": "nginx", "running": "yes"}),
    ("service-ensure", {"services": []}),
    ("service-ensure", {"services": ["nginx"]}),
    ("service-ensure", {"services": [{"name": "--now", "running": True}]}),
    ("service-ensure", {"services": [{"name": "nginx", "running": "yes"}]}),
    ("service-ensure", {"services": [{"name": "nginx", "restart": True}]}),
    ("service-ensure", {"services": [{"name": "nginx"}, {"name": "nginx", "running": True}]}),
    ("service-ensure", {"name": "cron", "services": [{"name": "nginx", "running": True}]}),
    ("reload", {"service": "nginx && reboot"}),
    ("user-ensure", {"name": "site", "home": "/etc/site"}),
    ("user-ensure", {"name": "site", "home": "/home/../root"}),
    ("user-ensure", {"name": "site", "home": "/home/site", "shell": "/tmp/evil"}),
    ("user-remove", {"name": "root'"}),
    ("ufw-apply", {"allow": [{"port": "22;id", "proto": "tcp"}]}),
    ("ufw-apply", {"allow": [{"port": 22, "proto": "icmp"}]}),
    ("ufw-apply", {"allow": [{"port": 22, "proto": "tcp", "from": "1.2.3.4; id"}]}),
    ("ufw-apply", {"allow": [{"port": 80, "proto": "tcp"}]}),
    ("sshd-harden", {"PasswordAuthentication": "yes"}),
    # A trailing newline passes `re.match` with `$`: the agent matches the whole value.
    ("vhost-apply", {"name": "site\n", "content": VALID_VHOST}),
    ("pool-apply", {"name": "site", "php_version": "8.2\n", "content": "[x]"}),
    ("db-ensure", {"name": "db\n", "user": "u", "password": "secret-password"}),
    ("packages-ensure", {"packages": ["nginx\n"]}),
    ("service-ensure", {"name": "nginx\n", "running": True}),
    ("file-write", {"path": "/var/www/x", "content": "x", "mode": "0644\n"}),
    ("file-write", {"path": "/etc/nginx/x.conf\n", "content": "x"}),
]


@pytest.mark.parametrize(("command", "payload"), INVALID_INPUTS)
def test_it_rejects_invalid_input(agent: Agent, command: str, payload: dict[str, Any]) -> None:
    result = agent(command, payload)
    assert result.rc == 1
    assert result.out["ok"] is False
    assert result.out["changed"] is False
    assert result.error["code"] == "invalid_input", result.error
    assert result.error["message"]
    assert agent.calls("systemctl") == []
    assert agent.calls("refuse") == []


def test_it_reports_a_failure_while_the_server_shuts_down_as_interrupted(agent: Agent) -> None:
    # systemd stopping everything: the reload fails, and is-system-running answers "stopping".
    agent.env["VPSMANAGER_SYSTEMCTL"] = agent.fake("systemctl-stopping", "#!/bin/sh\necho stopping\nexit 1\n")
    result = agent("reload", {"service": "nginx"})
    assert (result.rc, result.error["code"]) == (1, "interrupted"), result.out
    assert result.error["message"].startswith("the server is shutting down or rebooting: "), result.error
    assert "exited 1" in result.error["message"], result.error


def test_it_reports_a_failure_on_a_running_server_as_it_is(agent: Agent) -> None:
    agent.env["VPSMANAGER_SYSTEMCTL"] = agent.fake("systemctl-running", "#!/bin/sh\necho running\nexit 1\n")
    result = agent("reload", {"service": "nginx"})
    assert (result.rc, result.error["code"]) == (1, "command_failed"), result.out
