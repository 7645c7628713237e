"""django-q2's admin pages under OpenChargeback's roles.

django_q registers its own ModelAdmins for job results (Success, Failure),
schedules and the ORM queue. Every role may view them (billing.roles), and
theirs offer a "resubmit" action to anyone who can see the list and a bulk
delete to anyone with the model's delete permission. :func:`install`, called
from ``OpenChargebackConfig.ready`` (after the admin autodiscovery), puts
these subclasses in their place:

- job results (Success, Failure) are records: no add, change or delete for
  anyone, superusers included, so no "delete selected" action either;
- "Run again" queues a new copy of a job: billing admins and superusers only,
  one ``job.resubmit`` audit event per job (the result row stays as the
  record of what happened); it always queues for the workers, never runs a
  job inside the web request;
- schedules and queued jobs keep django-q2's pages (superusers alone may
  change or delete them: no role has those permissions), and each change
  or deletion made there is audited.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django_q import admin as q_admin
from django_q.models import Failure, OrmQ, Schedule, Success, Task

from billing.adminkit import ReadOnlyAdmin, actor_for
from billing.audit import audit
from billing.roles import BILLING_ADMIN
from openchargeback.text import count


def may_run_jobs(user: Any) -> bool:
    """Billing admins and superusers may queue a job again."""
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    return bool(user.groups.filter(name=BILLING_ADMIN).exists())


def _resubmit(task: Task) -> str:
    """Queue a copy of `task` (same function, arguments, hook and group)."""
    from django_q.tasks import async_task

    # The options go in q_options so that a job's own keyword arguments named
    # like them (group, hook, ...) reach the job, not django-q2. sync=False:
    # the copy always goes to the workers (tests run django-q2 synchronously).
    options = {"hook": task.hook, "group": task.group, "cluster": task.cluster, "sync": False}
    return str(async_task(task.func, *(task.args or ()), q_options=options, **(task.kwargs or {})))


class _ResultAdmin(ReadOnlyAdmin):
    """Shared by the Success and Failure pages: read-only, "Run again" for billing admins."""

    actions = ["resubmit"]

    def has_resubmit_permission(self, request: HttpRequest) -> bool:
        return may_run_jobs(request.user)

    @admin.action(
        description="Run selected jobs again (queued for the workers)", permissions=["resubmit"]
    )
    def resubmit(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        actor = actor_for(request)
        tasks = list(queryset.order_by("started"))
        # One transaction: with the ORM broker, the queued copies and their
        # audit events are written together or not at all.
        with transaction.atomic():
            for task in tasks:
                queued = _resubmit(task)
                audit(
                    actor=actor,
                    action="job.resubmit",
                    obj=task,
                    after={"func": task.func, "group": task.group or "", "queued": queued},
                )
        self.message_user(
            request,
            f"{count(len(tasks), 'job')} queued again; the workers run them.",
            messages.SUCCESS,
        )


class SuccessAdmin(_ResultAdmin, q_admin.TaskAdmin):
    pass


class FailureAdmin(_ResultAdmin, q_admin.FailAdmin):
    pass


class _AuditedAdmin(admin.ModelAdmin):
    """Changes and deletions through the page leave an audit event each."""

    audit_noun = ""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            audit(
                actor=actor_for(request),
                action=f"{self.audit_noun}.{'change' if change else 'add'}",
                obj=obj,
                after={name: str(form.cleaned_data[name]) for name in form.changed_data},
            )

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        with transaction.atomic():
            self._audit_delete(request, obj)
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():
            for obj in queryset:
                self._audit_delete(request, obj)
            super().delete_queryset(request, queryset)

    def _audit_delete(self, request: HttpRequest, obj: Any) -> None:
        audit(
            actor=actor_for(request),
            action=f"{self.audit_noun}.delete",
            obj=obj,
            before=self.describe(obj),
        )

    def describe(self, obj: Any) -> dict[str, Any]:
        raise NotImplementedError


class ScheduleAdmin(_AuditedAdmin, q_admin.ScheduleAdmin):
    audit_noun = "schedule"

    def describe(self, obj: Schedule) -> dict[str, Any]:
        return {"name": obj.name or "", "func": obj.func, "args": obj.args or ""}


class QueueAdmin(_AuditedAdmin, q_admin.QueueAdmin):
    audit_noun = "queued_job"

    def describe(self, obj: OrmQ) -> dict[str, Any]:
        return {"name": obj.name() or "", "func": obj.func(), "task": obj.task_id() or ""}


def install(site: admin.AdminSite) -> None:
    """Replace django_q's registrations on `site` with the classes above
    (the queue is registered by django_q only for the ORM broker)."""
    for model, model_admin in (
        (Success, SuccessAdmin),
        (Failure, FailureAdmin),
        (Schedule, ScheduleAdmin),
        (OrmQ, QueueAdmin),
    ):
        if site.is_registered(model):
            site.unregister(model)
            site.register(model, model_admin)
