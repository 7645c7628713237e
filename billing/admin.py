"""Admin pages for billing records: the review queue (charges), periods,
PIs, projects, sources, settings and the read-only audit trail."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import F, QuerySet, Sum
from django.http import HttpRequest
from django.template.response import TemplateResponse

from billing import flags
from billing.models import (
    PI,
    AuditEvent,
    BillingPeriod,
    Charge,
    FlagRule,
    FundOrgPattern,
    InstitutionSettings,
    PatternRule,
    Project,
    Source,
    TagMapping,
)
from billing.services import Actor, BillingError, charges_review
from openchargeback.money import format_money


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(BillingPeriod)
class BillingPeriodAdmin(ReadOnlyAdmin):
    list_display = ["period", "status", "closed_at", "finalized_at"]
    list_filter = ["status"]
    search_fields = ["period"]


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = [
        "slug",
        "name",
        "filename_pattern",
        "credit_fund_org",
        "account_code",
        "enabled",
    ]
    list_filter = ["enabled"]
    search_fields = ["slug", "name"]


@admin.register(PI)
class PIAdmin(admin.ModelAdmin):
    list_display = ["email", "name", "department"]
    search_fields = ["email", "name", "department"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["project_id", "title", "pi", "default_fund_org", "active"]
    list_filter = ["active"]
    list_select_related = ["pi"]
    search_fields = ["project_id", "title", "pi__email"]
    autocomplete_fields = ["pi"]


class FlagReasonFilter(admin.SimpleListFilter):
    title = "flag reason"
    parameter_name = "reason"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(flags.CHOICES)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Charge]) -> QuerySet[Charge]:
        reason = self.value()
        if reason not in flags.BIT:
            return queryset
        bit = flags.BIT[reason]
        return queryset.alias(hit=F("flags").bitand(bit)).filter(hit=bit)


class RejectForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why these charges are rejected; stored on each charge and in the audit trail.",
    )


@admin.register(Charge)
class ChargeAdmin(ReadOnlyAdmin):
    """The review queue: filter, then approve, reject (with a note) or reset."""

    list_display = [
        "id",
        "period",
        "source",
        "pi",
        "project",
        "fund_org",
        "service_name",
        "list_amount",
        "billed_amount",
        "review_state",
        "reasons",
    ]
    list_filter = ["review_state", FlagReasonFilter, "period", "source"]
    list_select_related = ["period", "source", "pi", "project"]
    search_fields = ["resource_id", "resource_name", "service_name", "fund_org", "pi__email"]
    show_full_result_count = False
    list_per_page = 100
    ordering = ["-id"]
    actions = ["approve", "reject", "reset"]

    @admin.display(description="list", ordering="list_cost")
    def list_amount(self, obj: Charge) -> str:
        return format_money(obj.list_cost)

    @admin.display(description="billed", ordering="billed_cost")
    def billed_amount(self, obj: Charge) -> str:
        return format_money(obj.billed_cost)

    @admin.display(description="flags")
    def reasons(self, obj: Charge) -> str:
        return ", ".join(obj.flag_reasons)

    def has_review_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.review_charge")

    @admin.action(description="Approve selected charges", permissions=["review"])
    def approve(self, request: HttpRequest, queryset: QuerySet[Charge]) -> None:
        self._review(request, queryset, "approve", note="")

    @admin.action(description="Reset selected charges to pending review", permissions=["review"])
    def reset(self, request: HttpRequest, queryset: QuerySet[Charge]) -> None:
        self._review(request, queryset, "reset", note="")

    @admin.action(description="Reject selected charges…", permissions=["review"])
    def reject(self, request: HttpRequest, queryset: QuerySet[Charge]) -> TemplateResponse | None:
        form = RejectForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            self._review(request, queryset, "reject", note=form.cleaned_data["note"])
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Reject charges",
            "opts": self.model._meta,
            "form": form,
            "count": queryset.count(),
            "total": queryset.aggregate(total=Sum("billed_cost"))["total"],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
        }
        return TemplateResponse(request, "admin/billing/charge/reject_confirmation.html", context)

    def _review(
        self, request: HttpRequest, queryset: QuerySet[Charge], action: str, *, note: str
    ) -> None:
        try:
            changed = charges_review(
                charges=queryset,
                action=action,
                actor=Actor.for_user(request.user),  # type: ignore[arg-type]
                note=note,
            )
        except BillingError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        verb = {"approve": "Approved", "reject": "Rejected", "reset": "Reset"}[action]
        self.message_user(request, f"{verb} {changed:,} charges.", messages.SUCCESS)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor", "channel", "action", "object_type", "object_repr"]
    list_filter = ["action", "channel"]
    search_fields = ["actor", "object_repr", "object_id", "reason"]
    show_full_result_count = False


@admin.register(InstitutionSettings)
class InstitutionSettingsAdmin(admin.ModelAdmin):
    list_display = ["name", "currency", "large_charge_threshold"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not InstitutionSettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TagMapping)
class TagMappingAdmin(admin.ModelAdmin):
    list_display = ["field", "tag_keys"]


@admin.register(FlagRule)
class FlagRuleAdmin(admin.ModelAdmin):
    list_display = ["reason", "enabled", "description"]
    list_editable = ["enabled"]


@admin.register(PatternRule)
class PatternRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "pattern", "target", "enabled"]


@admin.register(FundOrgPattern)
class FundOrgPatternAdmin(admin.ModelAdmin):
    list_display = ["pattern", "description", "enabled"]
