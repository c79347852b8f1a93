"""Endpoints for the monitoring stack (Prometheus service discovery, Alertmanager's webhook) and
the staff dashboard's alert page and chart data."""

import json

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from chom.api.errors import error_body
from chom.http import bearer_matches
from fleet import selectors as fleet_selectors
from observability import queries, selectors, services, targets
from observability.api.serializers import LogQuerySerializer, RangeSerializer
from sites import selectors as site_selectors


def _refused(setting: str) -> JsonResponse:
    return JsonResponse(
        error_body("unauthenticated", f"Send 'Authorization: Bearer <{setting}>'."),
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="chom"'},
    )


@require_GET
def sd_targets(request):
    """Prometheus http_sd_configs: every monitored VPS's exporters with their labels."""
    if not bearer_matches(request, settings.PROMETHEUS_SD_TOKEN):
        return _refused("PROMETHEUS_SD_TOKEN")
    return JsonResponse(targets.sd_target_groups(), safe=False)


@csrf_exempt
@require_POST
def alertmanager_webhook(request):
    if not bearer_matches(request, settings.ALERTMANAGER_WEBHOOK_TOKEN):
        return _refused("ALERTMANAGER_WEBHOOK_TOKEN")
    try:
        result = services.alertmanager_ingest(payload=json.loads(request.body))
    except (ValueError, services.InvalidPayload) as exc:
        return JsonResponse(error_body("invalid_input", str(exc)), status=400)
    return JsonResponse(
        {"created": result.created, "refreshed": result.refreshed, "resolved": result.resolved}
    )


@staff_member_required
def alert_list(request):
    status = request.GET.get("status", "firing")
    qs = selectors.alerts_visible(tenant=None, staff=True).prefetch_related("notifications")
    if status in ("firing", "resolved"):
        qs = qs.filter(status=status)
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    return render(request, "observability/alert_list.html", {"page": page, "status": status})


def _json(run, serializer_class, request) -> JsonResponse:
    params = serializer_class(data=request.GET)
    if not params.is_valid():
        return JsonResponse(
            error_body("invalid_input", "The request has invalid fields.", params.errors), status=400
        )
    return JsonResponse(run(params.validated_data))


@staff_member_required
def vps_metrics_json(request, pk: int):
    vps = get_object_or_404(fleet_selectors.vps_visible(staff=True), pk=pk)
    return _json(lambda p: queries.vps_metrics(vps=vps, range_name=p["range"]), RangeSerializer, request)


def _site(pk: int):
    return get_object_or_404(site_selectors.sites_visible(tenant=None, staff=True), pk=pk)


@staff_member_required
def site_metrics_json(request, pk: int):
    site = _site(pk)
    return _json(lambda p: queries.site_metrics(site=site, range_name=p["range"]), RangeSerializer, request)


@staff_member_required
def site_logs_json(request, pk: int):
    site = _site(pk)

    def run(p):
        return queries.site_logs(site=site, since=p["since"], text=p["query"], log=p["log"], limit=p["limit"])

    return _json(run, LogQuerySerializer, request)
