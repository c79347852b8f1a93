"""Every model an operator may need to inspect is in Django's admin; secrets never show there."""

import pytest
from django.apps import apps
from django.contrib import admin

pytestmark = pytest.mark.django_db

# Rows nobody inspects by hand: Django's and third-party bookkeeping.
NOT_INSPECTED = {
    "contenttypes",
    "sessions",
    "admin",
    "auth.permission",
    "axes",
    "otp_totp",
    "otp_static",
    "django_celery_beat",
}


def test_it_registers_every_model_of_ours_in_the_admin():
    missing = [
        model._meta.label_lower
        for model in apps.get_models()
        if model._meta.app_label not in NOT_INSPECTED
        and model._meta.label_lower not in NOT_INSPECTED
        and model._meta.app_label in {"chom", "fleet", "sites", "backups", "billing", "observability"}
        and model not in admin.site._registry
    ]
    assert missing == []


def test_it_never_shows_a_secret_on_an_admin_page(admin_client, alice):
    from fleet.models import FleetKey, Vps
    from fleet.services import fleet_key_get_or_create
    from sites.models import Site

    key = fleet_key_get_or_create()
    vps = Vps.objects.create(name="web-1", provider="manual", ip_address="192.0.2.1")
    site = Site.objects.create(
        tenant=alice.tenant,
        vps=vps,
        domain="a.example.com",
        type="php",
        db_password="s3cret-db-pw",
        app_key="k3y",
    )
    pages = [
        f"/admin/sites/site/{site.pk}/change/",
        f"/admin/fleet/fleetkey/{FleetKey.objects.get().pk}/change/",
        "/admin/sites/site/",
        "/admin/chom/apitoken/",
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        assert "s3cret-db-pw" not in body and key.private_key.splitlines()[1] not in body, url
