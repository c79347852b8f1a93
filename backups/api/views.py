from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from backups import selectors, services
from backups.api.serializers import (
    BackupCreateSerializer,
    BackupDetailSerializer,
    BackupSerializer,
    DownloadSerializer,
    RestoreSerializer,
)
from chom.api.permissions import is_staff_request
from chom.api.serializers import OperationRefSerializer
from chom.http import client_ip
from sites.selectors import sites_visible


def _scope(request) -> dict:
    return {"tenant": request.auth.tenant, "staff": is_staff_request(request)}


def _backup(request, pk: int):
    return get_object_or_404(selectors.backups_visible(**_scope(request)), pk=pk)


def _accepted(backup, op) -> Response:
    backup.refresh_from_db()
    body = BackupSerializer(backup).data | {"operation": OperationRefSerializer(op).data}
    return Response(
        body, status=status.HTTP_202_ACCEPTED, headers={"Location": f"/api/v1/backups/{backup.pk}"}
    )


class SiteBackupsView(generics.ListAPIView):
    serializer_class = BackupSerializer

    def get_queryset(self):
        site = get_object_or_404(sites_visible(**_scope(self.request)), pk=self.kwargs["pk"])
        return selectors.site_backups(site=site)

    @extend_schema(request=BackupCreateSerializer, responses={202: BackupSerializer})
    def post(self, request, pk: int):
        site = get_object_or_404(sites_visible(**_scope(request)), pk=pk)
        data = BackupCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        backup, op = services.backup_request(
            site=site,
            kind=data.validated_data["kind"],
            actor=request.user,
            requested_by_tenant=not is_staff_request(request),
        )
        return _accepted(backup, op)


class BackupDetailView(APIView):
    @extend_schema(responses=BackupDetailSerializer)
    def get(self, request, pk: int):
        return Response(BackupDetailSerializer(_backup(request, pk)).data)


class BackupDownloadView(APIView):
    # The dump and the .env inside are the site's secrets: owners/admins with a write token only.
    sensitive_methods = ("GET",)

    @extend_schema(
        parameters=[DownloadSerializer],
        responses={
            200: {
                "type": "object",
                "properties": {"urls": {"type": "object"}, "expires_in": {"type": "integer"}},
            }
        },
    )
    def get(self, request, pk: int):
        backup = _backup(request, pk)
        query = DownloadSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        urls, expires = services.backup_download_urls(
            backup=backup,
            artefact=query.validated_data.get("artefact", ""),
            actor=request.user,
            source_ip=client_ip(request),
        )
        return Response({"urls": urls, "expires_in": expires})


class BackupRestoreView(APIView):
    @extend_schema(request=RestoreSerializer, responses={202: BackupSerializer})
    def post(self, request, pk: int):
        backup = _backup(request, pk)
        data = RestoreSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        target_id = data.validated_data.get("target_site", backup.site_id)
        # Another tenant's site, or one that does not exist: the same 404.
        target = get_object_or_404(
            sites_visible(**_scope(request)).filter(tenant=backup.site.tenant_id), pk=target_id
        )
        op = services.backup_restore_request(
            backup=backup,
            target=target,
            actor=request.user,
            requested_by_tenant=not is_staff_request(request),
        )
        return _accepted(backup, op)


class BackupVerifyView(APIView):
    @extend_schema(request=None, responses={202: BackupSerializer})
    def post(self, request, pk: int):
        backup = _backup(request, pk)
        op = services.backup_verify_request(
            backup=backup, actor=request.user, requested_by_tenant=not is_staff_request(request)
        )
        return _accepted(backup, op)
