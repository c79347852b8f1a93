"""Dashboard (staff): a site's runtime controls on its page (cron jobs, workers, redirects,
headers, basic-auth users, PHP settings). Each action checks its input with the API's serializer
(sites/runtime_forms.py), calls the service the API calls, and goes back to the site's page, where
the change is listed and its operation shows as queued. A refusal (a form's or a service's) is
shown there by the dashboard middleware, and nothing is saved or queued."""

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from chom.forms import valid_or_refuse
from chom.http import client_ip
from sites import cron_jobs, runtime, workers
from sites.runtime_forms import (
    BasicAuthForm,
    CronJobForm,
    EnabledForm,
    HeaderForm,
    PhpSettingsForm,
    RedirectForm,
    WorkerForm,
)
from sites.views import _site


def _staff(request) -> dict:
    """Who asks: staff, so the change never counts against the tenant's operation cap."""
    return {"actor": request.user, "source_ip": client_ip(request), "requested_by_tenant": False}


def _checked(form):
    valid_or_refuse(form)
    return form.validated


def _back(request, site, section: str, message: str, op=None):
    if op is not None:
        message += f" {op.kind} is queued."
    messages.success(request, message)
    return redirect(reverse("site-detail", args=[site.pk]) + f"#{section}")


# --- cron jobs -----------------------------------------------------------------------------------


@staff_member_required
@require_POST
def cron_job_create(request, pk: int):
    site = _site(pk)
    job, op = cron_jobs.cron_job_create(site=site, **_checked(CronJobForm(request.POST)), **_staff(request))
    return _back(request, site, "cron-jobs", f"Cron job {job.schedule} added.", op)


@staff_member_required
@require_POST
def cron_job_enabled(request, pk: int, job_id: int):
    site = _site(pk)
    job = cron_jobs.cron_job_of_site(site=site, job_id=job_id)
    enabled = valid_or_refuse(EnabledForm(request.POST))["enabled"]
    op = cron_jobs.cron_job_update(job=job, enabled=enabled, **_staff(request))
    return _back(request, site, "cron-jobs", f"Cron job {job.schedule} {_state(enabled)}.", op)


@staff_member_required
@require_POST
def cron_job_delete(request, pk: int, job_id: int):
    site = _site(pk)
    job = cron_jobs.cron_job_of_site(site=site, job_id=job_id)
    op = cron_jobs.cron_job_delete(job=job, **_staff(request))
    return _back(request, site, "cron-jobs", f"Cron job {job.schedule} deleted.", op)


def _state(enabled: bool) -> str:
    return "enabled" if enabled else "disabled"


# --- workers -------------------------------------------------------------------------------------


@staff_member_required
@require_POST
def worker_create(request, pk: int):
    site = _site(pk)
    worker, op = workers.worker_create(site=site, **_checked(WorkerForm(request.POST)), **_staff(request))
    return _back(request, site, "workers", f"Worker {worker.name} added.", op)


@staff_member_required
@require_POST
def worker_enabled(request, pk: int, worker_id: int):
    site = _site(pk)
    worker = workers.worker_of_site(site=site, worker_id=worker_id)
    enabled = valid_or_refuse(EnabledForm(request.POST))["enabled"]
    op = workers.worker_update(worker=worker, enabled=enabled, **_staff(request))
    return _back(request, site, "workers", f"Worker {worker.name} {_state(enabled)}.", op)


@staff_member_required
@require_POST
def worker_delete(request, pk: int, worker_id: int):
    site = _site(pk)
    worker = workers.worker_of_site(site=site, worker_id=worker_id)
    op = workers.worker_delete(worker=worker, **_staff(request))
    return _back(request, site, "workers", f"Worker {worker.name} deleted.", op)


# --- redirects and headers -----------------------------------------------------------------------


@staff_member_required
@require_POST
def redirect_create(request, pk: int):
    site = _site(pk)
    v = _checked(RedirectForm(request.POST))
    row, op = runtime.site_redirect_create(
        site=site,
        source=v["source"],
        match=v["match"],
        destination=v["destination"],
        status_code=v["status_code"],
        preserve_query=v["preserve_query"],
        **_staff(request),
    )
    return _back(request, site, "redirects", f"Redirect of {row.source} added.", op)


@staff_member_required
@require_POST
def redirect_delete(request, pk: int, redirect_id: int):
    site = _site(pk)
    row = get_object_or_404(site.redirects, pk=redirect_id)
    op = runtime.site_redirect_delete(redirect=row, **_staff(request))
    return _back(request, site, "redirects", f"Redirect of {row.source} deleted.", op)


@staff_member_required
@require_POST
def header_create(request, pk: int):
    site = _site(pk)
    v = _checked(HeaderForm(request.POST))
    row, op = runtime.site_header_create(site=site, name=v["name"], value=v["value"], **_staff(request))
    return _back(request, site, "response-headers", f"Header {row.name} added.", op)


@staff_member_required
@require_POST
def header_delete(request, pk: int, header_id: int):
    site = _site(pk)
    row = get_object_or_404(site.response_headers, pk=header_id)
    op = runtime.site_header_delete(header=row, **_staff(request))
    return _back(request, site, "response-headers", f"Header {row.name} deleted.", op)


# --- basic auth and PHP settings -----------------------------------------------------------------


@staff_member_required
@require_POST
def basic_auth_set(request, pk: int):
    site = _site(pk)
    v = _checked(BasicAuthForm(request.POST))
    row, op = runtime.site_basic_auth_set(
        site=site, path=v["path_prefix"], username=v["username"], password=v["password"], **_staff(request)
    )
    return _back(
        request, site, "basic-auth", f"Basic-auth user {row.username} on {row.path_prefix} saved.", op
    )


@staff_member_required
@require_POST
def basic_auth_delete(request, pk: int, user_id: int):
    site = _site(pk)
    row = get_object_or_404(site.basic_auth_users, pk=user_id)
    op = runtime.site_basic_auth_delete(user=row, **_staff(request))
    return _back(
        request, site, "basic-auth", f"Basic-auth user {row.username} on {row.path_prefix} deleted.", op
    )


@staff_member_required
@require_POST
def php_settings_update(request, pk: int):
    site = _site(pk)
    v = _checked(PhpSettingsForm(request.POST, site=site))
    op = runtime.site_php_settings_update(site=site, settings=v["settings"], **_staff(request))
    if op is None:
        return _back(request, site, "php-settings", "The PHP settings are unchanged.")
    return _back(request, site, "php-settings", "PHP settings saved.", op)
