"""Dashboard (staff): a backup's page and the buttons of the site page's backups panel."""

from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from backups import selectors, services
from sites.selectors import sites_visible


def _backup(pk: int):
    return get_object_or_404(selectors.backups_visible(tenant=None, staff=True), pk=pk)


@staff_member_required
def backup_detail(request, pk: int):
    backup = _backup(pk)
    operations = selectors.backup_operations(backup=backup)
    return render(request, "backups/backup_detail.html", {"backup": backup, "operations": operations})


@staff_member_required
@require_POST
def backup_create(request, site_pk: int):
    site = get_object_or_404(sites_visible(tenant=None, staff=True), pk=site_pk)
    _, op = services.backup_request(site=site, actor=request.user)
    return redirect("operation-detail", op.id)


@staff_member_required
@require_POST
def backup_restore(request, pk: int):
    backup = _backup(pk)
    op = services.backup_restore_request(backup=backup, target=backup.site, actor=request.user)
    return redirect("operation-detail", op.id)


@staff_member_required
@require_POST
def backup_verify(request, pk: int):
    op = services.backup_verify_request(backup=_backup(pk), actor=request.user)
    return redirect("operation-detail", op.id)
