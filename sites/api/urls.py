from django.urls import path

from sites.api import cron_jobs, deploy_keys, dns_accounts, environment, runtime, uploads, views, workers

urlpatterns = [
    path("dns-accounts", dns_accounts.DnsAccountListView.as_view(), name="api-dns-accounts"),
    path("dns-accounts/<int:pk>", dns_accounts.DnsAccountDetailView.as_view(), name="api-dns-account"),
    path("sites", views.SiteListView.as_view(), name="api-sites"),
    path("sites/<int:pk>", views.SiteDetailView.as_view(), name="api-site"),
    path("sites/<int:pk>/deploy", views.SiteDeployView.as_view(), name="api-site-deploy"),
    path("sites/<int:pk>/rollback", views.SiteRollbackView.as_view(), name="api-site-rollback"),
    path("sites/<int:pk>/releases", uploads.SiteReleaseUploadView.as_view(), name="api-site-releases"),
    path("sites/<int:pk>/webhook", views.SiteWebhookView.as_view(), name="api-site-webhook"),
    path("sites/<int:pk>/deploy-key", deploy_keys.SiteDeployKeyView.as_view(), name="api-site-deploy-key"),
    path(
        "sites/<int:pk>/git-host-key", deploy_keys.SiteGitHostKeyView.as_view(), name="api-site-git-host-key"
    ),
    path(
        "sites/<int:pk>/environment", environment.SiteEnvironmentView.as_view(), name="api-site-environment"
    ),
    path(
        "sites/<int:pk>/environment/reveal",
        environment.SiteEnvironmentRevealView.as_view(),
        name="api-site-environment-reveal",
    ),
    path("sites/<int:pk>/redirects", runtime.SiteRedirectsView.as_view(), name="api-site-redirects"),
    path(
        "sites/<int:pk>/redirects/<int:redirect_id>",
        runtime.SiteRedirectView.as_view(),
        name="api-site-redirect",
    ),
    path("sites/<int:pk>/headers", runtime.SiteHeadersView.as_view(), name="api-site-headers"),
    path("sites/<int:pk>/headers/<int:header_id>", runtime.SiteHeaderView.as_view(), name="api-site-header"),
    path("sites/<int:pk>/basic-auth", runtime.SiteBasicAuthView.as_view(), name="api-site-basic-auth"),
    path(
        "sites/<int:pk>/basic-auth/<int:user_id>",
        runtime.SiteBasicAuthUserView.as_view(),
        name="api-site-basic-auth-user",
    ),
    path("sites/<int:pk>/php-settings", runtime.SitePhpSettingsView.as_view(), name="api-site-php-settings"),
    path("sites/<int:pk>/workers", workers.SiteWorkerListView.as_view(), name="api-site-workers"),
    path(
        "sites/<int:pk>/workers/<int:worker_id>",
        workers.SiteWorkerDetailView.as_view(),
        name="api-site-worker",
    ),
    path("sites/<int:pk>/cron-jobs", cron_jobs.SiteCronJobListView.as_view(), name="api-site-cron-jobs"),
    path(
        "sites/<int:pk>/cron-jobs/<int:job_id>",
        cron_jobs.SiteCronJobDetailView.as_view(),
        name="api-site-cron-job",
    ),
    path("sites/<int:pk>/ssl", views.SiteSslView.as_view(), name="api-site-ssl"),
    path("sites/<int:pk>/suspend", views.SiteSuspendView.as_view(), name="api-site-suspend"),
    path("sites/<int:pk>/unsuspend", views.SiteUnsuspendView.as_view(), name="api-site-unsuspend"),
]
