import hashlib
import json
import re
import subprocess
import sys

import pytest

from fleet.remote.agent_client import (
    AGENT_MODULE_PATH,
    AGENT_PATH,
    AGENT_SOURCE,
    COMPILE,
    LAUNCHER_SOURCE,
    Agent,
    AgentError,
    launcher_source,
)
from fleet.remote.commands import Command, Secret, mask_text
from fleet.remote.transport import Result, host_key_fingerprint
from tests.support.recording import RecordingTransport, agent_answer

VERSION = re.search(r'^VERSION = "(.+)"$', AGENT_SOURCE.decode(), re.MULTILINE).group(1)


@pytest.mark.parametrize(
    "value",
    ["example.com;rm -rf /", "$(reboot)", "`id`", "a b", "x' || true '", "../../etc/passwd", "-rf", "\n ls"],
)
def test_it_quotes_every_argument_so_the_shell_sees_one_word(value):
    import shlex

    shell = Command.of("ls", value).shell()
    assert shlex.split(shell) == ["ls", value]


def test_it_masks_secrets_in_logs_but_passes_them_to_the_command():
    command = Command.of("mariadb", "--password", Secret("hunter2"))
    assert "hunter2" in command.shell()
    assert "hunter2" not in command.masked()
    assert command.masked() == "mariadb --password '***'"
    assert "hunter2" not in repr(Secret("hunter2"))


def test_it_refuses_non_string_and_nul_arguments():
    with pytest.raises(TypeError):
        Command.of("echo", 5)
    with pytest.raises(ValueError):
        Command.of("echo", "a\x00b")
    with pytest.raises(ValueError):
        Command(())


def test_it_removes_secret_values_from_output():
    assert mask_text("Access denied for password s3cr3t!", ["s3cr3t!"]) == "Access denied for password ***"


def test_it_computes_openssh_style_fingerprints():
    line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    assert host_key_fingerprint(line).startswith("SHA256:")
    assert "=" not in host_key_fingerprint(line)


def test_it_sends_agent_input_on_stdin_never_in_argv():
    transport = RecordingTransport(lambda c, s: agent_answer(changed=True))
    result = Agent(transport).call("db-ensure", {"name": "db1", "user": "u1", "password": "topsecret1"})
    assert result.changed
    command, stdin = transport.commands[-1]
    assert command.argv == ("python3", AGENT_PATH, "db-ensure")
    assert b"topsecret1" in stdin
    assert "topsecret1" not in command.shell()


def test_it_turns_agent_errors_into_actionable_masked_messages():
    error = {"code": "db_error", "message": "failed with password topsecret1", "step": "create user"}
    transport = RecordingTransport(lambda c, s: agent_answer(error=error))
    with pytest.raises(AgentError) as raised:
        Agent(transport).call("db-ensure", {"name": "db1", "user": "u1", "password": "topsecret1"})
    assert str(raised.value) == "db-ensure failed at create user: failed with password ***"
    assert raised.value.code == "db_error"


def test_it_reports_unparseable_agent_output_with_the_stderr_tail():
    transport = RecordingTransport(lambda c, s: Result(127, "", "python3: not found"))
    with pytest.raises(AgentError, match="exit 127: python3: not found"):
        Agent(transport).call("facts")


class FakeVps:
    """Files by path; answers sha256sum and the install-time byte-compilation."""

    def __init__(self, files: dict[str, bytes] | None = None, *, compile_status: int = 0):
        self.files = dict(files or {})
        self.compile_status = compile_status
        self.transport = RecordingTransport(self.respond)
        self.transport.put_file = lambda data, path, mode=0o644: self.files.update({path: data})

    def respond(self, command, stdin):
        if command.argv[0] == "sha256sum":
            found = [
                f"{hashlib.sha256(self.files[p]).hexdigest()}  {p}"
                for p in command.argv[1:]
                if p in self.files
            ]
            return Result(0 if len(found) == len(command.argv) - 1 else 1, "\n".join(found) + "\n", "")
        if "py_compile" in " ".join(command.argv):
            return Result(self.compile_status, "", "SyntaxError: bad" if self.compile_status else "")
        return Result(0, "", "")


def test_it_uploads_the_agent_and_its_launcher_only_when_a_checksum_differs():
    vps = FakeVps()
    agent = Agent(vps.transport)
    assert agent.ensure_installed() is True
    assert vps.files == {AGENT_MODULE_PATH: AGENT_SOURCE, AGENT_PATH: LAUNCHER_SOURCE}
    compile_command = vps.transport.commands[-2][0].argv
    assert compile_command[:4] == ("python3", "-I", "-S", "-c") and compile_command[-1] == AGENT_MODULE_PATH
    assert "CHECKED_HASH" in compile_command[4]
    assert agent.ensure_installed() is False

    vps.files[AGENT_PATH] = b"#!/usr/bin/env python3\n# the single-file agent of older CHOMs\n"
    assert agent.ensure_installed() is True
    assert vps.files[AGENT_PATH] == LAUNCHER_SOURCE


def test_it_fails_the_install_when_python_cannot_compile_the_agent():
    agent = Agent(FakeVps(compile_status=1).transport)
    with pytest.raises(AgentError, match="exit 1: SyntaxError: bad") as raised:
        agent.ensure_installed()
    assert raised.value.code == "compile_failed"


def test_it_fails_the_install_when_the_upload_does_not_arrive_intact():
    vps = FakeVps()
    vps.transport.put_file = lambda data, path, mode=0o644: vps.files.update({path: data[:-1]})
    with pytest.raises(AgentError, match="differs after upload") as raised:
        Agent(vps.transport).ensure_installed()
    assert raised.value.code == "checksum_mismatch"


def test_the_launcher_runs_the_agent_from_cached_bytecode(tmp_path):
    agent_dir = tmp_path / "lib"
    agent_dir.mkdir()
    module = agent_dir / "vpsmanager.py"
    module.write_bytes(AGENT_SOURCE)
    launcher = tmp_path / "vpsmanager"
    launcher.write_bytes(launcher_source(str(agent_dir)))
    compiled = subprocess.run([sys.executable, "-I", "-S", "-c", COMPILE, str(module)], capture_output=True)
    assert compiled.returncode == 0, compiled.stderr
    run = subprocess.run([sys.executable, str(launcher), "version"], input=b"{}", capture_output=True)
    assert json.loads(run.stdout)["data"] == {"version": VERSION}
    (pyc,) = (agent_dir / "__pycache__").iterdir()
    assert pyc.name.startswith("vpsmanager.")

    # A same-size edit within the same second would fool an mtime check; the hash check is not fooled.
    module.write_bytes(AGENT_SOURCE.replace(f'VERSION = "{VERSION}"'.encode(), b'VERSION = "9.9.9"'))
    run = subprocess.run([sys.executable, str(launcher), "version"], input=b"{}", capture_output=True)
    assert json.loads(run.stdout)["data"] == {"version": "9.9.9"}


def test_the_recording_transport_fails_when_a_call_was_not_made():
    transport = RecordingTransport(lambda c, s: agent_answer())
    Agent(transport).call("facts")
    transport.assert_agent_called("facts")
    with pytest.raises(AssertionError, match="not called"):
        transport.assert_agent_called("vhost-apply", name="x")
