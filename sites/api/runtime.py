"""A site's runtime controls: redirects, response headers, basic-auth users and PHP settings. Lists
are paginated; every change answers 202 with the Operation that applies the vhost/pool on the VPS
(sites/runtime.py checks every value first: a refused one is a 400 and changes nothing)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from chom.api.permissions import is_staff_request
from chom.api.serializers import OperationRefSerializer
from chom.http import client_ip
from sites import runtime
from sites.api.views import _scoped
from sites.models import BasicAuthUser, Redirect, ResponseHeader
from sites.runtime_configs import DEFAULT_MEMORY_LIMIT, PHP_SETTINGS


class SiteRedirectSerializer(serializers.ModelSerializer):
    # `from` is a Python keyword: declared through the class namespace.
    locals()["from"] = serializers.CharField(source="source", max_length=500)
    to = serializers.CharField(source="destination", max_length=2000)
    status = serializers.ChoiceField(source="status_code", choices=runtime.REDIRECT_STATUSES, default=301)
    preserve_query = serializers.BooleanField(default=True)
    match = serializers.ChoiceField(choices=Redirect.Match.choices, default=Redirect.Match.EXACT)

    class Meta:
        model = Redirect
        fields = ["id", "from", "match", "to", "status", "preserve_query", "created_at"]
        read_only_fields = ["id", "created_at"]


class ResponseHeaderSerializer(serializers.ModelSerializer):
    name = serializers.CharField(max_length=100)
    value = serializers.CharField(max_length=2000, allow_blank=True, trim_whitespace=False)

    class Meta:
        model = ResponseHeader
        fields = ["id", "name", "value", "created_at"]
        read_only_fields = ["id", "created_at"]


class BasicAuthUserSerializer(serializers.ModelSerializer):
    """The list shows path and username only: never the hash."""

    path = serializers.CharField(source="path_prefix", max_length=500, default="/")
    password = serializers.CharField(write_only=True, max_length=200, trim_whitespace=False)

    class Meta:
        model = BasicAuthUser
        fields = ["id", "path", "username", "password", "created_at"]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {"username": {"max_length": 64, "validators": []}}
        validators: list = []


class PhpSettingsSerializer(serializers.Serializer):
    settings = serializers.DictField(child=serializers.CharField(), help_text="The site's own settings.")
    effective = serializers.DictField(
        child=serializers.CharField(), help_text="What the pool runs with (CHOM's defaults filled in)."
    )
    allowed = serializers.ListField(child=serializers.CharField())


class PhpSettingsWriteSerializer(serializers.Serializer):
    """NAME → value ("256M", "1G", 120); null puts CHOM's default back."""

    settings = serializers.DictField(child=serializers.JSONField(allow_null=True), allow_empty=True)


def _accepted(data: dict, op, *, location: str = "") -> Response:
    body = data | {"operation": OperationRefSerializer(op).data}
    return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": location} if location else {})


def _deleted(op) -> Response:
    return Response({"operation": OperationRefSerializer(op).data}, status=status.HTTP_202_ACCEPTED)


class DeletedSerializer(serializers.Serializer):
    operation = OperationRefSerializer()


def _site(request, pk: int):
    return get_object_or_404(_scoped(request), pk=pk)


def _write_kwargs(request) -> dict:
    return {
        "actor": request.user,
        "source_ip": client_ip(request),
        "requested_by_tenant": not is_staff_request(request),
    }


class SiteRedirectsView(generics.ListAPIView):
    serializer_class = SiteRedirectSerializer

    def get_queryset(self):
        return _site(self.request, self.kwargs["pk"]).redirects.order_by("id")

    @extend_schema(request=SiteRedirectSerializer, responses={202: SiteRedirectSerializer})
    def post(self, request, pk: int):
        site = _site(request, pk)
        data = SiteRedirectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        row, op = runtime.site_redirect_create(
            site=site,
            source=v["source"],
            match=v["match"],
            destination=v["destination"],
            status_code=v["status_code"],
            preserve_query=v["preserve_query"],
            **_write_kwargs(request),
        )
        return _accepted(
            SiteRedirectSerializer(row).data, op, location=f"/api/v1/sites/{site.pk}/redirects/{row.pk}"
        )


