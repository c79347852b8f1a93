from urllib.parse import urlparse

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import INTERNAL_RESET_SESSION_TOKEN
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_otp import user_has_device

from chom import health, metrics, selectors, services
from chom.api.errors import error_body
from chom.forms import (
    MemberAddForm,
    MemberTokenForm,
    OwnTokenForm,
    RoleForm,
    SuspendForm,
    TenantCreateForm,
    TierForm,
    valid_or_refuse,
)
from chom.http import bearer_matches, client_ip
from chom.models import Membership


@require_GET
def health_view(request):
    """Public: {"status", "checks": {name: "ok"|"down"}} (deploy.sh's canary reads it). Why a check
    is down (hosts, driver messages) only for staff or with METRICS_TOKEN, under "details"."""
    ok, checks = health.health_report()
    body = {
        "status": "ok" if ok else "down",
        "checks": {k: "ok" if v == "ok" else "down" for k, v in checks.items()},
    }
    if _privileged(request):
        body["details"] = checks
    return JsonResponse(body, status=200 if ok else 503)


def _privileged(request) -> bool:
    """Staff signed in, or METRICS_TOKEN: may read /metrics and /health's details."""
    staff = request.user.is_authenticated and request.user.is_staff
    return staff or bearer_matches(request, settings.METRICS_TOKEN)


def _metrics_allowed(request) -> bool:
    return _privileged(request) or client_ip(request) in settings.METRICS_ALLOWED_IPS


