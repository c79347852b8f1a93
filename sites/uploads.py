"""Releases from an uploaded archive: a tenant posts a .tar.gz or .zip (POST
/api/v1/sites/{id}/releases). CHOM streams it into a root-only file, inspects every entry before
anything is queued (nothing unsafe ever reaches a VPS), ships it inside the site's deploy, and
deletes its copy once that deploy is over.

The agent checks the archive again when it extracts it (as the site user, with its own safe
extractors, resolving links through each other as below): this inspection is the first gate,
not the only one. A later redeploy of a site without a repository copies its current release
(SiteType.source), so uploaded content outlives new aliases or a PHP version change.
"""

import gzip
import hashlib
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import transaction

from chom.errors import ApplicationError
from chom.models import Operation
from chom.operations import OperationError, operation_create
from chom.services import audit_record
from fleet.remote.agent_client import Agent
from fleet.remote.commands import Command
from sites.models import Release, Site
from sites.services import new_release_name, site_require_live

# Content-Type → archive format; the first bytes must agree (MAGIC).
FORMATS = {
    "application/gzip": "tar.gz",
    "application/x-gzip": "tar.gz",
    "application/x-tar": "tar.gz",
    "application/zip": "zip",
}
MAGIC = {"tar.gz": b"\x1f\x8b", "zip": b"PK\x03\x04"}
UPLOAD_SITE_TYPES = ("static", "php")
CHUNK = 1024 * 1024
# On the VPS: root-only, outside every site's home.
REMOTE_PARENT = "/var/lib/chom"
REMOTE_DIR = "/var/lib/chom/uploads"
# Creates the root-only directory, then writes stdin to a temporary name and renames it, so the
# agent never reads a half-copied archive. $0: /var/lib/chom (0755: nginx reads the ACME webroots
# below it), $1: the uploads directory, $2: the archive's path.
RECEIVE_SCRIPT = (
    'set -e; umask 022; mkdir -p "$0"; [ -d "$1" ] || mkdir -m 0700 "$1"; chmod 0700 "$1"; '
    'umask 077; cat > "$2.part"; mv -f "$2.part" "$2"'
)
SYMLINK_HOPS = 40  # as Linux's own limit on symlinks followed in one lookup


@dataclass(frozen=True)
class Upload:
    path: Path
    sha256: str
    size: int
    format: str

    def params(self) -> dict:
        """What the deploy operation needs to ship it (the file by name: UPLOADS_DIR may move)."""
        return {"file": self.path.name, "sha256": self.sha256, "size": self.size, "format": self.format}


# --- the request ---------------------------------------------------------------------------------


def site_upload_request(
    *,
    site: Site,
    stream: BinaryIO | None,
    content_type: str,
    content_length: str | None,
    actor=None,
    source_ip=None,
    requested_by_tenant: bool = False,
) -> tuple[Operation, str, Upload]:
    """Receive STREAM (the request body) as a new release of SITE and queue its deploy. Everything
    that can be refused without the body is refused before it is read; an archive that fails the
    inspection is deleted and nothing is queued. Returns (operation, release name, upload)."""
    site_require_live(site=site)
    if site.type not in UPLOAD_SITE_TYPES:
        raise ApplicationError(
            400,
            "upload_unsupported",
            f"A {site.type} site cannot be deployed from an uploaded archive; only static and PHP "
            "sites can (deploy it from its repository).",
        )
    fmt = upload_format(content_type)
    limit_mb = site.tenant.limits.upload_max_mb
    _check_declared_length(content_length, limit_mb=limit_mb, tier=site.tenant.tier)
    release = new_release_name()
    upload = upload_receive(
        stream=stream, fmt=fmt, name=f"site{site.pk}-{release}", limit_bytes=limit_mb * 1024 * 1024
    )
    if upload.size > limit_mb * 1024 * 1024:
        _discard(upload.path)
        raise _too_large(limit_mb=limit_mb, tier=site.tenant.tier)
    try:
        count = archive_inspect(
            upload.path,
            upload.format,
            max_entries=settings.UPLOAD_MAX_ENTRIES,
            max_bytes=int(limit_mb * 1024 * 1024 * settings.UPLOAD_MAX_EXPANSION),
        )
        with transaction.atomic():
            Release.objects.create(site=site, name=release, source="upload", commit=f"sha256:{upload.sha256}")
            op = operation_create(
                kind="site.deploy",
                tenant=site.tenant,
                target=site,
                actor=actor,
                params={"release": release, "upload": upload.params()},
                requested_by_tenant=requested_by_tenant,
            )
            audit_record(
                action="site.release_uploaded",
                actor=actor,
                tenant=site.tenant,
                target=f"site:{site.domain}",
                source_ip=source_ip,
                data={"release": release, "sha256": upload.sha256, "size": upload.size, "entries": count},
            )
    except BaseException:
        _discard(upload.path)
        raise
    return op, release, upload


