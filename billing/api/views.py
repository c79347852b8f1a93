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
from billing.stripe_client import StripeClientError
from chom.api.permissions import TenantOnly, TokenScopePermission
from chom.api.views import client_ip
from chom.errors import ApplicationError
from chom.models import Membership
from chom.selectors import tenant_usage
from sites.selectors import tenant_over_limits


def _require_billing_manager(request) -> None:
    if request.auth.membership.role not in (Membership.Role.OWNER, Membership.Role.ADMIN):
        raise ApplicationError(403, "forbidden", "Only the tenant's owners and admins can manage billing.")


class BillingView(APIView):
    permission_classes = [TokenScopePermission, TenantOnly]

    @extend_schema(responses=BillingSerializer)
    def get(self, request):
        tenant = request.auth.tenant
        account = selectors.billing_account_for(tenant)
        body = {
            "tier": tenant.tier,
            "status": tenant.status,
            "limits": tenant.limits.as_dict(),
            "usage": tenant_usage(tenant=tenant),
            "over_limits": tenant_over_limits(tenant),
            "subscription": account if account and account.stripe_subscription_id else None,
            "dunning": account if account and account.past_due_since else None,
            "upcoming_invoice": None,
            "warnings": [],
        }
        if account and account.has_live_subscription:
            try:
                body["upcoming_invoice"] = stripe_client.invoice_preview(
                    customer_id=account.stripe_customer_id, subscription_id=account.stripe_subscription_id
                )
            except StripeClientError as exc:
                body["warnings"].append(f"upcoming invoice unavailable: {exc.message}")
        return Response(BillingSerializer(body).data)


class CheckoutView(APIView):
    permission_classes = [TokenScopePermission, TenantOnly]

    @extend_schema(request=CheckoutSerializer, responses={201: RedirectSerializer})
    def post(self, request):
        _require_billing_manager(request)
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
    permission_classes = [TokenScopePermission, TenantOnly]

    @extend_schema(request=None, responses={201: RedirectSerializer})
    def post(self, request):
        _require_billing_manager(request)
        url = services.billing_portal_create(
            tenant=request.auth.tenant, actor=request.user, source_ip=client_ip(request)
        )
        return Response({"url": url}, status=201)


class InvoiceListView(APIView):
    permission_classes = [TokenScopePermission, TenantOnly]

    @extend_schema(responses=InvoiceListSerializer)
    def get(self, request):
        account = selectors.billing_account_for(request.auth.tenant)
        if account is None or not account.stripe_customer_id:
            return Response({"results": []})
        invoices = stripe_client.invoices_list(customer_id=account.stripe_customer_id)
        return Response({"results": InvoiceSerializer(invoices, many=True).data})
