"""The one shape of error every external-service client raises (cloud APIs, Stripe, S3, the
monitoring stack): a message a human can act on and whether retrying the same call can help."""


class ExternalServiceError(Exception):
    def __init__(self, message: str, *, permanent: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status = status
