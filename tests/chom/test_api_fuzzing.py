"""Fuzzing the API from its own OpenAPI schema (schemathesis), in process, with the write token of a
tenant that owns objects: no 5xx, every answer conforms to the schema (statuses included), and
nothing another tenant owns (seeded with a marker string) ever shows up in an answer. Everything
CHOM talks to is there, as in production: S3 (moto server), Prometheus (real), Stripe and Loki
(local fakes of their APIs), so a 5xx can only be a fault. Bounded: FUZZ_EXAMPLES per operation
(CHOM_FUZZ_EXAMPLES); the test prints how many requests it sent."""

import io
import os
import tarfile
import zipfile

import pytest
import schemathesis
from django.core import signals
from django.core.cache import cache
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, strategies
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import (
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from backups.models import Backup
from chom.models import Operation
from chom.services import tenant_create
from devstack.dns_fakes import CloudflareDnsFake, DigitalOceanDnsFake
from devstack.monitoring import start_monitoring
from fleet.models import Vps
from observability.models import Alert
from sites.models import Release, Site, SiteHostname
from tests.backups.fixtures import moto_s3, s3  # noqa: F401 - a real S3 endpoint (moto server)
from tests.billing.conftest import fake_stripe  # noqa: F401 - the Stripe API, faked locally
from tests.observability.conftest import loki  # noqa: F401 - Loki's API, faked locally

MARKER = "globex-fuzz-marker-51c2"


def _archive(kind: str) -> bytes:
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("index.html", "<h1>fuzz</h1>")
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            data = b"<h1>fuzz</h1>"
            info = tarfile.TarInfo("index.html")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# Release uploads are raw archives: schemathesis sends a valid one, or bytes that are not one.
for _media in ("application/gzip", "application/x-gzip", "application/x-tar", "application/zip"):
    schemathesis.openapi.media_type(
        _media,
        strategies.sampled_from([_archive("zip" if _media.endswith("zip") else "tar.gz")])
        | strategies.binary(max_size=512),
    )
FUZZ_EXAMPLES = int(os.environ.get("CHOM_FUZZ_EXAMPLES", "40"))


@pytest.fixture
def api_schema(db):
    # As Django's test client does: a request's end must not close the test's database connection.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/v1/schema?format=json", get_wsgi_application())
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """A real Prometheus (no targets): metrics answers are real, and empty."""
    env, stop, _ = start_monitoring(
        tmp_path_factory.mktemp("prometheus"),
        chom_url="http://127.0.0.1:9",
        listen_ip="127.0.0.1",
        sd_token="fuzz",
        webhook_token="fuzz",
    )
    yield env["PROMETHEUS_URL"]
    stop()


@pytest.fixture
def dns_providers(settings):
    """The DNS providers' APIs (DNS accounts check their tokens), faked locally."""
    with DigitalOceanDnsFake() as digitalocean, CloudflareDnsFake() as cloudflare:
        settings.DNS_PROVIDER_API_URLS = {"digitalocean": digitalocean.url, "cloudflare": cloudflare.url}
        yield


@pytest.fixture
def fuzz_world(db, settings, tmp_path, fake_stripe, s3, loki, prometheus, dns_providers):  # noqa: F811 - fixtures imported above
    # Rate limits count in the cache: a private one, so fuzzing is never throttled by earlier tests.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "fuzz"}
    }
    from django.core.cache import cache

    cache.clear()
    # Configured as in production, so that a 503 can only mean a fault: WordPress and Stripe (fake).
    settings.WORDPRESS_ARCHIVE_URL = "https://downloads.example.com/wordpress.tar.gz"
    settings.WORDPRESS_ARCHIVE_SHA256 = "0" * 64
    settings.PROMETHEUS_URL = prometheus
    settings.UPLOADS_DIR = str(tmp_path / "uploads")
    acme, issued = tenant_create(slug="acme", tier="pro", owner_email="alice@acme.test")
    globex, _ = tenant_create(slug="globex", tier="enterprise", owner_email=f"{MARKER}@globex.test")
    vps = Vps.objects.create(
        name="web-1", provider="manual", ip_address="192.0.2.10", status="active", php_versions=["8.2"],
        max_sites=100000,
    )  # fmt: skip
    for tenant, domain in ((acme, "shop.example.com"), (globex, f"{MARKER}.example.com")):
        site = Site.objects.create(
            tenant=tenant,
            vps=vps,
            domain=domain,
            type="static",
            status="active",
            unix_user=f"site-{tenant.slug}",
        )
        SiteHostname.objects.create(site=site, hostname=domain)
        Release.objects.create(
            site=site, name="r1", status="superseded", commit=MARKER if tenant == globex else ""
        )
        Release.objects.create(site=site, name="r2", status="active")
        Backup.objects.create(site=site, status="succeeded", error=MARKER if tenant == globex else "")
        Operation.objects.create(
            kind="site.deploy", tenant=tenant, target_type="sites.site", target_id=str(site.pk),
            status="failed", error=MARKER if tenant == globex else "boom",
        )  # fmt: skip
        Alert.objects.create(
            fingerprint=f"f:{tenant.slug}", name="ssl_failed", summary=f"{domain} alert", tenant=tenant
        )
    return {"Authorization": f"Bearer {issued.plaintext}"}


def _fuzz_operation(operation, headers: dict, sent: list) -> list[str]:
    """Run FUZZ_EXAMPLES generated requests against one operation (each appended to SENT); return
    the problems found."""
    problems: list[str] = []
    cache.clear()  # the token's rate limit: each operation starts with a full budget

    @given(case=operation.as_strategy())
    @hypothesis_settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
    )
    def run(case):
        sent.append(case.method)
        try:
            response = case.call_and_validate(
                headers=headers,
                checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
                excluded_checks=[negative_data_rejection],
            )
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect, report once
            problems.append(f"{case.method} {case.operation.path}: {str(exc).strip()[:600]}")
            return
        if MARKER in response.text:
            problems.append(f"{case.method} {case.formatted_path}: showed another tenant's data")

    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - one report per operation
        problems.append(f"{operation.method.upper()} {operation.path}: {str(exc).strip()[:900]}")
    return problems


def test_the_api_answers_every_generated_request_within_its_schema(api_schema, fuzz_world):
    problems, sent, operations = [], [], 0
    for result in api_schema.get_all_operations():
        operations += 1
        problems += _fuzz_operation(result.ok(), fuzz_world, sent)
    print(f"\nschemathesis: {len(sent)} requests over {operations} operations")
    # A schema that lost its operations, or a generator that sent nothing, must not pass as "no problems".
    assert operations >= 30 and len(sent) >= 10 * operations, (operations, len(sent))
    assert {"GET", "POST", "PATCH", "DELETE"} <= set(sent)
    distinct = {
        problem.split("\n")[0][:80] + problem.split("- ST", 1)[-1][:60]: problem for problem in problems
    }
    assert problems == [], f"{len(distinct)} distinct problems:\n" + "\n\n".join(distinct.values())
