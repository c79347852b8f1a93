from django.db import migrations

QUEUE_WORKER = ["php", "artisan", "queue:work", "--sleep=3", "--tries=3", "--max-time=3600"]
SCHEDULER = ["php", "artisan", "schedule:run"]


def laravel_defaults_as_rows(apps, schema_editor):
    """Laravel sites created before cron jobs and workers were rows had their queue worker in
    supervisor and `schedule:run` in /etc/cron.d; their next deploy replaces both with the rows'
    systemd units, so the rows must exist or the scheduler and the queue would stop."""
    Site = apps.get_model("sites", "Site")
    CronJob = apps.get_model("sites", "CronJob")
    Worker = apps.get_model("sites", "Worker")
    for site in Site.objects.filter(type="laravel").exclude(status="deleted"):
        if not Worker.objects.filter(site=site, name="queue").exists():
            Worker.objects.create(site=site, name="queue", command=QUEUE_WORKER, processes=1)
        if not CronJob.objects.filter(site=site, command=SCHEDULER).exists():
            CronJob.objects.create(site=site, schedule="* * * * *", command=SCHEDULER)


class Migration(migrations.Migration):
    dependencies = [("sites", "0007_runtime_controls")]

    operations = [migrations.RunPython(laravel_defaults_as_rows, migrations.RunPython.noop)]
