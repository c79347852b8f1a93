"""DNS accounts (/api/v1/dns-accounts) and wildcard sites through the API: the token is checked
against the provider (a local fake of its API), never shown, audited; a wildcard needs the tier,
a DNS account of the tenant and no overlap with another tenant's names."""

import pytest

from chom.models import AuditEvent
from devstack.dns_fakes import CloudflareDnsFake, DigitalOceanDnsFake
from fleet.models import Vps
from sites.domains import InvalidDomain, normalize_domain
from sites.models import DnsAccount, Site
from sites.services import vhost_spec


@pytest.fixture
def vps(db):
    return Vps.objects.create(
        name="web-1",
        provider="manual",
        ip_address="192.0.2.10",
        status="active",
        max_sites=10,
        php_versions=["8.2"],
    )


@pytest.fixture
def do_fake(settings):
    with DigitalOceanDnsFake(zones=("example.test",)) as fake:
        settings.DNS_PROVIDER_API_URLS = {"digitalocean": fake.url, "cloudflare": ""}
        yield fake


@pytest.fixture
def zones(alice, do_fake) -> int:
    response = _account(alice, token=do_fake.token)
    assert response.status_code == 201, response.content
    return response.json()["id"]


def _account(persona, *, token: str, name="zones", provider="digitalocean"):
    body = {"name": name, "provider": provider, "token": token}
    return persona.client().post("/api/v1/dns-accounts", body, format="json")


def _site(persona, **body):
    return persona.client().post("/api/v1/sites", {"type": "static", **body}, format="json")


# --- domains ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("*.Example.COM.", "*.example.com"), ("*.bücher.example", "*.xn--bcher-kva.example")],
)
def test_it_normalises_a_leading_wildcard_label_when_allowed(value, expected):
    assert normalize_domain(value, wildcard=True) == expected
    with pytest.raises(InvalidDomain):
        normalize_domain(value)


@pytest.mark.parametrize(
    "value", ["*.com", "*.*.example.com", "a.*.example.com", "*example.com", "*", "*.", "**.a.b"]
)
def test_it_refuses_every_other_use_of_a_star(value):
    with pytest.raises(InvalidDomain):
        normalize_domain(value, wildcard=True)


# --- DNS accounts ----------------------------------------------------------------------------------


def test_it_verifies_the_token_stores_it_encrypted_and_never_returns_it(alice, do_fake):
    response = _account(alice, token=do_fake.token)
    assert response.status_code == 201, response.content
    assert do_fake.requests[-1].path == "/domains"  # the cheap check, with the token
    listed = alice.client().get("/api/v1/dns-accounts").json()
    assert listed["count"] == 1 and listed["results"][0]["name"] == "zones"
    assert do_fake.token not in str(listed) and do_fake.token not in response.content.decode()
    assert DnsAccount.objects.get().token == do_fake.token
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT token FROM sites_dnsaccount")
        assert do_fake.token not in cursor.fetchone()[0]
    assert AuditEvent.objects.filter(action="dns_account.created", target="dns_account:zones").exists()


def test_it_refuses_a_token_the_provider_refuses_and_stores_nothing(alice, do_fake):
    response = _account(alice, token="wrong-token")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_token"
    assert "token" in response.json()["error"]["fields"]
    assert not DnsAccount.objects.exists()


def test_it_answers_503_when_the_provider_is_down(alice, do_fake):
    do_fake.fail_next(503)
    assert _account(alice, token=do_fake.token).status_code == 503
    assert not DnsAccount.objects.exists()


def test_it_checks_a_cloudflare_token_with_its_verify_call(alice, settings):
    with CloudflareDnsFake() as fake:
        settings.DNS_PROVIDER_API_URLS = {"digitalocean": "", "cloudflare": fake.url}
        response = _account(alice, provider="cloudflare", token=fake.token)
    assert response.status_code == 201, response.content
    assert fake.requests[-1].path == "/user/tokens/verify"


def test_it_refuses_to_delete_an_account_a_live_site_uses_then_deletes_it(alice, vps, zones):
    site = _site(alice, domain="*.example.test", dns_account=zones)
    assert site.status_code == 202, site.content
    response = alice.client().delete(f"/api/v1/dns-accounts/{zones}")
    assert response.status_code == 409 and "*.example.test" in response.json()["error"]["message"]
    Site.objects.filter(pk=site.json()["id"]).update(status="deleted")
    assert alice.client().delete(f"/api/v1/dns-accounts/{zones}").status_code == 204
    assert AuditEvent.objects.filter(action="dns_account.deleted").exists()


