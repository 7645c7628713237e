"""The settings' admin pages: the institution, tag mappings, flag rules and
the patterns (tried on a month's charges before saving)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from billing import selectors
from billing.adminkit import RegexPreviewAdmin
from billing.models import (
    BillingPeriod,
    FlagRule,
    FundOrgPattern,
    InstitutionSettings,
    PatternRule,
    TagMapping,
)


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
class PatternRuleAdmin(RegexPreviewAdmin):
    list_display = ["name", "pattern", "target", "enabled"]
    list_filter = ["enabled", "target"]
    preview_template = "admin/billing/patternrule/preview.html"
    preview_fields = ("pattern", "target")

    def run_preview(
        self, request: HttpRequest, data: dict[str, Any], period: BillingPeriod
    ) -> selectors.PatternPreview:
        return selectors.pattern_preview(
            pattern=data["pattern"], target=data["target"] or "any", period=period
        )


@admin.register(FundOrgPattern)
class FundOrgPatternAdmin(RegexPreviewAdmin):
    list_display = ["pattern", "description", "enabled"]
    list_filter = ["enabled"]
    preview_template = "admin/billing/fundorgpattern/preview.html"

    def run_preview(
        self, request: HttpRequest, data: dict[str, Any], period: BillingPeriod
    ) -> selectors.FundOrgPreview:
        exclude = request.GET.get("exclude")
        return selectors.fund_org_preview(
            pattern=data["pattern"],
            period=period,
            exclude_pk=int(exclude) if exclude and exclude.isdigit() else None,
        )
