from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from observability.targets import sd_file_write


class Command(BaseCommand):
    help = "Write the fleet's exporters as a Prometheus file_sd JSON file (only when it changed)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--output", default=settings.PROMETHEUS_FILE_SD_PATH, help="defaults to PROMETHEUS_FILE_SD_PATH"
        )

    def handle(self, *args, output: str, **options):
        if not output:
            raise CommandError("give --output or set PROMETHEUS_FILE_SD_PATH")
        changed = sd_file_write(Path(output))
        self.stdout.write(f"{output}: {'written' if changed else 'unchanged'}")
