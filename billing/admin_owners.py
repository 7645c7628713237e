"""The PIs' and projects' admin pages: what an owner was billed, period by
period, with the trend; the project package adds the other apps' parts."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.http import urlencode

from billing import selectors
from billing.models import PI, InstitutionSettings, Project
from openchargeback import charts

TREND_PERIODS = 24  # periods drawn in a PI's or project's trend chart (the table has all)


class OwnerAdmin(admin.ModelAdmin):
    """PIs and projects: the edit form, then what they were billed, period by
    period (from the charge summaries), and their fund/orgs. Their statements
    are the statements app's: the project package adds them through
    :meth:`related` (openchargeback.overviews)."""

    change_form_template = "admin/billing/owner_change_form.html"
    readonly_fields = ["created_at"]
    owner_field: str  # "pi" or "project"

    def charges_query(self, obj: Any) -> str:
        raise NotImplementedError

    def related(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        """More of the owner's page from the apps billing does not import: nothing
        here; the site's subclass adds the statements (openchargeback.overviews)."""
        return {}

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        obj = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if obj is not None:
            past = selectors.history(**{self.owner_field: obj})
            oldest_first = past.periods[::-1][-TREND_PERIODS:]
            context.update(
                history=past,
                charges_url=reverse("admin:billing_charge_changelist")
                + "?"
                + self.charges_query(obj),
                trend=charts.trend(
                    [p.period for p in oldest_first],
                    [p.list_total for p in oldest_first],
                    [p.billed_total for p in oldest_first],
                    InstitutionSettings.cached().format_money,
                    title=f"List price and billed per period: {obj}",
                    id=f"trend-{self.owner_field}",
                ),
                **self.related(request, obj),
            )
        return super().change_view(request, object_id, form_url, extra_context=context)


@admin.register(PI)
class PIAdmin(OwnerAdmin):
    list_display = ["email", "name", "department"]
    search_fields = ["email", "name", "department"]
    owner_field = "pi"

    def charges_query(self, obj: PI) -> str:
        return urlencode({"pi": obj.email})

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        obj = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if obj is not None:
            context["projects"] = obj.projects.order_by("project_id")
        return super().change_view(request, object_id, form_url, extra_context=context)


@admin.register(Project)
class ProjectAdmin(OwnerAdmin):
    list_display = ["project_id", "title", "pi", "default_fund_org", "active"]
    list_filter = ["active"]
    list_select_related = ["pi"]
    search_fields = ["project_id", "title", "pi__email"]
    autocomplete_fields = ["pi"]
    owner_field = "project"

    def charges_query(self, obj: Project) -> str:
        return urlencode({"project": obj.project_id})
