from django.urls import path

from observability.api import views

urlpatterns = [
    path("sites/<int:pk>/metrics", views.SiteMetricsView.as_view(), name="api-site-metrics"),
    path("sites/<int:pk>/logs", views.SiteLogsView.as_view(), name="api-site-logs"),
    path("sites/<int:pk>/uptime", views.SiteUptimeView.as_view(), name="api-site-uptime"),
    path("vps/<int:pk>/metrics", views.VpsMetricsView.as_view(), name="api-vps-metrics"),
    path("alerts", views.AlertListView.as_view(), name="api-alerts"),
    path("alerts/<int:pk>", views.AlertDetailView.as_view(), name="api-alert"),
    path("notification-channels", views.ChannelListView.as_view(), name="api-notification-channels"),
    path(
        "notification-channels/<int:pk>", views.ChannelDetailView.as_view(), name="api-notification-channel"
    ),
    path(
        "notification-channels/<int:pk>/test",
        views.ChannelTestView.as_view(),
        name="api-notification-channel-test",
    ),
]
