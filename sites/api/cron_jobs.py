"""The cron jobs API: a site's scheduled commands (sites/cron_jobs.py). Reads show the last run as
last read from the VPS, read again first when stale; every change answers 202 with the operation
that applies the site's whole set on the VPS."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from chom.api.permissions import is_staff_request
from chom.api.serializers import OperationRefSerializer
from chom.http import client_ip
from sites import cron, cron_jobs
from sites.api.views import _scoped
from sites.models import CronJob


class CronJobSerializer(serializers.ModelSerializer):
    on_calendar = serializers.SerializerMethodField(
        help_text="the systemd OnCalendar= expressions the schedule runs as on the VPS"
    )

    class Meta:
        model = CronJob
        fields = [
            "id",
            "schedule",
            "on_calendar",
            "command",
            "enabled",
            "last_run_at",
            "last_exit_code",
            "last_output",
            "created_at",
            "updated_at",
        ]
        extra_kwargs = {
            "command": {"help_text": "argv, run as the site user in current/ (never through a shell)"},
            "last_exit_code": {
                "help_text": "the last finished run's exit code; negative: killed by that signal"
            },
            "last_output": {"help_text": "the last run's output, its last 20 lines"},
        }

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_on_calendar(self, job: CronJob) -> list[str]:
        try:
            return cron.on_calendar(job.schedule)
        except cron.ScheduleError:
            return []


class CronJobAcceptedSerializer(CronJobSerializer):
    operation = OperationRefSerializer(read_only=True)

    class Meta(CronJobSerializer.Meta):
        fields = [*CronJobSerializer.Meta.fields, "operation"]


def _argument(value: str) -> str:
    if any(char in value for char in "\x00\n\r"):
        raise serializers.ValidationError("Arguments may not contain NUL characters or line breaks.")
    return value


class CronJobWriteSerializer(serializers.Serializer):
    schedule = serializers.CharField(
        max_length=100,
        help_text="five fields (minute hour day-of-month month day-of-week: ranges, lists, steps, "
        "names) or @hourly, @daily, @weekly, @monthly, @yearly, @annually, @midnight",
    )
    command = serializers.ListField(
        child=serializers.CharField(
            max_length=cron_jobs.MAX_ARG_CHARS, trim_whitespace=False, validators=[_argument]
        ),
        min_length=1,
        max_length=cron_jobs.MAX_ARGS,
        help_text="argv, run as the site user in current/ with the site's environment (no shell)",
    )
    enabled = serializers.BooleanField(default=True)

    def validate_schedule(self, value: str) -> str:
        try:
            cron.parse(value)
        except cron.ScheduleError as exc:
            raise serializers.ValidationError(str(exc))
        return value

    def validate_command(self, value: list[str]) -> list[str]:
        problem = cron_jobs.command_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


def _site(request, pk: int):
    return get_object_or_404(_scoped(request), pk=pk)


def _accepted(job: CronJob, op) -> Response:
    body = CronJobSerializer(job).data | {"operation": OperationRefSerializer(op).data}
    return Response(body, status=status.HTTP_202_ACCEPTED)


class SiteCronJobListView(generics.ListAPIView):
    """GET lists the site's cron jobs (the last runs read from the VPS first when stale); POST
    adds one (202: the operation that installs it)."""

    serializer_class = CronJobSerializer

    def get_queryset(self):
        site = _site(self.request, self.kwargs["pk"])
        cron_jobs.cron_status_refresh(site=site)
        return cron_jobs.site_cron_jobs(site=site)

    @extend_schema(request=CronJobWriteSerializer, responses={202: CronJobAcceptedSerializer})
    def post(self, request, pk: int):
        site = _site(request, pk)
        data = CronJobWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job, op = cron_jobs.cron_job_create(
            site=site,
            actor=request.user,
            source_ip=client_ip(request),
            requested_by_tenant=not is_staff_request(request),
            **data.validated_data,
        )
        return _accepted(job, op)


class SiteCronJobDetailView(APIView):
    """GET one job (its last run read from the VPS first when stale); PATCH changes it; DELETE
    removes it (both 202: the operation that applies the site's set)."""

    def _job(self, request, pk: int, job_id: int) -> CronJob:
        return cron_jobs.cron_job_of_site(site=_site(request, pk), job_id=job_id)

    @extend_schema(responses=CronJobSerializer)
    def get(self, request, pk: int, job_id: int):
        job = self._job(request, pk, job_id)
        cron_jobs.cron_status_refresh(site=job.site)
        job.refresh_from_db()
        return Response(CronJobSerializer(job).data)

    @extend_schema(request=CronJobWriteSerializer(partial=True), responses={202: CronJobAcceptedSerializer})
    def patch(self, request, pk: int, job_id: int):
        job = self._job(request, pk, job_id)
        data = CronJobWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        op = cron_jobs.cron_job_update(
            job=job,
            actor=request.user,
            source_ip=client_ip(request),
            requested_by_tenant=not is_staff_request(request),
            **data.validated_data,
        )
        job.refresh_from_db()
        return _accepted(job, op)

    @extend_schema(request=None, responses={202: CronJobAcceptedSerializer})
    def delete(self, request, pk: int, job_id: int):
        job = self._job(request, pk, job_id)
        snapshot = CronJobSerializer(job).data
        op = cron_jobs.cron_job_delete(
            job=job,
            actor=request.user,
            source_ip=client_ip(request),
            requested_by_tenant=not is_staff_request(request),
        )
        body = snapshot | {"operation": OperationRefSerializer(op).data}
        return Response(body, status=status.HTTP_202_ACCEPTED)
