"""DNS accounts and wildcard sites through the staff dashboard: the same serializer and services as
the API (the token is checked with a local fake of the provider's API, never shown), a refusal is
a message on the page it came from and nothing is saved."""

import pytest

from chom.models import AuditEvent, Operation
from devstack.dns_fakes import DigitalOceanDnsFake
from fleet.models import Vps
from sites.models import DnsAccount, Site

LIST = "/sites/dns-accounts/"
TOKEN = "do-t0k"  # noqa: S105 - a stored token the pages must never show


@pytest.fixture
def vps(db):
    return Vps.objects.create(
        name="web-1", provider="manual", ip_address="192.0.2.10", status="active", max_sites=10,
        php_versions=["8.2"],
    )  # fmt: skip


@pytest.fixture
def do_fake(settings):
    with DigitalOceanDnsFake(zones=("example.test",)) as fake:
        settings.DNS_PROVIDER_API_URLS = {"digitalocean": fake.url, "cloudflare": ""}
        yield fake


@pytest.fixture
def zones(alice) -> DnsAccount:
    return DnsAccount.objects.create(tenant=alice.tenant, name="zones", provider="digitalocean", token=TOKEN)


def _wildcard_site(account: DnsAccount, vps, **fields) -> Site:
    fields = {"domain": "*.example.test", "type": "static", "status": "active", **fields}
    return Site.objects.create(tenant=account.tenant, vps=vps, dns_account=account, **fields)


def _shown(client, page: str) -> list[str]:
    return [str(m) for m in client.get(page).context["messages"]]


def _refused(client, response, page: str) -> list[str]:
    assert response.status_code == 302 and response["Location"] == page
    return _shown(client, page)


def _add(client, tenant, *, token: str, name: str = "zones", provider: str = "digitalocean"):
    body = {"tenant": tenant.slug, "name": name, "provider": provider, "token": token}
    return client.post(f"{LIST}new", body, HTTP_REFERER=f"http://testserver{LIST}")


# --- the page --------------------------------------------------------------------------------------


def test_it_lists_each_tenants_accounts_with_the_sites_using_them_and_never_a_token(
    admin_client, alice, charlie, vps, zones
):
    DnsAccount.objects.create(tenant=charlie.tenant, name="globex-dns", provider="cloudflare", token="cf-t0k")
    _wildcard_site(zones, vps)
    _wildcard_site(zones, vps, domain="gone.example.test", status="deleted")
    every = admin_client.get(LIST).content.decode()
    assert "zones" in every and "globex-dns" in every and "*.example.test" in every
    assert "gone.example.test" not in every and TOKEN not in every and "cf-t0k" not in every
    only_acme = admin_client.get(f"{LIST}?tenant=acme").content.decode()
    assert "zones" in only_acme and "globex-dns" not in only_acme


# --- add -------------------------------------------------------------------------------------------


def test_it_adds_an_account_whose_token_the_provider_accepts(admin_client, admin_user, alice, do_fake):
    response = _add(admin_client, alice.tenant, token=do_fake.token)
    assert response.status_code == 302 and response["Location"] == f"{LIST}?tenant=acme"
    account = DnsAccount.objects.get()
    assert (account.tenant, account.name, account.token) == (alice.tenant, "zones", do_fake.token)
    assert do_fake.requests[-1].path == "/domains"
    assert AuditEvent.objects.get(action="dns_account.created").actor == admin_user
    page = admin_client.get(response["Location"]).content.decode()
    assert "DNS account zones (digitalocean) of acme added." in page and do_fake.token not in page


def test_it_shows_the_providers_refusal_and_saves_nothing(admin_client, alice, do_fake):
    response = _add(admin_client, alice.tenant, token="wrong-token")
    messages = _refused(admin_client, response, f"http://testserver{LIST}")
    assert len(messages) == 1 and messages[0].startswith("digitalocean refused the token")
    assert not DnsAccount.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="dns_account").exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "zones;rm -rf /"}, "Name: "),
        ({"token": "has a space"}, "Token: A token has no spaces or control characters."),
        ({"provider": "route53"}, "Provider: Select a valid choice."),
    ],
)
def test_it_refuses_input_the_apis_serializer_refuses_before_asking_the_provider(
    admin_client, alice, do_fake, fields, message
):
    body = {"tenant": "acme", "name": "zones", "provider": "digitalocean", "token": do_fake.token, **fields}
    response = admin_client.post(f"{LIST}new", body, HTTP_REFERER=f"http://testserver{LIST}")
    messages = _refused(admin_client, response, f"http://testserver{LIST}")
    assert messages[0].startswith(message), messages
    assert not DnsAccount.objects.exists() and do_fake.requests == []


# --- delete ----------------------------------------------------------------------------------------


def test_it_refuses_to_delete_an_account_a_live_site_uses_then_deletes_it(admin_client, alice, vps, zones):
    site = _wildcard_site(zones, vps)
    page = f"http://testserver{LIST}?tenant=acme"
    response = admin_client.post(f"{LIST}{zones.pk}/delete", HTTP_REFERER=page)
    assert _refused(admin_client, response, page) == ["Sites still use this DNS account: *.example.test."]
    assert DnsAccount.objects.filter(pk=zones.pk).exists()
    Site.objects.filter(pk=site.pk).update(status="deleted")
    response = admin_client.post(f"{LIST}{zones.pk}/delete", HTTP_REFERER=page)
    assert response.status_code == 302 and not DnsAccount.objects.exists()
    assert _shown(admin_client, response["Location"]) == ["DNS account zones of acme deleted."]


# --- wildcard sites --------------------------------------------------------------------------------


def test_it_creates_a_wildcard_site_with_the_tenants_dns_account(admin_client, alice, vps, zones):
    body = {"tenant": alice.tenant.pk, "domain": "*.Example.test", "type": "static", "dns_account": zones.pk}
    response = admin_client.post("/sites/new", body)
    site = Site.objects.get()
    assert response.status_code == 302 and Operation.objects.get().target_id == str(site.pk)
    assert (site.domain, site.dns_account) == ("*.example.test", zones)
    page = admin_client.get(f"/sites/{site.pk}/").content.decode()
    assert "zones</a> (digitalocean): the certificate is issued over DNS-01" in page
    assert TOKEN not in page


def test_it_offers_every_tenants_dns_accounts_on_the_create_page(admin_client, alice, zones):
    page = admin_client.get("/sites/new").content.decode()
    assert f'<option value="{zones.pk}">acme: zones (digitalocean)</option>' in page


@pytest.mark.parametrize(
    ("persona", "account", "message"),
    [
        ("alice", None, "A wildcard certificate is issued over DNS: name the DNS account that holds the"),
        ("alice", "theirs", "No such DNS account."),
        ("charlie", "theirs", "The starter tier does not include wildcard domains."),
    ],
)
def test_it_shows_the_services_refusal_of_a_wildcard_site_and_saves_nothing(
    request, admin_client, alice, charlie, vps, persona, account, message
):
    theirs = DnsAccount.objects.create(tenant=charlie.tenant, name="globex", provider="cloudflare", token="t")
    tenant = request.getfixturevalue(persona).tenant
    body = {"tenant": tenant.pk, "domain": "*.example.test", "type": "static"}
    if account:
        body["dns_account"] = theirs.pk
    page = "http://testserver/sites/new"
    response = admin_client.post("/sites/new", body, HTTP_REFERER=page)
    shown = _refused(admin_client, response, page)
    assert len(shown) == 1 and shown[0].startswith(message), shown
    assert not Site.objects.exists() and not Operation.objects.exists()
