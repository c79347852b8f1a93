"""Dashboard (staff): the sites pages and their actions. Each action calls the service the API
calls and goes on to the operation it queued; a refusal is shown by the dashboard middleware."""

from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from chom import selectors as core_selectors
from chom.forms import valid_or_refuse
from chom.http import client_ip
from sites import selectors, services
from sites.delivery_summary import site_delivery_summary
from sites.forms import (
    RollbackForm,
    SiteCreateForm,
    SiteDeleteForm,
    SuspendForm,
    UnsuspendForm,
    admin_reason,
)
from sites.runtime_forms import site_control_forms


def _posted(request):
    """A form's data: the POST body, or None (an unbound form) on GET."""
    return request.POST if request.method == "POST" else None


def _site(pk: int):
    return get_object_or_404(selectors.sites_visible(tenant=None, staff=True), pk=pk)


@staff_member_required
def site_list(request):
    qs = selectors.sites_filtered(
        selectors.sites_visible(tenant=None, staff=True),
        status=request.GET.get("status", ""),
        search=request.GET.get("q", ""),
    )
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    return render(request, "sites/site_list.html", {"page": page, "q": request.GET.get("q", "")})


@staff_member_required
def site_detail(request, pk: int):
    site = _site(pk)
    operations = core_selectors.operations_visible(tenant=None, staff=True).filter(
        target_type="sites.site", target_id=str(site.pk)
    )[:20]
    return render(
        request,
        "sites/site_detail.html",
        {
            "site": site,
            "releases": site.releases.all()[:10],
            "operations": operations,
            "delivery": site_delivery_summary(site=site),
            "controls": site_control_forms(site),
        },
    )


@staff_member_required
@require_http_methods(["GET", "POST"])
def site_create(request):
    form = SiteCreateForm(_posted(request))
    if not form.is_valid():
        return render(request, "sites/site_create.html", {"form": form})
    site, op, credentials = services.site_create(
        tenant=form.cleaned_data["tenant"],
        actor=request.user,
        source_ip=client_ip(request),
        requested_by_tenant=False,  # staff work: never counted against the tenant's operation cap
        **form.site_fields,
    )
    if credentials:  # shown once, like the API's answer; never put in a cookie or a URL
        return render(
            request, "sites/site_created.html", {"site": site, "op": op, "credentials": credentials}
        )
    return redirect("operation-detail", op.id)


@staff_member_required
@require_POST
def site_deploy(request, pk: int):
    op = services.site_deploy_request(site=_site(pk), actor=request.user)
    return redirect("operation-detail", op.id)


@staff_member_required
@require_POST
def site_rollback(request, pk: int):
    data = valid_or_refuse(RollbackForm(request.POST))
    op = services.site_rollback_request(site=_site(pk), release=data["release"], actor=request.user)
    return redirect("operation-detail", op.id)


@staff_member_required
@require_POST
def site_ssl(request, pk: int):
    op = services.site_ssl_request(site=_site(pk), actor=request.user)
    return redirect("operation-detail", op.id)


@staff_member_required
@require_POST
def site_suspend(request, pk: int):
    data = valid_or_refuse(SuspendForm(request.POST))
    op = services.site_suspend(site=_site(pk), reason=admin_reason(data["reason"]), actor=request.user)
    return redirect("operation-detail", op.id)


@staff_member_required
@require_POST
def site_unsuspend(request, pk: int):
    data = valid_or_refuse(UnsuspendForm(request.POST))
    op = services.site_unsuspend(site=_site(pk), reason=admin_reason(data["reason"]), actor=request.user)
    return redirect("operation-detail", op.id)


@staff_member_required
@require_http_methods(["GET", "POST"])
def site_delete(request, pk: int):
    """A page of its own: a mistyped domain is shown there, and nothing is deleted."""
    site = _site(pk)
    form = SiteDeleteForm(_posted(request), site=site)
    if not form.is_valid():
        return render(request, "sites/site_delete.html", {"site": site, "form": form})
    op = services.site_delete_request(site=site, actor=request.user, source_ip=client_ip(request))
    return redirect("operation-detail", op.id)
