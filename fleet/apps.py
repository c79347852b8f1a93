from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "fleet"

    def ready(self) -> None:
        from fleet import services  # noqa: F401 - registers the fleet's operation kinds
