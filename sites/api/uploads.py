"""POST /api/v1/sites/{id}/releases: a new release from an uploaded .tar.gz or .zip.

The body is the archive itself, read as a stream (never `request.body` nor a DRF parser: neither
Django's DATA_UPLOAD_MAX_MEMORY_SIZE nor memory is involved); the tier limits its size."""

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from chom.api.permissions import TENANT
from chom.http import client_ip
from sites.api.serializers import SiteSerializer
from sites.api.views import _accepted, _scoped
from sites.uploads import FORMATS, site_upload_request


class SiteUploadAcceptedSerializer(SiteSerializer):
    """The site, the deploy operation, and what was received."""

    operation = serializers.DictField(read_only=True)
    release = serializers.CharField(read_only=True)
    sha256 = serializers.CharField(read_only=True)
    size = serializers.IntegerField(read_only=True)

    class Meta(SiteSerializer.Meta):
        fields = [*SiteSerializer.Meta.fields, "operation", "release", "sha256", "size"]


class SiteReleaseUploadView(APIView):
    audience = TENANT  # as a deploy: the tenant's own request

    @extend_schema(
        request={media: OpenApiTypes.BINARY for media in FORMATS},
        responses={202: SiteUploadAcceptedSerializer},
        description="Deploy a static or PHP site from a .tar.gz or .zip archive sent as the body "
        "(with its Content-Length). Archives with absolute paths, '..', links leading outside, "
        "devices or too many entries are refused with 400, before anything is queued.",
    )
    def post(self, request, pk: int):
        site = get_object_or_404(_scoped(request), pk=pk)
        op, release, upload = site_upload_request(
            site=site,
            stream=request.stream,
            content_type=request.content_type,
            content_length=request.META.get("CONTENT_LENGTH"),
            actor=request.user,
            source_ip=client_ip(request),
            requested_by_tenant=True,  # staff tokens are refused (audience)
        )
        extra = {"release": release, "sha256": upload.sha256, "size": upload.size}
        return _accepted(site, op, extra=extra)
