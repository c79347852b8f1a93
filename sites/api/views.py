from django.conf import settings
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from chom.api.permissions import STAFF, TENANT, is_staff_request
from chom.api.serializers import OperationRefSerializer
from chom.errors import ApplicationError
from chom.http import client_ip
from sites import selectors, services
from sites.api.hooks import hooks_changes
from sites.api.serializers import (
    SiteCreateSerializer,
    SiteDetailSerializer,
    SiteFilterSerializer,
    SiteSerializer,
    SiteUpdateSerializer,
    SiteWebhookSerializer,
)


def _scoped(request):
    return selectors.sites_visible(tenant=request.auth.tenant, staff=is_staff_request(request))


def _accepted(site, op, *, extra: dict | None = None, location: str | None = None) -> Response:
    site.refresh_from_db()
    body = SiteSerializer(site).data | {"operation": OperationRefSerializer(op).data} | (extra or {})
    return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": location} if location else {})


class SiteListView(generics.ListAPIView):
    serializer_class = SiteSerializer

    def get_queryset(self):
        filters = SiteFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.sites_filtered(_scoped(self.request), **filters.validated_data)

    @extend_schema(request=SiteCreateSerializer, responses={202: SiteSerializer})
    def post(self, request):
        if is_staff_request(request):
            raise ApplicationError(403, "forbidden", "Sites are created with a tenant token.")
        data = SiteCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        site, op, credentials = services.site_create(
            tenant=request.auth.tenant,
            actor=request.user,
            source_ip=client_ip(request),
            requested_by_tenant=True,  # staff tokens were refused above
            **data.validated_data,
        )
        extra = {"credentials": credentials} if credentials else None
        return _accepted(site, op, extra=extra, location=f"/api/v1/sites/{site.pk}")


class SiteDetailView(APIView):
    def _get(self, request, pk):
        return get_object_or_404(_scoped(request), pk=pk)

    @extend_schema(responses=SiteDetailSerializer)
    def get(self, request, pk: int):
        return Response(SiteDetailSerializer(self._get(request, pk)).data)

    @extend_schema(
        request=SiteUpdateSerializer,
        responses={200: SiteSerializer, 202: SiteSerializer},
        description="202 with the redeploy operation, or 200 when nothing needs one (no change, or "
        "deploy hooks only: they apply from the next deploy).",
    )
    def patch(self, request, pk: int):
        site = self._get(request, pk)
        data = SiteUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        repository = changes.pop("repository", None)
        if repository:
            changes["repository_url"], changes["repository_branch"] = repository["url"], repository["branch"]
        changes |= hooks_changes(changes.pop("hooks", {}))
        op = services.site_update(
            site=site, actor=request.user, requested_by_tenant=not is_staff_request(request), **changes
        )
        if op is None:
            return Response(SiteSerializer(site).data)
        return _accepted(site, op)

    @extend_schema(responses={202: SiteSerializer})
    def delete(self, request, pk: int):
        site = self._get(request, pk)
        op = services.site_delete_request(
            site=site,
            actor=request.user,
            source_ip=client_ip(request),
            requested_by_tenant=not is_staff_request(request),
        )
        return _accepted(site, op)


class SiteWebhookView(APIView):
    """Push-to-deploy: POST creates the hook or rotates its secret, DELETE removes it."""

    audience = TENANT  # as a deploy: the tenant's own request

    @extend_schema(request=None, responses={200: SiteWebhookSerializer})
    def post(self, request, pk: int):
        site = get_object_or_404(_scoped(request), pk=pk)
        hook, secret = services.site_webhook_set(site=site, actor=request.user, source_ip=client_ip(request))
        url = settings.SITE_URL.rstrip("/") + reverse("site-git-webhook", kwargs={"token": hook.hook_id})
        return Response(SiteWebhookSerializer({"url": url, "secret": secret}).data)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, pk: int):
        site = get_object_or_404(_scoped(request), pk=pk)
        services.site_webhook_delete(site=site, actor=request.user, source_ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _action(service, *, audience=TENANT):
    # A tenant-audience action is the tenant's own request: it counts against its operation cap.
    options = {"requested_by_tenant": True} if audience == TENANT else {}

    class ActionView(APIView):
        @extend_schema(request=None, responses={202: SiteSerializer})
        def post(self, request, pk: int):
            site = get_object_or_404(_scoped(request), pk=pk)
            op = service(site=site, actor=request.user, **options)
            return _accepted(site, op)

    ActionView.audience = audience
    ActionView.__name__ = f"Site{service.__name__.title().replace('_', '')}View"
    return ActionView


def _staff_suspend(*, site, actor):
    return services.site_suspend(site=site, reason="admin", actor=actor)


def _staff_unsuspend(*, site, actor):
    return services.site_unsuspend(site=site, reason="admin", actor=actor)


SiteDeployView = _action(services.site_deploy_request)
SiteRollbackView = _action(services.site_rollback_request)
SiteSslView = _action(services.site_ssl_request)
SiteSuspendView = _action(_staff_suspend, audience=STAFF)
SiteUnsuspendView = _action(_staff_unsuspend, audience=STAFF)
