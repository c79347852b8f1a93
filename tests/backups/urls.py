"""CHOM's URLs plus the backups dashboard, as the lead wires them into chom/urls.py."""

from django.urls import include, path

from chom.urls import urlpatterns as chom_urlpatterns

urlpatterns = [path("backups/", include("backups.urls")), *chom_urlpatterns]
