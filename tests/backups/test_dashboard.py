import pytest
from django.template import Context, Template

from backups.models import Backup
from chom.models import Operation
from fleet.models import Vps
from sites.models import Site


@pytest.fixture
def site(alice):
    vps = Vps.objects.create(name="web-1", provider="manual", ip_address="192.0.2.10", status="active")
    return Site.objects.create(tenant=alice.tenant, vps=vps, domain="shop.example.com", type="static",
                               status="active", unix_user="site1")  # fmt: skip


def test_the_site_panel_lists_backups_with_restore_and_verify_buttons(site):
    done = Backup.objects.create(site=site, status="succeeded", size_bytes=2048)
    Backup.objects.create(site=site, status="failed", error="S3 upload failed: timeout")
    html = Template("{% load backups_tags %}{% site_backups site %}").render(Context({"site": site}))
    assert f"/backups/{done.pk}/restore" in html and f"/backups/{done.pk}/verify" in html
    assert "S3 upload failed: timeout" in html and "2.0\xa0KB" in html


def test_staff_can_queue_a_restore_from_the_dashboard(client, site, s3):
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_user("root@chom.test", "root@chom.test", "pw", is_staff=True)
    client.force_login(admin)
    done = Backup.objects.create(site=site, status="succeeded", artefacts={"files": {"key": "k"}})
    response = client.post(f"/backups/{done.pk}/restore")
    op = Operation.objects.get(kind="backup.restore")
    assert response.status_code == 302 and response["Location"] == f"/operations/{op.id}/"
    assert client.get(f"/backups/{done.pk}/").status_code == 200


def test_a_refused_dashboard_action_goes_back_to_its_page_with_the_reason(client, site, settings):
    """No S3 configured: the service refuses, the dashboard shows why (no 500, no try/except in views)."""
    from django.contrib.auth import get_user_model

    settings.S3_BUCKET = ""
    admin = get_user_model().objects.create_user("root@chom.test", "root@chom.test", "pw", is_staff=True)
    client.force_login(admin)
    page = f"http://testserver/sites/{site.pk}/"
    response = client.post(f"/backups/sites/{site.pk}/create", HTTP_REFERER=page)
    assert response.status_code == 302 and response["Location"] == page
    assert not Operation.objects.filter(kind="backup.run").exists()
    shown = [str(m) for m in client.get(page).context["messages"]]
    assert shown == ["Backups are not configured on this installation."]
