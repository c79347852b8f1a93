"""Peak memory and throughput of the process that runs a backup (and a restore stream).

A site with --mb MiB of incompressible files (plus a MariaDB-style dump) is backed up through
`backups.services.backup_perform` into a real S3 endpoint (moto_server on 127.0.0.1). The "VPS"
is this machine: a transport runs the same commands locally (paths under /var/www/ rewritten to
a temp dir), handing stdout to the same sink as paramiko's channel would. What is measured is
CHOM's side: S3 multipart upload, on-the-fly sha256, tar indexing, read-back verification.

    .venv/bin/python bench/backup_memory.py --mb 300

Peak RSS growth = ru_maxrss after the backup minus ru_maxrss before it (max RSS only grows).
"""

import argparse
import gzip
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """Max of the current RSS, sampled every 20 ms (ru_maxrss cannot be reset after set-up)."""

    def __init__(self):
        self.peak = current_rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, current_rss_mib())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, current_rss_mib())


class LocalTransport:
    """Runs commands on this machine with /var/www/ mapped to ROOT: the SSH channel's stand-in."""

    def __init__(self, root: Path):
        self.root = str(root)

    def _argv(self, command) -> list[str]:
        return ["bash", "-c", command.shell().replace("/var/www/", f"{self.root}/")]

    def _result(self, proc, stderr: bytes):
        from fleet.remote.transport import Result

        return Result(proc.returncode, "", stderr.decode(errors="replace"))

    def run(self, command, *, stdin=None, timeout=None):
        from fleet.remote.transport import Result

        proc = subprocess.run(self._argv(command), input=stdin, capture_output=True, timeout=timeout)
        return Result(
            proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        )

    def stream_out(self, command, sink, *, timeout=None):
        proc = subprocess.Popen(self._argv(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        while chunk := proc.stdout.read(65536):
            sink(chunk)
        stderr = proc.stderr.read()
        proc.wait(timeout=timeout)
        return self._result(proc, stderr)

    def stream_in(self, command, source, *, timeout=None):
        proc = subprocess.Popen(self._argv(command), stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        while chunk := source.read(256 * 1024):
            proc.stdin.write(chunk)
        proc.stdin.close()
        stderr = proc.stderr.read()
        proc.wait(timeout=timeout)
        return self._result(proc, stderr)


def make_site_tree(root: Path, user: str, release: str, mib: int) -> None:
    home = root / user
    uploads = home / "shared" / "uploads"
    uploads.mkdir(parents=True)
    public = home / "releases" / release / "public"
    public.mkdir(parents=True)
    (public / "index.php").write_text("<?php echo 'hi';\n")
    (home / "current").symlink_to(f"releases/{release}")
    for i in range(mib // 4):
        (uploads / f"photo-{i}.bin").write_bytes(os.urandom(4 * 1024 * 1024))


def fake_dump(rows: int) -> bytes:
    lines = ["CREATE TABLE `items` (\n  `id` int\n);", "INSERT INTO `items` VALUES"]
    lines += [f"({i},'row {i}')," for i in range(1, rows)] + [f"({rows},'row {rows}');"]
    return gzip.compress("\n".join(lines).encode() + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=300, help="MiB of incompressible site files")
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="chom-bench-backup-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chom.settings.test")
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    from devstack.s3 import start_s3

    env, stop, _ = start_s3(workdir / "moto")
    os.environ.update(env)
    try:
        run(workdir, args)
    finally:
        stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run(workdir: Path, args) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from backups import services
    from backups.models import Backup
    from chom.services import tenant_create
    from fleet.models import Vps
    from sites.models import Site

    tenant, _ = tenant_create(slug="bench", tier="enterprise", owner_email="bench@example.com")
    vps = Vps.objects.create(name="bench", provider="manual", ip_address="192.0.2.1", status="active")
    release = "20300101T000000-bench1"
    site = Site.objects.create(tenant=tenant, vps=vps, domain="bench.test", type="static", status="active",
                               unix_user="site1", current_release=release)  # fmt: skip
    www = workdir / "www"
    make_site_tree(www, "site1", release, args.mb)
    transport = LocalTransport(www)

    # Warm-up on a 4 MiB site (imports, boto3 client, connections): the baseline is the steady state.
    small = Site.objects.create(tenant=tenant, vps=vps, domain="small.test", type="static", status="active",
                                unix_user="site0", current_release=release)  # fmt: skip
    make_site_tree(www, "site0", release, 4)
    services.backup_perform(backup=Backup.objects.create(site=small, kind="files"), transport=transport)
    Site.objects.filter(pk=site.pk).update(db_name="site1")
    site.refresh_from_db()
    dump = fake_dump(args.rows)
    (workdir / "dump.sql.gz").write_bytes(dump)
    # mariadb-dump is stood in for by the prepared dump file.
    transport_dump = _DumpTransport(www, workdir / "dump.sql.gz")

    baseline = current_rss_mib()
    sampler = RssSampler()
    started = time.monotonic()
    backup = Backup.objects.create(site=site, kind="full")
    services.backup_perform(backup=backup, transport=transport_dump)
    seconds = time.monotonic() - started
    backup.refresh_from_db()
    peak = sampler.stop()
    total = backup.size_bytes / 1024**2
    print(f"backup: {total:.0f} MiB to S3 (files {args.mb} MiB + dump {len(dump) / 1024**2:.1f} MiB gz, "
          f"{backup.manifest['files']['count']} files, {backup.manifest['database']['rows']} rows) "
          f"in {seconds:.1f}s = {total / seconds:.0f} MiB/s incl. read-back verification")  # fmt: skip
    print(
        f"RSS during backup: baseline {baseline:.0f} MiB, peak {peak:.0f} MiB, "
        f"growth {peak - baseline:.0f} MiB"
    )
    tracemalloc.start()
    services.backup_perform(backup=Backup.objects.create(site=site, kind="files"), transport=transport)
    print(f"tracemalloc peak of Python allocations during a files backup: "
          f"{tracemalloc.get_traced_memory()[1] / 1024**2:.1f} MiB")  # fmt: skip
    tracemalloc.stop()

    target = www / "restore-target"
    sampler = RssSampler()
    started = time.monotonic()
    from backups.remote import extract_files
    from backups.restore import _stream_in

    cmd = extract_files("site1", "/var/www/restore-target")
    _stream_in(_AsSelf(transport), cmd, backup.artefacts["files"], "tar extract")
    seconds = time.monotonic() - started
    size = backup.artefacts["files"]["size"] / 1024**2
    print(
        f"restore stream: {size:.0f} MiB from S3 into tar xzf - in {seconds:.1f}s "
        f"= {size / seconds:.0f} MiB/s"
    )
    peak = sampler.stop()
    print(f"RSS during restore stream: peak {peak:.0f} MiB (growth {peak - baseline:.0f} MiB); "
          f"ru_maxrss of the whole run {rss_mib():.0f} MiB")  # fmt: skip
    assert any(target.rglob("photo-0.bin"))


class _DumpTransport(LocalTransport):
    def __init__(self, root: Path, dump: Path):
        super().__init__(root)
        self.dump = dump

    def _argv(self, command) -> list[str]:
        if "mariadb-dump" in command.shell():
            return ["cat", str(self.dump)]
        return super()._argv(command)


class _AsSelf(LocalTransport):
    """runuser needs a real site user: run the extraction as the current user instead."""

    def __init__(self, inner: LocalTransport):
        super().__init__(Path(inner.root))

    def _argv(self, command) -> list[str]:
        argv = list(command.argv)
        if argv[:1] == ["runuser"]:
            argv = argv[argv.index("--") + 1 :]
        return [a.replace("/var/www/", f"{self.root}/") for a in argv]


if __name__ == "__main__":
    main()
