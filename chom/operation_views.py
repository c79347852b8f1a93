"""The operation page's moving parts: its live fragment (polled by htmx every second while the
operation is queued or running) and the cancel and retry buttons."""

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from chom import operations, selectors
from chom.http import client_ip


def _operation(pk):
    return get_object_or_404(selectors.operations_visible(tenant=None, staff=True), pk=pk)


@staff_member_required
@require_GET
def operation_live(request, pk):
    """The fragment htmx swaps in; anything else asking gets the whole page."""
    fragment = bool(request.headers.get("HX-Request"))
    template = "chom/operation_live.html" if fragment else "chom/operation_detail.html"
    response = render(request, template, {"op": _operation(pk)})
    patch_vary_headers(response, ["HX-Request"])
    return response


@staff_member_required
@require_POST
def operation_cancel(request, pk):
    op = operations.operation_cancel(
        operation=_operation(pk), actor=request.user, source_ip=client_ip(request)
    )
    messages.success(request, f"{op.kind} cancelled: it will not run.")
    return redirect("operation-detail", op.id)


@staff_member_required
@require_POST
def operation_retry(request, pk):
    retry = operations.operation_retry(
        operation=_operation(pk), actor=request.user, source_ip=client_ip(request)
    )
    messages.success(request, f"{retry.kind} queued again.")
    return redirect("operation-detail", retry.id)