def upload_format(content_type: str) -> str:
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in FORMATS:
        raise ApplicationError(
            415,
            "unsupported_media_type",
            "Send the archive itself as the body, with 'Content-Type: application/gzip' for a "
            ".tar.gz or 'Content-Type: application/zip' for a .zip.",
        )
    return FORMATS[media]


def _too_large(*, limit_mb: int, tier: str) -> ApplicationError:
    return ApplicationError(
        413, "upload_too_large", f"The {tier} tier accepts archives of up to {limit_mb} MB."
    )


def _check_declared_length(content_length: str | None, *, limit_mb: int, tier: str) -> None:
    """Without a length the WSGI server hands the view no body at all; with one above the limit
    there is no point in reading it."""
    try:
        declared = int(content_length or "")
    except ValueError:
        raise ApplicationError(
            411, "length_required", "Send the archive with a Content-Length header (not chunked)."
        ) from None
    if declared <= 0:
        raise ApplicationError(400, "invalid_archive", "The request has no body: send the archive itself.")
    if declared > limit_mb * 1024 * 1024:
        raise _too_large(limit_mb=limit_mb, tier=tier)


def upload_receive(*, stream: BinaryIO | None, fmt: str, name: str, limit_bytes: int) -> Upload:
    """Copy STREAM into UPLOADS_DIR/NAME.<format> (0600) chunk by chunk, hashing and counting. It
    stops reading one chunk past LIMIT_BYTES: the Upload then says size > LIMIT_BYTES (the caller
    refuses it). The file must start as FMT's archives do."""
    directory = Path(settings.UPLOADS_DIR)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    path = directory / f"{name}.{fmt}"
    digest, size = hashlib.sha256(), 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        with os.fdopen(os.open(path, flags, 0o600), "wb") as out:
            while stream is not None and size <= limit_bytes and (chunk := stream.read(CHUNK)):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        with path.open("rb") as written:
            head = written.read(len(MAGIC[fmt]))
    except BaseException:
        _discard(path)
        raise
    if size <= limit_bytes and head != MAGIC[fmt]:
        _discard(path)
        what = "a gzip-compressed tar archive (.tar.gz)" if fmt == "tar.gz" else "a zip archive"
        raise ApplicationError(400, "invalid_archive", f"The body is not {what}, as its Content-Type says.")
    return Upload(path=path, sha256=digest.hexdigest(), size=size, format=fmt)


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)


# --- the inspection ------------------------------------------------------------------------------


class UnsafeArchive(ApplicationError):
    def __init__(self, message: str) -> None:
        super().__init__(400, "unsafe_archive", f"The archive was refused: {message}.")


def archive_inspect(path: Path, fmt: str, *, max_entries: int, max_bytes: int) -> int:
    """Every entry of the archive at PATH, checked before anything else happens: no absolute
    path, no '..', no control characters, no hard link, device, FIFO or socket, no symlink that
    leads outside the tree (followed through the archive's other symlinks as the kernel would),
    no entry below a symlink or a file, no path twice; at most MAX_ENTRIES entries and MAX_BYTES
    once expanded (counted while decompressing: a bomb is stopped early). Returns the count."""
    tree = _Tree(max_entries=max_entries, max_bytes=max_bytes)
    try:
        if fmt == "zip":
            _inspect_zip(path, tree)
        else:
            _inspect_tar(path, tree)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise ApplicationError(
            400, "invalid_archive", f"The archive cannot be read: {exc or type(exc).__name__}."
        ) from None
    tree.check()
    return tree.count


