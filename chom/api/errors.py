"""One error shape for the whole API: {"error": {"code", "message", "fields"}}."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, JsonResponse
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from chom.errors import ApplicationError, ExternalServiceError

_CODES = {
    exceptions.NotAuthenticated: "unauthenticated",
    exceptions.AuthenticationFailed: "unauthenticated",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
    exceptions.ParseError: "malformed_request",
    exceptions.ValidationError: "invalid_input",
}


def _flatten(detail) -> dict:
    if isinstance(detail, dict):
        return {k: _flatten_value(v) for k, v in detail.items()}
    return {"non_field_errors": _flatten_value(detail)}


def _flatten_value(value):
    if isinstance(value, dict):
        return {k: _flatten_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_flatten_value(v) if isinstance(v, dict | list) else str(v) for v in value]
    return [str(value)]


# A service's 429 (a tenant's cap of pending operations) is for now only: a slot frees up as an
# operation finishes, typically within tens of seconds.
RETRY_AFTER_SECONDS = 30
# CHOM's own database, broker or cache unreachable (a restart, a failover): send the request again
# in a few seconds. 503, not 500: nothing is wrong with the request.
DATASTORE_DOWN = (
    DatabaseOperationalError,
    DatabaseInterfaceError,
    RedisConnectionError,
    RedisTimeoutError,
    BrokerOperationalError,
)
DATASTORE_RETRY_AFTER_SECONDS = 5

logger = logging.getLogger(__name__)


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def exception_handler(exc, context):
    if isinstance(exc, ExternalServiceError):
        exc = exc.as_application_error()
    if isinstance(exc, ApplicationError):
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if exc.status == 429 else None
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status, headers=headers)
    if isinstance(exc, DATASTORE_DOWN):
        logger.warning("datastore unavailable during %s: %r", context["request"].path, exc)
        body = error_body("service_unavailable", "CHOM is briefly unavailable; retry in a few seconds.")
        return Response(body, status=503, headers={"Retry-After": str(DATASTORE_RETRY_AFTER_SECONDS)})
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        body = error_body("invalid_input", "The request has invalid fields.", _flatten(exc.detail))
    elif isinstance(exc, exceptions.UnsupportedMediaType):
        body = error_body(
            "unsupported_media_type",
            f"{exc.detail} Send a JSON body with the header 'Content-Type: application/json'.",
        )
    else:
        code = next((c for cls, c in _CODES.items() if isinstance(exc, cls)), "error")
        body = error_body(code, str(exc.detail))
    response.data = body
    return response


def api_not_found(request, *args, **kwargs):
    """Any path under /api/v1/ that no route takes, with any method."""
    return JsonResponse(
        error_body("not_found", f"No API endpoint at {request.path}; see /api/v1/docs."),
        status=status.HTTP_404_NOT_FOUND,
    )


def json_not_found(request, exception=None):
    """handler404: the API's error shape under /api/, Django's page elsewhere (the dashboard)."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", "Not found."), status=status.HTTP_404_NOT_FOUND)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def json_server_error(request):
    return JsonResponse(
        error_body("internal_error", "Something went wrong on our side; it has been logged."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
