"""Mounted at the site root: the paths are the ones Prometheus, Alertmanager and each VPS's Promtail
are configured with."""

from django.urls import path

from observability import views

urlpatterns = [
    path("observability/sd/targets", views.sd_targets, name="observability-sd-targets"),
    path("observability/sd/probes", views.sd_probes, name="observability-sd-probes"),
    path("webhooks/alertmanager", views.alertmanager_webhook, name="observability-alertmanager-webhook"),
    path("observability/loki/api/v1/push", views.loki_push, name="observability-loki-push"),
    path("observability/alerts/", views.alert_list, name="observability-alerts"),
    path("observability/alerts/history/", views.alert_history, name="observability-alert-history"),
    path("observability/alerts/<int:pk>/", views.alert_detail, name="observability-alert"),
    path(
        "observability/alerts/<int:pk>/acknowledge",
        views.alert_acknowledge,
        name="observability-alert-acknowledge",
    ),
    path("observability/alerts/<int:pk>/silence", views.alert_silence, name="observability-alert-silence"),
    path("observability/silences/", views.silence_list, name="observability-silences"),
    path(
        "observability/silences/<uuid:silence_id>/expire",
        views.silence_expire,
        name="observability-silence-expire",
    ),
    path("observability/vps/<int:pk>/metrics.json", views.vps_metrics_json, name="observability-vps-metrics"),
    path(
        "observability/sites/<int:pk>/metrics.json",
        views.site_metrics_json,
        name="observability-site-metrics",
    ),
    path("observability/sites/<int:pk>/logs.json", views.site_logs_json, name="observability-site-logs"),
]
