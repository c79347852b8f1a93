import re

from rest_framework import serializers

from chom.api.serializers import OperationRefSerializer
from chom.models import Tenant
from fleet.models import VPS_NAME_RE, Vps
from fleet.providers import PROVIDERS


class VpsSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    site_count = serializers.SerializerMethodField()

    class Meta:
        model = Vps
        fields = [
            "id",
            "name",
            "provider",
            "provider_id",
            "region",
            "size",
            "image",
            "ip_address",
            "ssh_port",
            "ssh_user",
            "kind",
            "tenant",
            "max_sites",
            "cordoned",
            "site_count",
            "os",
            "php_versions",
            "agent_version",
            "status",
            "status_reason",
            "last_seen",
            "labels",
            "created_at",
        ]
        read_only_fields = ["cordoned"]

    def get_site_count(self, vps) -> int:
        return vps.sites.exclude(status="deleted").count()


class VpsDetailSerializer(VpsSerializer):
    class Meta(VpsSerializer.Meta):
        fields = [*VpsSerializer.Meta.fields, "facts", "host_key"]


def _validate_labels(value: dict) -> dict:
    if not isinstance(value, dict) or len(value) > 20:
        raise serializers.ValidationError("labels must be an object with at most 20 entries")
    for key, item in value.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", key) or not isinstance(item, str) or len(item) > 100:
            raise serializers.ValidationError(f"invalid label {key!r}: lowercase keys, string values")
    return value


class VpsCreateSerializer(serializers.Serializer):
    name = serializers.RegexField(
        VPS_NAME_RE, max_length=63, error_messages={"invalid": "Use lowercase letters, digits and dashes."}
    )
    provider = serializers.ChoiceField(choices=sorted(PROVIDERS))
    kind = serializers.ChoiceField(choices=Vps.Kind.choices, default=Vps.Kind.SHARED)
    ip_address = serializers.IPAddressField(required=False, allow_null=True)
    ssh_port = serializers.IntegerField(min_value=1, max_value=65535, default=22)
    max_sites = serializers.IntegerField(min_value=1, max_value=10000, default=50)
    region = serializers.RegexField(r"^[a-z0-9-]{0,50}\Z", required=False, default="")
    size = serializers.RegexField(r"^[a-z0-9.-]{0,50}\Z", required=False, default="")
    image = serializers.RegexField(r"^[A-Za-z0-9._/-]{0,100}\Z", required=False, default="")
    tenant = serializers.SlugRelatedField(slug_field="slug", queryset=Tenant.objects.all(), required=False)
    labels = serializers.JSONField(required=False, default=dict, validators=[_validate_labels])

    def validate(self, data):
        if PROVIDERS[data["provider"]].requires_address and not data.get("ip_address"):
            raise serializers.ValidationError({"ip_address": "A manual server needs its IP address."})
        if data["kind"] == Vps.Kind.DEDICATED and not data.get("tenant"):
            raise serializers.ValidationError({"tenant": "A dedicated VPS belongs to one tenant."})
        if data["kind"] == Vps.Kind.SHARED and data.get("tenant"):
            raise serializers.ValidationError({"tenant": "A shared VPS has no tenant."})
        return data


class VpsUpdateSerializer(serializers.Serializer):
    max_sites = serializers.IntegerField(min_value=1, max_value=10000, required=False)
    labels = serializers.JSONField(required=False, validators=[_validate_labels])
    ssh_port = serializers.IntegerField(min_value=1, max_value=65535, required=False)


class VpsAcceptedSerializer(VpsSerializer):
    operation = OperationRefSerializer(read_only=True)

    class Meta(VpsSerializer.Meta):
        fields = [*VpsSerializer.Meta.fields, "operation"]
