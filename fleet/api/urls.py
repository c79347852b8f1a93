from django.urls import path

from fleet.api import views

urlpatterns = [
    path("vps", views.VpsListView.as_view(), name="api-vps-list"),
    path("vps/<int:pk>", views.VpsDetailView.as_view(), name="api-vps"),
    path("vps/<int:pk>/bootstrap", views.VpsBootstrapView.as_view(), name="api-vps-bootstrap"),
    path("fleet/key", views.FleetKeyView.as_view(), name="api-fleet-key"),
]
