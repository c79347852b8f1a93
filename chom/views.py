from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from chom import health, metrics, selectors
from chom.api.errors import error_body
from chom.http import bearer_matches, client_ip


@require_GET
def health_view(request):
    """Public: {"status", "checks": {name: "ok"|"down"}} (deploy.sh's canary reads it). Why a check
    is down (hosts, driver messages) only for staff or with METRICS_TOKEN, under "details"."""
    ok, checks = health.health_report()
    body = {
        "status": "ok" if ok else "down",
        "checks": {k: "ok" if v == "ok" else "down" for k, v in checks.items()},
    }
    if _privileged(request):
        body["details"] = checks
    return JsonResponse(body, status=200 if ok else 503)


def _privileged(request) -> bool:
    """Staff signed in, or METRICS_TOKEN: may read /metrics and /health's details."""
    staff = request.user.is_authenticated and request.user.is_staff
    return staff or bearer_matches(request, settings.METRICS_TOKEN)


def _metrics_allowed(request) -> bool:
    return _privileged(request) or client_ip(request) in settings.METRICS_ALLOWED_IPS


@require_GET
def metrics_view(request):
    if not _metrics_allowed(request):
        body = error_body("unauthenticated", "Send 'Authorization: Bearer <METRICS_TOKEN>'.")
        return JsonResponse(body, status=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
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