@require_GET
def metrics_view(request):
    if not _metrics_allowed(request):
        body = error_body("unauthenticated", "Send 'Authorization: Bearer <METRICS_TOKEN>'.")
        return JsonResponse(body, status=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    return HttpResponse(metrics.render(), content_type="text/plain; version=0.0.4")


@staff_member_required
def dashboard(request):
    ok, checks = health.health_report()
    ops = selectors.operations_visible(tenant=None, staff=True)[:10]
    return render(request, "chom/dashboard.html", {"checks": checks, "healthy": ok, "operations": ops})


@staff_member_required
def operation_list(request):
    qs = selectors.operations_visible(tenant=None, staff=True)
    status = request.GET.get("status")
    if status:
        qs = qs.filter(status=status)
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    return render(request, "chom/operation_list.html", {"page": page, "status": status})


@staff_member_required
def operation_detail(request, pk):
    op = get_object_or_404(selectors.operations_visible(tenant=None, staff=True), pk=pk)
    return render(request, "chom/operation_detail.html", {"op": op})


def _token_shown_once(request, issued, *, back: str, note: str = ""):
    """The plaintext of a new token, on this answer only: never stored, never cached."""
    context = {"issued": issued, "back": back, "note": note}
    response = render(request, "chom/token_created.html", context)
    add_never_cache_headers(response)
    return response


# --- tenants (staff) ------------------------------------------------------------------------------


def _tenant(slug: str):
    tenant = selectors.tenant_get(slug=slug, staff=True)
    if tenant is None:
        raise Http404
    return tenant


def _member(tenant, pk: int) -> Membership:
    return get_object_or_404(selectors.tenant_members(tenant=tenant), pk=pk)


@staff_member_required
@require_http_methods(["GET", "POST"])
def tenant_list(request):
    """Search the tenants; the form below creates one (owner invited by email, owner token shown once)."""
    form = TenantCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        done = services.tenant_onboard(**form.cleaned_data, actor=request.user, source_ip=client_ip(request))
        owner = form.cleaned_data["owner_email"]
        note = (
            f"Tenant {done.tenant.slug} created. {owner} was emailed a one-time link to set a password."
            if done.invited
            else f"Tenant {done.tenant.slug} created, but the invitation to {owner} could not be sent: "
            "resend it from the tenant's page."
        )
        back = reverse("tenant-detail", kwargs={"slug": done.tenant.slug})
        return _token_shown_once(request, done.token, back=back, note=note)
    query = request.GET.get("q", "")
    page = Paginator(selectors.tenants_search(staff=True, query=query), 50).get_page(request.GET.get("page"))
    return render(request, "chom/tenant_list.html", {"page": page, "q": query, "form": form})


@staff_member_required
def tenant_detail(request, slug):
    tenant = _tenant(slug)
    context = {
        "tenant": tenant,
        "usage": selectors.tenant_usage_against_limits(tenant=tenant),
        "limits": {k: ", ".join(v) if isinstance(v, list) else v for k, v in tenant.limits.as_dict().items()},
        "members": selectors.tenant_members(tenant=tenant),
        "tokens": selectors.tokens_visible(tenant=tenant, user=request.user),
        "events": selectors.audit_events_of_tenant(tenant=tenant),
        "tier_form": TierForm(initial={"tier": tenant.tier}),
        "suspend_form": SuspendForm(),
        "member_form": MemberAddForm(),
        "token_form": MemberTokenForm(tenant=tenant),
        "roles": Membership.Role.choices,
    }
    return render(request, "chom/tenant_detail.html", context)


def _back_to(tenant):
    return redirect("tenant-detail", slug=tenant.slug)


@staff_member_required
@require_POST
def tenant_tier(request, slug):
    tenant = _tenant(slug)
    data = valid_or_refuse(TierForm(request.POST))
    services.tenant_tier_change(
        tenant=tenant, tier=data["tier"], actor=request.user, source_ip=client_ip(request)
    )
    messages.success(request, f"{tenant.slug} is on the {tenant.tier} tier; its limits changed with it.")
    return _back_to(tenant)


@staff_member_required
@require_POST
def tenant_suspend(request, slug):
    tenant = _tenant(slug)
    data = valid_or_refuse(SuspendForm(request.POST))
    ops = services.tenant_suspend(
        tenant=tenant, reason=data["reason"], actor=request.user, source_ip=client_ip(request)
    )
    messages.success(request, f"{tenant.slug} is suspended; {len(ops)} site(s) being suspended.")
    return _back_to(tenant)


@staff_member_required
@require_POST
def tenant_unsuspend(request, slug):
    tenant = _tenant(slug)
    ops = services.tenant_unsuspend(tenant=tenant, actor=request.user, source_ip=client_ip(request))
    messages.success(request, f"{tenant.slug} is active again; {len(ops)} site(s) being unsuspended.")
    return _back_to(tenant)


@staff_member_required
@require_POST
def tenant_member_add(request, slug):
    tenant = _tenant(slug)
    data = valid_or_refuse(MemberAddForm(request.POST))
    membership, invited = services.membership_invite(
        tenant=tenant,
        email=data["email"],
        role=data["role"],
        actor=request.user,
        source_ip=client_ip(request),
    )
    said = f"{data['email']} is {membership.role} of {tenant.slug}"
    if invited is None:
        messages.success(request, f"{said} (already a member: role set, no invitation sent).")
    elif invited:
        messages.success(request, f"{said}; invitation emailed.")
    else:
        messages.warning(request, f"{said}, but the invitation email could not be sent: resend it.")
    return _back_to(tenant)


@staff_member_required
@require_POST
def tenant_member_role(request, slug, pk):
    tenant = _tenant(slug)
    membership = _member(tenant, pk)
    data = valid_or_refuse(RoleForm(request.POST))
    services.membership_role_set(
        membership=membership, role=data["role"], actor=request.user, source_ip=client_ip(request)
    )
    messages.success(request, f"{membership.user.email} is {membership.role} of {tenant.slug}.")
    return _back_to(tenant)


@staff_member_required
@require_POST
def tenant_member_remove(request, slug, pk):
    tenant = _tenant(slug)
    membership = _member(tenant, pk)
    revoked = services.membership_remove(
        membership=membership, actor=request.user, source_ip=client_ip(request)
    )
    messages.success(
        request, f"{membership.user.email} removed from {tenant.slug}; {revoked} API token(s) revoked."
    )
    return _back_to(tenant)


@staff_member_required
@require_POST
def tenant_member_invite(request, slug, pk):
    tenant = _tenant(slug)
    membership = _member(tenant, pk)
    if services.invitation_send(membership=membership, actor=request.user, source_ip=client_ip(request)):
        messages.success(request, f"Invitation emailed to {membership.user.email}.")
    else:
        messages.warning(
            request, f"The invitation to {membership.user.email} could not be sent; see the log."
        )
    return _back_to(tenant)


@staff_member_required
@require_POST
def tenant_token_create(request, slug):
    tenant = _tenant(slug)
    form = MemberTokenForm(request.POST, tenant=tenant)
    data = valid_or_refuse(form)
    issued = services.token_create(
        user=data["member"].user,
        tenant=tenant,
        name=data["name"],
        scope=data["scope"],
        expires_at=form.expires_at(),
        actor=request.user,
        source_ip=client_ip(request),
    )
    back = reverse("tenant-detail", kwargs={"slug": tenant.slug})
    return _token_shown_once(
        request, issued, back=back, note=f"For {data['member'].user.email} in {tenant.slug}."
    )


@staff_member_required
@require_POST
def tenant_token_revoke(request, slug, pk):
    tenant = _tenant(slug)
    token = get_object_or_404(selectors.tokens_visible(tenant=tenant, user=request.user), pk=pk)
    services.token_revoke(token=token, actor=request.user, source_ip=client_ip(request))
    messages.success(request, f"Token {token.name} ({token.prefix}) revoked.")
    return _back_to(tenant)


# --- a person's own account: all a non-staff user sees of the dashboard -----------------------------


class LoginView(auth_views.LoginView):
    """Staff go where they were going; everyone else to their API tokens (the only page they may see)."""

    template_name = "chom/login.html"

    def get_success_url(self) -> str:
        url = super().get_success_url()
        if self.request.user.is_staff or urlparse(url).path.startswith("/account/"):
            return url
        return reverse("account-tokens")


class WelcomeView(auth_views.PasswordResetConfirmView):
    """The invitation's one-time link: set a password, then go on to create an API token. Django's
    view keeps the token out of the address bar (and Referer) once checked, and refuses it once
    used or expired."""

    template_name = "chom/account_welcome.html"
    token_generator = services.invitation_tokens
    success_url = reverse_lazy("account-tokens")
    title = "Set your password"

    def form_valid(self, form):
        user = services.invitation_accept(
            user=self.user, password=form.cleaned_data["new_password1"], source_ip=client_ip(self.request)
        )
        del self.request.session[INTERNAL_RESET_SESSION_TOKEN]
        auth_login(self.request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(self.request, "Your password is set. Now create an API token.")
        return HttpResponseRedirect(self.get_success_url())


@login_required
@require_http_methods(["GET", "POST"])
def account_tokens(request):
    form = OwnTokenForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        issued = services.token_create(
            user=request.user,
            tenant=form.chosen_tenant(),
            name=form.cleaned_data["name"],
            scope=form.cleaned_data["scope"],
            expires_at=form.expires_at(),
            actor=request.user,
            source_ip=client_ip(request),
        )
        return _token_shown_once(request, issued, back=reverse("account-tokens"))
    context = {
        "form": form,
        "tokens": selectors.tokens_of_user(user=request.user),
        "memberships": selectors.memberships_of_user(user=request.user),
        "has_second_factor": user_has_device(request.user),
    }
    return render(request, "chom/account_tokens.html", context)


@login_required
@require_POST
def account_token_revoke(request, pk):
    token = get_object_or_404(selectors.tokens_of_user(user=request.user), pk=pk)
    services.token_revoke(token=token, actor=request.user, source_ip=client_ip(request))
    messages.success(request, f"Token {token.name} ({token.prefix}) revoked.")
    return redirect("account-tokens")
