"""One client module per monitoring service. Each has timeouts on every call and raises one error
type whose `permanent` flag says whether retrying can help (a bad query never will)."""

from chom.errors import ApplicationError, ExternalServiceError


class ServiceError(ExternalServiceError):
    service = "monitoring"

    @property
    def api_code(self) -> str:
        return f"{self.service}_unavailable"

    def as_application_error(self) -> ApplicationError:
        """A monitoring service that is down or not configured: the caller gets a clear 503."""
        return ApplicationError(503, self.api_code, self.message)


class NotConfigured(ServiceError):
    """The integration's URL is not set on this installation."""

    def __init__(self, setting: str):
        super().__init__(f"{setting} is not configured on this installation", permanent=True)
        self.setting = setting

    @property
    def api_code(self) -> str:
        return "not_configured"
