"""Writes of the fleet: VPS lifecycle (create, bootstrap, destroy), health and capacity."""

import json
import logging
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from chom.alerts import alert_raise, alert_resolve
from chom.errors import ApplicationError
from chom.operations import OperationContext, OperationError, operation_create, register
from chom.services import audit_record
from fleet import selectors
from fleet.models import FleetKey, MariaDBMonitorAccount, ProviderCredential, Vps
from fleet.providers import PROVIDERS, ProviderError, ServerSpec, get_provider
from fleet.remote.agent_client import Agent, AgentError
from fleet.remote.commands import Command
from fleet.remote.transport import HostKeyMismatch, ParamikoTransport, TransportError, host_key_fingerprint

logger = logging.getLogger(__name__)

# PHP that each supported distribution ships (what `php-fpm` means there).
DISTRO_PHP = {("debian", "12"): "8.2", ("ubuntu", "24.04"): "8.3", ("ubuntu", "22.04"): "8.1"}
CORE_SERVICES = ("nginx", "mariadb")
EXPORTER_PORTS = (9100, 9113, 9104, 3903)  # node, nginx, mysqld exporters, mtail (per-site requests)


class FleetError(OperationError):
    pass


# --- keys and transports ------------------------------------------------------------------------


def fleet_key_get_or_create() -> FleetKey:
    key = FleetKey.objects.filter(name="fleet").first()
    if key:
        return key
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    with transaction.atomic():
        key, _ = FleetKey.objects.get_or_create(
            name="fleet", defaults={"private_key": private_pem, "public_key": f"{public.decode()} chom-fleet"}
        )
    return key


def transport_for(vps: Vps, *, connect_timeout: float | None = None) -> ParamikoTransport:
    """An SSH transport to VPS; CONNECT_TIMEOUT shortens the fleet's (quick status reads)."""
    if not vps.ip_address:
        raise FleetError(f"VPS {vps.name} has no IP address yet")
    return ParamikoTransport(
        host=vps.ip_address,
        port=vps.ssh_port,
        username=vps.ssh_user,
        private_key=fleet_key_get_or_create().private_key,
        pinned_host_key=vps.host_key or None,
        connect_timeout=min(
            connect_timeout or settings.FLEET_SSH_CONNECT_TIMEOUT, settings.FLEET_SSH_CONNECT_TIMEOUT
        ),
        command_timeout=settings.FLEET_SSH_COMMAND_TIMEOUT,
    )


def provider_for(name: str):
    if name not in PROVIDERS:
        raise ProviderError(f"unknown provider {name!r}", permanent=True)
    if name == "local":
        return get_provider(
            "local",
            base_dir=settings.LOCAL_FLEET_DIR,
            bridge=settings.LOCAL_FLEET_BRIDGE,
            subnet=settings.LOCAL_FLEET_SUBNET,
            enabled=settings.CHOM_LOCAL_PROVIDER,
        )
    if name == "manual":
        return get_provider("manual")
    credential = ProviderCredential.objects.filter(provider=name).first()
    if credential is None:
        raise ProviderError(f"no API token configured for provider {name!r}", permanent=True)
    return get_provider(name, token=credential.token, base_url=credential.base_url or None)


# --- requests from the API / dashboard ------------------------------------------------------------


def vps_create(
    *,
    name: str,
    provider: str,
    kind: str = Vps.Kind.SHARED,
    ip_address: str | None = None,
    ssh_port: int = 22,
    max_sites: int = 50,
    region: str = "",
    size: str = "",
    image: str = "",
    tenant=None,
    labels: dict | None = None,
    host_key: str = "",
    actor=None,
    source_ip=None,
):
    """Record the VPS and queue its provisioning + bootstrap. Returns (vps, operation).

    HOST_KEY pins the server's key before the first connection (a server the operator brought,
    whose key they confirmed); without it the key is pinned on first use."""
    if provider == "local" and not settings.CHOM_LOCAL_PROVIDER:
        message = "the local provider is disabled on this installation"
        raise ApplicationError(400, "invalid_input", message, {"provider": [message]})
    try:
        with transaction.atomic():
            vps = Vps.objects.create(
                name=name,
                provider=provider,
                kind=kind,
                ip_address=ip_address,
                ssh_port=ssh_port,
                max_sites=max_sites,
                region=region,
                size=size,
                image=image,
                tenant=tenant,
                labels=labels or {},
                host_key=host_key,
            )
            op = operation_create(kind="vps.create", target=vps, actor=actor)
            audit_record(
                action="vps.created",
                actor=actor,
                target=f"vps:{name}",
                source_ip=source_ip,
                data={"provider": provider},
            )
    except IntegrityError:  # the name is unique
        raise ApplicationError(409, "name_taken", f"A VPS named {name!r} already exists.")
    return vps, op


