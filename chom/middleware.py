"""The dashboard's one place that turns a service refusal into what a person sees.

A form action whose service raises `ApplicationError` (or an external service that is down)
goes back to the page it came from with the message shown; a dashboard JSON endpoint (the charts)
answers the API's error shape. The API itself never gets here: DRF's exception handler answers
first (`chom.api.errors.exception_handler`).
"""

from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme

from chom.api.errors import error_body
from chom.errors import ApplicationError, ExternalServiceError


def _wants_json(request) -> bool:
    return request.path.endswith(".json") or "application/json" in request.headers.get("Accept", "")


class ApplicationErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, ExternalServiceError):
            exception = exception.as_application_error()
        if not isinstance(exception, ApplicationError):
            return None
        if _wants_json(request):
            return JsonResponse(
                error_body(exception.code, exception.message, exception.fields), status=exception.status
            )
        messages.error(request, exception.message)
        back = request.headers.get("Referer", "")
        safe = url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()})
        return redirect(back if back and safe else "dashboard")
