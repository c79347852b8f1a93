from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self) -> None:
        # Registers the billing.process_event operation kind, the usage counters and system checks.
        from billing import checks, services  # noqa: F401