def provider_credential_save(
    *,
    provider: str,
    token: str = "",
    base_url: str = "",
    default_region: str = "",
    default_size: str = "",
    default_image: str = "",
    is_default: bool = False,
    actor=None,
) -> ProviderCredential:
    """Add or change the cloud account of PROVIDER. The token is checked against the provider
    before it is stored (encrypted); an empty TOKEN keeps the stored one. One account at most is
    the default (the one auto-grow uses)."""
    if provider not in PROVIDERS or not PROVIDERS[provider].distro_images:
        raise ApplicationError(
            400, "invalid_input", f"{provider!r} is not a cloud provider.", {"provider": ["unknown"]}
        )
    credential = ProviderCredential.objects.filter(provider=provider).first() or ProviderCredential(
        provider=provider
    )
    token = token.strip() or credential.token
    if not token:
        raise ApplicationError(400, "invalid_input", "An API token is required.", {"token": ["required"]})
    try:
        account = get_provider(provider, token=token, base_url=base_url or None).account()
    except ProviderError as exc:
        raise ApplicationError(
            400, "invalid_token", f"{provider} refused the token: {exc}", {"token": [str(exc)]}
        )
    credential.token, credential.base_url = token, base_url
    credential.default_region, credential.default_size, credential.default_image = (
        default_region,
        default_size,
        default_image,
    )
    credential.is_default = is_default
    with transaction.atomic():
        if is_default:
            ProviderCredential.objects.exclude(provider=provider).update(is_default=False)
        credential.save()
        audit_record(
            action="cloud_account.saved",
            actor=actor,
            target=f"cloud:{provider}",
            data={"account": account, "is_default": is_default},
        )
    return credential


BUILDING = (Vps.Status.PENDING, Vps.Status.PROVISIONING, Vps.Status.BOOTSTRAPPING)


def vps_dedicated_reserve(*, tenant, actor=None) -> Vps | None:
    """A new dedicated VPS for TENANT at the default cloud account, not yet built: the first
    site's deploy operation builds it (`vps_ensure_ready`), so the site request answers at once.
    None when no default cloud account exists (the caller falls back to the shared fleet).
    Refused while the tenant already has FLEET_MAX_BUILDING_PER_TENANT servers being built, or
    the whole fleet FLEET_MAX_BUILDING."""
    credential = ProviderCredential.objects.filter(is_default=True).first()
    if credential is None:
        return None
    building = Vps.objects.filter(status__in=BUILDING)
    if building.filter(tenant=tenant).count() >= settings.FLEET_MAX_BUILDING_PER_TENANT:
        raise ApplicationError(
            429,
            "vps_building",
            "A dedicated server is already being built for this account; try again once it is ready.",
        )
    if building.count() >= settings.FLEET_MAX_BUILDING:
        raise ApplicationError(
            503,
            "fleet_busy",
            f"{building.count()} servers are being built right now; try again in a few minutes.",
        )
    name = f"ded-{tenant.slug[:30].strip('-')}-{timezone.now():%Y%m%d%H%M%S}".replace("_", "-")
    vps = Vps.objects.create(
        name=name,
        provider=credential.provider,
        kind=Vps.Kind.DEDICATED,
        tenant=tenant,
        region=credential.default_region,
        size=credential.default_size,
        max_sites=tenant.limits.max_sites,
    )
    audit_record(
        action="vps.created",
        actor=actor,
        tenant=tenant,
        target=f"vps:{name}",
        data={"provider": credential.provider, "dedicated_to": tenant.slug, "on_demand": True},
    )
    return vps


