"""Cloud accounts in the Django admin: the token is checked against the provider, stored
encrypted, never shown again; VPSes and the fleet key are read-only there."""

import pytest
from django.db import connection

from chom.models import AuditEvent
from devstack.clouds import DigitalOceanFake
from fleet.models import ProviderCredential, Vps

pytestmark = pytest.mark.django_db


@pytest.fixture
def do_fake():
    with DigitalOceanFake() as fake:
        yield fake


def _add(admin_client, fake, **extra):
    form = {"provider": "digitalocean", "token": fake.token, "base_url": fake.url, "default_region": "fra1"}
    return admin_client.post("/admin/fleet/providercredential/add/", form | extra)


def test_it_saves_a_cloud_account_whose_token_the_provider_accepts(admin_client, do_fake):
    response = _add(admin_client, do_fake, is_default="on")
    assert response.status_code == 302, response.content[:2000]
    credential = ProviderCredential.objects.get(provider="digitalocean")
    assert credential.token == do_fake.token and credential.is_default
    do_fake.assert_requested("GET", "/account")
    with connection.cursor() as cursor:
        cursor.execute("SELECT token FROM fleet_providercredential")
        assert do_fake.token not in cursor.fetchone()[0]  # encrypted at rest
    assert AuditEvent.objects.filter(action="cloud_account.saved").exists()
    page = admin_client.get(f"/admin/fleet/providercredential/{credential.pk}/change/").content.decode()
    assert do_fake.token not in page  # write-only


def test_it_refuses_a_token_the_provider_refuses_with_its_message(admin_client, do_fake):
    response = _add(admin_client, do_fake, token="not-the-token")
    assert response.status_code == 200
    assert "Unable to authenticate you" in response.content.decode()
    assert not ProviderCredential.objects.exists()


def test_it_keeps_the_stored_token_when_the_field_is_left_empty(admin_client, do_fake):
    _add(admin_client, do_fake)
    credential = ProviderCredential.objects.get()
    form = {"provider": "digitalocean", "token": "", "base_url": do_fake.url, "default_size": "s-2vcpu-4gb"}
    response = admin_client.post(f"/admin/fleet/providercredential/{credential.pk}/change/", form)
    assert response.status_code == 302
    credential.refresh_from_db()
    assert (credential.token, credential.default_size) == (do_fake.token, "s-2vcpu-4gb")


def test_it_shows_vpses_and_the_fleet_key_read_only(admin_client):
    vps = Vps.objects.create(name="web-1", provider="manual", ip_address="192.0.2.1")
    assert admin_client.get("/admin/fleet/vps/").status_code == 200
    assert admin_client.get("/admin/fleet/vps/add/").status_code == 403
    assert admin_client.post(f"/admin/fleet/vps/{vps.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Vps.objects.filter(pk=vps.pk).exists()
