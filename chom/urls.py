from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from chom import two_factor, views

urlpatterns = [
    path("health", views.health_view, name="health"),
    path("metrics", views.metrics_view, name="metrics"),
    path("api/v1/", include("chom.api.urls")),
    path("login/", auth_views.LoginView.as_view(template_name="chom/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/2fa/", two_factor.two_factor, name="two-factor"),
    path("admin/", admin.site.urls),
    path("", views.dashboard, name="dashboard"),
    path("operations/", views.operation_list, name="operation-list"),
    path("operations/<uuid:pk>/", views.operation_detail, name="operation-detail"),
    path("fleet/", include("fleet.urls")),
    path("sites/", include("sites.urls")),
    path("backups/", include("backups.urls")),
    path("", include("billing.urls")),
    path("", include("observability.urls")),
]

handler404 = "chom.api.errors.json_not_found"
handler500 = "chom.api.errors.json_server_error"