def vps_dedicated_allocate(*, tenant, actor=None) -> Vps | None:
    """Where a tenant with dedicated servers puts its next site, when a default cloud account can
    build them: its own server with room (active, or still being built), else a new one reserved
    now. None without a default cloud account (then the shared fleet takes the site, as before)."""
    if not ProviderCredential.objects.filter(is_default=True).exists():
        return None
    own = (
        Vps.objects.filter(
            tenant=tenant, kind=Vps.Kind.DEDICATED, cordoned=False, status__in=(Vps.Status.ACTIVE, *BUILDING)
        )
        .annotate(used=Count("sites", filter=~Q(sites__status="deleted"), distinct=True))
        .filter(used__lt=F("max_sites"))
        .order_by("used", "name")
        .first()
    )
    return own or vps_dedicated_reserve(tenant=tenant, actor=actor)


def vps_ensure_ready(*, ctx: OperationContext, vps: Vps, wait_seconds: float = 900) -> None:
    """Build VPS now when it is still pending (the first operation to claim it does; others wait
    for it, bounded), so a site's operation can go on with an active server."""
    import time

    if Vps.objects.filter(pk=vps.pk, status=Vps.Status.PENDING).update(status=Vps.Status.PROVISIONING):
        ctx.log(f"building dedicated server {vps.name} at {vps.provider} first")
        vps.refresh_from_db()
        try:
            vps_provision(ctx=ctx, vps=vps)
            vps_bootstrap_connect(ctx=ctx, vps=vps)
        except FleetError as exc:
            # A retry of the operation builds it again (PENDING); a permanent failure shows.
            _set_status(vps, Vps.Status.PENDING if exc.transient else Vps.Status.FAILED, str(exc))
            raise
        return
    deadline = time.monotonic() + wait_seconds
    while True:
        vps.refresh_from_db()
        if vps.status in (Vps.Status.ACTIVE, Vps.Status.DEGRADED):
            return
        if vps.status not in BUILDING:
            raise FleetError(f"server {vps.name} is {vps.status}: {vps.status_reason or 'not usable'}")
        if time.monotonic() > deadline:
            raise FleetError(f"server {vps.name} still {vps.status} after {wait_seconds:g}s", transient=True)
        time.sleep(2)


def provider_credential_delete(*, credential: ProviderCredential, actor=None) -> None:
    in_use = Vps.objects.filter(provider=credential.provider).count()
    if in_use:
        raise ApplicationError(
            409,
            "cloud_account_in_use",
            f"{in_use} VPS(es) still run at {credential.provider}; destroy them first.",
        )
    credential.delete()
    audit_record(action="cloud_account.deleted", actor=actor, target=f"cloud:{credential.provider}")


def vps_update(*, vps: Vps, actor=None, **fields) -> Vps:
    for name, value in fields.items():
        setattr(vps, name, value)
    vps.full_clean()
    vps.save(update_fields=list(fields))
    audit_record(action="vps.updated", actor=actor, target=f"vps:{vps.name}", data=fields)
    return vps


def vps_cordon(*, vps: Vps, cordoned: bool, actor=None) -> Vps:
    """A cordoned VPS takes no new sites (allocation and the shared capacity leave it out); the
    sites it has stay and keep being served. Moving them away is a separate drain."""
    if vps.cordoned != cordoned:
        Vps.objects.filter(pk=vps.pk).update(cordoned=cordoned)
        vps.cordoned = cordoned
        audit_record(
            action="vps.cordoned" if cordoned else "vps.uncordoned", actor=actor, target=f"vps:{vps.name}"
        )
    return vps


def vps_bootstrap_request(*, vps: Vps, actor=None):
    if vps.status == Vps.Status.DECOMMISSIONING:
        raise ApplicationError(409, "vps_decommissioning", "This VPS is being deleted.")
    with transaction.atomic():
        return operation_create(kind="vps.bootstrap", target=vps, actor=actor)


def vps_delete_request(*, vps: Vps, actor=None, source_ip=None):
    live = selectors.vps_site_count(vps)
    if live:
        raise ApplicationError(
            409, "vps_in_use", f"{live} site(s) still live on {vps.name}; move or delete them first"
        )
    with transaction.atomic():
        Vps.objects.filter(pk=vps.pk).update(status=Vps.Status.DECOMMISSIONING)
        audit_record(
            action="vps.delete_requested", actor=actor, target=f"vps:{vps.name}", source_ip=source_ip
        )
        return operation_create(kind="vps.destroy", target=vps, actor=actor)


# --- operations -------------------------------------------------------------------------------------


def _vps_of(ctx: OperationContext) -> Vps:
    return Vps.objects.get(pk=int(ctx.operation.target_id))


