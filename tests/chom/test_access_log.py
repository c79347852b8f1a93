"""The access log `make run`/`make demo` print: monitoring polls stay out, people's requests stay in."""

from types import SimpleNamespace

from gunicorn.config import Config

from chom.gunicorn_logging import QuietPollsLogger


def _logged(path: str, status: str) -> list[str]:
    config = Config()
    config.set("accesslog", "-")
    logger = QuietPollsLogger(config)
    lines = []
    logger.access_log.info = lambda message, *args, **kwargs: lines.append(message)
    resp = SimpleNamespace(status=status, sent=10, headers=[], response_length=10)
    req = SimpleNamespace(headers=[], method="GET", path=path, query="", version=(1, 1), uri=path)
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "RAW_URI": path, "SERVER_PROTOCOL": "HTTP/1.1"}
    logger.access(resp, req, environ, SimpleNamespace(seconds=0, microseconds=1000))
    return lines


def test_it_leaves_successful_monitoring_polls_out_of_the_access_log():
    assert _logged("/metrics", "200 OK") == []
    assert _logged("/observability/sd/targets", "200 OK") == []


def test_it_logs_failed_polls_and_every_other_request():
    assert len(_logged("/metrics", "403 Forbidden")) == 1
    assert len(_logged("/api/v1/sites", "200 OK")) == 1
