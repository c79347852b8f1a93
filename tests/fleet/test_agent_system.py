"""The agent's host commands: sshd hardening (checked by the real sshd -t), packages, services and ufw
(recording fakes: no systemd here, no package installs), system users, and facts.
"""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from tests.fleet.agent_fixtures import SSHD, Agent, recorder, require

# --------------------------------------------------------------------------- sshd


@pytest.fixture
def sshd(agent: Agent, tmp_path: Path) -> Path:
    require(SSHD)
    # sshd -t insists on its privilege separation directory; the package normally creates it.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    key = tmp_path / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    config = tmp_path / "sshd_config"
    config.write_text(
        f"Include {agent.path('/etc/ssh/sshd_config.d')}/*.conf\nHostKey {key}\nPasswordAuthentication yes\n"
    )
    agent.env["VPSMANAGER_SSHD"] = json.dumps([SSHD, "-f", str(config)])
    agent.env["VPSMANAGER_SSHD_RELOAD"] = agent.fake(
        "sshd-reload", recorder(agent.fakes / "sshd-reload.calls", 0)
    )
    return config


def test_sshd_harden_writes_validates_and_reloads_once(agent: Agent, sshd: Path) -> None:
    first = agent.ok("sshd-harden")
    assert first["changed"] is True
    dropin = agent.path("/etc/ssh/sshd_config.d/50-chom.conf").read_text()
    assert "PasswordAuthentication no" in dropin
    assert len(agent.calls("sshd-reload")) == 1

    assert agent.ok("sshd-harden")["changed"] is False
    assert len(agent.calls("sshd-reload")) == 1


def test_sshd_harden_fails_when_an_earlier_file_wins(agent: Agent, sshd: Path) -> None:
    earlier = agent.path("/etc/ssh/sshd_config.d/10-admin.conf")
    earlier.parent.mkdir(parents=True)
    earlier.write_text("PasswordAuthentication yes\n")
    result = agent("sshd-harden")
    assert result.error["code"] == "sshd_overridden"
    assert "passwordauthentication" in result.error["message"].lower()
    assert not agent.path("/etc/ssh/sshd_config.d/50-chom.conf").exists()
    assert agent.calls("sshd-reload") == []


# --------------------------------------------------------------------------- packages, services


def test_packages_ensure_installs_nothing_when_all_are_present(agent: Agent) -> None:
    require("/usr/bin/dpkg-query")
    out = agent.ok("packages-ensure", {"packages": ["dpkg", "coreutils"]})
    assert (out["changed"], out["data"]) == (False, {"installed": []})
    assert agent.calls("refuse") == []


def test_packages_ensure_installs_only_the_missing_ones(agent: Agent) -> None:
    require("/usr/bin/dpkg-query")
    apt = agent.fake("apt-get", recorder(agent.fakes / "apt-get.calls", 0))
    agent.env["VPSMANAGER_APT_GET"] = apt
    out = agent.ok("packages-ensure", {"packages": ["dpkg", "chom-no-such-package"]})
    assert (out["changed"], out["data"]) == (True, {"installed": ["chom-no-such-package"]})
    update, install = agent.calls("apt-get")
    assert update == "update [DEBIAN_FRONTEND=noninteractive]"
    assert install.startswith("install -y --no-install-recommends ")
    assert install.endswith(" chom-no-such-package [DEBIAN_FRONTEND=noninteractive]")


def test_packages_ensure_reports_apt_failures(agent: Agent) -> None:
    require("/usr/bin/dpkg-query")
    result = agent("packages-ensure", {"packages": ["chom-no-such-package"], "update": False})
    assert (result.error["code"], result.error["step"]) == ("command_failed", "apt-install")


def test_service_ensure_enables_and_starts_only_when_needed(agent: Agent) -> None:
    payload = {"name": "nginx", "enabled": True, "running": True}
    first = agent.ok("service-ensure", payload)
    assert (first["changed"], first["data"]["state"]) == (True, "active")
    assert {"enable -- nginx", "start -- nginx"} <= set(agent.calls("systemctl"))

    before = len(agent.calls("systemctl"))
    assert agent.ok("service-ensure", payload)["changed"] is False
    assert all(c.split()[0].startswith("is-") for c in agent.calls("systemctl")[before:]), agent.calls(
        "systemctl"
    )


