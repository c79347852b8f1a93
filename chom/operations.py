"""Operation lifecycle: create (queued) → claim (running) → finish (succeeded/failed).

A kind is registered with its handler, queue and time limits. Handlers receive an
`OperationContext` for logging steps and never touch the row's status themselves. No database
transaction is open while a handler runs, so SSH/HTTP/S3 I/O never holds a lock.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chom.errors import ApplicationError
from chom.models import Operation, OperationLogEntry, Tenant
from chom.tiers import may_add

logger = logging.getLogger(__name__)


class OperationError(Exception):
    """A failure a human can act on. `transient` failures are retried with backoff."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class OperationKind:
    name: str
    handler: Callable[["OperationContext"], dict | None]
    queue: str = "default"
    soft_time_limit: int = 300
    time_limit: int = 360
    max_attempts: int = 3
    # Called with the context when the operation ends failed, to put its target in a failed state.
    on_failure: Callable[["OperationContext", str], None] | None = None
    # Called with the context when the operation succeeded, e.g. to clear an earlier failure's reason.
    on_success: Callable[["OperationContext"], None] | None = None


KINDS: dict[str, OperationKind] = {}


def register(name: str, **options) -> Callable:
    def decorator(handler):
        KINDS[name] = OperationKind(name=name, handler=handler, **options)
        return handler

    return decorator


class OperationContext:
    def __init__(self, operation: Operation):
        self.operation = operation
        self.params = operation.params
        self.changes = 0  # remote changes made, so a re-run can say "no changes"

    def log(self, message: str, *, level: str = "info") -> None:
        OperationLogEntry.objects.create(operation=self.operation, message=message, level=level)

    def step(self, name: str, *, progress: int | None = None) -> None:
        fields = {"step": name[:200]}
        if progress is not None:
            fields["progress"] = max(0, min(100, progress))
        Operation.objects.filter(id=self.operation.id).update(**fields)
        self.operation.step = name
        self.log(f"step: {name}")


def backoff_seconds(attempt: int) -> int:
    return min(300, 5 * 2 ** max(0, attempt - 1))


def operation_claim(*, operation_id) -> Operation | None:
    """Atomically move queued → running. None when someone else has it or the target is busy."""
    kind = KINDS.get(Operation.objects.values_list("kind", flat=True).get(id=operation_id))
    now = timezone.now()
    limit = kind.time_limit if kind else settings.CELERY_TASK_TIME_LIMIT
    try:
        with transaction.atomic():
            changed = Operation.objects.filter(id=operation_id, status=Operation.Status.QUEUED).update(
                status=Operation.Status.RUNNING,
                started_at=now,
                attempts=F("attempts") + 1,
                deadline_at=now + timedelta(seconds=limit),
            )
    except IntegrityError:
        return None  # another mutating operation is running on the same target
    if not changed:
        return None
    return Operation.objects.get(id=operation_id)


def _finish(op: Operation, status: str, *, error: str = "", result: dict | None = None) -> None:
    Operation.objects.filter(id=op.id, status=Operation.Status.RUNNING).update(
        status=status,
        error=error[:4000],
        result=result or {},
        finished_at=timezone.now(),
        progress=100 if status == Operation.Status.SUCCEEDED else F("progress"),
    )


def _requeue(op: Operation, reason: str) -> int:
    delay = backoff_seconds(op.attempts)
    Operation.objects.filter(id=op.id, status=Operation.Status.RUNNING).update(
        status=Operation.Status.QUEUED, started_at=None, deadline_at=None
    )
    OperationLogEntry.objects.create(
        operation=op,
        level="warning",
        message=f"attempt {op.attempts} failed: {reason}; retrying in {delay}s",
    )
    return delay


