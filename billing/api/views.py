from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import selectors, services, stripe_client
from billing.api.serializers import (
    BillingSerializer,
    CheckoutSerializer,
    InvoiceListSerializer,
    InvoiceSerializer,
    RedirectSerializer,
)
from chom.api.permissions import TENANT
from chom.http import client_ip


class BillingView(APIView):
    audience = TENANT

    @extend_schema(responses=BillingSerializer)
    def get(self, request):
        body = selectors.billing_status(tenant=request.auth.tenant)
        return Response(BillingSerializer(body).data)


class CheckoutView(APIView):
    audience = TENANT
    manager_methods = ("POST",)

    @extend_schema(request=CheckoutSerializer, responses={201: RedirectSerializer})
    def post(self, request):
        data = CheckoutSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        url = services.billing_checkout_create(
            tenant=request.auth.tenant,
            tier=data.validated_data["tier"],
            actor=request.user,
            source_ip=client_ip(request),
        )
        return Response({"url": url}, status=201)


class PortalView(APIView):
    audience = TENANT
    manager_methods = ("POST",)

    @extend_schema(request=None, responses={201: RedirectSerializer})
    def post(self, request):
        url = services.billing_portal_create(
            tenant=request.auth.tenant, actor=request.user, source_ip=client_ip(request)
        )
        return Response({"url": url}, status=201)


class InvoiceListView(APIView):
    audience = TENANT

    @extend_schema(responses=InvoiceListSerializer)
    def get(self, request):
        account = selectors.billing_account_for(request.auth.tenant)
        if account is None or not account.stripe_customer_id:
            return Response({"results": []})
        invoices = stripe_client.invoices_list(customer_id=account.stripe_customer_id)
        return Response({"results": InvoiceSerializer(invoices, many=True).data})
