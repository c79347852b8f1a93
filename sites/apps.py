from django.apps import AppConfig


class SitesConfig(AppConfig):
    name = "sites"

    def ready(self) -> None:
        from chom.hooks import register_tenant_sites
        from sites import deploy, environment, runtime, services, suspension, tls  # noqa: F401 - register the sites' operation kinds

        # Staff suspending a tenant in the core suspends its sites here.
        register_tenant_sites(
            suspend=services.tenant_sites_suspend, unsuspend=services.tenant_sites_unsuspend
        )
