"""The branded admin site: the admin is OpenChargeback's user interface."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path

# The month-end cycle, in order: (slug, title, admin path the step happens on).
HELP_STEPS: list[tuple[str, str, str]] = [
    ("import", "Import usage", "/admin/ingest/"),
    ("review", "Review flagged charges", "/admin/billing/charge/"),
    ("close", "Close the month", "/admin/billing/billingperiod/"),
    ("statements", "Generate and send statements", "/admin/statements/"),
    ("journal", "Export the journal", "/admin/journals/"),
    ("finalize", "Finalize", "/admin/billing/billingperiod/"),
    ("settings", "Settings and roles", "/admin/billing/"),
]


def help_step_for(path_info: str) -> str:
    """The help page for an admin page: the step whose admin path is the longest
    prefix of this page's path, the first such step on a tie (periods: close,
    not finalize); the index gets the overview."""
    best, length = "", 0
    for slug, _title, prefix in HELP_STEPS:
        if path_info.startswith(prefix) and len(prefix) > length:
            best, length = slug, len(prefix)
    return best


def has_role(user: Any) -> bool:
    """Whether `user` may see billing data: a superuser, or a role (viewer and
    up) that reads charges."""
    return bool(user.is_active and user.has_perm("billing.view_charge"))


class OpenChargebackAdminSite(admin.AdminSite):
    site_header = "OpenChargeback"
    site_title = "OpenChargeback"
    index_title = "Research computing billing"

    def get_urls(self) -> list[URLResolver | URLPattern]:
        return [
            path("help/", self.admin_view(self.help_view), name="help"),
            path("help/<slug:step>/", self.admin_view(self.help_view), name="help"),
            *super().get_urls(),
        ]

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        context = super().each_context(request)
        context["help_step"] = help_step_for(request.path_info)
        return context

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        """The dashboard (templates/admin/index.html), then every record type.

        A staff user without a role (no group yet) sees a page saying so and
        nothing else: the dashboard's totals are billing data."""
        from openchargeback import dashboard

        if not has_role(request.user):
            return super().index(request, {"no_role": True, **(extra_context or {})})
        board = dashboard.build(request.user, request.GET.get("period", "").strip())
        context = {
            "dashboard": board,
            "charts": dashboard.charts(board),
            "can_import": request.user.has_perm("ingest.import_focus"),
            **(extra_context or {}),
        }
        return super().index(request, context)

    def help_view(self, request: HttpRequest, step: str = "") -> HttpResponse:
        """The built-in guide: the cycle, then one page per step."""
        steps = {slug: title for slug, title, _ in HELP_STEPS}
        if step and step not in steps:
            raise Http404("No such help page.")
        order = [slug for slug, _, _ in HELP_STEPS]
        index = order.index(step) if step else -1
        context = {
            **self.each_context(request),
            "title": f"Help: {steps[step]}" if step else "Help: the month-end cycle",
            "steps": HELP_STEPS,
            "step": step,
            "previous": HELP_STEPS[index - 1] if index > 0 else None,
            "next": HELP_STEPS[index + 1] if 0 <= index < len(HELP_STEPS) - 1 else None,
            "section": f"admin/help/{step or 'index'}.html",
        }
        return TemplateResponse(request, "admin/help/page.html", context)
