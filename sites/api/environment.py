"""The environment API: list names (never values), replace or merge the set (a 202 Operation that
applies it on the VPS without a new release), and the audited reveal for owners and admins."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from chom.api.permissions import TENANT
from chom.http import client_ip
from sites import environment
from sites.api.serializers import SiteSerializer
from sites.api.views import _accepted, _scoped


class VariableSerializer(serializers.Serializer):
    name = serializers.CharField()
    updated_at = serializers.DateTimeField()
    secret = serializers.BooleanField(default=True)


class EnvironmentSerializer(serializers.Serializer):
    variables = VariableSerializer(many=True)


class EnvironmentWriteSerializer(serializers.Serializer):
    """NAME → value; in a PATCH, null deletes NAME. Names and values are checked by the service
    (per name, with the site type's managed names)."""

    variables = serializers.DictField(
        child=serializers.CharField(allow_blank=True, allow_null=True, trim_whitespace=False),
        allow_empty=True,
    )

    def validate_variables(self, value: dict) -> dict:
        if len(value) > environment.MAX_VARIABLES:
            raise serializers.ValidationError(f"At most {environment.MAX_VARIABLES} variables.")
        return value


class EnvironmentRevealSerializer(serializers.Serializer):
    variables = serializers.DictField(child=serializers.CharField())


class SiteEnvironmentView(APIView):
    """GET lists the names; PUT replaces the set; PATCH merges (null deletes)."""

    audience = TENANT

    @extend_schema(responses=EnvironmentSerializer)
    def get(self, request, pk: int):
        site = get_object_or_404(_scoped(request), pk=pk)
        rows = [
            {"name": v.name, "updated_at": v.updated_at, "secret": True}
            for v in environment.site_variables(site=site)
        ]
        return Response(EnvironmentSerializer({"variables": rows}).data)

    def _set(self, request, pk: int, *, replace: bool):
        site = get_object_or_404(_scoped(request), pk=pk)
        data = EnvironmentWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        op = environment.site_environment_set(
            site=site,
            variables=data.validated_data["variables"],
            replace=replace,
            actor=request.user,
            source_ip=client_ip(request),
            requested_by_tenant=True,
        )
        return _accepted(site, op)

    @extend_schema(request=EnvironmentWriteSerializer, responses={202: SiteSerializer})
    def put(self, request, pk: int):
        return self._set(request, pk, replace=True)

    @extend_schema(request=EnvironmentWriteSerializer, responses={202: SiteSerializer})
    def patch(self, request, pk: int):
        return self._set(request, pk, replace=False)


class SiteEnvironmentRevealView(APIView):
    """The values, for an owner or admin with a write token; audited."""

    audience = TENANT
    sensitive_methods = ("POST",)

    @extend_schema(request=None, responses=EnvironmentRevealSerializer)
    def post(self, request, pk: int):
        site = get_object_or_404(_scoped(request), pk=pk)
        values = environment.site_environment_reveal(
            site=site, actor=request.user, source_ip=client_ip(request)
        )
        return Response(EnvironmentRevealSerializer({"variables": values}).data)