def _set_status(vps: Vps, status: str, reason: str = "") -> None:
    Vps.objects.filter(pk=vps.pk).update(status=status, status_reason=reason[:2000])
    vps.status, vps.status_reason = status, reason


def _mark_failed(ctx: OperationContext, reason: str) -> None:
    vps = Vps.objects.filter(pk=int(ctx.operation.target_id)).first()
    if vps and vps.status != Vps.Status.DECOMMISSIONING:
        _set_status(vps, Vps.Status.FAILED, reason)


@register("vps.create", queue="remote", soft_time_limit=1500, time_limit=1560, on_failure=_mark_failed)
def vps_create_run(ctx: OperationContext) -> dict:
    vps = _vps_of(ctx)
    vps_provision(ctx=ctx, vps=vps)
    return vps_bootstrap_connect(ctx=ctx, vps=vps)


@register("vps.bootstrap", queue="remote", soft_time_limit=1500, time_limit=1560, on_failure=_mark_failed)
def vps_bootstrap_run(ctx: OperationContext) -> dict:
    return vps_bootstrap_connect(ctx=ctx, vps=_vps_of(ctx))


@register("vps.destroy", queue="remote", soft_time_limit=600, time_limit=660, on_failure=_mark_failed)
def vps_destroy_run(ctx: OperationContext) -> dict:
    vps = _vps_of(ctx)
    if selectors.vps_site_count(vps):
        raise FleetError(
            f"sites were added to {vps.name} after deletion was requested; refusing to destroy it"
        )
    ctx.step(f"destroy at provider {vps.provider}", progress=30)
    try:
        if vps.provider_id:
            provider_for(vps.provider).destroy(vps.provider_id)
    except ProviderError as exc:
        raise FleetError(
            f"provider {vps.provider} could not destroy {vps.provider_id}: {exc}", transient=not exc.permanent
        )
    ctx.step("forget the VPS", progress=90)
    alert_resolve(name="vps_unreachable", key=vps.name)
    name = vps.name
    vps.delete()
    audit_record(action="vps.destroyed", target=f"vps:{name}")
    return {"deleted": name}


def vps_server_spec(*, vps: Vps, provider) -> ServerSpec:
    """What to ask the cloud for: the VPS's own region, size and image, else the cloud account's
    defaults, else the provider's (its Debian 12 image)."""
    credential = ProviderCredential.objects.filter(provider=vps.provider).first()
    account = {
        "region": credential.default_region if credential else "",
        "size": credential.default_size if credential else "",
        "image": credential.default_image if credential else "",
    }
    return ServerSpec(
        name=vps.name,
        region=vps.region or account["region"] or provider.default_region,
        size=vps.size or account["size"] or provider.default_size,
        image=vps.image or account["image"] or provider.default_image(),
        ssh_public_key=fleet_key_get_or_create().public_key,
        ip_address=vps.ip_address,
    )


def vps_provision(*, ctx: OperationContext, vps: Vps) -> None:
    _set_status(vps, Vps.Status.PROVISIONING)
    provider = provider_for(vps.provider)
    ctx.step(f"provision with {vps.provider}", progress=5)
    spec = vps_server_spec(vps=vps, provider=provider)
    if not vps.provider_id and provider.distro_images:
        ctx.log(f"asking {vps.provider} for {spec.size} in {spec.region}, image {spec.image}")
        Vps.objects.filter(pk=vps.pk).update(region=spec.region, size=spec.size)
    try:
        server = provider.get(vps.provider_id) if vps.provider_id else provider.create(spec)
        if server.status != "running" or not (server.ip_address or vps.ip_address):
            ctx.log(f"server {server.provider_id} is {server.status}; waiting until it runs")
            server = provider.wait_until_running(server.provider_id)
    except ProviderError as exc:
        raise FleetError(f"{vps.provider}: {exc}", transient=not exc.permanent)
    Vps.objects.filter(pk=vps.pk).update(
        provider_id=server.provider_id, ip_address=server.ip_address or vps.ip_address
    )
    vps.refresh_from_db()
    ctx.log(f"server {server.provider_id} running at {vps.ip_address}")


