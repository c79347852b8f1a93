import pytest

from fleet.remote.agent import AGENT_PATH, AGENT_SHA256, Agent, AgentError
from fleet.remote.commands import Command, Secret, mask_text
from fleet.remote.transport import Result, host_key_fingerprint
from tests.support.recording import RecordingTransport, agent_answer


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


def test_it_uploads_the_agent_only_when_the_checksum_differs():
    installed = {}

    def respond(command, stdin):
        if command.argv[0] == "sha256sum":
            digest = installed.get("sum")
            return Result(0, f"{digest}  {AGENT_PATH}\n", "") if digest else Result(1, "", "No such file")
        return Result(0, "", "")

    transport = RecordingTransport(respond)
    agent = Agent(transport)
    transport.put_file = lambda data, path, mode=0o644: installed.update(sum=AGENT_SHA256, path=path)
    assert agent.ensure_installed() is True
    assert installed["path"] == AGENT_PATH
    assert agent.ensure_installed() is False


def test_the_recording_transport_fails_when_a_call_was_not_made():
    transport = RecordingTransport(lambda c, s: agent_answer())
    Agent(transport).call("facts")
    transport.assert_agent_called("facts")
    with pytest.raises(AssertionError, match="not called"):
        transport.assert_agent_called("vhost-apply", name="x")
