"""The site page lists the site's cron jobs with their last run and exit code (staff)."""

from django.test import Client
from django.utils import timezone

from fleet.models import Vps
from sites.models import CronJob, Site


def test_it_lists_cron_jobs_with_their_last_run_escaped(admin_user, alice, db):
    vps = Vps.objects.create(name="web-1", provider="manual", ip_address="192.0.2.10", status="active")
    site = Site.objects.create(tenant=alice.tenant, vps=vps, domain="shop.example.com", type="php")
    CronJob.objects.create(
        site=site,
        schedule="*/5 * * * *",
        command=["php", "artisan", "report"],
        last_run_at=timezone.now(),
        last_exit_code=3,
        last_output="<script>alert(1)</script> failed",
    )
    CronJob.objects.create(site=site, schedule="@daily", command=["true"], enabled=False)
    client = Client()
    client.force_login(admin_user)
    page = client.get(f"/sites/{site.pk}/").content.decode()
    assert '<h2 id="cron-jobs">Cron jobs</h2>' in page
    assert "<code>*/5 * * * *</code>" in page and "php artisan report" in page
    assert '<span class="status failed">3</span>' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; failed" in page and "<script>alert(1)" not in page
    assert "<code>@daily</code>" in page and "never" in page


def test_it_says_when_a_site_has_no_cron_jobs(admin_user, alice, db):
    vps = Vps.objects.create(name="web-1", provider="manual", ip_address="192.0.2.10", status="active")
    site = Site.objects.create(tenant=alice.tenant, vps=vps, domain="shop.example.com", type="static")
    client = Client()
    client.force_login(admin_user)
    assert "No cron jobs." in client.get(f"/sites/{site.pk}/").content.decode()
