import environ
from django.core.management.base import BaseCommand, CommandError

from backups import control_plane
from backups.storage import StorageError


class Command(BaseCommand):
    help = (
        "Restore CHOM's own database from a control plane backup KEY in S3 (see backup_control_plane "
        "--list). Verifies the sha256 first; PostgreSQL restores in one transaction."
    )

    def add_arguments(self, parser):
        parser.add_argument("key", help="S3 key of the .dump object")
        parser.add_argument("--database-url", default="", help="restore into this database instead")
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    def handle(self, *args, key, database_url, yes, **options):
        database = environ.Env.db_url_config(database_url) if database_url else None
        target = database["NAME"] if database else "CHOM's own database"
        if not yes and input(f"Replace the contents of {target} with {key}? [y/N] ").strip().lower() != "y":
            raise CommandError("aborted")
        try:
            sidecar = control_plane.control_plane_restore(key=key, database=database)
        except (control_plane.ControlPlaneBackupError, StorageError) as exc:
            raise CommandError(str(exc))
        self.stdout.write(
            f"restored {key} ({sidecar['size']} bytes, sha256 {sidecar['sha256']}) into {target}"
        )
