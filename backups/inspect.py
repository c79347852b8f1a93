"""Read what a backup stream contains while it streams to S3, in bounded memory.

The manifest then describes the archive itself (tables and rows of the dump, files and their
sha256 inside the tar), not a separate look at a live site that may have changed meanwhile.
"""

import gzip
import hashlib
import io
import queue
import re
import tarfile
import threading
import zlib

INSERT_RE = re.compile(rb"^INSERT INTO `((?:[^`]|``)+)` VALUES ?")
CREATE_RE = re.compile(rb"^CREATE TABLE `((?:[^`]|``)+)` \(")
# A quoted string (skipped whole: parentheses inside values never count) or a row's opening "(".
TOKEN_RE = re.compile(rb"'(?:[^'\\]|\\.)*'|\(", re.DOTALL)


def _name(raw: bytes) -> str:
    return raw.replace(b"``", b"`").decode("utf-8", "replace")


class DumpCounter:
    """Fed the gzip'd output of mariadb-dump: which tables it creates and how many rows it inserts.

    mariadb-dump escapes newlines inside values, so no string spans lines. An extended INSERT is
    either one line (`VALUES (..),(..);`) or, since MariaDB 10.11, one row per line; either way
    values hold no parentheses outside quoted strings, so each unquoted "(" opens one row, and a
    line ending in ";" ends the statement.
    """

    def __init__(self):
        self._inflate = zlib.decompressobj(wbits=31)
        self._line = bytearray()
        self._inserting: str | None = None
        self.tables: dict[str, int] = {}

    def feed(self, chunk: bytes) -> None:
        try:
            self._feed(chunk)
        except zlib.error as exc:
            raise ValueError(f"the database dump is not valid gzip: {exc}")

    def _feed(self, chunk: bytes) -> None:
        data = self._inflate.decompress(chunk)
        while True:
            # A gzip stream may hold several members (gzip of concatenated output).
            if self._inflate.eof and self._inflate.unused_data:
                rest = self._inflate.unused_data
                self._inflate = zlib.decompressobj(wbits=31)
                data += self._inflate.decompress(rest)
                continue
            break
        self._lines(data)

    def _lines(self, data: bytes) -> None:
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            self._line += data[start:end]
            self._statement(bytes(self._line))
            self._line.clear()
            start = end + 1
        self._line += data[start:]

    def _statement(self, line: bytes) -> None:
        if self._inserting is not None:
            self._rows(self._inserting, line)
        elif line.startswith(b"CREATE TABLE"):
            match = CREATE_RE.match(line)
            if match:
                self.tables.setdefault(_name(match.group(1)), 0)
        elif line.startswith(b"INSERT INTO"):
            match = INSERT_RE.match(line)
            if match:
                self._rows(_name(match.group(1)), line[match.end() :])

    def _rows(self, table: str, text: bytes) -> None:
        rows = sum(1 for token in TOKEN_RE.finditer(text) if token.group() == b"(")
        self.tables[table] = self.tables.get(table, 0) + rows
        self._inserting = None if text.rstrip().endswith(b";") else table

    def finish(self) -> dict[str, int]:
        if self._line:
            self._statement(bytes(self._line))
            self._line.clear()
        return dict(sorted(self.tables.items()))


class _ChunkReader(io.RawIOBase):
    def __init__(self, chunks: "queue.Queue[bytes | None]"):
        self._chunks = chunks
        self._pending = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending and not self._eof:
            chunk = self._chunks.get()
            if chunk is None:
                self._eof = True
            else:
                self._pending = chunk
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


class TarIndexer:
    """Fed the bytes of a `tar czf -` stream: path → (size, sha256) of every regular file.

    A thread reads the tar through a bounded queue, so memory stays at a few chunks; if the
    thread fails, the backup itself is not held up (the error is reported at `finish`).
    """

    def __init__(self, max_chunks: int = 64):
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=max_chunks)
        self.files: dict[str, tuple[int, str]] = {}
        self.error: Exception | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._read, name="tar-indexer", daemon=True)
        self._thread.start()

    def feed(self, chunk: bytes) -> None:
        if self.error is None and self._thread.is_alive():
            self._chunks.put(chunk)

    def _read(self) -> None:
        try:
            with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(self._chunks)), mode="r|gz") as archive:
                for member in archive:
                    path = member.name.removeprefix("./")
                    if member.isreg():
                        digest = hashlib.sha256()
                        handle = archive.extractfile(member)
                        while block := handle.read(1024 * 1024):
                            digest.update(block)
                        self.files[path] = (member.size, digest.hexdigest())
                    elif member.islnk() and member.linkname.removeprefix("./") in self.files:
                        # A hard link extracts as one more regular file with the same content.
                        self.files[path] = self.files[member.linkname.removeprefix("./")]
        except Exception as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc
            self._drain()

    def _drain(self) -> None:
        """After a failure: keep taking chunks so `feed` never blocks, until the end is signalled."""
        while True:
            try:
                if self._chunks.get(timeout=0.1) is None:
                    return
            except queue.Empty:
                if self._closing:
                    return

    def finish(self, timeout: float = 120) -> dict[str, tuple[int, str]]:
        self._closing = True
        if self._thread.is_alive():
            try:
                self._chunks.put(None, timeout=timeout)
            except queue.Full:
                pass
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the tar index did not finish")
        if self.error is not None:
            raise ValueError(f"the files archive is not a readable tar.gz: {self.error}")
        return dict(sorted(self.files.items()))

    def abandon(self) -> None:
        """Stop the reader thread after a failed backup."""
        self.error = self.error or RuntimeError("abandoned")
        self._closing = True
        try:
            self._chunks.put_nowait(None)
        except queue.Full:
            pass


def index_dumps(files: dict[str, tuple[int, str]]) -> bytes:
    """The files index artefact: gzip'd JSON lines, sorted by path."""
    import json

    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as out:
        for path, (size, sha) in files.items():
            out.write(json.dumps({"path": path, "size": size, "sha256": sha}).encode() + b"\n")
    return buffer.getvalue()


def index_loads(data: bytes) -> dict[str, str]:
    import json

    return {entry["path"]: entry["sha256"] for entry in map(json.loads, gzip.decompress(data).splitlines())}


def parse_sha256sum(output: str) -> dict[str, str]:
    """`sha256sum` lines ("HASH  ./path"; a leading backslash marks an escaped name)."""
    found = {}
    for line in output.splitlines():
        escaped = line.startswith("\\")
        digest, _, path = line.removeprefix("\\").partition("  ")
        if escaped:
            path = path.replace("\\n", "\n").replace("\\\\", "\\")
        if path:
            found[path.removeprefix("./")] = digest
    return found