class _Tree:
    """The archive's entries as a tree of paths (tuples of components)."""

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.kinds: dict[tuple[str, ...], str] = {}  # "dir", "file" or "symlink"
        self.links: dict[tuple[str, ...], str] = {}
        self.names: dict[tuple[str, ...], str] = {}
        self.count = 0
        self.expanded = 0

    def add(self, name: str, kind: str, *, size: int = 0, target: str = "") -> None:
        self.count += 1
        if self.count > self.max_entries:
            raise UnsafeArchive(f"it has more than {self.max_entries} entries")
        parts = _parts(name)
        self.grow(size)
        if not parts:  # "./": the top directory itself
            if kind != "dir":
                raise UnsafeArchive(f"{name!r} is not a directory")
            return
        if parts in self.kinds and not (kind == "dir" and self.kinds[parts] == "dir"):
            raise UnsafeArchive(f"{name!r} appears twice")
        self.kinds[parts], self.names[parts] = kind, name
        if kind == "symlink":
            _check_text(target, f"the target of {name!r}")
            self.links[parts] = target

    def grow(self, size: int) -> None:
        self.expanded += size
        if self.expanded > self.max_bytes:
            raise UnsafeArchive(f"it expands to more than {self.max_bytes // (1024 * 1024)} MB")

    def check(self) -> None:
        if not self.kinds:
            raise UnsafeArchive("it is empty")
        for parts, name in self.names.items():
            for depth in range(1, len(parts)):
                above = self.kinds.get(parts[:depth], "dir")
                if above != "dir":
                    raise UnsafeArchive(f"{name!r} lies below {'/'.join(parts[:depth])!r}, a {above}")
        resolved: dict[tuple[str, ...], tuple[str, ...]] = {}
        for parts in self.links:
            self._resolve(parts, resolved, set())

    def _resolve(self, link: tuple[str, ...], resolved: dict, active: set) -> tuple[str, ...]:
        """Where the symlink LINK leads, inside the tree; refused when it leads outside (or loops).
        Entries never lie below a symlink (check), so a path built here is a real place."""
        if link in resolved:
            return resolved[link]
        if link in active or len(active) > SYMLINK_HOPS:
            raise UnsafeArchive(f"symlink {self.names[link]!r} is part of a loop")
        active.add(link)
        target = self.links[link]
        escape = UnsafeArchive(f"symlink {self.names[link]!r} -> {target!r} points outside the archive")
        if target.startswith("/"):
            raise escape
        where = list(link[:-1])
        for component in target.split("/"):
            if component in ("", "."):
                continue
            if component == "..":
                if not where:
                    raise escape
                where.pop()
                continue
            where.append(component)
            if tuple(where) in self.links:
                where = list(self._resolve(tuple(where), resolved, active))
        active.discard(link)
        resolved[link] = tuple(where)
        return resolved[link]


def _check_text(text: str, what: str) -> None:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise UnsafeArchive(f"{what} contains control characters: {text!r}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafeArchive(f"{what} is not UTF-8: {text!r}") from None


def _parts(name: str) -> tuple[str, ...]:
    _check_text(name, f"the name {name!r}")
    if "\\" in name:
        raise UnsafeArchive(f"{name!r} contains a backslash (a Windows path?)")
    if name.startswith("/"):
        raise UnsafeArchive(f"{name!r} is an absolute path")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise UnsafeArchive(f"{name!r} contains '..'")
    if len(name.encode()) > 4096 or any(len(part.encode()) > 255 for part in parts):
        raise UnsafeArchive(f"{name[:80]!r}... is too long a name")
    return parts


class _CountingReader:
    """The decompressed stream, counted as it is read: a gzip bomb stops at the limit."""

    def __init__(self, source: BinaryIO, on_read: Callable[[int], None]) -> None:
        self.source, self.on_read = source, on_read

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size if size and size > 0 else CHUNK)
        self.on_read(len(data))
        return data


