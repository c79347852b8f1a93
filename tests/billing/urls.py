"""The project's routes plus billing's, until chom/urls.py includes them."""

from django.urls import include, path

from chom.urls import handler404, handler500  # noqa: F401
from chom.urls import urlpatterns as chom_urlpatterns

urlpatterns = [
    path("api/v1/", include("billing.api.urls")),
    path("", include("billing.urls")),
    *chom_urlpatterns,
]
