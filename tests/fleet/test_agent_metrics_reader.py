"""The agent's parts of the per-site request metrics: mtail's account reads every site's logs
where mtail is installed (and site-ensure still works where it is not), and file-write may
install mtail's program and settings, nothing else under /etc/default."""

from __future__ import annotations

import subprocess

import pytest

from tests.fleet.agent_fixtures import (
    SITE,
    Agent,
    require,
    site_agent,  # noqa: F401 - the site tests' `agent` fixture (replaces conftest's)
)

pytestmark = pytest.mark.real


def _acl(path) -> set[str]:
    require("/usr/bin/getfacl")
    out = subprocess.run(["getfacl", "-n", "-p", str(path)], capture_output=True, text=True, check=True)
    return {line for line in out.stdout.splitlines() if line and not line.startswith("#")}


def test_it_makes_an_existing_optional_reader_a_log_reader_and_skips_a_missing_one(agent: Agent) -> None:
    logs = agent.path("/var/log/chom/site1")
    without = agent.ok("site-ensure", {"name": SITE, "log_readers_if_present": ["mtail"]})
    assert without["changed"] is True
    assert not any(line.startswith("user:") and line != "user::rwx" for line in _acl(logs))

    agent.ok("user-ensure", {"name": "mtail", "home": "/home/mtail"})
    uid = int(agent.path("/etc/passwd").read_text().split("mtail:x:")[1].split(":")[0])
    first = agent.ok("site-ensure", {"name": SITE, "log_readers_if_present": ["mtail"]})
    assert first["changed"] is True
    acl = _acl(logs)
    assert f"user:{uid}:r-x" in acl and f"default:user:{uid}:r--" in acl and "other::---" in acl
    # nginx creates a site's log root:root and the default ACL gives "other" nothing: the site's
    # own group is named there, or the site could no longer read its own logs.
    site_gid = int(agent.path("/etc/group").read_text().split(f"{SITE}:x:")[1].split(":")[0])
    assert f"default:group:{site_gid}:r--" in acl and f"group:{site_gid}:r--" not in acl
    again = agent.ok("site-ensure", {"name": SITE, "log_readers_if_present": ["mtail"]})
    assert again["changed"] is False
    # Named in both lists: one entry.
    both = agent.ok(
        "site-ensure", {"name": SITE, "log_readers": ["mtail"], "log_readers_if_present": ["mtail"]}
    )
    assert both["changed"] is False


def test_it_refuses_optional_readers_that_are_not_account_names(agent: Agent) -> None:
    result = agent("site-ensure", {"name": SITE, "log_readers_if_present": ["../etc"]})
    assert (result.rc, result.error["code"]) == (1, "invalid_input")
    assert "log_readers_if_present" in result.error["message"]


def test_it_writes_mtails_program_and_settings_but_no_other_default_file(agent: Agent) -> None:
    agent.ok("file-write", {"path": "/etc/mtail/chom-sites.mtail", "content": "counter x\n"})
    agent.ok("file-write", {"path": "/etc/default/mtail", "content": "LOGS=/var/log/chom/*/access.log\n"})
    assert agent.path("/etc/default/mtail").read_text() == "LOGS=/var/log/chom/*/access.log\n"
    for other in ("/etc/default/mtailx", "/etc/default/grub", "/etc/mtailx/p.mtail"):
        result = agent("file-write", {"path": other, "content": "x\n"})
        assert (result.rc, result.error["code"]) == (1, "invalid_input"), other
