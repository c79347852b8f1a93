from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from chom.api.permissions import STAFF
from chom.api.serializers import OperationRefSerializer
from chom.http import client_ip
from fleet import selectors, services
from fleet.api.serializers import (
    VpsAcceptedSerializer,
    VpsCreateSerializer,
    VpsDetailSerializer,
    VpsSerializer,
    VpsUpdateSerializer,
)


def _accepted(vps, op, *, location: str | None = None) -> Response:
    vps.refresh_from_db()
    body = VpsSerializer(vps).data | {"operation": OperationRefSerializer(op).data}
    headers = {"Location": location} if location else {}
    return Response(body, status=status.HTTP_202_ACCEPTED, headers=headers)


class VpsListView(APIView):
    audience = STAFF

    @extend_schema(
        operation_id="vps_list",
        responses=inline_serializer("VpsList", fields={"results": VpsSerializer(many=True)}),
    )
    def get(self, request):
        vpses = selectors.vps_visible(staff=True).select_related("tenant")
        return Response({"results": VpsSerializer(vpses, many=True).data})

    @extend_schema(request=VpsCreateSerializer, responses={202: VpsAcceptedSerializer})
    def post(self, request):
        data = VpsCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        vps, op = services.vps_create(**data.validated_data, actor=request.user, source_ip=client_ip(request))
        return _accepted(vps, op, location=f"/api/v1/vps/{vps.id}")


class VpsDetailView(APIView):
    audience = STAFF

    def _get(self, pk: int):
        return get_object_or_404(selectors.vps_visible(staff=True), pk=pk)

    @extend_schema(responses=VpsDetailSerializer)
    def get(self, request, pk: int):
        return Response(VpsDetailSerializer(self._get(pk)).data)

    @extend_schema(request=VpsUpdateSerializer, responses=VpsDetailSerializer)
    def patch(self, request, pk: int):
        vps = self._get(pk)
        data = VpsUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.vps_update(vps=vps, actor=request.user, **data.validated_data)
        return Response(VpsDetailSerializer(vps).data)

    @extend_schema(responses={202: VpsAcceptedSerializer})
    def delete(self, request, pk: int):
        vps = self._get(pk)
        op = services.vps_delete_request(vps=vps, actor=request.user, source_ip=client_ip(request))
        return _accepted(vps, op)


class VpsBootstrapView(APIView):
    audience = STAFF

    @extend_schema(request=None, responses={202: VpsAcceptedSerializer})
    def post(self, request, pk: int):
        vps = get_object_or_404(selectors.vps_visible(staff=True), pk=pk)
        op = services.vps_bootstrap_request(vps=vps, actor=request.user)
        return _accepted(vps, op)


class FleetKeyView(APIView):
    audience = STAFF

    @extend_schema(responses={200: {"type": "object", "properties": {"public_key": {"type": "string"}}}})
    def get(self, request):
        return Response({"public_key": services.fleet_key_get_or_create().public_key})