def vps_bootstrap_connect(*, ctx: OperationContext, vps: Vps) -> dict:
    """Connect (pinning the host key on first use, refusing a changed one) and run the bootstrap."""
    _set_status(vps, Vps.Status.BOOTSTRAPPING)
    transport = transport_for(vps)
    try:
        with transport:
            if not vps.host_key:
                Vps.objects.filter(pk=vps.pk).update(host_key=transport.host_key)
                vps.host_key = transport.host_key
                ctx.log(f"host key pinned on first connection: {host_key_fingerprint(transport.host_key)}")
            changes = vps_bootstrap(vps=vps, agent=Agent(transport), log=ctx.log, step=ctx.step)
    except HostKeyMismatch as exc:
        _host_key_alert(vps, str(exc))
        raise FleetError(str(exc))
    except TransportError as exc:
        raise FleetError(f"SSH to {vps.name}: {exc}", transient=exc.transient)
    except AgentError as exc:
        raise FleetError(str(exc), transient=exc.transient)
    return {"changed_steps": changes}


# --- bootstrap: facts → diff → commands -----------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapStep:
    name: str
    run: Callable[[Agent, dict], bool]


def _php_version(facts: dict) -> str:
    os_ = facts.get("os", {})
    version = DISTRO_PHP.get((os_.get("id"), os_.get("version_id")))
    if not version:
        raise FleetError(
            f"unsupported OS {os_.get('pretty') or os_}: CHOM supports Debian 12 and Ubuntu 24.04"
        )
    return version


def bootstrap_packages(php: str) -> list[str]:
    return [
        "nginx",
        f"php{php}-fpm",
        f"php{php}-cli",
        f"php{php}-mysql",
        f"php{php}-mbstring",
        f"php{php}-xml",
        f"php{php}-curl",
        f"php{php}-zip",
        f"php{php}-gd",
        f"php{php}-intl",
        "composer",
        "unzip",
        "git",
        "mariadb-server",
        "mariadb-client",
        "supervisor",
        "certbot",
        "ufw",
        "cron",
        "logrotate",
        "quota",
        "prometheus-node-exporter",
        "prometheus-nginx-exporter",
        "prometheus-mysqld-exporter",
        "mtail",
    ]


def bootstrap_services(php: str) -> list[str]:
    """Ensured enabled and running in one agent call; MariaDB has its own step."""
    return ["nginx", f"php{php}-fpm", "supervisor", "cron", "prometheus-node-exporter"]


def vps_firewall_rules(*, ssh_port: int, monitoring_source: str) -> list[dict]:
    rules = [{"port": ssh_port, "proto": "tcp"}, {"port": 80, "proto": "tcp"}, {"port": 443, "proto": "tcp"}]
    if monitoring_source:
        rules += [{"port": p, "proto": "tcp", "from": monitoring_source} for p in EXPORTER_PORTS]
    return rules


# Other apps add their own bootstrap steps (e.g. observability's log shipper) without the fleet
# importing them: name -> fn(*, vps, agent, log) -> bool (True when it changed something).
EXTRA_BOOTSTRAP_STEPS: dict[str, Callable[..., bool]] = {}


def register_bootstrap_step(name: str):
    def decorator(fn):
        EXTRA_BOOTSTRAP_STEPS[name] = fn
        return fn

    return decorator


