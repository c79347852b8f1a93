from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import render

from billing import selectors


@staff_member_required
def billing_dashboard(request):
    return render(
        request,
        "billing/dashboard.html",
        {
            "rows": selectors.billing_overview(staff=True),
            "events": selectors.stripe_events_recent(limit=20),
            "unmetered": selectors.unmetered_metrics(),
        },
    )
