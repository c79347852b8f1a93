"""Dashboard (staff): a backup's page and the buttons of the site page's backups panel. Each action
calls the service the API calls; a refusal is shown by the dashboard middleware."""

from django import forms
from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from backups import selectors, services
from backups.models import Backup
from chom.forms import valid_or_refuse
from chom.http import client_ip
from sites.selectors import sites_visible


class BackupCreateForm(forms.Form):
    kind = forms.ChoiceField(choices=Backup.Kind.choices, required=False)


class RestoreForm(forms.Form):
    # Another site of the backup's tenant (the API's `target_site`); blank: the backup's own site.
    target_site = forms.IntegerField(min_value=1, required=False)


class DownloadForm(forms.Form):
    # One artefact (files, database, manifest: the service knows which this backup has); blank: all.
    artefact = forms.CharField(max_length=20, required=False)


def _backup(pk: int):
    return get_object_or_404(selectors.backups_visible(tenant=None, staff=True), pk=pk)


@staff_member_required
def backup_detail(request, pk: int):
    backup = _backup(pk)
    operations = selectors.backup_operations(backup=backup)
    return render(
        request,
        "backups/backup_detail.html",
        {
            "backup": backup,
            "operations": operations,
            "restore_targets": sites_visible(tenant=backup.site.tenant),
        },
    )


@staff_member_required
@require_POST
def backup_create(request, site_pk: int):
    site = get_object_or_404(sites_visible(tenant=None, staff=True), pk=site_pk)
    data = valid_or_refuse(BackupCreateForm(request.POST))
    _, op = services.backup_request(site=site, kind=data["kind"] or Backup.Kind.FULL, actor=request.user)
    return redirect("operation-detail", op.id)


@staff_member_required
@require_POST
def backup_restore(request, pk: int):
    backup = _backup(pk)
    data = valid_or_refuse(RestoreForm(request.POST))
    target = backup.site
    if data["target_site"]:
        # Only a live site of the backup's own tenant: any other is the same 404.
        target = get_object_or_404(sites_visible(tenant=backup.site.tenant), pk=data["target_site"])
    op = services.backup_restore_request(backup=backup, target=target, actor=request.user)
    return redirect("operation-detail", op.id)


@staff_member_required
@require_POST
def backup_verify(request, pk: int):
    op = services.backup_verify_request(backup=_backup(pk), actor=request.user)
    return redirect("operation-detail", op.id)


@staff_member_required
@require_POST
def backup_download(request, pk: int):
    """The API's sensitive read (the dump and the .env), audited as backup.downloaded. A POST, not
    a link: every hand-out takes a deliberate, CSRF-checked click, never a prefetch or another
    site's <img>. One artefact goes straight to its short-lived URL; none lists them all."""
    backup = _backup(pk)
    artefact = valid_or_refuse(DownloadForm(request.POST))["artefact"]
    urls, expires = services.backup_download_urls(
        backup=backup, artefact=artefact, actor=request.user, source_ip=client_ip(request)
    )
    if artefact:
        return redirect(urls[artefact])
    return render(
        request, "backups/backup_download.html", {"backup": backup, "urls": urls, "expires": expires}
    )
