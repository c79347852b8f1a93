"""What CHOM hands out as a backup download URL, checked against AWS Signature Version 4 by hand.

moto (the S3 endpoint of the test suite) does NOT check presigned URLs: it serves an object for a
URL whose signature is wrong, for another object, or long expired. A test that only fetched the URL
would pass for a URL that real S3 refuses, or for one that opens more than it should. So these tests
recompute the signature from the URL's own fields and the secret key (the query-string form of
SigV4: canonical request → string to sign → HMAC chain) and assert that it signs exactly a GET of
that one object, for BACKUP_DOWNLOAD_URL_SECONDS.
"""

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
import requests

from backups import services
from backups.models import Backup
from devstack.s3 import ACCESS_KEY, BUCKET, SECRET_KEY
from fleet.models import Vps
from sites.models import Site
from tests.backups.fixtures import ScriptedTransport, gz, tar_gz


@pytest.fixture
def backup(s3, alice):
    vps = Vps.objects.create(name="web-1", provider="manual", ip_address="192.0.2.10", status="active")
    site = Site.objects.create(
        tenant=alice.tenant, vps=vps, domain="shop.example.com", type="php", status="active",
        unix_user="site1", db_name="site1", db_user="site1", current_release="20240101T000000-abc123",
    )  # fmt: skip
    backup = Backup.objects.create(site=site)
    transport = ScriptedTransport(dump=gz("CREATE TABLE `t` (\n);\n"), archive=tar_gz({"shared/a": b"a"}))
    services.backup_perform(backup=backup, transport=transport)
    backup.refresh_from_db()
    return backup


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _signature(url: str, *, method: str, path: str, secret: str) -> str:
    """SigV4 of a presigned URL's query (all but X-Amz-Signature) for METHOD on PATH, as S3 checks it."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "X-Amz-Signature"]
    fields = dict(query)
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query))
    assert fields["X-Amz-SignedHeaders"] == "host"
    canonical_request = "\n".join(
        [
            method,
            quote(path, safe="/-_.~"),
            canonical_query,
            f"host:{parts.netloc}",
            "",
            "host",
            "UNSIGNED-PAYLOAD",
        ]
    )
    scope = fields["X-Amz-Credential"].split("/", 1)[1]
    date, region, service, _ = scope.split("/")
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            fields["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), date), region), service), "aws4_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_it_signs_a_get_of_that_one_object_for_the_configured_lifetime(alice, backup, settings):
    settings.BACKUP_DOWNLOAD_URL_SECONDS = 123
    before = datetime.now(UTC).replace(microsecond=0)
    body = alice.client().get(f"/api/v1/backups/{backup.pk}/download").json()
    assert body["expires_in"] == 123 and set(body["urls"]) == {"database", "files", "manifest"}
    keys = {name: a["key"] for name, a in backup.artefacts.items() if name in body["urls"]}
    keys["manifest"] = backup.manifest_key
    assert len(set(keys.values())) == 3

    for name, url in body["urls"].items():
        fields = dict(parse_qsl(urlsplit(url).query))
        assert fields["X-Amz-Expires"] == "123", name
        assert fields["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
        assert fields["X-Amz-SignedHeaders"] == "host"
        signed_at = datetime.strptime(fields["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        assert before - timedelta(seconds=5) <= signed_at <= datetime.now(UTC) + timedelta(seconds=5)
        access, date, region, service, terminator = fields["X-Amz-Credential"].split("/")
        assert (access, date, region, service, terminator) == (
            ACCESS_KEY, f"{signed_at:%Y%m%d}", settings.S3_REGION, "s3", "aws4_request",
        )  # fmt: skip
        # The path is the object (path-style addressing: /bucket/key), and the signature covers it.
        path = f"/{BUCKET}/{keys[name]}"
        assert urlsplit(url).path == quote(path, safe="/-_.~"), name
        assert fields["X-Amz-Signature"] == _signature(url, method="GET", path=path, secret=SECRET_KEY), name
        # The same URL does not sign a write, nor any other object of the backup.
        assert fields["X-Amz-Signature"] != _signature(url, method="PUT", path=path, secret=SECRET_KEY)
        for other in set(keys.values()) - {keys[name]}:
            wrong = _signature(url, method="GET", path=f"/{BUCKET}/{other}", secret=SECRET_KEY)
            assert fields["X-Amz-Signature"] != wrong
        assert fields["response-content-disposition"].startswith('attachment; filename="shop.example.com-')


def test_the_signature_check_can_fail(alice, backup):
    url = alice.client().get(f"/api/v1/backups/{backup.pk}/download").json()["urls"]["database"]
    path = f"/{BUCKET}/{backup.artefacts['database']['key']}"
    good = _signature(url, method="GET", path=path, secret=SECRET_KEY)
    assert good == dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    assert _signature(url, method="GET", path=path, secret=SECRET_KEY + "x") != good
    assert "X-Amz-Expires=300" in url
    longer = url.replace("X-Amz-Expires=300", "X-Amz-Expires=301")
    assert _signature(longer, method="GET", path=path, secret=SECRET_KEY) != good


def test_the_test_endpoint_does_not_enforce_signatures_which_is_why_the_urls_are_checked_above(alice, backup):
    """If moto ever starts to refuse a forged URL, the fetch tests alone would become meaningful."""
    url = alice.client().get(f"/api/v1/backups/{backup.pk}/download").json()["urls"]["database"]
    forged = url.replace("X-Amz-Signature=", "X-Amz-Signature=0000")
    assert requests.get(url, timeout=5).status_code == 200
    assert requests.get(forged, timeout=5).status_code == 200  # real S3: 403 SignatureDoesNotMatch
