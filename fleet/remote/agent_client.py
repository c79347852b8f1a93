"""CHOM's side of the VPS agent: install it (checksum-verified) and call its subcommands.

The agent (`fleet/on_vps/vpsmanager.py`, run on the VPS) takes JSON on stdin, so secrets never appear in
argv or `ps`, and answers one JSON object: {"ok", "changed", "data", "log"} or {"ok": false,
"error": {"code", "message", "step"}}.

It is installed as a module, AGENT_MODULE_PATH, run through a small launcher at AGENT_PATH that
imports it: a script run as __main__ is compiled on every call (~35 ms for the agent), an
imported module is loaded from its cached bytecode. The bytecode is compiled at install time
with a checked hash, so any change to the source, however quick, is never served stale.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from fleet.remote.commands import Command, mask_text
from fleet.remote.transport import Transport, TransportError

AGENT_SOURCE = (Path(__file__).parents[1] / "on_vps" / "vpsmanager.py").read_bytes()
AGENT_SHA256 = hashlib.sha256(AGENT_SOURCE).hexdigest()
AGENT_DIR = "/usr/local/lib/vpsmanager"
AGENT_MODULE_PATH = f"{AGENT_DIR}/vpsmanager.py"
AGENT_PATH = "/usr/local/sbin/vpsmanager"  # the launcher: python3 AGENT_PATH SUBCOMMAND
AGENT_TIMEOUT = 1500.0  # apt-get on a fresh server is the slowest subcommand
# Errors a later call may not meet: another run holds the lock; the server was shutting down.
TRANSIENT_CODES = ("busy", "interrupted")


# `-I -S` (no PYTHON* variables, no site packages) apply when an operator runs the launcher itself;
# CHOM runs `python3 AGENT_PATH SUBCOMMAND`.
LAUNCHER_TEMPLATE = """#!/usr/bin/python3 -IS
# CHOM's vpsmanager launcher: imports the agent from {agent_dir} so python3 loads its cached
# bytecode instead of compiling the whole agent on every call.
import sys

sys.path.insert(0, "{agent_dir}")
import vpsmanager

sys.exit(vpsmanager.main())
"""


def launcher_source(agent_dir: str) -> bytes:
    return LAUNCHER_TEMPLATE.format(agent_dir=agent_dir).encode()


LAUNCHER_SOURCE = launcher_source(AGENT_DIR)
LAUNCHER_SHA256 = hashlib.sha256(LAUNCHER_SOURCE).hexdigest()
# Checked-hash bytecode: python3 compares the source's hash, not its mtime, on every import.
COMPILE = (
    "import py_compile, sys; py_compile.compile(sys.argv[1], doraise=True, "
    "invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)"
)


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
    """Values of secret-looking keys, nested ones too (a git source's `ssh.private_key`); a
    multi-line secret also line by line, as a tool may print one line of it."""
    found = []
    for k, v in payload.items():
        if isinstance(v, dict):
            found += _secret_values(v)
        elif any(s in k for s in ("password", "secret", "token", "key")):
            found += [str(v), *(line for line in str(v).splitlines() if len(line) >= 16)]
    return found


class Agent:
    def __init__(self, transport: Transport, *, python: str = "python3"):
        self.transport = transport
        self.python = python

    def installed_checksums(self) -> dict[str, str]:
        """{path: sha256} of the agent and its launcher, for those that exist."""
        result = self.transport.run(Command.of("sha256sum", AGENT_MODULE_PATH, AGENT_PATH), timeout=30)
        lines = (line.split(maxsplit=1) for line in result.stdout.splitlines())
        return {fields[1]: fields[0] for fields in lines if len(fields) == 2}

    def is_installed(self) -> bool:
        wanted = {AGENT_MODULE_PATH: AGENT_SHA256, AGENT_PATH: LAUNCHER_SHA256}
        return self.installed_checksums() == wanted

    def ensure_installed(self) -> bool:
        """Upload the agent when the VPS has no copy or another version. True when it changed."""
        if self.is_installed():
            return False
        self.transport.run(Command.of("mkdir", "-p", AGENT_DIR, str(Path(AGENT_PATH).parent)), timeout=30)
        self.transport.put_file(AGENT_SOURCE, AGENT_MODULE_PATH, mode=0o644)
        self.transport.put_file(LAUNCHER_SOURCE, AGENT_PATH, mode=0o755)
        compiled = self.transport.run(
            Command.of(self.python, "-I", "-S", "-c", COMPILE, AGENT_MODULE_PATH), timeout=60
        )
        if not compiled.ok:
            detail = compiled.stderr_tail() or compiled.stdout[-500:]
            raise AgentError("install", "compile_failed", f"exit {compiled.exit_code}: {detail}")
        if not self.is_installed():
            raise AgentError(
                "install", "checksum_mismatch", f"{AGENT_MODULE_PATH} or {AGENT_PATH} differs after upload"
            )
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
                transient=error.get("code") in TRANSIENT_CODES,
            )
        return AgentResult(
            changed=bool(answer.get("changed")), data=answer.get("data") or {}, log=answer.get("log") or []
        )
