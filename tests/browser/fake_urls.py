"""A URL configuration with one route of each kind, for test_routes.py."""

from django.http import Http404, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.decorators.http import require_POST


def _page(request, **kwargs):
    return HttpResponse("<!doctype html><title>page</title><h1>page</h1>")


def _widget(request, pk):
    raise Http404("no such widget")


def _crash(request):
    return HttpResponse("<h1>Server error</h1>", status=500)


urlpatterns = [
    path("", _page, name="home"),
    path("things/<slug:slug>/", _page, name="tenant-detail"),
    path("things/<slug:slug>/go", require_POST(_page), name="tenant-go"),
    path(
        "things/<slug:slug>/stats.json",
        lambda request, slug: JsonResponse({}, status=503),
        name="tenant-stats",
    ),
    path("widgets/<int:pk>/", _widget, name="widget-detail"),
    path("crash/", _crash, name="crash"),
    path("api/v1/", _page, name="api-root"),
    path("nested/", include(([path("<int:site_pk>/", _page, name="site-backups")], "ns"))),
]
