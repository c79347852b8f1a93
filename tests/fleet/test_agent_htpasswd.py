"""The agent's htpasswd-apply: a site's basic-auth files are root:www-data 0640 in a root-owned
directory outside the site's home, written only when they differ, pruned on request, and nothing
but `user:bcrypt-hash` lines can get into them."""

from __future__ import annotations

import stat

import bcrypt
import pytest

from tests.fleet.agent_fixtures import Agent

KEY, OTHER = "0123456789abcdef", "fedcba9876543210"
HASH = bcrypt.hashpw(b"correct horse battery", bcrypt.gensalt(rounds=4)).decode()


def _mode(path) -> tuple[int, int, int]:
    st = path.lstat()
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def test_it_writes_the_files_readable_by_root_and_nginx_only(agent: Agent) -> None:
    out = agent.ok("htpasswd-apply", {"name": "site1", "files": {KEY: [["alice", HASH], ["bob", HASH]]}})
    assert out["changed"] is True and out["data"]["files"] == [KEY]
    directory = agent.path("/var/lib/chom/htpasswd/site1")
    assert (directory / KEY).read_text() == f"alice:{HASH}\nbob:{HASH}\n"
    assert _mode(directory / KEY) == (0o640, 0, 33)
    assert _mode(directory) == (0o750, 0, 33)
    assert _mode(agent.path("/var/lib/chom/htpasswd")) == (0o755, 0, 0)
    assert HASH not in str(out)  # the log names files, never hashes


def test_it_changes_nothing_the_second_time(agent: Agent) -> None:
    payload = {"name": "site1", "files": {KEY: [["alice", HASH]]}}
    agent.ok("htpasswd-apply", payload)
    inode = agent.path(f"/var/lib/chom/htpasswd/site1/{KEY}").stat().st_ino
    assert agent.ok("htpasswd-apply", payload)["changed"] is False
    assert agent.path(f"/var/lib/chom/htpasswd/site1/{KEY}").stat().st_ino == inode


def test_it_prunes_realms_only_when_asked_and_removes_the_directory_when_none_is_left(agent: Agent) -> None:
    agent.ok("htpasswd-apply", {"name": "site1", "files": {KEY: [["a", HASH]], OTHER: [["b", HASH]]}})
    directory = agent.path("/var/lib/chom/htpasswd/site1")
    agent.ok("htpasswd-apply", {"name": "site1", "files": {KEY: [["a", HASH]]}, "prune": False})
    assert sorted(p.name for p in directory.iterdir()) == sorted([KEY, OTHER])
    assert agent.ok("htpasswd-apply", {"name": "site1", "files": {KEY: [["a", HASH]]}})["changed"] is True
    assert [p.name for p in directory.iterdir()] == [KEY]
    assert agent.ok("htpasswd-apply", {"name": "site1", "files": {}})["changed"] is True
    assert not directory.exists()
    assert agent.ok("htpasswd-apply", {"name": "site1", "files": {}})["changed"] is False


def test_it_replaces_a_planted_symlink_instead_of_writing_through_it(agent: Agent) -> None:
    agent.ok("htpasswd-apply", {"name": "site1", "files": {KEY: [["a", HASH]]}})
    victim = agent.path("/etc/victim")
    victim.write_text("untouched\n")
    target = agent.path(f"/var/lib/chom/htpasswd/site1/{KEY}")
    target.unlink()
    target.symlink_to(victim)
    agent.ok("htpasswd-apply", {"name": "site1", "files": {KEY: [["a", HASH]]}})
    assert victim.read_text() == "untouched\n"
    assert not target.is_symlink() and target.read_text() == f"a:{HASH}\n"


@pytest.mark.parametrize(
    "files",
    [
        {"../../etc": [["a", HASH]]},
        {"0123456789ABCDEF": [["a", HASH]]},
        {KEY: []},
        {KEY: [["a:b", HASH]]},
        {KEY: [["a\nroot", HASH]]},
        {KEY: [["a", "plaintext-password"]]},
        {KEY: [["a", HASH + "\nroot:" + HASH]]},
        {KEY: [["a", "$1$saltsalt$md5cryptisnotaccepted."]]},
        {KEY: [["a"]]},
        {KEY: "a:hash"},
    ],
)
def test_it_refuses_anything_but_user_and_bcrypt_hash_lines(agent: Agent, files) -> None:
    result = agent("htpasswd-apply", {"name": "site1", "files": files})
    assert result.rc == 1 and result.out["error"]["code"] == "invalid_input"
    assert "$2b$" not in result.out["error"]["message"]
    assert not agent.path("/var/lib/chom/htpasswd/site1").exists()


def test_site_remove_removes_the_sites_basic_auth_files(agent: Agent) -> None:
    agent.path("/etc/systemd/system").mkdir(parents=True, exist_ok=True)  # as on every VPS
    agent.ok("site-ensure", {"name": "site1"})
    agent.ok("htpasswd-apply", {"name": "site1", "files": {KEY: [["a", HASH]]}})
    agent.ok("site-remove", {"name": "site1"})
    assert not agent.path("/var/lib/chom/htpasswd/site1").exists()
