"""The one S3 client module: any S3-compatible endpoint (AWS, R2, MinIO, Spaces, moto).

Streams in, streams out, never holds more than one part in memory. Every call has timeouts
(botocore Config) and every failure is a `StorageError` whose `permanent` flag says whether
retrying can help (a missing bucket or bad credentials will not fix themselves).
"""

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from chom.errors import ExternalServiceError

logger = logging.getLogger(__name__)

MAX_PARTS = 10_000
READ_CHUNK = 1024 * 1024
PERMANENT_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "NoSuchKey",
    "404",
    "403",
    "InvalidBucketName",
    "EntityTooLarge",
}


class StorageError(ExternalServiceError):
    """S3 failed; `permanent` when retrying the same call cannot help."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str


def configured() -> bool:
    return bool(settings.S3_BUCKET)


def _describe(exc: Exception) -> tuple[str, bool]:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "unknown"))
        return f"{code}: {error.get('Message', '')}".strip(), code in PERMANENT_CODES
    return f"{type(exc).__name__}: {exc}", False


def _wrap(what: str, exc: Exception) -> StorageError:
    detail, permanent = _describe(exc)
    return StorageError(
        f"S3 {what} failed ({settings.S3_ENDPOINT_URL or 'AWS'}): {detail}", permanent=permanent
    )


@lru_cache(maxsize=8)
def _client_for(
    endpoint, region, access_key, secret_key, path_style, connect_timeout, read_timeout, attempts
):
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": attempts, "mode": "standard"},
        s3={"addressing_style": "path" if path_style else "auto"},
        signature_version="s3v4",
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint or None,
        region_name=region or None,
        aws_access_key_id=access_key or None,
        aws_secret_access_key=secret_key or None,
        config=config,
    )


def client():
    """A boto3 S3 client for the configured endpoint, cached per configuration (tests change it)."""
    if not configured():
        raise StorageError("backups are not configured: set S3_BUCKET (and S3_ENDPOINT_URL)", permanent=True)
    return _client_for(
        settings.S3_ENDPOINT_URL,
        settings.S3_REGION,
        settings.S3_ACCESS_KEY_ID,
        settings.S3_SECRET_ACCESS_KEY,
        settings.S3_PATH_STYLE,
        settings.S3_CONNECT_TIMEOUT,
        settings.S3_READ_TIMEOUT,
        settings.S3_MAX_ATTEMPTS,
    )


def _sse() -> dict:
    return {"ServerSideEncryption": settings.S3_SSE} if settings.S3_SSE else {}


def key_for(*parts: str) -> str:
    """S3_PREFIX + the parts joined by single slashes (a trailing slash is kept: a listing prefix)."""
    joined = "/".join(p.strip("/") for p in parts if p.strip("/"))
    return settings.S3_PREFIX + joined + ("/" if parts and parts[-1].endswith("/") else "")


class MultipartWriter:
    """A file-like sink: `write(chunk)` buffers one part, uploads it, and hashes on the fly.

    `close()` completes the upload; `abort()` (idempotent) removes every trace of it. Parts grow
    (x2 every 1000 parts) so the 10,000-part limit of S3 is never reached in practice.
    """

    def __init__(self, key: str, *, part_size: int | None = None):
        self.key = key
        self.base_part_size = max(5 * 1024 * 1024, part_size or settings.BACKUP_PART_SIZE)
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.parts: list[dict] = []
        self._buffer = bytearray()
        self._client = client()
        self.upload_id: str | None = None
        try:
            answer = self._client.create_multipart_upload(Bucket=settings.S3_BUCKET, Key=key, **_sse())
        except (BotoCoreError, ClientError) as exc:
            raise _wrap(f"create_multipart_upload of {key}", exc)
        self.upload_id = answer["UploadId"]

    def _part_size(self) -> int:
        return self.base_part_size * 2 ** (len(self.parts) // 1000)

    def write(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.size += len(chunk)
        self._buffer += chunk
        if len(self._buffer) >= self._part_size():
            self._flush()

    def _flush(self) -> None:
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            raise StorageError(
                f"{self.key}: more than {MAX_PARTS} parts; raise BACKUP_PART_SIZE", permanent=True
            )
        body = bytes(self._buffer)
        self._buffer.clear()
        try:
            answer = self._client.upload_part(
                Bucket=settings.S3_BUCKET, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body
            )
        except (BotoCoreError, ClientError) as exc:
            raise _wrap(f"upload of part {number} of {self.key}", exc)
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def close(self) -> StoredObject:
        if self._buffer or not self.parts:
            self._flush()
        try:
            self._client.complete_multipart_upload(
                Bucket=settings.S3_BUCKET,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
        except (BotoCoreError, ClientError) as exc:
            raise _wrap(f"complete_multipart_upload of {self.key}", exc)
        self.upload_id = None
        return StoredObject(self.key, self.size, self.sha256.hexdigest())

    def abort(self) -> None:
        """Abort the upload and delete the key if it got completed: nothing may look complete."""
        if self.upload_id:
            try:
                self._client.abort_multipart_upload(
                    Bucket=settings.S3_BUCKET, Key=self.key, UploadId=self.upload_id
                )
                self.upload_id = None
            except (BotoCoreError, ClientError) as exc:
                logger.warning("could not abort upload of %s (the janitor will): %s", self.key, exc)
        delete_quietly(self.key)


def put_bytes(key: str, data: bytes, *, content_type: str = "application/octet-stream") -> StoredObject:
    try:
        client().put_object(Bucket=settings.S3_BUCKET, Key=key, Body=data, ContentType=content_type, **_sse())
    except (BotoCoreError, ClientError) as exc:
        raise _wrap(f"put_object of {key}", exc)
    return StoredObject(key, len(data), hashlib.sha256(data).hexdigest())


def iter_object(key: str, *, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
    """The object's bytes, streamed (never the whole object in memory)."""
    try:
        body = client().get_object(Bucket=settings.S3_BUCKET, Key=key)["Body"]
    except (BotoCoreError, ClientError) as exc:
        raise _wrap(f"get_object of {key}", exc)
    try:
        yield from body.iter_chunks(chunk_size)
    except (BotoCoreError, ClientError, OSError) as exc:
        raise _wrap(f"read of {key}", exc)
    finally:
        body.close()


