"""DNS provider accounts of a tenant (`/api/v1/dns-accounts`): any member lists them, owners and
admins add and remove them. The token is write-only: checked against the provider when added,
stored encrypted, never returned."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from chom.api.permissions import TENANT
from chom.http import client_ip
from sites import dns_accounts, selectors
from sites.dns import DNS_PROVIDERS
from sites.models import DnsAccount


class DnsAccountSerializer(serializers.ModelSerializer):
    sites = serializers.SerializerMethodField(help_text="Domains of the live sites that use it.")

    class Meta:
        model = DnsAccount
        fields = ["id", "name", "provider", "created_at", "sites"]

    def get_sites(self, account) -> list[str]:
        return sorted(account.sites.exclude(status="deleted").values_list("domain", flat=True))


class DnsAccountCreateSerializer(serializers.Serializer):
    name = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}\Z", max_length=100)
    provider = serializers.ChoiceField(choices=sorted(DNS_PROVIDERS))
    token = serializers.CharField(
        max_length=500, write_only=True, help_text="An API token that may edit the zone's DNS records."
    )

    def validate_token(self, value: str) -> str:
        if any(c.isspace() or not c.isprintable() for c in value):
            raise serializers.ValidationError("A token has no spaces or control characters.")
        return value


class DnsAccountListView(generics.ListCreateAPIView):
    audience = TENANT
    manager_methods = ("POST",)
    serializer_class = DnsAccountSerializer

    def get_queryset(self):
        return selectors.tenant_dns_accounts(self.request.auth.tenant)

    @extend_schema(request=DnsAccountCreateSerializer, responses={201: DnsAccountSerializer})
    def post(self, request):
        data = DnsAccountCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account = dns_accounts.dns_account_create(
            tenant=request.auth.tenant,
            actor=request.user,
            source_ip=client_ip(request),
            **data.validated_data,
        )
        return Response(DnsAccountSerializer(account).data, status=status.HTTP_201_CREATED)


class DnsAccountDetailView(APIView):
    audience = TENANT
    manager_methods = ("DELETE",)

    def _get(self, request, pk: int) -> DnsAccount:
        return get_object_or_404(selectors.tenant_dns_accounts(request.auth.tenant), pk=pk)

    @extend_schema(responses=DnsAccountSerializer)
    def get(self, request, pk: int):
        return Response(DnsAccountSerializer(self._get(request, pk)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, pk: int):
        account = self._get(request, pk)
        dns_accounts.dns_account_delete(account=account, actor=request.user, source_ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