def vps_bootstrap(*, vps: Vps, agent: Agent, log: Callable[[str], None], step: Callable[..., None]) -> int:
    """Bring a VPS to CHOM's baseline. Every step reads first and changes only what differs, so a
    second run reports "no change" for each. Returns the number of steps that changed something."""
    changed_steps = 0

    def record(name: str, changed: bool, detail: list[str] | None = None) -> None:
        nonlocal changed_steps
        for line in detail or []:
            log(f"  {line}")
        log(f"{name}: {'changed' if changed else 'no change'}")
        changed_steps += changed

    step("agent", progress=10)
    record("agent", agent.ensure_installed(), [f"vpsmanager at {agent.call('version').data.get('version')}"])

    step("facts", progress=20)
    facts = agent.call("facts").data
    php = _php_version(facts)
    log(f"{facts['os'].get('pretty', '')}; PHP {php}")

    step("packages", progress=35)
    result = agent.call("packages-ensure", {"packages": bootstrap_packages(php)})
    record("packages", result.changed, result.log)

    step("services", progress=55)
    wanted = [{"name": name, "enabled": True, "running": True} for name in bootstrap_services(php)]
    result = agent.call("service-ensure", {"services": wanted})
    for service in result.data.get("services", []):
        if service.get("changed"):
            log(f"  {service['name']}: {service.get('state')}")
    record("services", result.changed)

    step("firewall", progress=65)
    rules = vps_firewall_rules(ssh_port=vps.ssh_port, monitoring_source=settings.FLEET_MONITORING_SOURCE)
    if not settings.FLEET_MONITORING_SOURCE:
        log("  FLEET_MONITORING_SOURCE unset: exporter ports stay closed")
    result = agent.call("ufw-apply", {"allow": rules, "ssh_port": vps.ssh_port})
    record("firewall", result.changed, result.log if result.changed else None)

    step("ssh hardening", progress=75)
    result = agent.call("sshd-harden")
    record("ssh hardening", result.changed)

    step("isolation", progress=80)
    result = agent.call("host-harden")
    sysctls = result.data.get("sysctl", {})
    log("  " + ", ".join(f"{key}={value}" for key, value in sysctls.items()))
    hidepid = result.data.get("hidepid", "")
    log(
        f"  /proc hidepid: {hidepid}" + ("" if hidepid == "invisible" else " (site users can list processes)")
    )
    record("isolation", result.changed)

    step("mariadb", progress=85)
    result = agent.call("service-ensure", {"name": "mariadb", "enabled": True, "running": True})
    check_mariadb_root_socket(agent, log)
    record("mariadb", result.changed)

    for name, extra in EXTRA_BOOTSTRAP_STEPS.items():
        step(name, progress=90)
        record(name, extra(vps=vps, agent=agent, log=log))

    step("facts", progress=95)
    facts = agent.call("facts").data
    vps_apply_facts(vps=vps, facts=facts)
    log(
        f"bootstrap finished: {changed_steps} step(s) changed"
        if changed_steps
        else "bootstrap finished: no changes"
    )
    return changed_steps


MARIADB_ROOT_AUTH = Command.of(
    "mariadb", "--protocol=socket", "-N", "-e",
    "SELECT Priv FROM mysql.global_priv WHERE User = 'root' AND Host = 'localhost'",
)  # fmt: skip
SOCKET_PLUGINS = ("unix_socket", "auth_socket")


def mariadb_root_socket_only(priv: dict) -> bool:
    """root@localhost logs in by the unix socket and has no usable password. MariaDB >= 10.4's
    default is a password that can never match ("invalid") OR the unix socket."""
    if priv.get("plugin") in SOCKET_PLUGINS:
        return True
    alternatives = [a.get("plugin") for a in priv.get("auth_or", [])]
    return priv.get("authentication_string") == "invalid" and any(p in SOCKET_PLUGINS for p in alternatives)


def check_mariadb_root_socket(agent: Agent, log: Callable[[str], None]) -> None:
    """Sites' databases are created as root over the unix socket: that login must work, and root
    must not have a password login that a leaked password could open."""
    result = agent.transport.run(MARIADB_ROOT_AUTH, timeout=30)
    if not result.ok:
        raise FleetError(f"MariaDB root cannot log in through the unix socket: {result.stderr_tail()}")
    try:
        priv = json.loads(result.stdout)
    except ValueError:
        raise FleetError(f"unexpected answer about MariaDB's root account: {result.stdout[:200]!r}")
    if not mariadb_root_socket_only(priv):
        raise FleetError(
            f"MariaDB root can log in with a password (plugin {priv.get('plugin')}); "
            "expected the unix socket only (ALTER USER root@localhost IDENTIFIED VIA unix_socket)"
        )
    log("  root logs in through the unix socket only; no password login")


def mariadb_monitor_account_ensure(*, vps: Vps) -> MariaDBMonitorAccount:
    """The VPS's MariaDB account for its mysqld exporter: the password is generated on first use
    and the same on every later call. [A-Za-z0-9_-] only: it goes into an ini file unquoted."""
    account, _ = MariaDBMonitorAccount.objects.get_or_create(
        vps=vps, defaults={"password": secrets.token_urlsafe(32)}
    )
    return account


def vps_apply_facts(*, vps: Vps, facts: dict) -> None:
    down = [
        s
        for s in (*CORE_SERVICES, *(f"php{v}-fpm" for v in facts.get("php_versions", [])))
        if facts.get("services", {}).get(s) not in (None, "active")
    ]
    status = Vps.Status.DEGRADED if down else Vps.Status.ACTIVE
    Vps.objects.filter(pk=vps.pk).update(
        facts=facts,
        os=facts.get("os", {}).get("pretty", ""),
        php_versions=facts.get("php_versions", []),
        agent_version=facts.get("agent_version", ""),
        last_seen=timezone.now(),
        missed_checks=0,
        status=status,
        status_reason=f"services not active: {', '.join(down)}" if down else "",
    )
    vps.refresh_from_db()