def operation_execute(*, operation_id) -> str:
    """Run one claimed attempt. Returns what happened: 'skipped', 'busy', 'retry:N', or the status."""
    op = Operation.objects.filter(id=operation_id).first()
    if op is None or op.is_final:
        return "skipped"
    kind = KINDS.get(op.kind)
    claimed = operation_claim(operation_id=operation_id)
    if claimed is None:
        op.refresh_from_db()
        return "busy" if op.status == Operation.Status.QUEUED else "skipped"
    ctx = OperationContext(claimed)
    if kind is None:
        return _fail(ctx, None, f"unknown operation kind {claimed.kind!r}")
    try:
        return _attempt(ctx, kind, claimed)
    except (OperationalError, InterfaceError) as exc:  # in the bookkeeping: a retry's, a failure's
        return _after_database_loss(ctx, kind, claimed, exc)


def _attempt(ctx: OperationContext, kind: OperationKind, claimed: Operation) -> str:
    ctx.log(f"attempt {claimed.attempts} of {claimed.max_attempts} started")
    try:
        result = kind.handler(ctx) or {}
    except SoftTimeLimitExceeded:
        return _fail(ctx, kind, f"timed out after {kind.soft_time_limit}s during step '{ctx.operation.step}'")
    except OperationError as exc:
        if exc.transient and claimed.attempts < claimed.max_attempts:
            return f"retry:{_requeue(claimed, str(exc))}"
        return _fail(ctx, kind, str(exc))
    except (OperationalError, InterfaceError) as exc:
        return _after_database_loss(ctx, kind, claimed, exc)
    except Exception as exc:  # noqa: BLE001 - the row must end failed, whatever went wrong
        logger.exception("operation %s crashed", claimed.id)
        return _fail(ctx, kind, f"internal error during step '{ctx.operation.step}': {exc!r}")
    ctx.log("succeeded")
    _finish(claimed, Operation.Status.SUCCEEDED, result=result)
    if kind.on_success:
        try:
            kind.on_success(ctx)
        except Exception:  # noqa: BLE001 - the success itself is already recorded
            logger.exception("on_success handler of %s failed", kind.name)
    return Operation.Status.SUCCEEDED


DATABASE_RECONNECT_SECONDS = 60


def _after_database_loss(
    ctx: OperationContext, kind: OperationKind, claimed: Operation, exc: Exception
) -> str:
    """CHOM's database connection died under the attempt (a restart, a failover). Without this
    the row would stay `running` until its deadline (up to half an hour) though nobody works on it:
    once the database answers again (bounded wait), the attempt counts as a transient failure."""
    reason = f"CHOM's database connection was lost during step '{ctx.operation.step}': {exc}"
    deadline = time.monotonic() + DATABASE_RECONNECT_SECONDS
    while True:
        connection.close()  # the next query connects afresh
        try:
            if claimed.attempts < claimed.max_attempts:
                return f"retry:{_requeue(claimed, reason)}"
            return _fail(ctx, kind, reason)
        except (OperationalError, InterfaceError):
            if time.monotonic() > deadline:
                raise exc from None
            time.sleep(1)


def _fail(ctx: OperationContext, kind: OperationKind | None, reason: str) -> str:
    ctx.log(f"failed: {reason}", level="error")
    _finish(ctx.operation, Operation.Status.FAILED, error=reason)
    if kind and kind.on_failure:
        try:
            kind.on_failure(ctx, reason)
        except Exception:  # noqa: BLE001 - the failure itself is already recorded
            logger.exception("on_failure handler of %s failed", kind.name)
    return Operation.Status.FAILED


def operations_reclaim_stale(*, now=None) -> list[str]:
    """Running rows past their deadline lost their worker: requeue them or fail them."""
    now = now or timezone.now()
    grace = timedelta(seconds=settings.OPERATION_STALE_GRACE_SECONDS)
    stale = Operation.objects.filter(status=Operation.Status.RUNNING, deadline_at__lt=now - grace)
    touched = []
    for op in stale:
        reason = f"worker lost: still running {int((now - op.started_at).total_seconds())}s after start"
        if op.attempts < op.max_attempts:
            changed = Operation.objects.filter(id=op.id, status=Operation.Status.RUNNING).update(
                status=Operation.Status.QUEUED, started_at=None, deadline_at=None
            )
            if changed:
                OperationLogEntry.objects.create(
                    operation=op, level="warning", message=f"reclaimed: {reason}; requeued"
                )
                enqueue(op)
        else:
            changed = Operation.objects.filter(id=op.id, status=Operation.Status.RUNNING).update(
                status=Operation.Status.FAILED, error=reason, finished_at=now
            )
            if changed:
                OperationLogEntry.objects.create(
                    operation=op, level="error", message=f"reclaimed: {reason}; failed"
                )
                kind = KINDS.get(op.kind)
                if kind and kind.on_failure:
                    kind.on_failure(OperationContext(op), reason)
        if changed:
            touched.append(str(op.id))
    return touched + _requeue_lost_messages(now)


