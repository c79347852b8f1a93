"""The staff's audit log page: every AuditEvent, filtered, each row linking to its target."""

from django import forms
from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.shortcuts import render
from django.views.decorators.http import require_GET

from chom import audit


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=200)
    tenant = forms.CharField(required=False, max_length=50, help_text="slug")
    action = forms.CharField(required=False, max_length=100, help_text='e.g. "site." or "vps.created"')
    target = forms.CharField(required=False, max_length=200)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))


@staff_member_required
@require_GET
def audit_log(request):
    form = AuditFilterForm(request.GET)
    form.is_valid()  # an invalid field is shown with its error and not applied
    filters = {name: value for name, value in form.cleaned_data.items() if value}
    qs = audit.audit_events_filtered(audit.audit_events_visible(staff=True), **filters)
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    urls = audit.audit_target_urls(event.target for event in page.object_list)
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "page": page,
        "rows": [(event, urls.get(event.target)) for event in page.object_list],
        "form": form,
        "query": query.urlencode(),
    }
    return render(request, "chom/audit_log.html", context)
