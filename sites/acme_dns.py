"""DNS-01 certificates (sites with a DNS account; wildcard names need one): CHOM is the ACME
client, because the tenant's DNS token must never reach a shared VPS, and the private key never
leaves the VPS.

1. the agent makes a key and a CSR on the VPS (`cert-csr`; nothing to do while the installed
   certificate covers the names for longer than SSL_RENEW_BEFORE_DAYS);
2. CHOM orders with the CSR, writes each challenge's `_acme-challenge` TXT record through the DNS
   provider, waits until the records are visible through TLS_DNS_RESOLVERS, answers the
   challenges and finalizes; the TXT records are deleted again whatever happened;
3. the agent installs the chain next to the key (`cert-install`: atomic, `nginx -t`, reload) and
   the vhost gets its TLS server block.

No SSH connection is held while CHOM waits for DNS or the CA."""

import datetime
import logging
import os
import time
from dataclasses import dataclass

import josepy as jose
from acme import challenges, client, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from chom.operations import OperationContext, OperationError
from fleet.remote.agent_client import Agent
from sites import dns_check
from sites.configs import render_vhost
from sites.dns import DnsProvider, DnsProviderError, TxtRecord, dns_provider_for
from sites.models import Site
from sites.services import _call, _remote, _set, vhost_spec

logger = logging.getLogger(__name__)

USER_AGENT = "CHOM (acme-python)"
FINALIZE_SECONDS = 120
PROPAGATION_POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Challenge:
    body: messages.ChallengeBody
    name: str  # _acme-challenge.<domain>
    value: str  # the TXT record's content


def issue(ctx: OperationContext, site: Site) -> dict:
    """The DNS-01 branch of `site.ssl`; returns {"not_after", "changed"}."""
    domains = site.all_domains
    ctx.step(f"key and CSR for {', '.join(domains)} on {site.vps.name}", progress=20)
    payload = {
        "name": site.unix_user,
        "domains": domains,
        "renew_before_days": settings.SSL_RENEW_BEFORE_DAYS,
    }
    request = _remote(ctx, site, lambda agent: _call(ctx, agent, "cert-csr", payload).data)
    if not request.get("csr"):
        site.ssl_status = Site.SslStatus.ACTIVE  # rendered with TLS; recorded once nginx serves it
        _remote(ctx, site, lambda agent: _apply_vhost(ctx, agent, site))
        _set(site, ssl_status=Site.SslStatus.ACTIVE)
        return {"not_after": request.get("not_after", ""), "changed": False}
    provider = dns_provider_for(site.dns_account)
    chain = order_certificate(ctx, csr=request["csr"].encode(), provider=provider)

    def install(agent: Agent) -> dict:
        ctx.step("install the certificate next to its key", progress=80)
        installed = _call(
            ctx, agent, "cert-install", {"name": site.unix_user, "domains": domains, "chain": chain}
        )
        site.ssl_status = Site.SslStatus.ACTIVE  # rendered with TLS; recorded once nginx serves it
        _apply_vhost(ctx, agent, site)
        _set(site, ssl_status=Site.SslStatus.ACTIVE)
        return installed.data

    installed = _remote(ctx, site, install)
    return {"not_after": installed.get("not_after", ""), "changed": True}


def _apply_vhost(ctx: OperationContext, agent: Agent, site: Site) -> None:
    ctx.step("nginx vhost with TLS", progress=90)
    _call(ctx, agent, "vhost-apply", {"name": site.unix_user, "content": render_vhost(vhost_spec(site))})


def order_certificate(ctx: OperationContext, *, csr: bytes, provider: DnsProvider) -> str:
    """The PEM chain the ACME CA issues for CSR, its challenges answered through PROVIDER."""
    acme, key = _client(ctx)
    records: list[TxtRecord] = []
    try:
        ctx.step("ACME order", progress=35)
        order = acme.new_order(csr)
        wanted = [_challenge(authz, key) for authz in order.authorizations if _pending(authz)]
        ctx.step(f"TXT records through {provider.name}", progress=45)
        for challenge in wanted:
            records.append(provider.add_txt(challenge.name, challenge.value))
            ctx.log(f"TXT {challenge.name} written through {provider.name}")
        _wait_visible(ctx, wanted)
        ctx.step("ACME validation", progress=65)
        for challenge in wanted:
            acme.answer_challenge(challenge.body, challenge.body.chall.response(key))
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=FINALIZE_SECONDS)
        order = acme.poll_and_finalize(order, deadline=deadline)
    except DnsProviderError as exc:
        raise OperationError(str(exc), transient=not exc.permanent)
    except errors.ValidationError as exc:
        raise OperationError(f"the ACME CA could not validate: {_validation_problems(exc)}")
    except (errors.Error, OSError) as exc:  # OSError: requests' connection errors
        raise OperationError(f"ACME at {settings.ACME_DIRECTORY_URL}: {exc}", transient=True)
    finally:
        _cleanup(ctx, provider, records)
    ctx.log("the ACME CA issued the certificate")
    return order.fullchain_pem


