from django.db import models
from django.db.models import Q
from django.utils import timezone

from chom.crypto import EncryptedTextField


class Site(models.Model):
    class Type(models.TextChoices):
        STATIC = "static"
        PHP = "php"
        LARAVEL = "laravel"
        WORDPRESS = "wordpress"

    class Status(models.TextChoices):
        PENDING = "pending"
        DEPLOYING = "deploying"
        ACTIVE = "active"
        FAILED = "failed"
        SUSPENDED = "suspended"
        DELETING = "deleting"
        DELETED = "deleted"

    class SslStatus(models.TextChoices):
        NONE = "none"
        PENDING = "pending"
        ACTIVE = "active"
        FAILED = "failed"

    class TlsMode(models.TextChoices):
        AUTO = "auto"  # issued by itself once the domains resolve to the VPS
        MANUAL = "manual"  # issued when someone asks (POST /ssl)

    class TlsState(models.TextChoices):
        NONE = ""  # manual mode, nothing asked yet
        WAITING_DNS = "waiting_dns"
        ISSUING = "issuing"
        ACTIVE = "active"
        FAILED = "failed"

    tenant = models.ForeignKey("chom.Tenant", on_delete=models.PROTECT, related_name="sites")
    vps = models.ForeignKey("fleet.Vps", on_delete=models.PROTECT, related_name="sites")
    domain = models.CharField(max_length=253)
    aliases = models.JSONField(default=list, blank=True)
    type = models.CharField(max_length=12, choices=Type.choices)
    php_version = models.CharField(max_length=5, blank=True)
    repository_url = models.CharField(max_length=500, blank=True)
    repository_branch = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING, db_index=True)
    status_reason = models.TextField(blank=True)
    suspended_reason = models.CharField(max_length=100, blank=True)
    unix_user = models.CharField(max_length=32, blank=True)
    db_name = models.CharField(max_length=32, blank=True)
    db_user = models.CharField(max_length=32, blank=True)
    db_password = EncryptedTextField(blank=True)
    app_key = EncryptedTextField(blank=True)
    current_release = models.CharField(max_length=40, blank=True)
    ssl_status = models.CharField(max_length=10, choices=SslStatus.choices, default=SslStatus.NONE)
    ssl_expires_at = models.DateTimeField(null=True, blank=True)
    last_deployed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Automatic TLS: the state machine the site detail shows as `tls`.
    tls_mode = models.CharField(max_length=8, choices=TlsMode.choices, default=TlsMode.AUTO)
    tls_state = models.CharField(max_length=12, choices=TlsState.choices, default=TlsState.NONE, blank=True)
    tls_reason = models.TextField(blank=True)
    tls_waiting_since = models.DateTimeField(null=True, blank=True)
    tls_next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    tls_checks = models.PositiveIntegerField(default=0)
    # Private repositories: the site's deploy key (ed25519, OpenSSH formats) and the git host's
    # key, pinned on the first clone (a known_hosts line) and shown by its fingerprint.
    deploy_key_private = EncryptedTextField(blank=True)
    deploy_key_public = models.CharField(max_length=200, blank=True)
    deploy_key_created_at = models.DateTimeField(null=True, blank=True)
    git_host_key = models.TextField(blank=True)
    git_host_key_fingerprint = models.CharField(max_length=100, blank=True)
    # Deploy hooks: argv lists run as the site user in the new release, before (build) and
    # after (release) the switch.
    build_command = models.JSONField(default=list, blank=True)
    release_command = models.JSONField(default=list, blank=True)
    # Runtime controls: PHP settings from an allow-list (rendered as php_admin_value), and the
    # DNS account that answers DNS-01 challenges (wildcard names need it).
    php_settings = models.JSONField(default=dict, blank=True)
    dns_account = models.ForeignKey(
        "sites.DnsAccount", null=True, blank=True, on_delete=models.PROTECT, related_name="sites"
    )

    class Meta:
        ordering = ["domain"]
        constraints = [
            models.UniqueConstraint(
                fields=["domain"], condition=~Q(status="deleted"), name="one_live_site_per_domain"
            )
        ]

    def __str__(self) -> str:
        return self.domain

    @property
    def all_domains(self) -> list[str]:
        return [self.domain, *self.aliases]

    @property
    def is_going_away(self) -> bool:
        """Being deleted or deleted: nothing new may be queued for it."""
        return self.status in (self.Status.DELETING, self.Status.DELETED)

    @property
    def is_suspended(self) -> bool:
        """Suspended, or a suspension asked for and still to run (its reason is saved at once):
        whatever is rendered or started for the site meanwhile keeps it suspended (the vhost
        serves the suspension page; its cron timers and workers stay stopped)."""
        return self.status == self.Status.SUSPENDED or bool(self.suspended_reason)


class SiteHostname(models.Model):
    """Every name a live site answers to (its domain and aliases), unique across all tenants: the
    database, not a check-then-act in Python, decides which of two concurrent creates wins."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="hostnames")
    hostname = models.CharField(max_length=253, unique=True)

    def __str__(self) -> str:
        return self.hostname


class SiteVariable(models.Model):
    """One environment variable of a site: the site's, not a release's (a rollback keeps the
    current set). The value is encrypted and never returned after it was written, except by the
    audited reveal."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="variables")
    name = models.CharField(max_length=64)
    value = EncryptedTextField(blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["site", "name"], name="one_variable_name_per_site")]

    def __str__(self) -> str:
        return f"{self.site} {self.name}"


