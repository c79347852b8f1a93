"""Endpoints for the monitoring stack (Prometheus service discovery, Alertmanager's webhook,
Promtail's log pushes) and the staff dashboard's alert page and chart data."""

import json

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from chom.api.errors import error_body
from chom.errors import ApplicationError
from chom.http import bearer_matches, client_ip
from fleet import selectors as fleet_selectors
from observability import log_shipping, queries, selectors, services, targets
from observability.api.serializers import LogQuerySerializer, RangeSerializer
from observability.clients import ServiceError
from observability.forms import AlertFilterForm, SilenceForm
from observability.models import Alert
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


@require_GET
def sd_probes(request):
    """Prometheus http_sd_configs for the blackbox exporter: every serving site's URLs."""
    if not bearer_matches(request, settings.PROMETHEUS_SD_TOKEN):
        return _refused("PROMETHEUS_SD_TOKEN")
    return JsonResponse(targets.probe_target_groups(), safe=False)


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


def _alert_page(request, *, status: str, template: str, order: str):
    form = AlertFilterForm(request.GET)
    qs = selectors.alerts_filtered(
        selectors.alerts_visible(tenant=None, staff=True), status=status, **form.filters()
    )
    page = Paginator(qs.order_by(order, "-pk").prefetch_related("notifications"), 50).get_page(
        request.GET.get("page")
    )
    query = request.GET.copy()
    query.pop("page", None)
    silenceable = status != "resolved" and any(a.is_firing and a.is_silenceable for a in page.object_list)
    listing = selectors.silences_listed() if silenceable else selectors.SilenceListing()
    rows = [(alert, listing.muting(alert)) for alert in page.object_list]
    context = {
        "page": page,
        "rows": rows,
        "status": status,
        "form": form,
        "query": query.urlencode(),
        "silence_problem": listing.problem,
    }
    return render(request, template, context)


@staff_member_required
def alert_list(request):
    """Current alerts with their actions; ?status=resolved|all widens it."""
    status = request.GET.get("status", "firing")
    status = status if status in ("firing", "resolved") else ""
    return _alert_page(request, status=status, template="observability/alert_list.html", order="-started_at")


@staff_member_required
def alert_history(request):
    """Resolved alerts, the latest first, with who acknowledged them and how long they lasted."""
    return _alert_page(
        request,
        status=Alert.Status.RESOLVED,
        template="observability/alert_history.html",
        order="-resolved_at",
    )


@staff_member_required
def alert_detail(request, pk: int):
    alert = get_object_or_404(selectors.alerts_visible(tenant=None, staff=True), pk=pk)
    listing = selectors.silences_listed() if alert.is_silenceable else selectors.SilenceListing()
    context = {
        "alert": alert,
        "silences": listing.muting(alert),
        "silence_problem": listing.problem,
        "notifications": alert.notifications.all(),
    }
    return render(request, "observability/alert_detail.html", context)


def _back(request, fallback: str, *args):
    """To the page the form was on (its `next` field), or FALLBACK."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect(fallback, *args)


@staff_member_required
@require_POST
def alert_acknowledge(request, pk: int):
    alert = get_object_or_404(selectors.alerts_visible(tenant=None, staff=True), pk=pk)
    services.alert_acknowledge(alert=alert, actor=request.user, source_ip=client_ip(request))
    messages.success(request, f"{alert.name} acknowledged.")
    return _back(request, "observability-alert", alert.pk)


@staff_member_required
@require_POST
def alert_silence(request, pk: int):
    alert = get_object_or_404(selectors.alerts_visible(tenant=None, staff=True), pk=pk)
    form = SilenceForm(request.POST)
    if not form.is_valid():
        raise ApplicationError(400, "invalid_input", "Give the silence a duration.", form.errors)
    services.alert_silence(
        alert=alert,
        duration=form.duration(),
        comment=form.cleaned_data["comment"],
        actor=request.user,
        source_ip=client_ip(request),
    )
    amount, unit = form.cleaned_data["amount"], form.cleaned_data["unit"]
    messages.success(request, f"{alert.name} silenced for {amount} {unit}.")
    return _back(request, "observability-alert", alert.pk)


SILENCE_STATES = {"": ("active", "pending"), "expired": ("expired",), "all": ("active", "pending", "expired")}


@staff_member_required
def silence_list(request):
    state = request.GET.get("state", "")
    states = SILENCE_STATES.get(state, SILENCE_STATES[""])
    listing = selectors.silences_listed(states=states)
    return render(request, "observability/silence_list.html", {"listing": listing, "state": state})


@staff_member_required
@require_POST
def silence_expire(request, silence_id):
    services.silence_expire(silence_id=str(silence_id), actor=request.user, source_ip=client_ip(request))
    messages.success(request, f"Silence {silence_id} expired.")
    return _back(request, "observability-silences")


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
