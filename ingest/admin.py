"""The admin's registrations for ingest: the read-only list of imports (with
the kept copy of each file to download) and its import pages, whose views are
ingest.uploads.views; importing ingest.usage.admin registers the rate card and
account mapping pages."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from billing.adminkit import ReadOnlyAdmin
from billing.models import InstitutionSettings
from ingest.models import Import
from ingest.selectors import kept_copy, kept_name
from ingest.uploads.views import UploadViews, charges_url
from ingest.usage import admin as usage_admin  # noqa: F401 - registers the rate and mapping pages


@admin.register(Import)
class ImportAdmin(UploadViews, ReadOnlyAdmin):
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
    readonly_fields = ["charges", "original"]

    @admin.display(description="billed total", ordering="billed_total")
    def billed(self, obj: Import) -> str:
        return InstitutionSettings.cached().format_money(obj.billed_total)

    @admin.display(description="charges")
    def charges(self, obj: Import) -> str:
        return format_html(
            '<a href="{}">All charges of this import</a> · <a href="{}">Those pending review</a>',
            charges_url(obj.pk),
            charges_url(obj.pk, pending=True),
        )

    @admin.display(description="original file")
    def original(self, obj: Import) -> str:
        if not obj.stored_file:
            return "-"
        url = reverse("admin:ingest_import_original", args=[obj.pk])
        return format_html('<a href="{}">Download {}</a>', url, kept_name(obj))

    # -- URLs (the import pages: ingest.uploads.views) -----------------------------
    def get_urls(self) -> list[URLPattern]:
        site = self.admin_site
        return [
            *self.upload_urls(),
            path(
                "<int:object_id>/original/",
                site.admin_view(self.original_view),
                name="ingest_import_original",
            ),
            *super().get_urls(),
        ]

    def original_view(self, request: HttpRequest, object_id: int) -> FileResponse:
        """The kept copy of the imported file, for whoever may see imports."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        record = get_object_or_404(Import, pk=object_id)
        kept = kept_copy(record)
        if kept is None:
            raise Http404("The kept copy of this import's file is not there.")
        return FileResponse(
            kept.open("rb"),
            content_type="application/octet-stream",
            as_attachment=True,
            filename=kept_name(record),
        )

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        extra = {**(extra_context or {}), "can_import": self.has_import_permission(request)}
        return super().changelist_view(request, extra_context=extra)
