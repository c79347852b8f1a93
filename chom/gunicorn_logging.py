"""gunicorn's access log without the monitoring stack's polls: Prometheus scraping /metrics and
the fleet's http_sd list every few seconds would otherwise bury the requests a person made.
A failed poll (4xx/5xx) is still logged."""

from gunicorn.glogging import Logger

QUIET_PATHS = frozenset({"/metrics", "/observability/sd/targets", "/health"})


class QuietPollsLogger(Logger):
    def access(self, resp, req, environ, request_time) -> None:
        status = int(str(resp.status).split(" ", 1)[0]) if resp.status else 0
        if environ.get("PATH_INFO") in QUIET_PATHS and status < 400:
            return
        super().access(resp, req, environ, request_time)
