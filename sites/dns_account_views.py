"""Dashboard (staff): the tenants' DNS accounts, with which wildcard sites get their certificates
over DNS-01. The page lists them (never a token) by tenant; adding one checks its token with the
provider through the API's service, and deleting one is refused while a live site uses it. A
refusal is shown by the dashboard middleware on the page, and nothing is saved."""

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from chom.forms import valid_or_refuse
from chom.http import client_ip
from sites import dns_accounts, selectors
from sites.dns_account_forms import DnsAccountFilterForm, DnsAccountForm


def _page_of(tenant) -> str:
    return reverse("dns-account-list") + f"?tenant={tenant.slug}"


@staff_member_required
@require_GET
def dns_account_list(request):
    shown = DnsAccountFilterForm(request.GET, auto_id="filter-%s")
    tenant = shown.cleaned_data["tenant"] if shown.is_valid() else None
    context = {
        "accounts": selectors.dns_accounts_for_staff(tenant=tenant),
        "tenant": tenant,
        "filter_form": shown,
        "form": DnsAccountForm(initial={"tenant": tenant}, auto_id="new-%s"),
    }
    return render(request, "sites/dns_account_list.html", context)


@staff_member_required
@require_POST
def dns_account_create(request):
    form = DnsAccountForm(request.POST)
    tenant = valid_or_refuse(form)["tenant"]
    account = dns_accounts.dns_account_create(
        tenant=tenant, actor=request.user, source_ip=client_ip(request), **form.validated
    )
    messages.success(request, f"DNS account {account.name} ({account.provider}) of {tenant.slug} added.")
    return redirect(_page_of(tenant))


@staff_member_required
@require_POST
def dns_account_delete(request, pk: int):
    account = get_object_or_404(selectors.dns_accounts_for_staff(), pk=pk)
    dns_accounts.dns_account_delete(account=account, actor=request.user, source_ip=client_ip(request))
    messages.success(request, f"DNS account {account.name} of {account.tenant.slug} deleted.")
    return redirect(_page_of(account.tenant))