def test_reload_fails_loudly_for_an_inactive_service(agent: Agent) -> None:
    result = agent("reload", {"service": "nginx"})
    assert (result.error["code"], result.out["changed"]) == ("command_failed", False)
    assert "not active" in result.error["message"]
    agent.ok("service-ensure", {"name": "nginx", "running": True})
    assert agent.ok("reload", {"service": "nginx"})["changed"] is True


def test_ufw_apply_reports_a_missing_ufw(agent: Agent) -> None:
    result = agent("ufw-apply", {"allow": [{"port": 22, "proto": "tcp"}]})
    assert (result.rc, result.error["code"]) == (1, "ufw_unavailable")


def test_service_ensure_asks_systemctl_once_per_question_for_a_batch(agent: Agent) -> None:
    agent.ok("service-ensure", {"name": "cron", "enabled": True, "running": True})
    payload = {"services": [{"name": n, "enabled": True, "running": True} for n in ("nginx", "cron", "ssh")]}
    before = len(agent.calls("systemctl"))
    first = agent.ok("service-ensure", payload)
    assert first["changed"] is True
    assert first["data"]["services"] == [
        {"name": "nginx", "state": "active", "changed": True},
        {"name": "cron", "state": "active", "changed": False},
        {"name": "ssh", "state": "active", "changed": True},
    ]
    calls = agent.calls("systemctl")[before:]
    assert calls[:2] == ["is-enabled -- nginx cron ssh", "is-active -- nginx cron ssh"]
    assert not [c for c in calls if c.endswith(" cron") and not c.startswith("is-")]

    before = len(agent.calls("systemctl"))
    assert agent.ok("service-ensure", payload)["changed"] is False
    assert agent.calls("systemctl")[before:] == [
        "is-enabled -- nginx cron ssh",
        "is-active -- nginx cron ssh",
    ]


def test_service_ensure_keeps_units_and_states_paired_when_a_unit_file_is_missing(agent: Agent) -> None:
    agent.ok("service-ensure", {"name": "nginx", "enabled": True})
    payload = {"services": [{"name": "nounit-x", "enabled": False}, {"name": "nginx", "enabled": True}]}
    out = agent.ok("service-ensure", payload)
    assert out["changed"] is False, out["log"]


def ufw_fake(agent: Agent) -> str:
    """Lists rules the way `ufw status` does (host sources without /32, "(v6)" twins)."""
    state = agent.fakes / "ufw-state"
    return agent.fake(
        "ufw",
        f"""#!/bin/sh
echo "$*" >> {agent.fakes}/ufw.calls
case $1 in
  status) if [ -e {state}.on ]; then
      printf 'Status: active\\n\\n%-26s %-12s%s\\n' To Action From -- ------ ----
      cat {state}.listing 2>/dev/null
    else echo "Status: inactive"; fi;;
  --force) touch {state}.on;;
  allow) if grep -qxF "$*" {state}.rules 2>/dev/null; then echo "Skipping adding existing rule"
         else echo "$*" >> {state}.rules; echo "Rules updated"
           row="%-26s %-12s%s\\n"
           if [ "$2" = proto ]; then printf "$row" "$9/$3" ALLOW "${{5%/32}}" >> {state}.listing
           else printf "$row" "$2" ALLOW Anywhere "$2 (v6)" ALLOW "Anywhere (v6)" >> {state}.listing
           fi
         fi;;
esac
""",
    )


def test_ufw_apply_adds_rules_and_enables_once(agent: Agent) -> None:
    agent.env["VPSMANAGER_UFW"] = ufw_fake(agent)
    payload = {
        "allow": [
            {"port": 22, "proto": "tcp", "from": "203.0.113.7"},
            {"port": 443, "proto": "tcp"},
        ]
    }
    assert agent.ok("ufw-apply", payload)["changed"] is True
    assert agent.calls("ufw") == [
        "status",
        "allow proto tcp from 203.0.113.7/32 to any port 22",
        "allow 443/tcp",
        "--force enable",
    ]
    before = len(agent.calls("ufw"))
    second = agent.ok("ufw-apply", payload)
    assert second["changed"] is False
    assert second["log"] == ["ufw active with all 2 rules"]
    assert agent.calls("ufw")[before:] == ["status"]