def _inspect_tar(path: Path, tree: _Tree) -> None:
    stream_bytes = _Tree(max_entries=0, max_bytes=tree.max_bytes)  # the tar stream's own size
    with path.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
        counted = _CountingReader(unzipped, stream_bytes.grow)
        # Stream mode ("r|"): one member at a time, its data read past, never all held at once.
        with tarfile.open(fileobj=counted, mode="r|") as archive:
            for member in archive:
                tree.add(member.name, _tar_kind(member), size=member.size if member.isfile() else 0,
                         target=member.linkname if member.issym() else "")  # fmt: skip


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        raise UnsafeArchive(f"{member.name!r} is a hard link (not accepted in uploads)")
    if member.isfile():
        return "file"
    raise UnsafeArchive(f"{member.name!r} is a device, FIFO or other special file")


def _inspect_zip(path: Path, tree: _Tree) -> None:
    with path.open("rb") as raw:
        entries = _zip_entry_count(raw)
        if entries > tree.max_entries:  # before zipfile reads the whole central directory
            raise UnsafeArchive(f"it has more than {tree.max_entries} entries")
        with zipfile.ZipFile(raw) as archive:
            infos = archive.infolist()
            declared = _Tree(max_entries=0, max_bytes=tree.max_bytes)
            for info in infos:
                tree.add(info.orig_filename, _zip_kind(info))
                declared.grow(info.file_size)
            for info in infos:
                if not info.is_dir():
                    with archive.open(info) as member:
                        while chunk := member.read(CHUNK):  # checks the CRC at the end
                            tree.grow(len(chunk))


def _zip_kind(info: zipfile.ZipInfo) -> str:
    if info.flag_bits & 0x1:
        raise UnsafeArchive(f"{info.orig_filename!r} is encrypted")
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise UnsafeArchive(f"{info.orig_filename!r} is a symlink (not accepted in zip archives)")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchive(f"{info.orig_filename!r} is a device, FIFO or other special file")
    return "dir" if info.is_dir() else "file"


def _zip_entry_count(raw: BinaryIO) -> int:
    """The entry count from the end-of-central-directory record (ZIP64's when it says so)."""
    size = raw.seek(0, os.SEEK_END)
    start = max(0, size - (0xFFFF + 22))
    raw.seek(start)
    tail = raw.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise zipfile.BadZipFile("no end of central directory")
    (entries,) = struct.unpack("<H", tail[at + 10 : at + 12])
    if entries != 0xFFFF or at < 20 or tail[at - 20 : at - 16] != b"PK\x06\x07":
        return entries
    (offset,) = struct.unpack("<Q", tail[at - 12 : at - 4])
    raw.seek(offset)
    record = raw.read(56)
    if len(record) < 56 or record[:4] != b"PK\x06\x06":
        raise zipfile.BadZipFile("bad ZIP64 end of central directory")
    return struct.unpack("<Q", record[32:40])[0]


# --- the deploy ----------------------------------------------------------------------------------


def upload_local_path(upload: dict) -> Path:
    return Path(settings.UPLOADS_DIR) / Path(upload["file"]).name


def upload_source(*, agent: Agent, upload: dict, release: str, log: Callable[[str], None]) -> dict:
    """Copy the uploaded archive to the VPS (root-only, beside no site's files) and return the
    agent's release source for it; the agent verifies the SHA-256 and removes its copy. Every
    attempt copies again: a failed attempt leaves nothing on the VPS to rely on."""
    local = upload_local_path(upload)
    if not local.is_file():
        raise OperationError(
            f"the uploaded archive ({upload['sha256'][:12]}…) is no longer kept by CHOM; upload it again"
        )
    remote = f"{REMOTE_DIR}/{release}.{upload['format']}"
    command = Command.of("sh", "-c", RECEIVE_SCRIPT, REMOTE_PARENT, REMOTE_DIR, remote)
    timeout = 120 + upload["size"] / (1024 * 1024)  # at least 1 MiB/s
    with local.open("rb") as source:
        result = agent.transport.stream_in(command, source, timeout=timeout)
    if not result.ok:
        raise OperationError(
            f"copying the uploaded archive to {remote} failed (exit {result.exit_code}): "
            f"{result.stderr_tail()}",
            transient=True,
        )
    log(f"uploaded archive copied to {remote} ({upload['size']} bytes)")
    return {"type": "upload", "path": remote, "sha256": upload["sha256"], "format": upload["format"]}


def upload_discard(params: dict) -> None:
    """The deploy is over (succeeded, failed for good, or cancelled): CHOM's copy goes."""
    if params.get("upload"):
        _discard(upload_local_path(params["upload"]))