class SiteRedirectView(APIView):
    def _get(self, request, pk: int, redirect_id: int) -> Redirect:
        return get_object_or_404(_site(request, pk).redirects, pk=redirect_id)

    @extend_schema(responses=SiteRedirectSerializer)
    def get(self, request, pk: int, redirect_id: int):
        return Response(SiteRedirectSerializer(self._get(request, pk, redirect_id)).data)

    @extend_schema(request=None, responses={202: DeletedSerializer})
    def delete(self, request, pk: int, redirect_id: int):
        row = self._get(request, pk, redirect_id)
        return _deleted(runtime.site_redirect_delete(redirect=row, **_write_kwargs(request)))


class SiteHeadersView(generics.ListAPIView):
    serializer_class = ResponseHeaderSerializer

    def get_queryset(self):
        return _site(self.request, self.kwargs["pk"]).response_headers.order_by("id")

    @extend_schema(request=ResponseHeaderSerializer, responses={202: ResponseHeaderSerializer})
    def post(self, request, pk: int):
        site = _site(request, pk)
        data = ResponseHeaderSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row, op = runtime.site_header_create(
            site=site,
            name=data.validated_data["name"],
            value=data.validated_data["value"],
            **_write_kwargs(request),
        )
        return _accepted(
            ResponseHeaderSerializer(row).data, op, location=f"/api/v1/sites/{site.pk}/headers/{row.pk}"
        )


class SiteHeaderView(APIView):
    def _get(self, request, pk: int, header_id: int) -> ResponseHeader:
        return get_object_or_404(_site(request, pk).response_headers, pk=header_id)

    @extend_schema(responses=ResponseHeaderSerializer)
    def get(self, request, pk: int, header_id: int):
        return Response(ResponseHeaderSerializer(self._get(request, pk, header_id)).data)

    @extend_schema(request=None, responses={202: DeletedSerializer})
    def delete(self, request, pk: int, header_id: int):
        row = self._get(request, pk, header_id)
        return _deleted(runtime.site_header_delete(header=row, **_write_kwargs(request)))


class SiteBasicAuthView(generics.ListAPIView):
    """POST adds a user to a path's realm, or changes its password (CHOM stores a bcrypt hash)."""

    serializer_class = BasicAuthUserSerializer

    def get_queryset(self):
        return _site(self.request, self.kwargs["pk"]).basic_auth_users.order_by("path_prefix", "username")

    @extend_schema(request=BasicAuthUserSerializer, responses={202: BasicAuthUserSerializer})
    def post(self, request, pk: int):
        site = _site(request, pk)
        data = BasicAuthUserSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        row, op = runtime.site_basic_auth_set(
            site=site,
            path=v["path_prefix"],
            username=v["username"],
            password=v["password"],
            **_write_kwargs(request),
        )
        return _accepted(
            BasicAuthUserSerializer(row).data, op, location=f"/api/v1/sites/{site.pk}/basic-auth/{row.pk}"
        )


class SiteBasicAuthUserView(APIView):
    def _get(self, request, pk: int, user_id: int) -> BasicAuthUser:
        return get_object_or_404(_site(request, pk).basic_auth_users, pk=user_id)

    @extend_schema(responses=BasicAuthUserSerializer)
    def get(self, request, pk: int, user_id: int):
        return Response(BasicAuthUserSerializer(self._get(request, pk, user_id)).data)

    @extend_schema(request=None, responses={202: DeletedSerializer})
    def delete(self, request, pk: int, user_id: int):
        row = self._get(request, pk, user_id)
        return _deleted(runtime.site_basic_auth_delete(user=row, **_write_kwargs(request)))


def _php_settings_body(site) -> dict:
    own = {k: str(v) for k, v in (site.php_settings or {}).items()}
    effective = {"memory_limit": DEFAULT_MEMORY_LIMIT} | own
    return {"settings": own, "effective": effective, "allowed": list(PHP_SETTINGS)}


class SitePhpSettingsView(APIView):
    """GET shows them; PATCH merges (null removes one). 202 with the operation that applies the
    pool and vhost, or 200 when nothing changed."""

    @extend_schema(responses=PhpSettingsSerializer)
    def get(self, request, pk: int):
        return Response(PhpSettingsSerializer(_php_settings_body(_site(request, pk))).data)

    @extend_schema(
        request=PhpSettingsWriteSerializer, responses={200: PhpSettingsSerializer, 202: PhpSettingsSerializer}
    )
    def patch(self, request, pk: int):
        site = _site(request, pk)
        data = PhpSettingsWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        op = runtime.site_php_settings_update(
            site=site, settings=data.validated_data["settings"], **_write_kwargs(request)
        )
        body = PhpSettingsSerializer(_php_settings_body(site)).data
        return Response(body) if op is None else _accepted(body, op)
