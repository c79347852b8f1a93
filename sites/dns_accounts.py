"""Writes of DNS provider accounts (the tenant's DigitalOcean DNS or Cloudflare token, which
CHOM uses to answer ACME DNS-01 challenges) and the rules a site's wildcard name must meet."""

from django.db import IntegrityError, transaction

from chom.errors import ApplicationError
from chom.models import Tenant
from chom.services import audit_record
from sites import selectors
from sites.dns import DnsProviderError, get_dns_provider
from sites.domains import is_wildcard
from sites.models import DnsAccount, Site

# A wildcard site's first deploy renders a placeholder page for it; WordPress installs for one URL.
WILDCARD_TYPES = frozenset({Site.Type.STATIC, Site.Type.PHP, Site.Type.LARAVEL})


def dns_account_create(
    *, tenant: Tenant, name: str, provider: str, token: str, actor=None, source_ip=None
) -> DnsAccount:
    """Check TOKEN against PROVIDER (one cheap read) and store it encrypted; it is never shown again."""
    if DnsAccount.objects.filter(tenant=tenant, name=name).exists():
        raise ApplicationError(
            409, "name_taken", f"A DNS account named {name!r} exists.", {"name": ["taken"]}
        )
    try:
        get_dns_provider(provider, token=token).verify()
    except DnsProviderError as exc:
        if not exc.permanent:
            raise exc.as_application_error()
        message = f"{provider} refused the token: {exc}"
        raise ApplicationError(400, "invalid_token", message, {"token": [str(exc)]})
    try:
        with transaction.atomic():
            account = DnsAccount.objects.create(tenant=tenant, name=name, provider=provider, token=token)
            audit_record(
                action="dns_account.created",
                actor=actor,
                tenant=tenant,
                target=f"dns_account:{name}",
                source_ip=source_ip,
                data={"provider": provider},
            )
    except IntegrityError:  # a concurrent create took the name
        raise ApplicationError(
            409, "name_taken", f"A DNS account named {name!r} exists.", {"name": ["taken"]}
        )
    return account


def dns_account_delete(*, account: DnsAccount, actor=None, source_ip=None) -> None:
    """Forget ACCOUNT; refused while a live site answers its challenges through it."""
    using = account.sites.exclude(status=Site.Status.DELETED).values_list("domain", flat=True)
    if using:
        names = ", ".join(sorted(using)[:5])
        raise ApplicationError(409, "dns_account_in_use", f"Sites still use this DNS account: {names}.")
    with transaction.atomic():
        account.sites.update(dns_account=None)  # deleted sites only
        audit_record(
            action="dns_account.deleted",
            actor=actor,
            tenant=account.tenant,
            target=f"dns_account:{account.name}",
            source_ip=source_ip,
            data={"provider": account.provider},
        )
        account.delete()


def site_dns_account_check(
    *, tenant: Tenant, domain: str, aliases, type: str, dns_account: int | None
) -> DnsAccount | None:
    """The DnsAccount a new site answers DNS-01 challenges with (None: HTTP-01), after the rules
    of wildcard names: the tier allows them, the type serves any name, an account of the tenant
    is named, and no other tenant's site overlaps (see selectors.wildcard_conflict)."""
    names = [domain, *aliases]
    account = None
    if dns_account is not None:
        account = selectors.tenant_dns_accounts(tenant).filter(pk=dns_account).first()
        if account is None:
            message = "No such DNS account."
            raise ApplicationError(400, "invalid_input", message, {"dns_account": [message]})
    if any(is_wildcard(n) for n in names):
        if not tenant.limits.wildcard_domains:
            raise ApplicationError(
                403, "tier_limit_reached", f"The {tenant.tier} tier does not include wildcard domains."
            )
        if type not in WILDCARD_TYPES:
            message = f"A {type} site cannot serve a wildcard domain."
            raise ApplicationError(400, "invalid_input", message, {"domain": [message]})
        if account is None:
            message = "A wildcard certificate is issued over DNS: name the DNS account that holds the zone."
            raise ApplicationError(400, "invalid_input", message, {"dns_account": [message]})
    site_names_check(tenant=tenant, names=names, field="domain")
    return account


def site_names_check(*, tenant: Tenant, names, field: str) -> None:
    for name in names:
        other = selectors.wildcard_conflict(name=name, tenant=tenant)
        if other:
            message = f"{name} overlaps {other}, which another account hosts here."
            raise ApplicationError(409, "domain_taken", message, {field: [message]})
