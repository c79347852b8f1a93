from django.apps import AppConfig


class SitesConfig(AppConfig):
    name = "sites"

    def ready(self) -> None:
        from sites import services  # noqa: F401 - registers the sites' operation kinds
