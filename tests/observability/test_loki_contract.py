"""The LogQL CHOM sends Loki, pinned string for string, and held against Loki's documentation: a
site's logs are a log stream selector of exact label matchers (`{app="mysql",name="mysql-backup"}`)
and at most one line filter `|= "text"` (`{job="mysql"} |= "error"`), the text a double-quoted
string with Go's escapes (`"\\\\w+"` is `\\w+`).
https://grafana.com/docs/loki/latest/query/log_queries/ ("Log stream selector", "Line filter
expression"). The Loki fake answers exactly these forms and refuses anything else as Loki refuses a
query it cannot parse (tests/observability/fakes.py FakeLoki)."""

import re
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from observability import queries
from observability.clients import ServiceError
from observability.clients import loki as loki_client
from tests.observability.factories import make_site, make_vps
from tests.observability.fakes import LogQLRefused, logql_log_query

DOCS = "https://grafana.com/docs/loki/latest/query/log_queries/"
# From DOCS, verbatim.
DOC_SELECTOR = '{app="mysql",name="mysql-backup"}'
DOC_LINE_FILTER = '{job="mysql"} |= "error"'
DOC_CHAINED = '{job="mysql"} |= "error" != "timeout"'
DOC_FULL = '{container="query-frontend",namespace="loki-dev"} |= "metrics.go" | logfmt | duration > 10s and throughput_mb < 500'  # noqa: E501
DOC_REGEX_SELECTOR = '{name =~ "mysql.+"}'
DOC_REGEX_FILTER = '{name="kafka"} |~ "tsdb-ops.*io:2003"'
DOC_ESCAPED = '{job="mysql"} |= "\\\\w+"'  # the docs: `\w+` is the same as "\\w+"
# The documented grammar of the part CHOM uses: `{` label `=` "string" (`,` ...) `}` then `|=` "string"
# filters; strings double-quoted with Go escapes, no raw newline.
_GO_STRING = r'"(?:[^"\\\n]|\\(?:[abfnrtv\\"]|[0-7]{3}|x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}))*"'
_MATCHER = rf"\s*[A-Za-z_][A-Za-z0-9_]*\s*=\s*{_GO_STRING}\s*"
DOCUMENTED_FORM = re.compile(rf"\{{{_MATCHER}(?:,{_MATCHER})*\}}(?:\s*\|=\s*{_GO_STRING})*")

HOSTILE = 'a"b\\c\nd\te\x01}` |= "x" | json\u2028é'
HOSTILE_LOGQL = '"a\\"b\\\\c\\nd\\te\\u0001}` |= \\"x\\" | json\u2028é"'


@pytest.fixture
def site(alice):
    site = make_site(alice.tenant, make_vps("web1"), "shop.acme.test")
    site.unix_user = "site42"
    site.save(update_fields=["unix_user"])
    return site


@pytest.mark.parametrize(
    "text, log, expected",
    [
        ("", "", '{job="nginx", site="site42", vps="web1"}'),
        ("", "access", '{job="nginx", log="access", site="site42", vps="web1"}'),
        ("", "error", '{job="nginx", log="error", site="site42", vps="web1"}'),
        ("GET /", "", '{job="nginx", site="site42", vps="web1"} |= "GET /"'),
        (" 500 ", "access", '{job="nginx", log="access", site="site42", vps="web1"} |= " 500 "'),
        (HOSTILE, "error", '{job="nginx", log="error", site="site42", vps="web1"} |= ' + HOSTILE_LOGQL),
    ],
)
def test_it_sends_exactly_these_log_queries(site, text, log, expected):
    assert queries.site_logs_logql(site, text=text, log=log) == expected


def test_it_holds_the_documented_grammar_against_the_documentations_own_examples():
    for example in (DOC_SELECTOR, DOC_LINE_FILTER, DOC_ESCAPED):
        assert DOCUMENTED_FORM.fullmatch(example), example
    for beyond in (DOC_CHAINED, DOC_FULL, DOC_REGEX_SELECTOR, DOC_REGEX_FILTER):
        assert not DOCUMENTED_FORM.fullmatch(beyond), beyond


def test_the_fake_unquotes_strings_as_the_documentation_says():
    _, filters = logql_log_query('{job="nginx", site="s", vps="v"} |= "\\\\w+"')
    assert filters == ["\\w+"]


