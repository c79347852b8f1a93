"""What apps above sites do at points of a site's life, without sites importing them.

Backups registers its final backup here (`register_before_delete`); `site.delete` runs every hook
before anything is removed, and a hook that raises stops the deletion with its message.
"""

from collections.abc import Callable

_BEFORE_DELETE: list[Callable[..., None]] = []


def register_before_delete(hook: Callable[..., None]) -> Callable[..., None]:
    """HOOK(site=, ctx=) runs before a site's files, database and user are removed."""
    if hook not in _BEFORE_DELETE:
        _BEFORE_DELETE.append(hook)
    return hook


def site_before_delete(*, site, ctx) -> None:
    for hook in _BEFORE_DELETE:
        hook(site=site, ctx=ctx)
