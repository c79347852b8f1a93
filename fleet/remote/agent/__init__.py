"""CHOM's side of the VPS agent: install it (checksum-verified) and call its subcommands.

The agent (`vpsmanager.py` beside this file) takes JSON on stdin, so secrets never appear in
argv or `ps`, and answers one JSON object: {"ok", "changed", "data", "log"} or {"ok": false,
"error": {"code", "message", "step"}}.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from fleet.remote.commands import Command, mask_text
from fleet.remote.transport import Transport, TransportError

AGENT_SOURCE = (Path(__file__).parent / "vpsmanager.py").read_bytes()
AGENT_SHA256 = hashlib.sha256(AGENT_SOURCE).hexdigest()
AGENT_PATH = "/usr/local/sbin/vpsmanager"
AGENT_TIMEOUT = 1500.0  # apt-get on a fresh server is the slowest subcommand


class AgentError(Exception):
    def __init__(self, subcommand: str, code: str, message: str, *, step: str = "", transient: bool = False):
        where = f" at {step}" if step else ""
        super().__init__(f"{subcommand} failed{where}: {message}")
        self.subcommand, self.code, self.step, self.transient = subcommand, code, step, transient


@dataclass(frozen=True)
class AgentResult:
    changed: bool
    data: dict = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


def _secret_values(payload: dict) -> list[str]:
    return [str(v) for k, v in payload.items() if any(s in k for s in ("password", "secret", "token", "key"))]


class Agent:
    def __init__(self, transport: Transport, *, python: str = "python3"):
        self.transport = transport
        self.python = python

    def installed_checksum(self) -> str | None:
        result = self.transport.run(Command.of("sha256sum", AGENT_PATH), timeout=30)
        return result.stdout.split()[0] if result.ok and result.stdout else None

    def ensure_installed(self) -> bool:
        """Upload the agent when the VPS has no copy or another version. True when it changed."""
        if self.installed_checksum() == AGENT_SHA256:
            return False
        self.transport.run(Command.of("mkdir", "-p", str(Path(AGENT_PATH).parent)), timeout=30)
        self.transport.put_file(AGENT_SOURCE, AGENT_PATH, mode=0o755)
        if self.installed_checksum() != AGENT_SHA256:
            raise AgentError("install", "checksum_mismatch", f"{AGENT_PATH} checksum differs after upload")
        return True

    def call(
        self, subcommand: str, payload: dict | None = None, *, timeout: float = AGENT_TIMEOUT
    ) -> AgentResult:
        payload = payload or {}
        command = Command.of(self.python, AGENT_PATH, subcommand)
        try:
            result = self.transport.run(command, stdin=json.dumps(payload).encode(), timeout=timeout)
        except TransportError as exc:
            raise AgentError(subcommand, "transport", str(exc), transient=exc.transient) from exc
        secrets = _secret_values(payload)
        try:
            answer = json.loads(result.stdout)
        except ValueError:
            detail = mask_text(result.stderr_tail() or result.stdout[-500:], secrets)
            raise AgentError(subcommand, "bad_output", f"exit {result.exit_code}: {detail}") from None
        if not answer.get("ok"):
            error = answer.get("error") or {}
            raise AgentError(
                subcommand,
                error.get("code", "unknown"),
                mask_text(error.get("message", "no message"), secrets),
                step=error.get("step", ""),
                transient=error.get("code") == "busy",
            )
        return AgentResult(
            changed=bool(answer.get("changed")), data=answer.get("data") or {}, log=answer.get("log") or []
        )