@pytest.mark.parametrize("text", ["", "GET /", HOSTILE, "\\", '"', "\x00", "}", "\u00e9\U0001f600"])
@pytest.mark.parametrize("log", ["", "access", "error"])
def test_every_log_query_has_the_documented_form_and_means_the_text_typed(site, text, log):
    logql = queries.site_logs_logql(site, text=text, log=log)
    assert DOCUMENTED_FORM.fullmatch(logql), logql
    labels, filters = logql_log_query(logql)  # Go's unquoting, as Loki's lexer does it
    assert labels == {"job": "nginx", "site": "site42", "vps": "web1"} | ({"log": log} if log else {})
    assert filters == ([text] if text else [])


def _ask(loki, query: str) -> requests.Response:
    params = {"query": query, "start": "0", "end": str(10**19), "limit": "10"}
    headers = {"X-Scope-OrgID": "vps-1"}
    return requests.get(f"{loki.url}/loki/api/v1/query_range", params=params, headers=headers, timeout=5)


@pytest.mark.parametrize(
    "query, body",
    [
        (DOC_SELECTOR, "parse error at line 1, col 2: syntax error: unexpected IDENTIFIER"),
        (DOC_REGEX_SELECTOR, "parse error at line 1, col 2: syntax error: unexpected IDENTIFIER"),
        (
            '{job="nginx", site=~".+", vps="web1"}',
            "parse error at line 1, col 19: syntax error: unexpected RE",
        ),
        (
            '{job="nginx", site="s", vps="web1"} |~ "x"',
            "parse error at line 1, col 37: syntax error: unexpected PIPE_MATCH",
        ),
        (
            '{job="nginx", site="s", vps="web1"} |= "x" | json',
            "parse error at line 1, col 44: syntax error: unexpected PIPE",
        ),
        (
            '{job="nginx", site="s", vps="web1"} |= "a\nb"',
            "parse error at line 1, col 40: literal not terminated",
        ),
        (
            '{job="nginx", site="s", vps="web1"} |= "\\q"',
            "parse error at line 1, col 40: invalid char escape",
        ),
        (
            'unk({ foo = "bar" }[5m])',
            "parse error at line 1, col 1: syntax error: unexpected IDENTIFIER",
        ),  # Loki's test
        (
            'count_over_time({job="mysql"}[5m])',
            "parse error at line 1, col 1: syntax error: unexpected COUNT_OVER_TIME",
        ),
        (  # what CHOM sent for site metrics before they came from Prometheus
            'sum(rate({job="nginx", log="access", site="s", vps="web1"}[240s]))',
            "parse error at line 1, col 1: syntax error: unexpected SUM",
        ),
        ("", "parse error at line 1, col 1: syntax error: unexpected $end"),
    ],
)
def test_the_fake_refuses_other_queries_as_loki_refuses_a_parse_error(loki, query, body):
    answer = _ask(loki, query)
    assert answer.status_code == 400
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.text == body


def test_the_fake_answers_chom_s_hostile_query_with_the_lines_that_hold_the_text(loki, site):
    labels = {"job": "nginx", "log": "error", "site": "site42", "vps": "web1"}
    loki.push(labels, [(1, f"before {HOSTILE} after"), (2, "a plain line")], org_id="vps-1")
    answer = _ask(loki, queries.site_logs_logql(site, text=HOSTILE, log="error"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["result"] == [
        {"stream": labels, "values": [["1", f"before {HOSTILE} after"]]}
    ]


def test_chom_s_loki_client_reports_the_refusal_with_loki_s_words(loki):
    now = timezone.now()
    with pytest.raises(ServiceError) as refused:
        loki_client.query_logs(
            '{site=~".+"}', org_id="vps-1", start=now - timedelta(hours=1), end=now, limit=10
        )
    assert refused.value.permanent
    assert "Loki answered 400: parse error at line 1, col 6: syntax error: unexpected RE" in str(
        refused.value
    )


def test_the_refusal_names_line_and_column_of_the_first_unaccepted_token():
    with pytest.raises(LogQLRefused, match=r"^parse error at line 2, col 1: syntax error: unexpected PIPE$"):
        logql_log_query('{job="nginx", site="s", vps="web1"}\n| json')