# --- wildcard sites --------------------------------------------------------------------------------


def test_it_creates_a_wildcard_site_whose_vhost_serves_every_name_below(alice, vps, zones):
    response = _site(alice, domain="*.Example.test", dns_account=zones)
    assert response.status_code == 202, response.content
    assert response.json()["domain"] == "*.example.test" and response.json()["dns_account"] == zones
    site = Site.objects.get()
    assert vhost_spec(site).domains == ("*.example.test",)
    Site.objects.filter(pk=site.pk).update(ssl_status="active")
    site.refresh_from_db()
    assert vhost_spec(site).ssl_key == f"/var/lib/chom/tls/{site.unix_user}/privkey.pem"


def test_it_needs_a_dns_account_of_the_tenant_for_a_wildcard(alice, charlie, vps, zones):
    missing = _site(alice, domain="*.example.test")
    assert missing.status_code == 400 and "dns_account" in missing.json()["error"]["fields"]
    theirs = DnsAccount.objects.create(tenant=charlie.tenant, name="x", provider="cloudflare", token="t")
    foreign = _site(alice, domain="*.example.test", dns_account=theirs.pk)
    assert foreign.status_code == 400 and "dns_account" in foreign.json()["error"]["fields"]
    assert not Site.objects.exists()


def test_it_refuses_a_wildcard_on_a_tier_without_them(charlie, vps):
    account = DnsAccount.objects.create(tenant=charlie.tenant, name="x", provider="digitalocean", token="t")
    response = _site(charlie, domain="*.globex.test", dns_account=account.pk)
    assert response.status_code == 403 and response.json()["error"]["code"] == "tier_limit_reached"


def test_it_refuses_a_wordpress_wildcard(alice, vps, zones):
    response = _site(alice, domain="*.example.test", dns_account=zones, type="wordpress")
    assert response.status_code == 400


def _other_tenant_site(domain: str, vps) -> Site:
    from chom.services import tenant_create
    from sites.models import SiteHostname

    tenant, _ = tenant_create(
        slug=f"t{Site.objects.count()}", tier="pro", owner_email=f"o{Site.objects.count()}@x.test"
    )
    site = Site.objects.create(tenant=tenant, vps=vps, domain=domain, type="static", status="active")
    SiteHostname.objects.create(site=site, hostname=domain)
    return site


def test_it_refuses_a_wildcard_over_another_tenants_name_but_not_over_its_own(alice, vps, zones):
    _other_tenant_site("shop.example.test", vps)
    response = _site(alice, domain="*.example.test", dns_account=zones)
    assert response.status_code == 409 and "shop.example.test" in response.json()["error"]["message"]
    assert _site(alice, domain="*.mine.example.test", dns_account=zones).status_code == 202
    assert _site(alice, domain="www.mine.example.test").status_code == 202  # its own: exact wins


def test_it_refuses_a_name_below_another_tenants_wildcard(alice, vps):
    _other_tenant_site("*.example.test", vps)
    for domain in ("shop.example.test", "a.b.example.test"):
        response = _site(alice, domain=domain)
        assert response.status_code == 409, domain
    assert _site(alice, domain="example.test").status_code == 202  # the apex is not below it
    site = Site.objects.get(domain="example.test")
    patched = alice.client().patch(
        f"/api/v1/sites/{site.pk}", {"aliases": ["www.example.test"]}, format="json"
    )
    assert patched.status_code == 409


def test_it_lets_only_one_site_claim_a_wildcard(alice, vps, zones):
    assert _site(alice, domain="*.example.test", dns_account=zones).status_code == 202
    assert _site(alice, domain="*.example.test", dns_account=zones).status_code == 409


def test_automatic_tls_issues_a_dns01_site_without_waiting_for_its_addresses(alice, vps, zones):
    from chom.models import Operation
    from sites.services import site_tls_wait
    from sites.tls import tls_checks_run

    assert _site(alice, domain="*.example.test", dns_account=zones).status_code == 202
    site = Site.objects.get()
    Site.objects.filter(pk=site.pk).update(status="active")
    site_tls_wait(site=site)
    assert tls_checks_run()["issuing"] == 1
    site.refresh_from_db()
    assert site.tls_state == "issuing"
    assert Operation.objects.filter(kind="site.ssl", target_id=str(site.pk), status="queued").count() == 1
