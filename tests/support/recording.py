"""A recording SSH transport for testing remote logic without a server: given facts (canned
agent answers) → the exact commands CHOM sends. It can fail, and its own tests prove that."""

import json
from collections.abc import Callable

from fleet.remote.agent_client import AGENT_MODULE_PATH, AGENT_PATH, AGENT_SHA256, LAUNCHER_SHA256
from fleet.remote.commands import Command
from fleet.remote.transport import Result


class RecordingTransport:
    def __init__(self, respond: Callable[[Command, bytes | None], Result]):
        self.respond = respond
        self.commands: list[tuple[Command, bytes | None]] = []
        self.uploads: dict[str, bytes] = {}

    def run(self, command: Command, *, stdin: bytes | None = None, timeout: float | None = None) -> Result:
        self.commands.append((command, stdin))
        return self.respond(command, stdin)

    def put_file(self, data: bytes, remote_path: str, *, mode: int = 0o644) -> None:
        self.uploads[remote_path] = data

    def get_file(self, remote_path: str) -> bytes:
        return self.uploads[remote_path]

    def close(self) -> None:
        pass

    def agent_calls(self) -> list[tuple[str, dict]]:
        return [
            (c.argv[2], json.loads(stdin or b"{}"))
            for c, stdin in self.commands
            if len(c.argv) == 3 and c.argv[1].endswith("vpsmanager")
        ]

    def assert_agent_called(self, subcommand: str, **fields) -> dict:
        for name, payload in self.agent_calls():
            if name == subcommand and all(payload.get(k) == v for k, v in fields.items()):
                return payload
        raise AssertionError(f"agent {subcommand} {fields} not called; calls: {self.agent_calls()}")


def installed_agent_checksums() -> Result:
    """What `sha256sum` answers on a VPS that already has this version of the agent."""
    return Result(0, f"{AGENT_SHA256}  {AGENT_MODULE_PATH}\n{LAUNCHER_SHA256}  {AGENT_PATH}\n", "")


def agent_answer(
    *, changed: bool = False, data: dict | None = None, log=None, error: dict | None = None
) -> Result:
    if error:
        return Result(1, json.dumps({"ok": False, "changed": False, "error": error, "log": []}), "")
    return Result(0, json.dumps({"ok": True, "changed": changed, "data": data or {}, "log": log or []}), "")
