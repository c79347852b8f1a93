"""The commands backups run on a VPS. Values only ever travel as positional parameters or quoted
arguments (`Command.of`); SQL identifiers are backtick-quoted with backticks doubled.

Everything runs as root over SSH (MariaDB root logs in through the unix socket), except what
touches a site's files: that runs as the site user (`runuser -u USER --`), so a tenant's archive
can never write outside what the tenant could write anyway.
"""

import re

from django.conf import settings

from fleet.remote.commands import Command

# Cuts through pipelines: a failing mariadb-dump must fail the command, not hide behind gzip's 0.
BASH = ("bash", "-o", "pipefail", "-c")
RELEASE_TARGET_RE = re.compile(r"^releases/([0-9]{8}T?[0-9]{6}[a-z0-9-]{0,20})$")
SITE_UMASK = "027"


def ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def sql_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def home(user: str) -> str:
    return f"/var/www/{user}"


def as_site(user: str, script: str, *args: str) -> Command:
    """SCRIPT run by `sh` as the site user, umask 027, with ARGS as $1, $2..."""
    return Command.of("runuser", "-u", user, "--", "sh", "-c", f"umask {SITE_UMASK} && {script}", "sh", *args)


def current_release(user: str) -> Command:
    return Command.of("readlink", f"{home(user)}/current")


def dump_database(db: str) -> Command:
    return Command.of(
        *BASH,
        'mariadb-dump --single-transaction --quick --routines --triggers --events --hex-blob "$1" | gzip -6',
        "bash",
        db,
    )


def archive_files(user: str, release: str) -> Command:
    """tar.gz of shared/ and the current release, relative to the site's home, caches excluded.

    tar runs as the site user: the site owns releases/ and shared/ and can swap either for a
    symlink to another site's tree at any moment; as the site user, tar can then read nothing
    the site could not read anyway (other sites' homes are closed to it)."""
    members = ["shared"] + ([f"releases/{release}"] if release else [])
    excludes = [f"--exclude={pattern}" for pattern in settings.BACKUP_FILE_EXCLUDES]
    return as_site(
        user,
        'cd -- "$1" && shift && exec tar --create --gzip --file=- --exclude-caches "$@"',
        home(user), *excludes, "--", *members,
    )  # fmt: skip


def import_database(db: str) -> Command:
    return Command.of(*BASH, 'gunzip -c | mariadb --binary-mode "$1"', "bash", db)


def sql(statement: str, *, database: str = "") -> Command:
    argv = ["mariadb", "--batch", "--skip-column-names", "--raw", "-e", statement]
    return Command.of(*argv, *([database] if database else []))


def recreate_database(db: str) -> Command:
    # The same defaults as the agent's db-ensure, so an emptied live database keeps its charset.
    return sql(
        f"DROP DATABASE IF EXISTS {ident(db)}; "
        f"CREATE DATABASE {ident(db)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    )


def drop_database(db: str) -> Command:
    return sql(f"DROP DATABASE IF EXISTS {ident(db)}")


def list_tables(db: str) -> Command:
    query = "SELECT table_name FROM information_schema.tables WHERE table_schema = {} "
    return sql(query.format(sql_literal(db)) + "AND table_type = 'BASE TABLE' ORDER BY table_name")


def count_programmable(db: str) -> Command:
    """Views, triggers, routines and events: objects RENAME TABLE cannot carry across databases."""
    parts = [
        f"SELECT COUNT(*) FROM information_schema.{table} WHERE {column} = {sql_literal(db)}"  # noqa: S608
        for table, column in (
            ("views", "table_schema"),
            ("triggers", "trigger_schema"),
            ("routines", "routine_schema"),
            ("events", "event_schema"),
        )
    ]
    return sql("SELECT " + " + ".join(f"({p})" for p in parts))


def count_rows(db: str, tables: list[str]) -> Command:
    # Identifiers are backtick-quoted (ident): names from the dump cannot break out.
    selects = [f"SELECT {i}, COUNT(*) FROM {ident(db)}.{ident(t)}" for i, t in enumerate(tables)]  # noqa: S608
    return sql(" UNION ALL ".join(selects))


def swap_tables(live: str, incoming: str, parking: str, live_tables: list[str], new_tables: list[str]) -> str:
    """One RENAME TABLE statement (atomic): live tables to PARKING, INCOMING tables to live."""
    moves = [f"{ident(live)}.{ident(t)} TO {ident(parking)}.{ident(t)}" for t in live_tables]
    moves += [f"{ident(incoming)}.{ident(t)} TO {ident(live)}.{ident(t)}" for t in new_tables]
    if not moves:
        raise ValueError("nothing to swap: RENAME TABLE needs at least one table")
    return "RENAME TABLE " + ", ".join(moves)


def extract_files(user: str, directory: str) -> Command:
    return as_site(
        user, 'mkdir -p -- "$1" && exec tar --extract --gzip --file=- --no-same-owner -C "$1"', directory
    )


def remove_tree(user: str, directory: str) -> Command:
    return as_site(user, 'rm -rf -- "$1"', directory)


def hash_tree(user: str, directory: str) -> Command:
    return as_site(user, 'cd -- "$1" && find . -type f -print0 | sort -z | xargs -0r sha256sum', directory)


def stage_release(user: str, staging: str, archived: str, release: str) -> Command:
    """Move the archived release out of STAGING into releases/RELEASE (not yet live)."""
    return as_site(
        user,
        'test -d "$2/releases/$3" && rm -f -- "$2/releases/$3/.chom-release.json"'
        ' && mv -T -- "$2/releases/$3" "$1/releases/$4"',
        home(user), staging, archived, release,
    )  # fmt: skip


def new_release_dir(user: str, release: str) -> Command:
    return as_site(user, 'mkdir -m 2750 -- "$1/releases/$2"', home(user), release)


def write_file(user: str, path: str, *, own_group: bool = False) -> Command:
    """stdin → PATH as the site user; OWN_GROUP: group = the user's group (not even nginx reads it)."""
    chgrp = ' && chgrp "$(id -gn)" -- "$1.chom-tmp"' if own_group else ""
    return as_site(
        user,
        f'cat > "$1.chom-tmp" && chmod 0640 -- "$1.chom-tmp"{chgrp} && mv -f -- "$1.chom-tmp" "$1"',
        path,
    )


def swap_shared(user: str, incoming: str, parked: str) -> Command:
    """shared/ → PARKED, INCOMING → shared/ (two renames on one filesystem)."""
    return as_site(
        user, 'mv -T -- "$1/shared" "$3" && mv -T -- "$2" "$1/shared"', home(user), incoming, parked
    )
