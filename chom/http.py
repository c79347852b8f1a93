"""Facts about an HTTP request that every app needs (views of the API and of the dashboard)."""


def client_ip(request) -> str | None:
    """The address the request came from, as recorded in audit events."""
    return request.META.get("REMOTE_ADDR")
