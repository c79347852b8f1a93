"""Thin beat tasks: each calls one service. Webhook events run as `billing.process_event` Operations."""

from celery import shared_task

from billing import services


@shared_task(name="billing.dunning_enforce", ignore_result=True, soft_time_limit=600, time_limit=660)
def dunning_enforce() -> dict[str, str]:
    return services.tenant_dunning_enforce()


@shared_task(name="billing.usage_report_daily", ignore_result=True, soft_time_limit=1800, time_limit=1900)
def usage_report_daily() -> dict:
    return services.usage_report_daily()
