"""Data migrations of the sites app, run for real: back to the state before, rows made with the
historical models, then forward."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def _migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
    # The state of every other app as it is now, with the sites app at TARGET.
    nodes = [node for node in executor.loader.graph.leaf_nodes() if node[0] != target[0]]
    return executor.loader.project_state([*nodes, target]).apps


@pytest.mark.django_db(transaction=True)
def test_it_gives_existing_laravel_sites_their_scheduler_and_queue_worker_as_rows():
    apps = _migrate(("sites", "0007_runtime_controls"))
    try:
        Tenant = apps.get_model("chom", "Tenant")
        Vps = apps.get_model("fleet", "Vps")
        Site = apps.get_model("sites", "Site")
        CronJob = apps.get_model("sites", "CronJob")
        tenant = Tenant.objects.create(name="Old", slug="old")
        vps = Vps.objects.create(name="old-vps", provider="local", ip_address="192.0.2.40")
        laravel = Site.objects.create(tenant=tenant, vps=vps, domain="old.example.com", type="laravel")
        kept = Site.objects.create(tenant=tenant, vps=vps, domain="kept.example.com", type="laravel")
        CronJob.objects.create(site=kept, schedule="*/5 * * * *", command=["php", "artisan", "schedule:run"])
        static = Site.objects.create(tenant=tenant, vps=vps, domain="s.example.com", type="static")
        gone = Site.objects.create(
            tenant=tenant, vps=vps, domain="gone.example.com", type="laravel", status="deleted"
        )

        apps = _migrate(("sites", "0008_laravel_defaults_as_rows"))
        CronJob, Worker = apps.get_model("sites", "CronJob"), apps.get_model("sites", "Worker")
        assert list(CronJob.objects.filter(site_id=laravel.pk).values_list("schedule", "command")) == [
            ("* * * * *", ["php", "artisan", "schedule:run"])
        ]
        assert Worker.objects.get(site_id=laravel.pk).command[:3] == ["php", "artisan", "queue:work"]
        # A site that already has its scheduler keeps its own schedule, not a second one.
        assert list(CronJob.objects.filter(site_id=kept.pk).values_list("schedule", flat=True)) == [
            "*/5 * * * *"
        ]
        assert not CronJob.objects.filter(site_id__in=[static.pk, gone.pk]).exists()
        assert not Worker.objects.filter(site_id__in=[static.pk, gone.pk]).exists()
    finally:
        _migrate(("sites", "0008_laravel_defaults_as_rows"))
