from django.apps import AppConfig


class ChomConfig(AppConfig):
    name = "chom"
    verbose_name = "CHOM core"

    def ready(self) -> None:
        from chom import services, workers  # noqa: F401 - registers operation kinds and signals
