import environ
from django.core.management.base import BaseCommand, CommandError

from backups import control_plane
from backups.storage import StorageError


class Command(BaseCommand):
    help = "Back up CHOM's own database to S3 now (the beat job does it every 6 hours), or --list."

    def add_arguments(self, parser):
        parser.add_argument("--list", action="store_true", help="list the control plane backups in S3")
        parser.add_argument("--database-url", default="", help="back up this database instead")

    def handle(self, *args, list, database_url, **options):
        try:
            if list:
                for dump in control_plane.control_plane_backups():
                    self.stdout.write(f"{dump['key']}\t{dump['size']}\t{dump['created']:%Y-%m-%d %H:%M}")
                return
            database = environ.Env.db_url_config(database_url) if database_url else None
            stored = control_plane.control_plane_backup(database=database)
        except (control_plane.ControlPlaneBackupError, StorageError) as exc:
            raise CommandError(str(exc))
        self.stdout.write(stored.key)
