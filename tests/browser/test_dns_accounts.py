"""A wildcard site through the pages, as staff in a browser: add the tenant's DNS account (its token
checked by a local fake of DigitalOcean's DNS API), create `*.example.test` with it, see on the
site page that its certificate is issued over DNS-01, and be refused deleting the account while
the site uses it. No server is reached: the site's first deploy stays queued."""

import pytest

from chom.services import tenant_create
from devstack.dns_fakes import DigitalOceanDnsFake
from fleet.models import Vps
from sites.models import DnsAccount, Site
from tests.browser.helpers import assert_accessible, duplicate_ids, follow, screenshot, visit


@pytest.fixture
def acme(staff_user):
    Vps.objects.create(
        name="web-1", provider="manual", ip_address="192.0.2.10", status=Vps.Status.ACTIVE, max_sites=50
    )
    tenant, _ = tenant_create(slug="acme", name="Acme", tier="pro", owner_email="alice@acme.test")
    tenant_create(slug="globex", name="Globex", tier="pro", owner_email="charlie@globex.test")
    return tenant


@pytest.fixture
def do_fake(settings):
    with DigitalOceanDnsFake(zones=("example.test",)) as fake:
        settings.DNS_PROVIDER_API_URLS = {"digitalocean": fake.url, "cloudflare": ""}
        yield fake


def _form(page, button: str):
    return page.locator("form", has=page.get_by_role("button", name=button, exact=True))


def _submit(page, button: str) -> None:
    errors = follow(page, page.get_by_role("button", name=button, exact=True))
    assert errors == [], errors


def _message(page) -> str:
    return page.locator("ul.messages").inner_text()


def _add_account(page, *, token: str) -> None:
    form = _form(page, "Add the DNS account")
    form.get_by_label("Tenant").select_option("acme")
    form.get_by_label("Name").fill("zones")
    form.get_by_label("Provider").select_option("digitalocean")
    form.get_by_label("Token").fill(token)
    _submit(page, "Add the DNS account")


def test_it_adds_a_dns_account_and_creates_a_wildcard_site_with_it(staff_page, live_server, acme, do_fake):
    page = staff_page
    assert visit(page, f"{live_server.url}/sites/") == []
    assert follow(page, page.get_by_role("link", name="DNS accounts")) == []
    assert duplicate_ids(page) == []
    assert_accessible(page)

    _add_account(page, token="not-the-token")
    assert _message(page).startswith("digitalocean refused the token")
    assert not DnsAccount.objects.exists() and "No DNS account." in page.content()

    _add_account(page, token=do_fake.token)
    assert "DNS account zones (digitalocean) of acme added." in _message(page)
    assert page.url.endswith("/sites/dns-accounts/?tenant=acme")
    assert "zones" in page.locator("table.dns-accounts").inner_text()
    assert do_fake.token not in page.content()
    assert duplicate_ids(page) == []
    assert_accessible(page)  # with a row and its delete button

    assert visit(page, f"{live_server.url}/sites/new") == []
    assert_accessible(page)
    page.get_by_label("Tenant").select_option(label="acme")
    page.get_by_label("Domain").fill("*.example.test")
    page.get_by_label("Type").select_option("static")
    page.get_by_label("DNS account").select_option(label="acme: zones (digitalocean)")
    _submit(page, "Create the site")
    site = Site.objects.get()
    assert (site.domain, site.dns_account.name) == ("*.example.test", "zones")
    assert "/operations/" in page.url

    assert visit(page, f"{live_server.url}/sites/{site.pk}/") == []
    row = page.locator("xpath=//tr[th[normalize-space()='DNS account']]")
    assert row.inner_text() == "DNS account\tzones (digitalocean): the certificate is issued over DNS-01"
    assert duplicate_ids(page) == []
    assert_accessible(page)
    screenshot(page, "site-detail-wildcard")

    assert follow(page, row.get_by_role("link", name="zones")) == []
    _submit(page, "Delete the DNS account zones of acme")
    assert _message(page) == "Sites still use this DNS account: *.example.test."
    assert DnsAccount.objects.filter(name="zones").exists()
    screenshot(page, "dns-accounts-refused-delete")
