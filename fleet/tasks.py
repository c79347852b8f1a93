from celery import shared_task

from fleet import services


@shared_task(name="fleet.health_check", ignore_result=True, soft_time_limit=50, time_limit=58)
def health_check() -> dict[str, str]:
    return services.fleet_health_check()


@shared_task(name="fleet.capacity_check", ignore_result=True)
def capacity_check() -> float:
    return services.fleet_capacity_check()
