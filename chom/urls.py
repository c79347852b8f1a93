from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from chom import audit_views, operation_views, two_factor, views

urlpatterns = [
    path("health", views.health_view, name="health"),
    path("metrics", views.metrics_view, name="metrics"),
    path("api/v1/", include("chom.api.urls")),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/2fa/", two_factor.two_factor, name="two-factor"),
    path("account/welcome/<uidb64>/<token>/", views.WelcomeView.as_view(), name="account-welcome"),
    path("account/tokens/", views.account_tokens, name="account-tokens"),
    path("account/tokens/<int:pk>/revoke/", views.account_token_revoke, name="account-token-revoke"),
    path("admin/", admin.site.urls),
    path("", views.dashboard, name="dashboard"),
    path("operations/", views.operation_list, name="operation-list"),
    path("operations/<uuid:pk>/", views.operation_detail, name="operation-detail"),
    path("operations/<uuid:pk>/live", operation_views.operation_live, name="operation-live"),
    path("operations/<uuid:pk>/cancel", operation_views.operation_cancel, name="operation-cancel"),
    path("operations/<uuid:pk>/retry", operation_views.operation_retry, name="operation-retry"),
    path("audit/", audit_views.audit_log, name="audit-log"),
    path("tenants/", views.tenant_list, name="tenant-list"),
    path("tenants/<slug:slug>/", views.tenant_detail, name="tenant-detail"),
    path("tenants/<slug:slug>/tier/", views.tenant_tier, name="tenant-tier"),
    path("tenants/<slug:slug>/suspend/", views.tenant_suspend, name="tenant-suspend"),
    path("tenants/<slug:slug>/unsuspend/", views.tenant_unsuspend, name="tenant-unsuspend"),
    path("tenants/<slug:slug>/members/", views.tenant_member_add, name="tenant-member-add"),
    path("tenants/<slug:slug>/members/<int:pk>/role/", views.tenant_member_role, name="tenant-member-role"),
    path(
        "tenants/<slug:slug>/members/<int:pk>/remove/",
        views.tenant_member_remove,
        name="tenant-member-remove",
    ),
    path(
        "tenants/<slug:slug>/members/<int:pk>/invite/",
        views.tenant_member_invite,
        name="tenant-member-invite",
    ),
    path("tenants/<slug:slug>/tokens/", views.tenant_token_create, name="tenant-token-create"),
    path(
        "tenants/<slug:slug>/tokens/<int:pk>/revoke/", views.tenant_token_revoke, name="tenant-token-revoke"
    ),
    path("fleet/", include("fleet.urls")),
    path("sites/", include("sites.urls")),
    path("webhooks/git/", include("sites.webhooks")),
    path("backups/", include("backups.urls")),
    path("", include("billing.urls")),
    path("", include("observability.urls")),
]

handler404 = "chom.api.errors.json_not_found"
handler500 = "chom.api.errors.json_server_error"
