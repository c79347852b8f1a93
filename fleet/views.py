"""Dashboard (staff): the fleet and its cloud accounts. Each action calls the service the API calls
(or the admin's, for cloud accounts) and goes on to the operation it queued; a refusal is shown by
the dashboard middleware on the page the action came from."""

import shlex

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from chom import selectors as core_selectors
from chom.errors import ApplicationError
from chom.forms import valid_or_refuse
from chom.http import client_ip
from fleet import selectors, services
from fleet.forms import (
    CapacityForm,
    CloudAccountForm,
    CordonForm,
    DefaultAccountForm,
    VpsAdoptConfirmForm,
    VpsAdoptForm,
    VpsCreateForm,
    VpsDeleteForm,
    adopt_confirmation_context,
)
from fleet.models import Vps


def _posted(request):
    """A form's data: the POST body, or None (an unbound form) on GET."""
    return request.POST if request.method == "POST" else None


def _vps(pk: int) -> Vps:
    return get_object_or_404(selectors.vps_visible(staff=True), pk=pk)


def _catalogues() -> dict[str, selectors.CloudCatalogue]:
    return {c.provider: selectors.cloud_catalogue(c) for c in selectors.cloud_accounts(staff=True)}


def _install_command() -> str:
    """The one line an operator runs as root on their own server so that CHOM can log in."""
    key = shlex.quote(services.fleet_key_get_or_create().public_key)
    return (
        "mkdir -p /root/.ssh && chmod 700 /root/.ssh && "
        f"echo {key} >> /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys"
    )


# --- the fleet ------------------------------------------------------------------------------------


@staff_member_required
def vps_list(request):
    vpses = selectors.vps_visible(staff=True).select_related("tenant")
    capacity = selectors.shared_fleet_capacity()
    rows = [(vps, selectors.vps_site_count(vps)) for vps in vpses]
    cordoned = any(vps.cordoned for vps, _ in rows)
    context = {"rows": rows, "capacity": capacity, "cordoned": cordoned}
    return render(request, "fleet/vps_list.html", context)


@staff_member_required
def vps_detail(request, pk: int):
    vps = _vps(pk)
    operations = core_selectors.operations_visible(tenant=None, staff=True).filter(
        target_type=Vps._meta.label_lower, target_id=str(vps.pk)
    )[:20]
    context = {
        "vps": vps,
        "site_count": selectors.vps_site_count(vps),
        "operations": operations,
        "going_away": vps.status == Vps.Status.DECOMMISSIONING,
    }
    return render(request, "fleet/vps_detail.html", context)


@staff_member_required
@require_http_methods(["GET", "POST"])
def vps_create(request):
    catalogues = _catalogues()
    form = VpsCreateForm(_posted(request), catalogues=catalogues)
    if not form.is_valid():
        return render(request, "fleet/vps_create.html", {"form": form, "catalogues": catalogues})
    _, op = services.vps_create(**form.vps_fields, actor=request.user, source_ip=client_ip(request))
    return redirect("operation-detail", op.id)


@staff_member_required
@require_http_methods(["GET", "POST"])
def vps_adopt(request):
    """Bring your own server: enter it, see its host key, confirm (vps_adopt_confirm)."""
    form = VpsAdoptForm(_posted(request))
    confirmation = form.is_valid() and form.scan()
    if not confirmation:
        context = {"form": form, "install_command": _install_command()}
        return render(request, "fleet/vps_adopt.html", context)
    context = adopt_confirmation_context(confirmation) | {
        "confirm_form": VpsAdoptConfirmForm(initial={"confirmation": confirmation})
    }
    return render(request, "fleet/vps_adopt_confirm.html", context)


@staff_member_required
@require_POST
def vps_adopt_confirm(request):
    fields = valid_or_refuse(VpsAdoptConfirmForm(request.POST))["confirmation"]
    _, op = services.vps_create(**fields, actor=request.user, source_ip=client_ip(request))
    return redirect("operation-detail", op.id)


@staff_member_required
@require_POST
def vps_bootstrap(request, pk: int):
    op = services.vps_bootstrap_request(vps=_vps(pk), actor=request.user)
    return redirect("operation-detail", op.id)


