"""`make demo`'s preflight on a machine that lacks something: one sentence saying what to do and a
non-zero exit, never a traceback. It runs as a subprocess, as make runs it, with a PATH that
lacks a binary, as a non-root user, or with an apt-get (CHOM_PREFLIGHT_APT_GET) that fails; apt
itself never runs here."""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.preflight import REQUIRED

pytestmark = pytest.mark.real  # root, setpriv, namespaces

ROOT = Path(__file__).resolve().parents[2]
# apt-get as the preflight sees it: records each call; `install` fails like apt without the package.
FAKE_APT = """#!/bin/sh
echo "$* [DEBIAN_FRONTEND=$DEBIAN_FRONTEND]" >> @CALLS@
[ "$1" = install ] || exit 0
[ -n "@FAIL@" ] || exit 0
echo "Reading package lists..."
echo "E: @FAIL@" >&2
exit 100
"""


@dataclass
class Run:
    rc: int
    out: str
    err: str

    @property
    def sentence(self) -> str:
        """stderr is exactly one line, and no traceback anywhere."""
        assert "Traceback" not in self.out + self.err, self.out + self.err
        lines = self.err.splitlines()
        assert len(lines) == 1, self.err
        return lines[0]


@pytest.fixture
def machine(tmp_path: Path):
    """A PATH of links to this host's real tools; `lacking` removes some, `fake` replaces one."""
    if os.geteuid() != 0:
        pytest.skip("the preflight's checks past the root check need root")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for command in [*(command for command, _ in REQUIRED), "true"]:  # unshare's probe runs `true`
        real = shutil.which(command)
        if real is None:
            pytest.skip(f"{command} is not installed (.ci/run installs it)")
        (bin_dir / command).symlink_to(real)
    machine = Machine(bin_dir, tmp_path)
    machine.apt()
    return machine


@dataclass
class Machine:
    bin_dir: Path
    folder: Path

    @property
    def apt_get(self) -> Path:
        return self.folder / "apt-get"

    def lacking(self, *commands: str) -> None:
        for command in commands:
            (self.bin_dir / command).unlink()

    def fake(self, command: str, script: str) -> Path:
        path = self.bin_dir / command
        path.unlink(missing_ok=True)
        path.write_text(script)
        path.chmod(0o755)
        return path

    def apt(self, fail: str = "") -> None:
        """The fake apt-get; FAIL: the error its `install` prints (exit 100)."""
        script = FAKE_APT.replace("@CALLS@", str(self.folder / "apt.calls")).replace("@FAIL@", fail)
        self.apt_get.write_text(script)
        self.apt_get.chmod(0o755)

    def apt_calls(self) -> list[str]:
        calls = self.folder / "apt.calls"
        return calls.read_text().splitlines() if calls.exists() else []

    def preflight(self, **env: str) -> Run:
        base = {"PATH": str(self.bin_dir), "LANG": "C.UTF-8", "CHOM_PREFLIGHT_APT_GET": str(self.apt_get)}
        return preflight([sys.executable], {**base, **env})


def preflight(python: list[str], env: dict[str, str]) -> Run:
    proc = subprocess.run(
        [*python, "-m", "devstack.preflight"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def test_it_passes_on_a_machine_that_has_everything(machine: Machine) -> None:
    run = machine.preflight()
    assert (run.rc, run.out.strip(), run.err) == (0, "preflight: prerequisites present", "")
    assert machine.apt_calls() == []


def test_it_says_in_one_sentence_that_it_needs_root() -> None:
    # A non-root user cannot read a Python under /root: the system one, as make demo runs it.
    python, setpriv = shutil.which("python3", path="/usr/bin:/bin"), shutil.which("setpriv")
    if os.geteuid() != 0 or not python or not setpriv:
        pytest.skip("needs root, setpriv and /usr/bin/python3 to run the preflight as nobody")
    run = preflight(
        [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", python],
        {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
    )
    assert run.rc == 1
    assert run.sentence == (
        "preflight: make demo needs root (it creates network namespaces, a bridge and systemd-nspawn "
        "containers): run it as root, e.g. `sudo make demo`."
    )


def test_it_installs_what_is_missing_and_reports_an_apt_failure_in_one_sentence(machine: Machine) -> None:
    machine.lacking("systemd-nspawn", "pebble-challtestsrv")
    machine.apt(fail="Unable to locate package pebble")
    run = machine.preflight()
    assert run.rc == 1
    assert run.sentence == (
        "preflight: apt-get install failed (exit 100: E: Unable to locate package pebble); fix apt "
        "(network, sources, a held dpkg lock) and run make demo again, or run "
        "`apt-get install systemd-container pebble` yourself."
    )
    lock, env = "-o DPkg::Lock::Timeout=300", "[DEBIAN_FRONTEND=noninteractive]"
    assert machine.apt_calls() == [
        f"update -qq {lock} {env}",
        f"install -y -qq {lock} --no-install-recommends systemd-container pebble {env}",
    ]
    assert run.out.strip() == "preflight: installing systemd-container pebble (apt-get)"


def test_it_names_a_binary_that_apt_did_not_bring(machine: Machine) -> None:
    machine.lacking("systemd-nspawn")
    run = machine.preflight()
    assert run.rc == 1
    assert run.sentence == (
        "preflight: systemd-nspawn still missing after apt-get installed systemd-container: install "
        "what provides it by hand and run make demo again."
    )


def test_it_says_so_when_there_is_no_apt(machine: Machine) -> None:
    machine.lacking("debootstrap")
    run = machine.preflight(CHOM_PREFLIGHT_APT_GET="no-apt-get-here")
    assert run.rc == 1
    assert run.sentence == (
        "preflight: This machine has no no-apt-get-here to install debootstrap: make demo needs "
        "Debian 12 or Ubuntu, or install the equivalent of `apt-get install debootstrap` yourself."
    )


def test_it_says_so_when_namespaces_are_not_usable(machine: Machine) -> None:
    machine.fake(
        "unshare", "#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n"
    )
    run = machine.preflight()
    assert run.rc == 1
    assert run.sentence.startswith(
        "preflight: This machine cannot run the local test fleet (namespaces not usable: unshare: "
        "unshare failed: Operation not permitted): "
    )
    assert machine.apt_calls() == []


def test_it_runs_before_anything_else_in_python_m_devstack(machine: Machine) -> None:
    machine.lacking("zstd")
    machine.apt(fail="Unable to locate package zstd")
    proc = subprocess.run(
        [sys.executable, "-m", "devstack", "--port", "1"],
        cwd=ROOT,
        env={"PATH": str(machine.bin_dir), "LANG": "C.UTF-8", "CHOM_PREFLIGHT_APT_GET": str(machine.apt_get)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    run = Run(proc.returncode, proc.stdout, proc.stderr)
    assert run.rc == 1
    assert run.sentence.startswith(
        "preflight: apt-get install failed (exit 100: E: Unable to locate package zstd)"
    )
