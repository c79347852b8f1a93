from django.urls import path

from sites import dns_account_views, runtime_views, views

urlpatterns = [
    path("", views.site_list, name="site-list"),
    path("new", views.site_create, name="site-create"),
    path("dns-accounts/", dns_account_views.dns_account_list, name="dns-account-list"),
    path("dns-accounts/new", dns_account_views.dns_account_create, name="dns-account-create"),
    path("dns-accounts/<int:pk>/delete", dns_account_views.dns_account_delete, name="dns-account-delete"),
    path("<int:pk>/", views.site_detail, name="site-detail"),
    path("<int:pk>/deploy", views.site_deploy, name="site-deploy"),
    path("<int:pk>/rollback", views.site_rollback, name="site-rollback"),
    path("<int:pk>/ssl", views.site_ssl, name="site-ssl"),
    path("<int:pk>/suspend", views.site_suspend, name="site-suspend"),
    path("<int:pk>/unsuspend", views.site_unsuspend, name="site-unsuspend"),
    path("<int:pk>/delete", views.site_delete, name="site-delete"),
    # runtime controls (sites/runtime_views.py): POST actions on the site's page
    path("<int:pk>/cron-jobs/new", runtime_views.cron_job_create, name="site-cron-job-create"),
    path(
        "<int:pk>/cron-jobs/<int:job_id>/enabled",
        runtime_views.cron_job_enabled,
        name="site-cron-job-enabled",
    ),
    path(
        "<int:pk>/cron-jobs/<int:job_id>/delete", runtime_views.cron_job_delete, name="site-cron-job-delete"
    ),
    path("<int:pk>/workers/new", runtime_views.worker_create, name="site-worker-create"),
    path(
        "<int:pk>/workers/<int:worker_id>/enabled", runtime_views.worker_enabled, name="site-worker-enabled"
    ),
    path("<int:pk>/workers/<int:worker_id>/delete", runtime_views.worker_delete, name="site-worker-delete"),
    path("<int:pk>/redirects/new", runtime_views.redirect_create, name="site-redirect-create"),
    path(
        "<int:pk>/redirects/<int:redirect_id>/delete",
        runtime_views.redirect_delete,
        name="site-redirect-delete",
    ),
    path("<int:pk>/headers/new", runtime_views.header_create, name="site-header-create"),
    path("<int:pk>/headers/<int:header_id>/delete", runtime_views.header_delete, name="site-header-delete"),
    path("<int:pk>/basic-auth/new", runtime_views.basic_auth_set, name="site-basic-auth-set"),
    path(
        "<int:pk>/basic-auth/<int:user_id>/delete",
        runtime_views.basic_auth_delete,
        name="site-basic-auth-delete",
    ),
    path("<int:pk>/php-settings", runtime_views.php_settings_update, name="site-php-settings"),
]
