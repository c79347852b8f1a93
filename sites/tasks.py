from celery import shared_task

from sites import tls


@shared_task(name="sites.renew_certificates", ignore_result=True)
def renew_certificates() -> int:
    return len(tls.sites_renew_certificates())


@shared_task(name="sites.tls_check_dns", ignore_result=True)
def tls_check_dns() -> dict[str, int]:
    return tls.tls_checks_run()
