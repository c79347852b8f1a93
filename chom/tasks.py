"""Thin Celery tasks: they receive ids and call one service."""

from celery import shared_task

from chom import operations
from chom.models import Operation

BUSY_RETRY_SECONDS = 5


@shared_task(name="chom.run_operation", acks_late=True, ignore_result=True)
def run_operation(operation_id: str) -> str:
    outcome = operations.operation_execute(operation_id=operation_id)
    if outcome == "busy" or outcome.startswith("retry:"):
        countdown = BUSY_RETRY_SECONDS if outcome == "busy" else int(outcome.split(":")[1])
        operations.enqueue(Operation.objects.get(id=operation_id), countdown=countdown)
    return outcome


@shared_task(name="chom.reclaim_stale_operations", ignore_result=True)
def reclaim_stale_operations() -> list[str]:
    return operations.operations_reclaim_stale()