@staff_member_required
@require_POST
def vps_capacity(request, pk: int):
    vps = _vps(pk)
    data = valid_or_refuse(CapacityForm(request.POST))
    services.vps_update(vps=vps, actor=request.user, max_sites=data["max_sites"])
    messages.success(request, f"{vps.name} now takes up to {vps.max_sites} sites.")
    return redirect("vps-detail", vps.pk)


@staff_member_required
@require_POST
def vps_cordon(request, pk: int):
    vps = _vps(pk)
    data = valid_or_refuse(CordonForm(request.POST))
    services.vps_cordon(vps=vps, cordoned=data["cordoned"], actor=request.user)
    state = "cordoned: it takes no new sites" if vps.cordoned else "open for new sites again"
    messages.success(request, f"{vps.name} is {state}.")
    return redirect("vps-detail", vps.pk)


@staff_member_required
@require_http_methods(["GET", "POST"])
def vps_delete(request, pk: int):
    """A page of its own: a mistyped name is shown there, and nothing is destroyed."""
    vps = _vps(pk)
    form = VpsDeleteForm(_posted(request), vps=vps)
    if not form.is_valid():
        context = {"vps": vps, "form": form, "site_count": selectors.vps_site_count(vps)}
        return render(request, "fleet/vps_delete.html", context)
    op = services.vps_delete_request(vps=vps, actor=request.user, source_ip=client_ip(request))
    return redirect("operation-detail", op.id)


# --- cloud accounts -------------------------------------------------------------------------------


def _cloud(provider: str) -> str:
    if provider not in selectors.cloud_provider_names():
        raise Http404("not a cloud CHOM can create servers at")
    return provider


def _account_or_refuse(provider: str):
    credential = selectors.cloud_account_get(staff=True, provider=_cloud(provider))
    if credential is None:
        raise ApplicationError(404, "not_found", f"There is no {provider} cloud account.")
    return credential


@staff_member_required
def cloud_account_list(request):
    accounts = [(c, selectors.cloud_catalogue(c)) for c in selectors.cloud_accounts(staff=True)]
    have = {credential.provider for credential, _ in accounts}
    missing = [name for name in selectors.cloud_provider_names() if name not in have]
    return render(request, "fleet/cloud_account_list.html", {"accounts": accounts, "missing": missing})


@staff_member_required
@require_http_methods(["GET", "POST"])
def cloud_account_edit(request, provider: str):
    """Add or change the one account of PROVIDER."""
    credential = selectors.cloud_account_get(staff=True, provider=_cloud(provider))
    form = CloudAccountForm(_posted(request), provider=provider, credential=credential)
    if form.is_valid() and form.save(actor=request.user):
        messages.success(request, f"The {provider} account is saved; {provider} accepted its token.")
        return redirect("cloud-account-list")
    catalogue = selectors.cloud_catalogue(credential) if credential else None
    context = {
        "provider": provider,
        "credential": credential,
        "form": form,
        "catalogue": catalogue,
        "catalogues": [catalogue] if catalogue else [],
    }
    return render(request, "fleet/cloud_account_edit.html", context)


@staff_member_required
@require_POST
def cloud_account_default(request, provider: str):
    credential = _account_or_refuse(provider)
    is_default = valid_or_refuse(DefaultAccountForm(request.POST))["is_default"]
    services.provider_credential_save(
        provider=credential.provider,
        base_url=credential.base_url,
        default_region=credential.default_region,
        default_size=credential.default_size,
        default_image=credential.default_image,
        is_default=is_default,
        actor=request.user,
    )
    if is_default:
        messages.success(request, f"Auto-grow now adds shared servers at {provider}.")
    else:
        messages.success(request, f"{provider} is no longer the default account: auto-grow is off.")
    return redirect("cloud-account-list")


@staff_member_required
@require_POST
def cloud_account_delete(request, provider: str):
    services.provider_credential_delete(credential=_account_or_refuse(provider), actor=request.user)
    messages.success(request, f"The {provider} account is removed.")
    return redirect("cloud-account-list")
