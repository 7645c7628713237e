"""Admin pages for imports (read-only: imports are made by the ingest service)."""

from __future__ import annotations

from django.contrib import admin

from billing.admin import ReadOnlyAdmin
from billing.models import InstitutionSettings
from ingest.models import Import


@admin.register(Import)
class ImportAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "file_name",
        "source",
        "started_at",
        "actor",
        "status",
        "charges_created",
        "duplicates_skipped",
        "flagged_count",
        "billed",
    ]
    list_filter = ["status", "source"]
    list_select_related = ["source"]
    search_fields = ["file_name", "sha256", "actor"]

    @admin.display(description="billed total", ordering="billed_total")
    def billed(self, obj: Import) -> str:
        return InstitutionSettings.cached().format_money(obj.billed_total)
