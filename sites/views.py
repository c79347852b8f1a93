from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from chom import selectors as core_selectors
from sites import selectors


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
    site = get_object_or_404(selectors.sites_visible(tenant=None, staff=True), pk=pk)
    operations = core_selectors.operations_visible(tenant=None, staff=True).filter(
        target_type="sites.site", target_id=str(site.pk)
    )[:20]
    return render(
        request,
        "sites/site_detail.html",
        {"site": site, "releases": site.releases.all()[:10], "operations": operations},
    )
