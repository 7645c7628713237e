"""The period and owner pages across the apps. Reads only.

Billing's admin shows billing's part of a month (charges per source, the audit
history) and of a PI or project (what they were billed, the trend). Billing
imports no other app (docs/decisions/0004-app-boundaries.md), so what the
other apps hold is added here, in the project package, which may import them
all: the month-end cycle, the imports, the journal exports and the
reconciliation on the period page; the statements on the owner pages.

:func:`install`, called from ``OpenChargebackConfig.ready`` (after the admin's
autodiscovery, like :mod:`openchargeback.q_admin`), puts these subclasses in
place of billing's registrations: same URLs, same permissions, same templates.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from billing.admin_owners import PIAdmin, ProjectAdmin
from billing.admin_periods import BillingPeriodAdmin
from billing.models import PI, BillingPeriod, Project
from journals.models import JournalExport
from openchargeback.cycle import imports_of, period_cycle, reconciliation
from statements.models import Statement

OWNER_STATEMENTS = 24  # the latest statements listed on a PI's or project's page


class PeriodAdmin(BillingPeriodAdmin):
    """Everything about the month on one page: the cycle, totals, imports,
    totals per source, statements, journal exports and audit history."""

    def overview(self, request: HttpRequest, obj: BillingPeriod) -> dict[str, Any]:
        context = super().overview(request, obj)
        cycle = period_cycle(obj, request.user)
        context.update(
            cycle=cycle,
            imports=imports_of(obj).select_related("source").order_by("-started_at"),
            exports=JournalExport.objects.filter(period=obj).order_by("-created_at")[:20],
            reconciliation=reconciliation(obj, cycle=cycle),
        )
        return context


def owner_statements(owner_field: str, obj: PI | Project) -> dict[str, Any]:
    """The owner's latest statements, newest period first."""
    return {
        "statements": Statement.objects.filter(**{owner_field: obj})
        .select_related("period", "project", "pi")
        .order_by("-period__period", "number")[:OWNER_STATEMENTS]
    }


class PIOverviewAdmin(PIAdmin):
    def related(self, request: HttpRequest, obj: PI) -> dict[str, Any]:
        return owner_statements(self.owner_field, obj)


class ProjectOverviewAdmin(ProjectAdmin):
    def related(self, request: HttpRequest, obj: Project) -> dict[str, Any]:
        return owner_statements(self.owner_field, obj)


def install(site: admin.AdminSite) -> None:
    """Replace billing's period, PI and project pages on `site` with the classes above."""
    for model, model_admin in (
        (BillingPeriod, PeriodAdmin),
        (PI, PIOverviewAdmin),
        (Project, ProjectOverviewAdmin),
    ):
        if site.is_registered(model):
            site.unregister(model)
        site.register(model, model_admin)