def _requeue_lost_messages(now) -> list[str]:
    """A queued row nobody picked up for long lost its broker message (e.g. a flushed Redis).

    Enqueueing again is safe: the claim lets exactly one delivery run it.
    """
    cutoff = now - timedelta(seconds=settings.OPERATION_LOST_MESSAGE_SECONDS)
    lost = Operation.objects.filter(status=Operation.Status.QUEUED, created_at__lt=cutoff, started_at=None)
    ids = []
    for op in lost[:100]:
        OperationLogEntry.objects.create(
            operation=op, level="warning", message="still queued: enqueued again"
        )
        enqueue(op)
        ids.append(str(op.id))
    return ids


def enqueue(op: Operation, *, countdown: int = 0) -> None:
    from chom.tasks import run_operation

    kind = KINDS.get(op.kind)
    queue = kind.queue if kind else "default"
    options = {"queue": queue, "countdown": countdown}
    if kind:
        options.update(soft_time_limit=kind.soft_time_limit, time_limit=kind.time_limit)
    run_operation.apply_async(args=[str(op.id)], **options)


def _enqueue_committed(op: Operation) -> None:
    """Enqueue a row that is committed: with the broker down (a Redis restart) the request still
    succeeded, the row stays queued and the reclaim job enqueues it again once it has waited
    OPERATION_LOST_MESSAGE_SECONDS. Failing the request instead would hide an operation that exists."""
    try:
        enqueue(op)
    except (BrokerOperationalError, RedisConnectionError, RedisTimeoutError) as exc:
        logger.warning("operation %s stays queued, the broker is unreachable: %r", op.id, exc)


def _check_operation_cap(tenant) -> None:
    """Refuse one more operation the tenant asked for while its tier's allowance is in use.

    The tenant row is locked so that concurrent requests of one tenant count one after another."""
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    pending = Operation.objects.filter(
        tenant=tenant,
        requested_by_tenant=True,
        status__in=[Operation.Status.QUEUED, Operation.Status.RUNNING],
    ).count()
    limit = tenant.limits.max_pending_operations
    if not may_add(count=pending, limit=limit):
        raise ApplicationError(
            429,
            "too_many_operations",
            f"You already have {pending} operations queued or running; the {tenant.tier} tier allows "
            f"{limit} at a time. A slot frees up as soon as one of them finishes; try again then.",
        )


