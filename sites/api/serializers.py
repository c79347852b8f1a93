import re

from rest_framework import serializers

from chom.api.serializers import OperationRefSerializer
from chom.models import Operation
from sites.domains import InvalidDomain, normalize_domain
from sites.models import Release, Site
from sites.repositories import RepositoryRefused, repository_url_check
from sites.types import SITE_TYPES

# Remote URLs only: a file:// or ssh:// URL would make the server read its own disk or keys.
REPOSITORY_URL_RE = re.compile(
    r"(https?|git)://([A-Za-z0-9._~-]{1,64}@)?[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%+/-]*)?"
)
BRANCH_RE = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]{1,100}$")


class DomainField(serializers.CharField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        try:
            return normalize_domain(value)
        except InvalidDomain as exc:
            raise serializers.ValidationError(str(exc))


class RepositorySerializer(serializers.Serializer):
    url = serializers.CharField(max_length=500)
    branch = serializers.CharField(max_length=100, required=False, default="main")

    def validate_url(self, value: str) -> str:
        try:
            repository_url_check(value)  # first: a password in the URL gets its own message
        except RepositoryRefused as exc:
            raise serializers.ValidationError(str(exc))
        if not REPOSITORY_URL_RE.fullmatch(value):
            raise serializers.ValidationError("Use an http(s):// or git:// repository URL.")
        return value

    def validate_branch(self, value: str) -> str:
        if not BRANCH_RE.fullmatch(value):
            raise serializers.ValidationError("Not a valid branch name.")
        return value


class SiteCreateSerializer(serializers.Serializer):
    domain = DomainField(max_length=300)
    type = serializers.ChoiceField(choices=Site.Type.choices)
    php_version = serializers.RegexField(r"^[0-9]\.[0-9]\Z", required=False, default="")
    repository = RepositorySerializer(required=False)
    aliases = serializers.ListField(
        child=DomainField(max_length=300), required=False, default=list, max_length=20
    )

    def validate(self, data):
        aliases = data.get("aliases", [])
        if data["domain"] in aliases or len(set(aliases)) != len(aliases):
            raise serializers.ValidationError(
                {"aliases": "Aliases must be distinct from each other and the domain."}
            )
        if SITE_TYPES[data["type"]].requires_repository and not data.get("repository"):
            raise serializers.ValidationError({"repository": "A Laravel site deploys from a repository."})
        return data


class SiteUpdateSerializer(serializers.Serializer):
    php_version = serializers.RegexField(r"^[0-9]\.[0-9]\Z", required=False)
    aliases = serializers.ListField(child=DomainField(max_length=300), required=False, max_length=20)
    repository = RepositorySerializer(required=False)


class SiteFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Site.Status.choices, required=False, default="")
    type = serializers.ChoiceField(choices=Site.Type.choices, required=False, default="")
    search = serializers.CharField(max_length=100, required=False, default="")


class ReleaseSerializer(serializers.ModelSerializer):
    class Meta:
        model = Release
        fields = ["name", "commit", "status", "error", "created_at", "activated_at"]


class SiteSerializer(serializers.ModelSerializer):
    vps = serializers.SerializerMethodField()
    repository = serializers.SerializerMethodField()
    ssl = serializers.SerializerMethodField()
    last_deploy = serializers.SerializerMethodField()

    class Meta:
        model = Site
        fields = [
            "id",
            "domain",
            "aliases",
            "type",
            "status",
            "status_reason",
            "php_version",
            "vps",
            "repository",
            "current_release",
            "ssl",
            "last_deployed_at",
            "last_deploy",
            "created_at",
        ]

    def get_vps(self, site) -> dict:
        return {"id": site.vps_id, "ip_address": site.vps.ip_address}

    def get_repository(self, site) -> dict | None:
        return {"url": site.repository_url, "branch": site.repository_branch} if site.repository_url else None

    def get_ssl(self, site) -> dict:
        return {"status": site.ssl_status, "expires_at": site.ssl_expires_at}

    def get_last_deploy(self, site) -> dict | None:
        op = (
            Operation.objects.filter(target_type="sites.site", target_id=str(site.pk), kind="site.deploy")
            .only("id", "status", "finished_at", "error")
            .first()
        )
        if op is None:
            return None
        return {
            "operation": OperationRefSerializer(op).data,
            "status": op.status,
            "finished_at": op.finished_at,
            "error": op.error,
        }


class SiteDetailSerializer(SiteSerializer):
    releases = ReleaseSerializer(many=True, read_only=True)

    class Meta(SiteSerializer.Meta):
        fields = [*SiteSerializer.Meta.fields, "releases"]


class SiteWebhookSerializer(serializers.Serializer):
    """The push-to-deploy hook as created or rotated: the secret is in this answer only."""

    url = serializers.CharField()
    secret = serializers.CharField()
