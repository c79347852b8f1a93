from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import get_object_or_404, render

from chom import selectors as core_selectors
from fleet import selectors
from fleet.models import Vps


@staff_member_required
def vps_list(request):
    vpses = selectors.vps_visible(staff=True).select_related("tenant")
    capacity = selectors.shared_fleet_capacity()
    rows = [(vps, selectors.vps_site_count(vps)) for vps in vpses]
    return render(request, "fleet/vps_list.html", {"rows": rows, "capacity": capacity})


@staff_member_required
def vps_detail(request, pk: int):
    vps = get_object_or_404(selectors.vps_visible(staff=True), pk=pk)
    operations = core_selectors.operations_visible(tenant=None, staff=True).filter(
        target_type=Vps._meta.label_lower, target_id=str(vps.pk)
    )[:20]
    context = {"vps": vps, "site_count": selectors.vps_site_count(vps), "operations": operations}
    return render(request, "fleet/vps_detail.html", context)
