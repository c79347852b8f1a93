import re

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from chom.api.serializers import OperationRefSerializer
from chom.models import Operation
from sites.api.hooks import HooksSerializer, hooks_data
from sites.domains import InvalidDomain, normalize_domain
from sites.git_ssh import key_fingerprint
from sites.models import Release, Site
from sites.repositories import RepositoryRefused, repository_url_check
from sites.types import SITE_TYPES

# Remote URLs only (a file:// URL would make the server read its own disk). SSH ones clone with
# the site's deploy key: no "%" escapes in their paths, and neither a host nor a user may start
# with "-" (ssh would read it as an option, e.g. -oProxyCommand=...).
REPOSITORY_URL_RE = re.compile(
    r"(https?|git)://([A-Za-z0-9._~-]{1,64}@)?[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?(/[A-Za-z0-9._~%+/-]*)?"
    r"|ssh://([A-Za-z0-9_][A-Za-z0-9._-]{0,63}@)?[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?/[A-Za-z0-9._~+/-]+"
    r"|[A-Za-z0-9_][A-Za-z0-9._-]{0,63}@[A-Za-z0-9][A-Za-z0-9.-]*:[A-Za-z0-9._~+/][A-Za-z0-9._~+/-]*"
)
BRANCH_RE = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]{1,100}$")


class DomainField(serializers.CharField):
    def __init__(self, *, wildcard: bool = False, **kwargs):
        self.wildcard = wildcard  # a leading "*." label is allowed (tier-gated by the service)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        try:
            return normalize_domain(value, wildcard=self.wildcard)
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
            raise serializers.ValidationError(
                "Use an https://, git://, ssh:// or git@host:owner/repo.git repository URL."
            )
        if ".." in re.split("[/:]", value):
            raise serializers.ValidationError("The repository path may not contain '..'.")
        return value

    def validate_branch(self, value: str) -> str:
        if not BRANCH_RE.fullmatch(value):
            raise serializers.ValidationError("Not a valid branch name.")
        return value


class SiteCreateSerializer(serializers.Serializer):
    domain = DomainField(
        max_length=300,
        wildcard=True,
        help_text="A host name, or a wildcard such as *.example.com (tiers with wildcard_domains; "
        "needs dns_account: its certificate is issued over DNS-01).",
    )
    type = serializers.ChoiceField(choices=Site.Type.choices)
    php_version = serializers.RegexField(r"^[0-9]\.[0-9]\Z", required=False, default="")
    repository = RepositorySerializer(required=False)
    aliases = serializers.ListField(
        child=DomainField(max_length=300), required=False, default=list, max_length=20
    )
    tls = serializers.ChoiceField(
        choices=Site.TlsMode.choices,
        required=False,
        default=Site.TlsMode.AUTO,
        help_text="auto: the certificate is issued by itself once every name resolves to the server; "
        "manual: only when asked (POST /sites/{id}/ssl).",
    )
    dns_account = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        help_text="A DNS account (/api/v1/dns-accounts) holding the zone: the certificate is then "
        "issued over DNS-01 (required for wildcard domains).",
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
    hooks = HooksSerializer(required=False)


class SiteFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Site.Status.choices, required=False, default="")
    type = serializers.ChoiceField(choices=Site.Type.choices, required=False, default="")
    search = serializers.CharField(max_length=100, required=False, default="")


class ReleaseSerializer(serializers.ModelSerializer):
    class Meta:
        model = Release
        fields = ["name", "commit", "status", "error", "created_at", "activated_at"]


class TlsSerializer(serializers.Serializer):
    """Automatic TLS: where the site is on its way to a certificate (`ssl` is the certificate)."""

    mode = serializers.ChoiceField(source="tls_mode", choices=Site.TlsMode.choices)
    state = serializers.ChoiceField(source="tls_state", choices=Site.TlsState.choices)
    reason = serializers.CharField(source="tls_reason")
    waiting_since = serializers.DateTimeField(source="tls_waiting_since", allow_null=True)
    next_check_at = serializers.DateTimeField(source="tls_next_check_at", allow_null=True)


class SiteSerializer(serializers.ModelSerializer):
    vps = serializers.SerializerMethodField()
    repository = serializers.SerializerMethodField()
    ssl = serializers.SerializerMethodField()
    tls = TlsSerializer(source="*", read_only=True)
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
            "tls",
            "dns_account",
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


class DeployKeySerializer(serializers.Serializer):
    """The public half of a site's deploy key, to add to the repository (read-only access)."""

    public_key = serializers.CharField()
    fingerprint = serializers.CharField()
    created_at = serializers.DateTimeField()


class GitHostKeySerializer(serializers.Serializer):
    """The git server's host key pinned on the first SSH clone."""

    fingerprint = serializers.CharField()


def deploy_key_data(site: Site) -> dict | None:
    if not site.deploy_key_public:
        return None
    return {
        "public_key": site.deploy_key_public,
        "fingerprint": key_fingerprint(site.deploy_key_public),
        "created_at": site.deploy_key_created_at,
    }


class SiteDetailSerializer(SiteSerializer):
    releases = ReleaseSerializer(many=True, read_only=True)
    deploy_key = serializers.SerializerMethodField()
    git_host_key = serializers.SerializerMethodField()
    hooks = serializers.SerializerMethodField()

    class Meta(SiteSerializer.Meta):
        fields = [*SiteSerializer.Meta.fields, "releases", "deploy_key", "git_host_key", "hooks"]

    @extend_schema_field(HooksSerializer)
    def get_hooks(self, site) -> dict:
        return hooks_data(site)

    @extend_schema_field(DeployKeySerializer(allow_null=True))
    def get_deploy_key(self, site) -> dict | None:
        data = deploy_key_data(site)
        return DeployKeySerializer(data).data if data else None

    @extend_schema_field(GitHostKeySerializer(allow_null=True))
    def get_git_host_key(self, site) -> dict | None:
        return {"fingerprint": site.git_host_key_fingerprint} if site.git_host_key_fingerprint else None


class SiteWebhookSerializer(serializers.Serializer):
    """The push-to-deploy hook as created or rotated: the secret is in this answer only."""

    url = serializers.CharField()
    secret = serializers.CharField()
