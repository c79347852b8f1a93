from django.urls import path

from sites.api import deploy_keys, environment, uploads, views

urlpatterns = [
    path("sites", views.SiteListView.as_view(), name="api-sites"),
    path("sites/<int:pk>", views.SiteDetailView.as_view(), name="api-site"),
    path("sites/<int:pk>/deploy", views.SiteDeployView.as_view(), name="api-site-deploy"),
    path("sites/<int:pk>/rollback", views.SiteRollbackView.as_view(), name="api-site-rollback"),
    path("sites/<int:pk>/releases", uploads.SiteReleaseUploadView.as_view(), name="api-site-releases"),
    path("sites/<int:pk>/webhook", views.SiteWebhookView.as_view(), name="api-site-webhook"),
    path("sites/<int:pk>/deploy-key", deploy_keys.SiteDeployKeyView.as_view(), name="api-site-deploy-key"),
    path(
        "sites/<int:pk>/environment", environment.SiteEnvironmentView.as_view(), name="api-site-environment"
    ),
    path(
        "sites/<int:pk>/environment/reveal",
        environment.SiteEnvironmentRevealView.as_view(),
        name="api-site-environment-reveal",
    ),
    path("sites/<int:pk>/ssl", views.SiteSslView.as_view(), name="api-site-ssl"),
    path("sites/<int:pk>/suspend", views.SiteSuspendView.as_view(), name="api-site-suspend"),
    path("sites/<int:pk>/unsuspend", views.SiteUnsuspendView.as_view(), name="api-site-unsuspend"),
]
