from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from chom import selectors, services
from chom.api.permissions import TENANT, is_staff_request
from chom.api.serializers import (
    OperationFilterSerializer,
    OperationSerializer,
    TenantSerializer,
    TokenCreateSerializer,
    TokenSerializer,
)
from chom.errors import ApplicationError
from chom.http import client_ip
from chom.models import Membership


class TenantView(APIView):
    audience = TENANT

    @extend_schema(responses=TenantSerializer)
    def get(self, request):
        tenant = request.auth.tenant
        usage = selectors.tenant_usage(tenant=tenant)
        return Response(TenantSerializer(tenant, context={"usage": usage}).data)


class TokenListView(APIView):
    @extend_schema(responses=inline_serializer("TokenList", fields={"results": TokenSerializer(many=True)}))
    def get(self, request):
        tokens = selectors.tokens_visible(tenant=request.auth.tenant, user=request.user)
        return Response({"results": TokenSerializer(tokens, many=True).data})

    @extend_schema(request=TokenCreateSerializer, responses={201: TokenSerializer})
    def post(self, request):
        membership = request.auth.membership
        if membership is not None and not membership.can_manage_tokens:
            raise ApplicationError(403, "forbidden", "Your role cannot create API tokens.")
        data = TokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = services.token_create(
            user=request.user,
            tenant=request.auth.tenant,
            name=data.validated_data["name"],
            scope=data.validated_data["scope"],
            expires_at=data.expires_at(),
            actor=request.user,
            source_ip=client_ip(request),
        )
        body = TokenSerializer(issued.token).data | {"token": issued.plaintext}
        return Response(body, status=status.HTTP_201_CREATED)


class TokenDetailView(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, pk: int):
        token = get_object_or_404(
            selectors.tokens_visible(tenant=request.auth.tenant, user=request.user), pk=pk
        )
        membership = request.auth.membership
        is_manager = membership is None or membership.role in (
            Membership.Role.OWNER,
            Membership.Role.ADMIN,
        )
        if token.user_id != request.user.pk and not is_manager:
            raise ApplicationError(
                403, "forbidden", "Only owners and admins can revoke other members' tokens."
            )
        services.token_revoke(token=token, actor=request.user, source_ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class OperationListView(generics.ListAPIView):
    serializer_class = OperationSerializer

    def get_queryset(self):
        filters = OperationFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        qs = selectors.operations_visible(
            tenant=self.request.auth.tenant, staff=is_staff_request(self.request)
        )
        return qs.filter(**filters.validated_data)


class OperationDetailView(generics.RetrieveAPIView):
    serializer_class = OperationSerializer

    def get_queryset(self):
        return selectors.operations_visible(
            tenant=self.request.auth.tenant, staff=is_staff_request(self.request)
        )
