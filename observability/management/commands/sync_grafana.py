from django.core.management.base import BaseCommand, CommandError

from observability.clients import ServiceError
from observability.dashboards import grafana_sync


class Command(BaseCommand):
    help = "Create or update CHOM's Grafana folders and dashboards (fleet, VPSes, sites)."

    def handle(self, *args, **options):
        try:
            result = grafana_sync()
        except ServiceError as exc:
            raise CommandError(str(exc))
        for uid in result.changed:
            self.stdout.write(f"updated {uid}")
        self.stdout.write(f"{len(result.changed)} changed, {result.unchanged} unchanged")
