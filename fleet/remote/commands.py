"""Commands are data: an argument vector, quoted once when it becomes a shell string.

User values never get formatted into a shell string by hand (CyberPanel's CVE-2024-51378 is
what happens otherwise). Secrets are wrapped in `Secret` so that logs show `***`.
"""

import shlex
from collections.abc import Iterable
from dataclasses import dataclass


class Secret(str):
    """A string that renders as *** in logs but is passed through to the command."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]

    @classmethod
    def of(cls, *argv: str) -> "Command":
        return cls(tuple(argv))

    def __post_init__(self):
        if not self.argv:
            raise ValueError("a command needs at least one argument")
        for arg in self.argv:
            if not isinstance(arg, str):
                raise TypeError(f"command arguments must be strings, got {type(arg).__name__}")
            if "\x00" in arg:
                raise ValueError("command arguments cannot contain NUL bytes")

    def shell(self) -> str:
        """What the remote shell receives: every argument quoted."""
        return shlex.join(self.argv)

    def masked(self) -> str:
        """What logs show: secrets replaced by ***."""
        return shlex.join("***" if isinstance(a, Secret) else a for a in self.argv)

    def __str__(self) -> str:
        return self.masked()


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """Remove secret values from command output before it reaches a log or an error message."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
