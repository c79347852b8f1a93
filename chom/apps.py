from django.apps import AppConfig


class ChomConfig(AppConfig):
    name = "chom"
    verbose_name = "CHOM core"

    def ready(self) -> None:
        from chom import services, two_factor, workers  # noqa: F401 - registers operation kinds and signals

        two_factor.connect_lockout_signal()
