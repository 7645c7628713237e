"""``/healthz``: is this instance able to work? For load balancers and monitoring.

Checks the database (a query), the migrations (all applied) and the job
queue (jobs waiting, and how long the oldest has waited: workers that are
down leave it growing). Answers 200 when all is well, 503 otherwise.
Anonymous callers get only the verdict per check; staff users also get the
figures. Nothing reveals paths, versions or settings.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

# Loading the migration graph takes tens of milliseconds: once a minute is enough.
_MIGRATIONS_TTL = 60.0
_migrations_checked: tuple[float, int] | None = None


def _unapplied_migrations() -> int:
    global _migrations_checked
    now = time.monotonic()
    if _migrations_checked and now - _migrations_checked[0] < _MIGRATIONS_TTL:
        return _migrations_checked[1]
    executor = MigrationExecutor(connection)
    count = len(executor.migration_plan(executor.loader.graph.leaf_nodes()))
    # Remember only a clean result: after an upgrade the first call finds it.
    _migrations_checked = (now, count) if count == 0 else None
    return count


def _queue() -> dict[str, Any]:
    """Jobs waiting for a worker and the age of the oldest (django-q2's ORM broker:
    a waiting job's lock is when it was queued or last given back)."""
    from django.db.models import Min
    from django_q.models import OrmQ

    now = timezone.now()
    waiting = OrmQ.objects.filter(lock__lte=now)
    row = waiting.aggregate(oldest=Min("lock"))
    oldest = (now - row["oldest"]).total_seconds() if row["oldest"] else 0.0
    return {
        "waiting": waiting.count(),
        "running": OrmQ.objects.filter(lock__gt=now).count(),
        "oldest_seconds": round(oldest),
    }


def report() -> tuple[bool, dict[str, Any]]:
    """(healthy, details) of this instance."""
    checks: dict[str, Any] = {}
    details: dict[str, Any] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        checks["database"] = "ok"
    except DatabaseError:
        checks["database"] = "error"
        return False, {"checks": checks, "details": details}
    unapplied = _unapplied_migrations()
    checks["migrations"] = "ok" if unapplied == 0 else "pending"
    details["migrations_pending"] = unapplied
    try:
        queue = _queue()
    except DatabaseError:  # the queue's table is missing: migrations pending
        checks["queue"] = "error"
    else:
        limit = settings.OPENCHARGEBACK_HEALTH_QUEUE_MAX_AGE
        checks["queue"] = "ok" if queue["oldest_seconds"] <= limit else "stalled"
        details["queue"] = {**queue, "max_age_seconds": limit}
    healthy = all(value == "ok" for value in checks.values())
    return healthy, {"checks": checks, "details": details}


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    healthy, found = report()
    body: dict[str, Any] = {"status": "ok" if healthy else "error", "checks": found["checks"]}
    if request.user.is_authenticated and request.user.is_staff:
        body["details"] = found["details"]
    return JsonResponse(body, status=200 if healthy else 503)
