from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"

    def ready(self) -> None:
        # Registers the backup operation kinds, the storage usage counter and the system checks.
        from backups import checks, services  # noqa: F401
