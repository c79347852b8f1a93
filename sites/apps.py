from django.apps import AppConfig


class SitesConfig(AppConfig):
    name = "sites"

    def ready(self) -> None:
        from sites import deploy, services, tls  # noqa: F401 - register the sites' operation kinds