def _pending(authz: messages.AuthorizationResource) -> bool:
    return authz.body.status != messages.STATUS_VALID  # a valid one was proven recently


def _challenge(authz: messages.AuthorizationResource, key: jose.JWK) -> Challenge:
    domain = authz.body.identifier.value
    for body in authz.body.challenges:
        if isinstance(body.chall, challenges.DNS01):
            return Challenge(body, body.chall.validation_domain_name(domain), body.chall.validation(key))
    raise OperationError(f"the ACME CA offers no DNS-01 challenge for {domain}")


def _wait_visible(ctx: OperationContext, wanted: list[Challenge]) -> None:
    """Bounded: until every challenge value shows through TLS_DNS_RESOLVERS (a CA that looks too
    early fails the order, and its failed validations are rate limited)."""
    deadline = time.monotonic() + settings.ACME_DNS_PROPAGATION_SECONDS
    missing: dict[str, set[str]] = {}
    for challenge in wanted:
        missing.setdefault(challenge.name, set()).add(challenge.value)
    last = ""
    while missing:
        for name in list(missing):
            try:
                seen = dns_check.lookup_txt(name)
            except dns_check.DnsError as exc:
                last = str(exc)
                continue
            if missing[name] <= seen:
                ctx.log(f"TXT {name} visible in DNS")
                del missing[name]
            else:
                last = f"{name} shows {len(missing[name] & seen)} of {len(missing[name])} challenge values"
        if missing and time.monotonic() >= deadline:
            raise OperationError(
                f"the challenge TXT records did not show in DNS within "
                f"{settings.ACME_DNS_PROPAGATION_SECONDS:g}s: {last}",
                transient=True,
            )
        if missing:
            time.sleep(PROPAGATION_POLL_SECONDS)


def _cleanup(ctx: OperationContext, provider: DnsProvider, records: list[TxtRecord]) -> None:
    """Delete every TXT record this order wrote; a failure is logged, never hides the outcome."""
    for record in records:
        try:
            provider.delete_txt(record)
        except DnsProviderError as exc:
            ctx.log(f"TXT {record.name} could not be deleted ({exc}); remove it by hand", level="warning")
        else:
            ctx.log(f"TXT {record.name} deleted")


def _validation_problems(exc: errors.ValidationError) -> str:
    problems = []
    for authz in exc.failed_authzrs:
        for body in authz.body.challenges:
            if body.error:
                problems.append(f"{authz.body.identifier.value}: {body.error.detail or body.error.typ}")
    return "; ".join(problems) or "no details"


# --- the ACME account -----------------------------------------------------------------------------


def _account_key() -> jose.JWKRSA:
    """CHOM's ACME account key: made once (0600), the same for every order."""
    path = settings.ACME_ACCOUNT_KEY_FILE
    try:
        with open(path, "rb") as fh:
            return jose.JWKRSA.load(fh.read())
    except FileNotFoundError:
        pass
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker made it first
        with open(path, "rb") as fh:
            return jose.JWKRSA.load(fh.read())
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return jose.JWKRSA.load(pem)


def _client(ctx: OperationContext) -> tuple[client.ClientV2, jose.JWKRSA]:
    key = _account_key()
    verify = settings.ACME_CA_BUNDLE_FILE or True
    net = client.ClientNetwork(key, user_agent=USER_AGENT, verify_ssl=verify, timeout=30)
    try:
        directory = client.ClientV2.get_directory(settings.ACME_DIRECTORY_URL, net)
        acme = client.ClientV2(directory, net=net)
        contact = {"email": settings.ACME_EMAIL} if settings.ACME_EMAIL else {}
        registration = messages.NewRegistration.from_data(terms_of_service_agreed=True, **contact)
        try:
            acme.new_account(registration)
        except errors.ConflictError as exc:  # the key's account exists: use it
            net.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
    except (errors.Error, OSError) as exc:
        raise OperationError(f"ACME at {settings.ACME_DIRECTORY_URL}: {exc}", transient=True)
    ctx.log(f"ACME account at {settings.ACME_DIRECTORY_URL}")
    return acme, key
