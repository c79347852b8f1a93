from django.core.management.base import BaseCommand, CommandError

from chom.errors import ApplicationError
from chom.models import Membership, Tenant
from chom.services import membership_add


class Command(BaseCommand):
    help = "Add a person to a tenant (or change their role); they get API tokens through the owner."

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="the tenant's slug")
        parser.add_argument("email")
        parser.add_argument("--role", choices=Membership.Role.values, default=Membership.Role.MEMBER)

    def handle(self, *args, tenant, email, role, **options):
        found = Tenant.objects.filter(slug=tenant).first()
        if found is None:
            raise CommandError(f"no tenant {tenant!r}")
        try:
            membership_add(tenant=found, email=email, role=role)
        except ApplicationError as exc:
            raise CommandError(exc.message)
        self.stdout.write(f"{email} is now {role} of {tenant}")
