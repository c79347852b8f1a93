"""Everything under /api/v1/. Each app adds its own routes here."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from chom.api import views
from chom.api.errors import api_not_found

urlpatterns = [
    path("tenant", views.TenantView.as_view(), name="api-tenant"),
    path("tokens", views.TokenListView.as_view(), name="api-tokens"),
    path("tokens/<int:pk>", views.TokenDetailView.as_view(), name="api-token"),
    path("operations", views.OperationListView.as_view(), name="api-operations"),
    path("operations/<uuid:pk>", views.OperationDetailView.as_view(), name="api-operation"),
    path(
        "schema",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
        name="api-schema",
    ),
    path("", include("fleet.api.urls")),
    path("", include("sites.api.urls")),
    path("", include("backups.api.urls")),
    path("", include("observability.api.urls")),
    path("", include("billing.api.urls")),
    path(
        "docs",
        SpectacularSwaggerView.as_view(
            url_name="api-schema", authentication_classes=[], permission_classes=[]
        ),
        name="api-docs",
    ),
    # Last: any other path under /api/v1/ is a JSON 404 in the error shape, whatever DEBUG says.
    re_path(r"^", api_not_found, name="api-not-found"),
]
