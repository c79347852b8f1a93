from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"

    def ready(self) -> None:
        # Registers the bootstrap step "monitoring", CHOM's alerting gauges, the alert backend and
        # the audit log's links; the tenants' notification channels receive core's site events.
        from chom.alerts import register_alerts
        from chom.events import register_events
        from observability import audit_targets, metrics, monitoring  # noqa: F401
        from observability.notifications import event_notify
        from observability.services import alert_raise, alert_resolve

        register_alerts(raise_=alert_raise, resolve=alert_resolve)
        register_events(emit=event_notify)
