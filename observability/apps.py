from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"

    def ready(self) -> None:
        # Registers the bootstrap step "monitoring" and CHOM's alerting gauges.
        from observability import metrics, monitoring  # noqa: F401
