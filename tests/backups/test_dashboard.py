import pytest
from django.template import Context, Template

from backups.models import Backup
from chom.models import Operation
from fleet.models import Vps
from sites.models import Site

pytestmark = pytest.mark.urls("tests.backups.urls")


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
