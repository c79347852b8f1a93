import hmac

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.http import HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from chom import health, metrics, selectors


@require_GET
def health_view(request):
    ok, checks = health.health_report()
    return JsonResponse({"status": "ok" if ok else "down", "checks": checks}, status=200 if ok else 503)


def _metrics_allowed(request) -> bool:
    if request.user.is_authenticated and request.user.is_staff:
        return True
    token = settings.METRICS_TOKEN
    auth = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(auth, f"Bearer {token}"):
        return True
    return request.META.get("REMOTE_ADDR") in settings.METRICS_ALLOWED_IPS


@require_GET
def metrics_view(request):
    if not _metrics_allowed(request):
        return HttpResponseForbidden("metrics are for staff, the configured token or allowed IPs")
    return HttpResponse(metrics.render(), content_type="text/plain; version=0.0.4")


@staff_member_required
def dashboard(request):
    ok, checks = health.health_report()
    ops = selectors.operations_visible(tenant=None, staff=True)[:10]
    return render(request, "chom/dashboard.html", {"checks": checks, "healthy": ok, "operations": ops})


@staff_member_required
def operation_list(request):
    qs = selectors.operations_visible(tenant=None, staff=True)
    status = request.GET.get("status")
    if status:
        qs = qs.filter(status=status)
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    return render(request, "chom/operation_list.html", {"page": page, "status": status})


@staff_member_required
def operation_detail(request, pk):
    op = get_object_or_404(selectors.operations_visible(tenant=None, staff=True), pk=pk)
    return render(request, "chom/operation_detail.html", {"op": op})