class Release(models.Model):
    class Status(models.TextChoices):
        BUILDING = "building"
        ACTIVE = "active"
        SUPERSEDED = "superseded"
        FAILED = "failed"
        PRUNED = "pruned"

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="releases")
    name = models.CharField(max_length=40)
    commit = models.CharField(max_length=80, blank=True)  # a git sha, or sha256:<hex> of an archive
    source = models.CharField(max_length=16, blank=True)  # git, upload, placeholder, distro-package...
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.BUILDING)
    error = models.TextField(blank=True)  # why a failed release failed, with the step
    created_at = models.DateTimeField(default=timezone.now)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["site", "name"], name="unique_release_name_per_site")]

    def __str__(self) -> str:
        return f"{self.site} {self.name}"


class SiteWebhook(models.Model):
    """A site's push-to-deploy endpoint: `/webhooks/git/<hook_id>`. The hook id is a random name,
    not the site's pk, so the URL says nothing about which site it deploys. The secret is
    encrypted, not hashed: verifying a GitHub or Gitea signature needs the secret itself."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="webhook")
    hook_id = models.CharField(max_length=64, unique=True)
    secret = EncryptedTextField()
    created_at = models.DateTimeField(default=timezone.now)
    rotated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.site} webhook"


class WebhookDelivery(models.Model):
    """A push already acted on, by the git host's delivery id: a redelivery answers with the same
    operation instead of deploying again. Only the newest few per hook are kept."""

    hook = models.ForeignKey(SiteWebhook, on_delete=models.CASCADE, related_name="deliveries")
    delivery_id = models.CharField(max_length=100)
    operation = models.ForeignKey(
        "chom.Operation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["hook", "delivery_id"], name="one_delivery_per_hook")]

    def __str__(self) -> str:
        return f"{self.hook} {self.delivery_id}"


class DnsAccount(models.Model):
    """A tenant's DNS provider credentials (DigitalOcean DNS, Cloudflare): CHOM writes the ACME
    DNS-01 TXT records through it. The token is encrypted and never returned."""

    class Provider(models.TextChoices):
        DIGITALOCEAN = "digitalocean"
        CLOUDFLARE = "cloudflare"

    tenant = models.ForeignKey("chom.Tenant", on_delete=models.CASCADE, related_name="dns_accounts")
    name = models.CharField(max_length=100)
    provider = models.CharField(max_length=16, choices=Provider.choices)
    token = EncryptedTextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="one_dns_account_name_per_tenant")
        ]

    def __str__(self) -> str:
        return f"{self.tenant} {self.name}"


class CronJob(models.Model):
    """A site's scheduled command: a systemd timer in the site's slice on the VPS, run as the
    site user in current/ with the site's environment. The last run is reported back."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="cron_jobs")
    schedule = models.CharField(max_length=100)  # five fields, or @hourly / @daily ...
    command = models.JSONField(default=list)  # argv
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_exit_code = models.IntegerField(null=True, blank=True)
    last_output = models.TextField(blank=True)  # the tail

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.site} cron {self.pk}"


class Worker(models.Model):
    """A site's long-running command (queue worker, node process): a systemd service in the
    site's slice, restarted on deploy. Its status is read back from the VPS."""

    class Restart(models.TextChoices):
        ALWAYS = "always"
        ON_FAILURE = "on-failure"

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="workers")
    name = models.CharField(max_length=40)
    command = models.JSONField(default=list)  # argv
    processes = models.PositiveSmallIntegerField(default=1)
    restart = models.CharField(max_length=12, choices=Restart.choices, default=Restart.ALWAYS)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    status = models.JSONField(default=dict, blank=True)  # running/restarts/last exit, as last read
    status_checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["site", "name"], name="one_worker_name_per_site")]

    def __str__(self) -> str:
        return f"{self.site} worker {self.name}"


class Redirect(models.Model):
    class Match(models.TextChoices):
        EXACT = "exact"
        PREFIX = "prefix"

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="redirects")
    source = models.CharField(max_length=500)  # a path
    match = models.CharField(max_length=8, choices=Match.choices, default=Match.EXACT)
    destination = models.CharField(max_length=2000)  # a URL
    status_code = models.PositiveSmallIntegerField(default=301)
    preserve_query = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.site} {self.source} -> {self.destination}"


class ResponseHeader(models.Model):
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="response_headers")
    name = models.CharField(max_length=100)
    value = models.CharField(max_length=2000)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.site} {self.name}"


class BasicAuthUser(models.Model):
    """HTTP basic auth for the whole site (path_prefix "/") or a path prefix. CHOM stores only the
    bcrypt hash, which it writes into an htpasswd file readable by root and nginx only."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="basic_auth_users")
    path_prefix = models.CharField(max_length=500, default="/")
    username = models.CharField(max_length=64)
    password_hash = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["path_prefix", "username"]
        constraints = [
            models.UniqueConstraint(
                fields=["site", "path_prefix", "username"], name="one_basic_auth_user_per_prefix"
            )
        ]

    def __str__(self) -> str:
        return f"{self.site} {self.path_prefix} {self.username}"
