"""Which dashboard pages exist: read from the URL resolver, so a page added later is crawled too.

A route is a *page* when a staff GET answers 200 with HTML. A route that refuses GET (405) is an
action (a form posts to it); one that answers JSON or a redirect is an endpoint, not a page. A route
whose arguments no fixture object fills, or whose GET answers 404 or 500, is *broken*: the crawler
reports it, so a new detail page never goes unchecked by accident. Routes with arguments are filled
from the fixture's objects by name: `site_pk` takes the site; `pk`/`slug` take the object named by
the last matching word of the route's name (`observability-alert-silence` → the alert).
"""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.converters import IntConverter, UUIDConverter

# Not dashboard pages: machine endpoints, Django's admin, and the sign-in pages (tests of their own).
NOT_DASHBOARD_PREFIXES = ("api/", "admin/", "webhooks/", "observability/sd/", "observability/loki/")
NOT_DASHBOARD_NAMES = frozenset(
    {
        "health",
        "metrics",
        "login",
        "logout",
        "two-factor",
        # A one-time link for a new member, signed for that person: not a staff page.
        "account-welcome",
    }
)


@dataclass(frozen=True)
class Route:
    name: str
    route: str
    kwargs: tuple[tuple[str, object], ...]


@dataclass(frozen=True)
class Page:
    """A route filled with fixture objects. `problem` is set when it is broken (see the module doc)."""

    name: str
    url: str
    kind: str  # "page", "action", "endpoint" or "broken"
    problem: str = ""


def dashboard_routes() -> list[Route]:
    return [r for r in _walk(get_resolver().url_patterns) if _is_dashboard(r)]


def dashboard_pages(*, client: Client, objects: dict[str, object]) -> list[Page]:
    """Every dashboard route, filled from OBJECTS and classified by a staff GET through CLIENT."""
    return [_probe(client, route, objects) for route in dashboard_routes()]


def _walk(patterns, prefix: str = "", namespace: str = "", converters=None) -> Iterator[Route]:
    converters = converters or {}
    for p in patterns:
        found = converters | getattr(p.pattern, "converters", {})
        if isinstance(p, URLResolver):
            ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
            yield from _walk(p.url_patterns, prefix + str(p.pattern), ns, found)
        elif isinstance(p, URLPattern) and p.name:
            names = p.pattern.regex.groupindex
            yield Route(
                f"{namespace}{p.name}", prefix + str(p.pattern), tuple((k, found.get(k)) for k in names)
            )


def _is_dashboard(route: Route) -> bool:
    return route.name not in NOT_DASHBOARD_NAMES and not route.route.startswith(NOT_DASHBOARD_PREFIXES)


def _fill(route: Route, objects: dict[str, object]) -> tuple[dict, list[str]]:
    kwargs, missing = {}, []
    words = route.name.replace("_", "-").split("-")
    for name, converter in route.kwargs:
        owner, _, attr = name.rpartition("_") if "_" in name else ("", "", name)
        attr = "pk" if attr == "id" else attr
        candidates = [owner] if owner else list(reversed(words))
        obj = next((objects[w] for w in candidates if w in objects and hasattr(objects[w], attr)), None)
        if obj is None:
            missing.append(name)
            kwargs[name] = _placeholder(converter)
        else:
            kwargs[name] = getattr(obj, attr)
    return kwargs, missing


def _placeholder(converter) -> object:
    if isinstance(converter, IntConverter):
        return 999999
    if isinstance(converter, UUIDConverter):
        return uuid.UUID(int=0)
    return "no-such-object"


def _probe(client: Client, route: Route, objects: dict[str, object]) -> Page:
    kwargs, missing = _fill(route, objects)
    url = reverse(route.name, kwargs=kwargs)
    response = client.get(url)
    status, html = response.status_code, response.get("Content-Type", "").startswith("text/html")
    if status == 405:
        return Page(route.name, url, "action")
    # A crash answers 500 and a missing object 404, both JSON here (chom.api.errors): broken pages.
    # Other JSON errors are an endpoint's own answers ("Prometheus is not configured": 503).
    if status in (404, 500) or (status >= 400 and html):
        hint = (
            f"no fixture object fills {', '.join(missing)}: add one to dashboard_objects in "
            "tests/browser/conftest.py (keyed by a word of the route's name)"
            if missing
            else f"GET {url} answered {status}"
        )
        return Page(route.name, url, "broken", hint)
    return Page(route.name, url, "page" if status == 200 and html else "endpoint")
