"""The workers API: a site's long-running commands (sites/workers.py). Reads show the state last
read from the VPS, read again first when stale; every change answers 202 with the operation that
applies the site's whole set on the VPS."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from chom.api.permissions import is_staff_request
from chom.api.serializers import OperationRefSerializer
from chom.http import client_ip
from sites import workers
from sites.api.views import _scoped
from sites.models import Worker


class LastExitSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=["exit", "signal"], help_text="exit code, or the signal it died of"
    )
    status = serializers.IntegerField()


class WorkerProcessSerializer(serializers.Serializer):
    process = serializers.IntegerField()
    state = serializers.CharField(help_text="systemd's ActiveState: active, activating, failed...")
    pid = serializers.IntegerField(help_text="0 when not running")
    restarts = serializers.IntegerField(help_text="automatic restarts by systemd")
    last_exit = LastExitSerializer(allow_null=True)


class WorkerStatusSerializer(serializers.Serializer):
    state = serializers.ChoiceField(
        choices=["unknown", "running", "degraded", "down", "stopping", "stopped", "suspended"],
        help_text="suspended: the site is suspended, so its workers are kept stopped",
    )
    running = serializers.IntegerField(help_text="processes running")
    restarts = serializers.IntegerField(help_text="automatic restarts (after a crash or a kill)")
    last_exit = LastExitSerializer(allow_null=True)
    processes = WorkerProcessSerializer(many=True)
    checked_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(help_text="why the last reading failed, or empty")


def _status(worker: Worker) -> dict:
    status = worker.status or {}
    return {
        "state": workers.worker_state(worker),
        "running": status.get("running", 0),
        "restarts": status.get("restarts", 0),
        "last_exit": status.get("last_exit"),
        "processes": status.get("instances", []),
        "checked_at": worker.status_checked_at,
        "error": status.get("error", ""),
    }


class WorkerSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()

    class Meta:
        model = Worker
        fields = [
            "id",
            "name",
            "command",
            "processes",
            "restart",
            "enabled",
            "created_at",
            "updated_at",
            "status",
        ]

    @extend_schema_field(WorkerStatusSerializer)
    def get_status(self, worker: Worker) -> dict:
        return WorkerStatusSerializer(_status(worker)).data


def _argument(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise serializers.ValidationError("Arguments may not contain line breaks.")
    return value


class WorkerWriteSerializer(serializers.Serializer):
    name = serializers.RegexField(
        r"^[a-z][a-z0-9-]{0,39}$",
        max_length=40,
        help_text="lower-case letters, digits and -, starting with a letter",
    )
    command = serializers.ListField(
        child=serializers.CharField(
            max_length=workers.MAX_ARG_CHARS, trim_whitespace=False, validators=[_argument]
        ),
        min_length=1,
        max_length=workers.MAX_ARGS,
        help_text="argv, run as the site user in current/ (never through a shell)",
    )
    processes = serializers.IntegerField(min_value=1, max_value=1000, default=1)
    restart = serializers.ChoiceField(choices=Worker.Restart.choices, default=Worker.Restart.ALWAYS)
    enabled = serializers.BooleanField(default=True)

    def validate_command(self, value: list[str]) -> list[str]:
        problem = workers.command_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


class WorkerAcceptedSerializer(WorkerSerializer):
    operation = OperationRefSerializer(read_only=True)

    class Meta(WorkerSerializer.Meta):
        fields = [*WorkerSerializer.Meta.fields, "operation"]


OperationAcceptedSerializer = inline_serializer(
    "WorkerOperationAccepted", fields={"operation": OperationRefSerializer()}
)


def _site(request, pk: int):
    return get_object_or_404(_scoped(request), pk=pk)


def _tenant_request(request) -> bool:
    return not is_staff_request(request)


def _accepted(worker: Worker, op) -> Response:
    body = WorkerSerializer(worker).data | {"operation": OperationRefSerializer(op).data}
    return Response(body, status=status.HTTP_202_ACCEPTED)


class SiteWorkerListView(generics.ListAPIView):
    """GET lists the site's workers (their state read again from the VPS when stale); POST adds
    one (202: the operation that starts it)."""

    serializer_class = WorkerSerializer

    def get_queryset(self):
        site = _site(self.request, self.kwargs["pk"])
        if self.request.method == "GET":
            workers.workers_status_refresh(site=site)
        return workers.site_workers(site=site)

    @extend_schema(request=WorkerWriteSerializer, responses={202: WorkerAcceptedSerializer})
    def post(self, request, pk: int):
        site = _site(request, pk)
        data = WorkerWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        worker, op = workers.worker_create(
            site=site,
            actor=request.user,
            source_ip=client_ip(request),
            requested_by_tenant=_tenant_request(request),
            **data.validated_data,
        )
        return _accepted(worker, op)


class SiteWorkerDetailView(APIView):
    """GET one worker (state refreshed when stale); PATCH changes it, DELETE removes it (202)."""

    def _worker(self, request, pk: int, worker_id: int) -> Worker:
        return workers.worker_of_site(site=_site(request, pk), worker_id=worker_id)

    @extend_schema(responses=WorkerSerializer)
    def get(self, request, pk: int, worker_id: int):
        site = _site(request, pk)
        workers.worker_of_site(site=site, worker_id=worker_id)
        workers.workers_status_refresh(site=site)
        return Response(WorkerSerializer(workers.worker_of_site(site=site, worker_id=worker_id)).data)

    @extend_schema(request=WorkerWriteSerializer(partial=True), responses={202: WorkerAcceptedSerializer})
    def patch(self, request, pk: int, worker_id: int):
        worker = self._worker(request, pk, worker_id)
        data = WorkerWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        op = workers.worker_update(
            worker=worker,
            actor=request.user,
            source_ip=client_ip(request),
            requested_by_tenant=_tenant_request(request),
            **data.validated_data,
        )
        return _accepted(worker, op)

    @extend_schema(request=None, responses={202: OperationAcceptedSerializer})
    def delete(self, request, pk: int, worker_id: int):
        worker = self._worker(request, pk, worker_id)
        op = workers.worker_delete(
            worker=worker,
            actor=request.user,
            source_ip=client_ip(request),
            requested_by_tenant=_tenant_request(request),
        )
        return Response({"operation": OperationRefSerializer(op).data}, status=status.HTTP_202_ACCEPTED)
