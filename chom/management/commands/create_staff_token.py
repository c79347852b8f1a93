from django.core.management.base import BaseCommand

from chom.services import staff_token_create


class Command(BaseCommand):
    help = "Create (or promote) a platform staff user and print a new staff API token (last line)."

    def add_arguments(self, parser):
        parser.add_argument("email")

    def handle(self, *args, email, **options):
        issued = staff_token_create(email=email)
        self.stdout.write(f"staff token for {email} (shown once):")
        self.stdout.write(issued.plaintext)
