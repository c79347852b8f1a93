from datetime import timedelta

from django.utils import timezone
from rest_framework import serializers

from chom.models import ApiToken, Operation, Tenant


class OperationRefSerializer(serializers.Serializer):
    """How 202 answers point at the Operation to poll."""

    id = serializers.UUIDField()
    url = serializers.SerializerMethodField()

    def get_url(self, op) -> str:
        return f"/api/v1/operations/{op.id}"


class OperationSerializer(serializers.ModelSerializer):
    log = serializers.SerializerMethodField()

    class Meta:
        model = Operation
        fields = [
            "id",
            "kind",
            "target_type",
            "target_id",
            "status",
            "step",
            "progress",
            "log",
            "error",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_log(self, op) -> list[dict]:
        return [
            {"time": e.created_at.isoformat(), "level": e.level, "message": e.message}
            for e in op.log_entries.all()
        ]


class TenantSerializer(serializers.ModelSerializer):
    limits = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()

    class Meta:
        model = Tenant
        fields = ["slug", "name", "tier", "status", "limits", "usage"]

    def get_limits(self, tenant) -> dict:
        return tenant.limits.as_dict()

    def get_usage(self, tenant) -> dict:
        return self.context["usage"]


class TokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "scope", "created_at", "last_used_at", "expires_at"]


class TokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scope = serializers.ChoiceField(choices=ApiToken.Scope.choices, default=ApiToken.Scope.WRITE)
    expires_in_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)

    def expires_at(self):
        days = self.validated_data.get("expires_in_days")
        return timezone.now() + timedelta(days=days) if days else None


class OperationFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Operation.Status.choices, required=False)
    kind = serializers.CharField(max_length=60, required=False)
