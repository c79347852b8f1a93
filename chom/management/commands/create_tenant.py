from django.core.management.base import BaseCommand, CommandError

from chom.errors import ApplicationError
from chom.services import tenant_create
from chom.tiers import TIERS


class Command(BaseCommand):
    help = "Create a tenant with its owner and print the owner's API token (last line of stdout)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--tier", choices=sorted(TIERS), default="starter")
        parser.add_argument("--owner-email", required=True)
        parser.add_argument("--name", default="")

    def handle(self, *args, slug, tier, owner_email, name, **options):
        try:
            tenant, issued = tenant_create(slug=slug, name=name, tier=tier, owner_email=owner_email)
        except ApplicationError as exc:
            raise CommandError(exc.message)
        # Both lines on stdout, in order: the heading can never land after the token, and
        # `| tail -1` still gives the token alone.
        self.stdout.write(
            f"tenant {tenant.slug} ({tenant.tier}) created; owner {owner_email}; token below (shown once)"
        )
        self.stdout.write(issued.plaintext)
