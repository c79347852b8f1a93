"""Endpoints for the monitoring stack (Prometheus service discovery, Alertmanager's webhook,
Promtail's log pushes) and the staff dashboard's alert page and chart data."""

import json

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from chom.api.errors import error_body
from chom.http import bearer_matches
from fleet import selectors as fleet_selectors
from observability import log_shipping, queries, selectors, services, targets
from observability.api.serializers import LogQuerySerializer, RangeSerializer
from observability.clients import ServiceError
from sites import selectors as site_selectors

# Loki's answers Promtail must see as they are: 400 drops a batch Loki will never take, 429 backs off.
LOKI_PUSH_REFUSALS = {400: "invalid_input", 429: "rate_limited"}


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


@csrf_exempt
@require_POST
def loki_push(request):
    """Promtail's push API (`POST /loki/api/v1/push`) for the fleet: the VPS's own bearer token,
    the body passed to Loki unchanged, into that VPS's tenant. Loki's 400 (a batch it will never
    take) and 429 reach Promtail as such; Loki down or failing is a 503 Promtail retries."""
    vps_id = log_shipping.log_push_vps_id(authorization=request.headers.get("Authorization", ""))
    if vps_id is None:
        return _refused("the VPS's log-shipping token")
    limit = settings.LOKI_PUSH_MAX_BYTES
    body = request.read(limit + 1)  # not request.body: its cap is DATA_UPLOAD_MAX_MEMORY_SIZE
    if len(body) > limit:
        return JsonResponse(error_body("too_large", f"A push carries at most {limit} bytes."), status=413)
    try:
        log_shipping.log_push_forward(
            vps_id=vps_id,
            body=body,
            content_type=request.headers.get("Content-Type") or "application/x-protobuf",
            content_encoding=request.headers.get("Content-Encoding", ""),
        )
    except ServiceError as exc:  # Loki refused, is down, or LOKI_URL is unset
        status = exc.status if exc.status in LOKI_PUSH_REFUSALS else 503
        return JsonResponse(
            error_body(LOKI_PUSH_REFUSALS.get(status, exc.api_code), exc.message), status=status
        )
    return HttpResponse(status=204)


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
