"""The month-end automation as django-q2 schedules (``openchargeback
setup_schedules``). Each schedule runs a management command in a worker, so a
schedule and the equivalent crontab line (docs/operations.md) do the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from io import StringIO
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from openchargeback.logging import logged_job

PREFIX = "openchargeback: "


@dataclass(frozen=True)
class Planned:
    name: str
    command: tuple[str, ...]
    kind: str  # django_q Schedule.MINUTES | DAILY | HOURLY
    minutes: int | None = None
    at: time | None = None  # first run of a daily schedule, local time


@logged_job
def run_command(*args: str) -> str:
    """The task a schedule runs: a management command; its output is the result.
    A CommandError fails the task, which the admin lists under Failed tasks."""
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def planned() -> list[Planned]:
    """The schedules this site wants, from its settings."""
    from django_q.models import Schedule

    plans = [
        Planned(
            f"{PREFIX}import the inbox",
            ("inbox",),
            Schedule.MINUTES,
            minutes=settings.OPENCHARGEBACK_INBOX_MINUTES,
        ),
        Planned(f"{PREFIX}retry failed emails", ("emails", "retry"), Schedule.MINUTES, minutes=10),
        Planned(f"{PREFIX}purge old uploads", ("purge_uploads",), Schedule.DAILY, at=time(3, 0)),
        Planned(
            f"{PREFIX}remind reviewers",
            ("remind_reviewers",),
            Schedule.DAILY,
            at=time(settings.OPENCHARGEBACK_REMINDER_HOUR, 0),
        ),
    ]
    if settings.OPENCHARGEBACK_AUTO_SEND:
        plans.append(Planned(f"{PREFIX}send statements", ("send_ready",), Schedule.HOURLY))
    return plans


def _first_run(plan: Planned) -> datetime:
    now = timezone.localtime()
    if plan.at is None:
        return now
    first = now.replace(hour=plan.at.hour, minute=plan.at.minute, second=0, microsecond=0)
    return first if first > now else first + timedelta(days=1)


def setup_schedules() -> dict[str, list[str]]:
    """Create or update this site's schedules and remove ours it no longer wants;
    running it again changes nothing (schedules are matched by name)."""
    from django_q.models import Schedule

    wanted = planned()
    report: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": [], "removed": []}
    for plan in wanted:
        fields: dict[str, Any] = {
            "func": "openchargeback.schedules.run_command",
            "args": repr(plan.command),
            "schedule_type": plan.kind,
            "minutes": plan.minutes,
            "repeats": -1,
        }
        existing = Schedule.objects.filter(name=plan.name).order_by("pk")
        found = existing.first()
        if found is None:
            Schedule.objects.create(name=plan.name, next_run=_first_run(plan), **fields)
            report["created"].append(plan.name)
            continue
        existing.exclude(pk=found.pk).delete()  # duplicates made by hand
        if all(getattr(found, key) == value for key, value in fields.items()):
            report["unchanged"].append(plan.name)
            continue
        for key, value in fields.items():
            setattr(found, key, value)
        found.next_run = _first_run(plan)
        found.save()
        report["updated"].append(plan.name)
    names = {plan.name for plan in wanted}
    for stale in Schedule.objects.filter(name__startswith=PREFIX).exclude(name__in=names):
        report["removed"].append(stale.name)
        stale.delete()
    return report
