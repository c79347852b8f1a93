from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"

    def ready(self) -> None:
        # Registers the backup operation kinds, usage counters, gauges, checks and the final backup hook.
        from backups import checks, metrics, restore, services  # noqa: F401
