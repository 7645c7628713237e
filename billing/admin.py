"""Admin pages for billing records. Review actions and lifecycle buttons arrive
with the review issue; until then charges and audit events are read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

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


@admin.register(Charge)
class ChargeAdmin(ReadOnlyAdmin):
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
    list_filter = ["review_state", "period", "source"]
    list_select_related = ["period", "source", "pi", "project"]
    search_fields = ["resource_id", "resource_name", "service_name", "fund_org", "pi__email"]
    show_full_result_count = False
    list_per_page = 100
    ordering = ["-id"]

    @admin.display(description="list", ordering="list_cost")
    def list_amount(self, obj: Charge) -> str:
        return format_money(obj.list_cost)

    @admin.display(description="billed", ordering="billed_cost")
    def billed_amount(self, obj: Charge) -> str:
        return format_money(obj.billed_cost)

    @admin.display(description="flags")
    def reasons(self, obj: Charge) -> str:
        return ", ".join(obj.flag_reasons)


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
