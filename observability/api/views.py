from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from chom.api.permissions import STAFF, TENANT, is_staff_request
from chom.http import client_ip
from fleet import selectors as fleet_selectors
from observability import notifications, queries, selectors, uptime
from observability.api.serializers import (
    AlertFilterSerializer,
    AlertSerializer,
    ChannelDeliverySerializer,
    LogQuerySerializer,
    NotificationChannelCreatedSerializer,
    NotificationChannelCreateSerializer,
    NotificationChannelDetailSerializer,
    NotificationChannelSerializer,
    RangeSerializer,
)
from sites import selectors as site_selectors

SeriesFrame = inline_serializer(
    "MetricsFrame",
    fields={
        "range": serializers.CharField(),
        "step_seconds": serializers.IntegerField(),
        "start": serializers.DateTimeField(),
        "end": serializers.DateTimeField(),
        "source": serializers.CharField(),
        "series": serializers.DictField(help_text="name -> {unit, values: [[unix seconds, value], ...]}"),
    },
)


def _site(request, pk: int):
    return get_object_or_404(
        site_selectors.sites_visible(tenant=request.auth.tenant, staff=is_staff_request(request)), pk=pk
    )


def _valid(serializer_class, request) -> dict:
    data = serializer_class(data=request.query_params)
    data.is_valid(raise_exception=True)
    return data.validated_data


class SiteMetricsView(APIView):
    @extend_schema(parameters=[RangeSerializer], responses=SeriesFrame)
    def get(self, request, pk: int):
        site = _site(request, pk)
        params = _valid(RangeSerializer, request)
        return Response(queries.site_metrics(site=site, range_name=params["range"]))


class SiteLogsView(APIView):
    @extend_schema(
        parameters=[LogQuerySerializer],
        responses=inline_serializer(
            "SiteLogs",
            fields={
                "since": serializers.DateTimeField(),
                "end": serializers.DateTimeField(),
                "lines": serializers.ListField(child=serializers.DictField()),
            },
        ),
    )
    def get(self, request, pk: int):
        site = _site(request, pk)
        params = _valid(LogQuerySerializer, request)
        return Response(
            queries.site_logs(
                site=site,
                since=params["since"],
                text=params["query"],
                log=params["log"],
                limit=params["limit"],
            )
        )


class SiteUptimeView(APIView):
    """The site's uptime probe (blackbox exporter through Prometheus): up, down or unknown now,
    and the share of successful probes over 30 days."""

    @extend_schema(
        responses=inline_serializer(
            "SiteUptime",
            fields={
                "state": serializers.CharField(help_text="up, down or unknown (not probed)"),
                "uptime_percent": serializers.FloatField(allow_null=True),
                "window": serializers.CharField(),
                "urls": inline_serializer(
                    "SiteUptimeUrl",
                    fields={
                        "url": serializers.CharField(),
                        "state": serializers.CharField(help_text="up, down or unknown"),
                        "uptime_percent": serializers.FloatField(allow_null=True),
                    },
                    many=True,
                ),
            },
        )
    )
    def get(self, request, pk: int):
        return Response(uptime.site_uptime(site=_site(request, pk)))


class VpsMetricsView(APIView):
    audience = STAFF

    @extend_schema(parameters=[RangeSerializer], responses=SeriesFrame)
    def get(self, request, pk: int):
        vps = get_object_or_404(fleet_selectors.vps_visible(staff=True), pk=pk)
        params = _valid(RangeSerializer, request)
        return Response(queries.vps_metrics(vps=vps, range_name=params["range"]))


class _AlertViewMixin:
    """A tenant's own alerts (about its sites, or its dedicated VPS), with their fleet-internal
    labels left out; staff see every alert whole."""

    serializer_class = AlertSerializer

    def get_queryset(self):
        return selectors.alerts_visible(tenant=self.request.auth.tenant, staff=is_staff_request(self.request))

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "tenant_view": not is_staff_request(self.request)}


class AlertListView(_AlertViewMixin, generics.ListAPIView):
    @extend_schema(parameters=[AlertFilterSerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        params = _valid(AlertFilterSerializer, self.request)
        qs = super().get_queryset()
        return qs.filter(status=params["status"]) if params["status"] else qs


class AlertDetailView(_AlertViewMixin, generics.RetrieveAPIView):
    pass


def _channel(request, pk: int):
    return get_object_or_404(selectors.channels_visible(tenant=request.auth.tenant), pk=pk)


class ChannelListView(APIView):
    """A tenant's notification channels: any member reads, owners and admins add them."""

    audience = TENANT
    manager_methods = ("POST",)

    @extend_schema(
        operation_id="notification_channels_list",
        responses=inline_serializer(
            "NotificationChannelList", fields={"results": NotificationChannelSerializer(many=True)}
        ),
    )
    def get(self, request):
        channels = selectors.channels_visible(tenant=request.auth.tenant)
        return Response({"results": NotificationChannelSerializer(channels, many=True).data})

    @extend_schema(
        request=NotificationChannelCreateSerializer, responses={201: NotificationChannelCreatedSerializer}
    )
    def post(self, request):
        data = NotificationChannelCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        channel, secret = notifications.channel_create(
            tenant=request.auth.tenant,
            actor=request.user,
            source_ip=client_ip(request),
            **data.validated_data,
        )
        channel.secret = secret or None
        return Response(NotificationChannelCreatedSerializer(channel).data, status=status.HTTP_201_CREATED)


class ChannelDetailView(APIView):
    audience = TENANT
    manager_methods = ("DELETE",)

    @extend_schema(responses=NotificationChannelDetailSerializer)
    def get(self, request, pk: int):
        channel = _channel(request, pk)
        deliveries = selectors.channel_deliveries_recent(channel=channel)
        return Response(NotificationChannelDetailSerializer(channel, context={"deliveries": deliveries}).data)

    @extend_schema(responses={204: None})
    def delete(self, request, pk: int):
        notifications.channel_delete(
            channel=_channel(request, pk), actor=request.user, source_ip=client_ip(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChannelTestView(APIView):
    """Send a sample event to the channel now; the answer is that delivery (sent, or its error)."""

    audience = TENANT
    manager_methods = ("POST",)

    @extend_schema(request=None, responses=ChannelDeliverySerializer)
    def post(self, request, pk: int):
        delivery = notifications.channel_test(channel=_channel(request, pk), actor=request.user)
        return Response(ChannelDeliverySerializer(delivery).data)