def test_ufw_apply_adds_only_the_rules_an_active_ufw_lacks(agent: Agent) -> None:
    agent.env["VPSMANAGER_UFW"] = ufw_fake(agent)
    agent.ok("ufw-apply", {"allow": [{"port": 22, "proto": "tcp"}]})
    exporter = {"port": 9100, "proto": "tcp", "from": "10.0.0.0/8"}
    before = len(agent.calls("ufw"))
    out = agent.ok("ufw-apply", {"allow": [{"port": 22, "proto": "tcp"}, exporter]})
    assert out["changed"] is True
    assert agent.calls("ufw")[before:] == ["status", "allow proto tcp from 10.0.0.0/8 to any port 9100"]


def test_ufw_apply_restores_a_missing_ipv6_twin_when_ipv6_is_on(agent: Agent) -> None:
    agent.env["VPSMANAGER_UFW"] = ufw_fake(agent)
    agent.path("/etc/default").mkdir(parents=True)
    agent.path("/etc/default/ufw").write_text('IPV6="yes"\n')
    payload = {"allow": [{"port": 22, "proto": "tcp"}, {"port": 443, "proto": "tcp"}]}
    agent.ok("ufw-apply", payload)
    listing = agent.fakes / "ufw-state.listing"
    kept = [line for line in listing.read_text().splitlines(keepends=True) if "443/tcp (v6)" not in line]
    listing.write_text("".join(kept))
    before = len(agent.calls("ufw"))
    agent.ok("ufw-apply", payload)
    assert agent.calls("ufw")[before:] == ["status", "allow 443/tcp"]


# --------------------------------------------------------------------------- users


def require_useradd_prefix() -> None:
    help_text = subprocess.run(["useradd", "--help"], capture_output=True, text=True).stdout
    if "--prefix" not in help_text:
        pytest.skip("useradd has no --prefix on this host")


def test_user_ensure_creates_a_system_user_with_a_private_home(agent: Agent) -> None:
    require_useradd_prefix()
    payload = {"name": "site1", "home": "/var/www/site1"}
    out = agent.ok("user-ensure", payload)
    home = agent.path("/var/www/site1").stat()
    assert out["changed"] is True
    assert (home.st_uid, home.st_gid) == (out["data"]["uid"], out["data"]["gid"])
    assert stat.S_IMODE(home.st_mode) == 0o750
    assert out["data"]["uid"] < 1000
    entry = agent.path("/etc/passwd").read_text().splitlines()[-1]
    assert entry.endswith(":CHOM managed:/var/www/site1:/usr/sbin/nologin")

    assert agent.ok("user-ensure", payload)["changed"] is False
    assert agent.ok("user-ensure", {**payload, "shell": "/bin/bash"})["changed"] is True


def test_user_ensure_refuses_accounts_chom_does_not_manage(agent: Agent) -> None:
    result = agent("user-ensure", {"name": "www-data", "home": "/var/www/x"})
    assert result.error["code"] == "user_conflict"
    assert agent("user-remove", {"name": "root"}).error["code"] == "user_conflict"


def test_user_remove_removes_user_and_group(agent: Agent) -> None:
    require_useradd_prefix()
    agent.ok("user-ensure", {"name": "site1", "home": "/home/site1"})
    assert agent.ok("user-remove", {"name": "site1"})["changed"] is True
    assert "site1" not in agent.path("/etc/passwd").read_text()
    assert "site1" not in agent.path("/etc/group").read_text()
    assert agent.ok("user-remove", {"name": "site1"})["changed"] is False


# --------------------------------------------------------------------------- facts


def test_facts_returns_a_well_formed_structure(agent: Agent) -> None:
    (agent.root / "etc" / "os-release").write_text(
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
    )
    agent.path("/etc/php/8.2/fpm").mkdir(parents=True)
    data = agent.ok("facts")["data"]

    assert data["os"] == {
        "id": "debian",
        "version_id": "12",
        "pretty": "Debian GNU/Linux 12 (bookworm)",
    }
    assert isinstance(data["kernel"], str) and data["hostname"]
    assert data["cpu_count"] >= 1
    assert data["memory"]["total_bytes"] >= data["memory"]["available_bytes"] > 0
    assert data["disk"]["path"] == "/" and data["disk"]["total_bytes"] >= data["disk"]["free_bytes"]
    assert len(data["load"]) == 3
    assert isinstance(data["packages"], dict)
    assert data["php_versions"] == ["8.2"]
    assert data["services"]["nginx"] == "inactive"
    assert data["services"]["php8.2-fpm"] == "inactive"
    assert data["sites"] == []
    assert data["agent_version"] == agent.ok("version")["data"]["version"]
