"""CHOM's two error types.

`ApplicationError` is the one refusal every service raises (a taken domain, a tier limit, a
suspended site): a machine-readable code, a message a person can act on, field errors and the HTTP
status. It is mapped once for the API (`chom.api.errors.exception_handler`) and once for the
dashboard (`chom.middleware.ApplicationErrorMiddleware`); views carry no try/except for it.

`ExternalServiceError` is what every external-service client raises (cloud APIs, Stripe, S3, the
monitoring stack): a message and whether retrying the same call can help. Reaching a caller
unhandled, it answers as the service being unavailable (`as_application_error`).
"""


class ApplicationError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or {}


class ExternalServiceError(Exception):
    service = "external service"
    api_code = "service_unavailable"

    def __init__(self, message: str, *, permanent: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status = status

    def as_application_error(self) -> ApplicationError:
        """502 when the service refused the call itself, 503 when it is down or unreachable."""
        return ApplicationError(502 if self.permanent else 503, self.api_code, self.message)
