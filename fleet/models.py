from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from chom.crypto import EncryptedTextField

VPS_NAME_RE = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z"  # \Z: "$" would accept a trailing newline
vps_name_validator = RegexValidator(
    VPS_NAME_RE, "lowercase letters, digits and dashes; no leading/trailing dash"
)


class FleetKey(models.Model):
    """CHOM's SSH identity towards the fleet (ed25519). One active row."""

    name = models.CharField(max_length=50, unique=True, default="fleet")
    private_key = EncryptedTextField()
    public_key = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class ProviderCredential(models.Model):
    """A cloud account CHOM may create servers in. The API token is encrypted at rest."""

    provider = models.CharField(max_length=30, unique=True)
    token = EncryptedTextField()
    base_url = models.URLField(blank=True)
    default_region = models.CharField(max_length=50, blank=True)
    default_size = models.CharField(max_length=50, blank=True)
    default_image = models.CharField(max_length=100, blank=True)
    is_default = models.BooleanField(default=False, help_text="Used to grow the fleet automatically")

    def __str__(self) -> str:
        return self.provider


class Vps(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        PROVISIONING = "provisioning"
        BOOTSTRAPPING = "bootstrapping"
        ACTIVE = "active"
        DEGRADED = "degraded"
        UNREACHABLE = "unreachable"
        FAILED = "failed"
        DECOMMISSIONING = "decommissioning"

    class Kind(models.TextChoices):
        SHARED = "shared"
        DEDICATED = "dedicated"

    name = models.CharField(max_length=63, unique=True, validators=[vps_name_validator])
    provider = models.CharField(max_length=30)
    provider_id = models.CharField(max_length=100, blank=True)
    region = models.CharField(max_length=50, blank=True)
    size = models.CharField(max_length=50, blank=True)
    # The cloud image asked for (empty: the cloud account's default, else the cloud's Debian 12).
    image = models.CharField(max_length=100, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    ssh_port = models.PositiveIntegerField(
        default=22, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    ssh_user = models.CharField(max_length=32, default="root")
    host_key = models.TextField(blank=True, help_text="Pinned on first bootstrap")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.SHARED)
    tenant = models.ForeignKey(
        "chom.Tenant", null=True, blank=True, on_delete=models.PROTECT, related_name="dedicated_vps"
    )
    max_sites = models.PositiveIntegerField(default=50)
    cordoned = models.BooleanField(
        default=False, help_text="Takes no new sites; the ones it has stay and keep being served"
    )
    os = models.CharField(max_length=100, blank=True)
    php_versions = models.JSONField(default=list, blank=True)
    agent_version = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    status_reason = models.TextField(blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    missed_checks = models.PositiveIntegerField(default=0)
    facts = models.JSONField(default=dict, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name = "VPS"
        verbose_name_plural = "VPSes"

    def __str__(self) -> str:
        return self.name


class MariaDBMonitorAccount(models.Model):
    """The MariaDB account a VPS's mysqld exporter logs in with (vpsmanager db-monitor-ensure:
    'chom_exporter'@'localhost', PROCESS, REPLICATION CLIENT, SELECT on performance_schema). The
    password is encrypted rather than hashed: every bootstrap renders the same exporter config from
    it, so a second run changes nothing. Its presence means the bootstrap enabled the exporter."""

    USER = "chom_exporter"  # site databases' users are site<N>: never this one

    vps = models.OneToOneField(Vps, on_delete=models.CASCADE, related_name="mariadb_monitor_account")
    password = EncryptedTextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "MariaDB monitoring account"

    def __str__(self) -> str:
        return f"MariaDB monitoring account of VPS {self.vps_id}"
