"""One client module per monitoring service. Each has timeouts on every call and raises one error
type whose `permanent` flag says whether retrying can help (a bad query never will)."""

from chom.errors import ExternalServiceError


class ServiceError(ExternalServiceError):
    service = "monitoring"


class NotConfigured(ServiceError):
    """The integration's URL is not set on this installation."""

    def __init__(self, setting: str):
        super().__init__(f"{setting} is not configured on this installation", permanent=True)
        self.setting = setting
