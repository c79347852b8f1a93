from datetime import UTC, datetime, timedelta

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from chom.events import EVENTS
from observability.models import Alert, ChannelDelivery, NotificationChannel
from observability.queries import LOG_LIMIT_MAX, RANGES

LOG_RETENTION = timedelta(days=30)


class RangeSerializer(serializers.Serializer):
    range = serializers.ChoiceField(choices=list(RANGES), default="1h")


class LogQuerySerializer(serializers.Serializer):
    since = serializers.CharField(default="1h", max_length=40)
    query = serializers.CharField(
        required=False, default="", allow_blank=True, max_length=200, trim_whitespace=False
    )
    log = serializers.ChoiceField(choices=["", "access", "error"], required=False, default="")
    limit = serializers.IntegerField(required=False, default=100, min_value=1, max_value=LOG_LIMIT_MAX)

    def validate_since(self, value: str) -> datetime:
        """A range name (15m, 1h, ...) meaning "that long ago", or an ISO-8601 moment."""
        now = timezone.now()
        if value in RANGES:
            return now - timedelta(seconds=RANGES[value][0])
        try:
            moment = parse_datetime(value)
        except ValueError:
            moment = None
        if moment is None:
            raise serializers.ValidationError(
                f"Use one of {', '.join(RANGES)} or an ISO-8601 time such as 2025-01-31T12:00:00Z."
            )
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment, UTC)
        if not now - LOG_RETENTION <= moment <= now:
            raise serializers.ValidationError("Must be in the past and within the last 30 days.")
        return moment


# What a tenant sees of an alert's labels and annotations: the rest names the fleet's insides
# (scrape addresses, job and exporter names, the shared server).
TENANT_LABELS = ("alertname", "severity", "site", "domain", "tenant")
TENANT_ANNOTATIONS = ("summary", "description")


class AlertSerializer(serializers.ModelSerializer):
    """Staff see every label; a tenant (context `tenant_view`) only TENANT_LABELS."""

    site = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)

    def to_representation(self, alert):
        data = super().to_representation(alert)
        if self.context.get("tenant_view", True):
            data["labels"] = {k: v for k, v in data["labels"].items() if k in TENANT_LABELS}
            data["annotations"] = {k: v for k, v in data["annotations"].items() if k in TENANT_ANNOTATIONS}
        return data

    class Meta:
        model = Alert
        fields = [
            "id",
            "name",
            "status",
            "severity",
            "source",
            "summary",
            "labels",
            "annotations",
            "tenant",
            "site",
            "started_at",
            "last_seen_at",
            "resolved_at",
        ]


class AlertFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["", *Alert.Status.values], required=False, default="")


class ChannelDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = ChannelDelivery
        fields = ["id", "event", "site", "message", "occurred_at", "status", "attempts", "error", "sent_at"]


class NotificationChannelSerializer(serializers.ModelSerializer):
    target = serializers.CharField(source="target_display", read_only=True)
    events = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = NotificationChannel
        fields = ["id", "name", "kind", "target", "events", "created_at"]


class NotificationChannelDetailSerializer(NotificationChannelSerializer):
    deliveries = serializers.SerializerMethodField()

    class Meta(NotificationChannelSerializer.Meta):
        fields = [*NotificationChannelSerializer.Meta.fields, "deliveries"]

    @extend_schema_field(ChannelDeliverySerializer(many=True))
    def get_deliveries(self, channel) -> list:
        return ChannelDeliverySerializer(self.context["deliveries"], many=True).data


class NotificationChannelCreatedSerializer(NotificationChannelSerializer):
    secret = serializers.CharField(
        allow_null=True, read_only=True, help_text="a generic webhook's signing secret, shown only now"
    )

    class Meta(NotificationChannelSerializer.Meta):
        fields = [*NotificationChannelSerializer.Meta.fields, "secret"]


class NotificationChannelCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)
    kind = serializers.ChoiceField(choices=NotificationChannel.Kind.values)
    address = serializers.EmailField(required=False, default="", allow_blank=True)
    url = serializers.URLField(required=False, default="", allow_blank=True, max_length=2000)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=list(EVENTS)), allow_empty=False, max_length=len(EVENTS)
    )