def operation_create(
    *,
    kind: str,
    tenant=None,
    target=None,
    params: dict | None = None,
    actor=None,
    idempotency_key: str | None = None,
    mutating: bool = True,
    requested_by_tenant: bool = False,
) -> Operation:
    """Create the row (queued) and enqueue it once the surrounding transaction commits.

    With an idempotency key a repeated request returns the operation it already created.
    REQUESTED_BY_TENANT (the tenant's own request, not the platform's work) counts against the
    tenant's cap of pending operations and is refused with 429 beyond it.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown operation kind {kind!r}")
    if idempotency_key:
        existing = Operation.objects.filter(idempotency_key=idempotency_key).first()
        if existing:
            return existing
    counted = requested_by_tenant and tenant is not None
    with transaction.atomic():
        if counted:
            _check_operation_cap(tenant)
        op = Operation.objects.create(
            kind=kind,
            tenant=tenant,
            target_type=target._meta.label_lower if target is not None else "",
            target_id=str(target.pk) if target is not None else "",
            params=params or {},
            created_by=actor if actor is not None and actor.is_authenticated else None,
            idempotency_key=idempotency_key,
            mutating=mutating,
            requested_by_tenant=counted,
            max_attempts=KINDS[kind].max_attempts,
        )
        OperationLogEntry.objects.create(operation=op, message=f"queued {kind}")
    transaction.on_commit(lambda: _enqueue_committed(op))
    return op


def operation_cancel(*, operation: Operation, actor=None, source_ip=None) -> Operation:
    """Cancel a queued operation: it ends `cancelled` and never runs, since a worker claims only
    queued rows. One that is running or over is refused. The kind's failure hook puts the target
    back as after a failure (a release never built, a backup never taken)."""
    from chom.services import audit_record  # chom.services registers kinds from this module

    reason = f"cancelled by {actor if actor is not None else 'the platform'} before it ran"
    with transaction.atomic():
        cancelled = Operation.objects.filter(id=operation.id, status=Operation.Status.QUEUED).update(
            status=Operation.Status.CANCELLED, error=reason, finished_at=timezone.now()
        )
        if cancelled:
            OperationLogEntry.objects.create(operation=operation, level="warning", message=reason)
            audit_record(
                action="operation.cancelled",
                actor=actor,
                tenant=operation.tenant,
                target=f"operation:{operation.id}",
                source_ip=source_ip,
                data={"kind": operation.kind, "target": f"{operation.target_type} {operation.target_id}"},
            )
    operation.refresh_from_db()
    if not cancelled:
        raise ApplicationError(
            409,
            "not_cancellable",
            f"Only a queued operation can be cancelled; this {operation.kind} is {operation.status}.",
        )
    kind = KINDS.get(operation.kind)
    if kind and kind.on_failure:
        try:
            kind.on_failure(OperationContext(operation), reason)
        except Exception:  # noqa: BLE001 - the cancellation itself is already recorded
            logger.exception("on_failure handler of %s failed after a cancel", kind.name)
    return operation


RETRYABLE = (Operation.Status.FAILED, Operation.Status.CANCELLED)


def operation_retry(*, operation: Operation, actor=None, source_ip=None) -> Operation:
    """Run a failed (or cancelled) operation again as a new one with the same kind, target and
    params; the old row keeps its log. Retrying the same operation twice returns the one retry:
    a double submit never queues the work twice."""
    from chom.services import audit_record  # chom.services registers kinds from this module

    if operation.status not in RETRYABLE:
        raise ApplicationError(
            409,
            "not_retryable",
            f"Only a failed or cancelled operation can be retried; this {operation.kind} is "
            f"{operation.status}.",
        )
    if operation.kind not in KINDS:
        raise ApplicationError(
            409, "not_retryable", f"This CHOM no longer knows how to run {operation.kind}."
        )
    key = f"retry:{operation.id}"
    existing = Operation.objects.filter(idempotency_key=key).first()
    if existing:
        return existing
    try:
        with transaction.atomic():
            retry = Operation.objects.create(
                kind=operation.kind,
                tenant=operation.tenant,
                target_type=operation.target_type,
                target_id=operation.target_id,
                params=operation.params,
                created_by=actor if actor is not None and actor.is_authenticated else None,
                idempotency_key=key,
                mutating=operation.mutating,
                max_attempts=KINDS[operation.kind].max_attempts,
            )
            OperationLogEntry.objects.create(
                operation=retry, message=f"queued {retry.kind}: retry of operation {operation.id}"
            )
            OperationLogEntry.objects.create(operation=operation, message=f"retried as operation {retry.id}")
            audit_record(
                action="operation.retried",
                actor=actor,
                tenant=operation.tenant,
                target=f"operation:{operation.id}",
                source_ip=source_ip,
                data={"kind": operation.kind, "retry": str(retry.id)},
            )
    except IntegrityError:  # a concurrent retry of the same operation won
        return Operation.objects.get(idempotency_key=key)
    transaction.on_commit(lambda: _enqueue_committed(retry))
    return retry