def get_bytes(key: str) -> bytes:
    return b"".join(iter_object(key))


def measure(key: str) -> StoredObject:
    """Read the object back from S3 and hash it, streaming: what is really stored."""
    digest, size = hashlib.sha256(), 0
    for chunk in iter_object(key):
        digest.update(chunk)
        size += len(chunk)
    return StoredObject(key, size, digest.hexdigest())


def head(key: str) -> dict | None:
    try:
        return client().head_object(Bucket=settings.S3_BUCKET, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise _wrap(f"head_object of {key}", exc)
    except BotoCoreError as exc:
        raise _wrap(f"head_object of {key}", exc)


def delete(keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        try:
            answer = client().delete_objects(
                Bucket=settings.S3_BUCKET, Delete={"Objects": batch, "Quiet": True}
            )
        except (BotoCoreError, ClientError) as exc:
            raise _wrap("delete_objects", exc)
        if answer.get("Errors"):
            first = answer["Errors"][0]
            raise StorageError(f"S3 refused to delete {first.get('Key')}: {first.get('Code')}")


def delete_quietly(key: str) -> None:
    try:
        delete([key])
    except StorageError as exc:
        logger.warning("could not delete %s: %s", key, exc)


def list_keys(prefix: str) -> list[dict]:
    """Objects under PREFIX: [{"Key", "Size", "LastModified"}]."""
    found: list[dict] = []
    try:
        pages = client().get_paginator("list_objects_v2").paginate(Bucket=settings.S3_BUCKET, Prefix=prefix)
        for page in pages:
            found += page.get("Contents", [])
    except (BotoCoreError, ClientError) as exc:
        raise _wrap(f"list of {prefix}", exc)
    return found


def abort_incomplete_uploads(*, prefix: str | None = None, older_than=None) -> list[str]:
    """Abort multipart uploads left behind when an abort itself failed (S3 down mid-backup)."""
    prefix = settings.S3_PREFIX if prefix is None else prefix
    aborted = []
    try:
        answer = client().list_multipart_uploads(Bucket=settings.S3_BUCKET, Prefix=prefix)
        for upload in answer.get("Uploads", []):
            if older_than is not None and upload["Initiated"] > older_than:
                continue
            client().abort_multipart_upload(
                Bucket=settings.S3_BUCKET, Key=upload["Key"], UploadId=upload["UploadId"]
            )
            aborted.append(upload["Key"])
    except (BotoCoreError, ClientError) as exc:
        raise _wrap("abort of incomplete uploads", exc)
    return aborted


def presigned_url(key: str, *, expires: int, filename: str = "") -> str:
    params = {"Bucket": settings.S3_BUCKET, "Key": key}
    if filename:
        params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
    try:
        return client().generate_presigned_url("get_object", Params=params, ExpiresIn=expires)
    except (BotoCoreError, ClientError) as exc:
        raise _wrap(f"presign of {key}", exc)


def upload_stream(key: str, produce: Callable[[Callable[[bytes], None]], None]) -> StoredObject:
    """Run PRODUCE(sink) into a multipart upload of KEY; abort on any failure."""
    writer = MultipartWriter(key)
    try:
        produce(writer.write)
        return writer.close()
    except BaseException:
        writer.abort()
        raise
