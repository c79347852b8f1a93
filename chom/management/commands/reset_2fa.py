from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from chom.two_factor import two_factor_reset


class Command(BaseCommand):
    help = "Remove a staff user's two-factor devices (lost phone): the next sign-in enrols a new one."

    def add_arguments(self, parser):
        parser.add_argument("user", help="e-mail address or user name")

    def handle(self, *args, user, **options):
        found = get_user_model().objects.filter(Q(email=user) | Q(username=user)).first()
        if found is None:
            raise CommandError(f"no user {user!r}")
        removed = two_factor_reset(user=found)
        self.stdout.write(f"removed {removed} device(s) of {user}; they enrol again at their next sign-in")