def vps_host_key_changed(*, vps: Vps, message: str) -> None:
    """The critical alert for a VPS whose SSH host key no longer matches the pinned one (every
    operation to it is refused until staff re-pin it). Raised by whoever met the mismatch first."""
    _host_key_alert(vps, message)


def _host_key_alert(vps: Vps, message: str) -> None:
    alert_raise(
        name="vps_host_key_changed",
        key=vps.name,
        summary=message,
        severity="critical",
        labels={"vps": vps.name},
    )


# --- health and capacity (beat jobs) ---------------------------------------------------------------------


def _probe(vps: Vps, transport: ParamikoTransport) -> tuple[Vps, dict | None, Exception | None]:
    """Runs in a worker thread: SSH only, no database access."""
    try:
        with transport:
            return vps, Agent(transport).call("facts", timeout=30).data, None
    except Exception as exc:  # noqa: BLE001 - every failure is a missed check, recorded below
        return vps, None, exc


def fleet_health_check() -> dict[str, str]:
    """Run `facts` on every VPS that should be up (bounded concurrency, SSH only in threads;
    all database writes happen here, in the caller's thread)."""
    candidates = list(
        Vps.objects.filter(status__in=[Vps.Status.ACTIVE, Vps.Status.DEGRADED, Vps.Status.UNREACHABLE])
    )
    if not candidates:
        return {}
    transports = [transport_for(vps) for vps in candidates]
    with ThreadPoolExecutor(max_workers=max(1, settings.FLEET_HEALTH_CONCURRENCY)) as pool:
        results = list(pool.map(_probe, candidates, transports))
    return {vps.name: _record_probe(vps, facts, error) for vps, facts, error in results}


def _record_probe(vps: Vps, facts: dict | None, error: Exception | None) -> str:
    if facts is not None:
        was = vps.status
        vps_apply_facts(vps=vps, facts=facts)
        if was == Vps.Status.UNREACHABLE and alert_resolve(name="vps_unreachable", key=vps.name):
            logger.info("VPS %s is reachable again", vps.name)
        return vps.status
    if isinstance(error, HostKeyMismatch):
        _host_key_alert(vps, str(error))
    missed = vps.missed_checks + 1
    status = vps.status
    if missed >= settings.FLEET_UNREACHABLE_AFTER:
        status = Vps.Status.UNREACHABLE
        alert_raise(
            name="vps_unreachable",
            key=vps.name,
            summary=f"VPS {vps.name} ({vps.ip_address}) missed {missed} health checks: {error}",
            severity="critical",
            labels={"vps": vps.name},
        )
    Vps.objects.filter(pk=vps.pk).update(missed_checks=missed, status=status, status_reason=str(error)[:2000])
    return status


def fleet_capacity_check() -> float:
    capacity = selectors.shared_fleet_capacity()
    threshold = settings.FLEET_CAPACITY_ALERT_RATIO
    if capacity.ratio >= threshold:
        alert_raise(
            name="fleet_capacity",
            key="shared",
            summary=f"shared fleet at {capacity.ratio:.0%} of capacity "
            f"({capacity.used}/{capacity.total} sites)",
            severity="warning",
        )
        fleet_grow_if_configured()
    else:
        alert_resolve(name="fleet_capacity", key="shared")
    return capacity.ratio


def fleet_grow_if_configured() -> Vps | None:
    """With a default provider configured, add one shared VPS (unless one is already on its way)."""
    credential = ProviderCredential.objects.filter(is_default=True).first()
    if credential is None:
        return None
    growing = Vps.objects.filter(
        kind=Vps.Kind.SHARED,
        status__in=[Vps.Status.PENDING, Vps.Status.PROVISIONING, Vps.Status.BOOTSTRAPPING],
    )
    if growing.exists():
        return None
    name = f"shared-{timezone.now():%Y%m%d%H%M%S}"
    vps, _ = vps_create(
        name=name,
        provider=credential.provider,
        region=credential.default_region,
        size=credential.default_size,
    )
    return vps
