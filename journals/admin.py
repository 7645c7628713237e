"""Journals in the admin: export with a preview, the history of exports (each
downloadable again), the journal settings and the institution layouts."""

from __future__ import annotations

from itertools import islice
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from billing.adminkit import ReadOnlyAdmin, actor_for, money_column
from billing.errors import BillingError, web_text
from billing.models import BillingPeriod, InstitutionSettings
from journals import layouts
from journals.builders import FORMATS
from journals.models import JournalExport, JournalSettings, JournalTemplate
from journals.selectors import enabled_templates, prepare
from journals.services import journal_export

PREVIEW_ROWS = 20


def format_choices() -> list[tuple[str, str]]:
    builtin = [
        ("gl", "GL: double entry, debits per fund/org, credits per source"),
        ("summary", "Summary: PI x project x fund/org"),
        ("detail", "Detail: every charge, with rounding rows"),
    ]
    custom = [(t.slug, f"{t.name} (layout)") for t in enabled_templates()]
    return builtin + custom


class ExportForm(forms.Form):
    period = forms.ModelChoiceField(
        queryset=BillingPeriod.objects.exclude(status=BillingPeriod.Status.OPEN).order_by(
            "-period"
        ),
        to_field_name="period",
        empty_label=None,
        help_text="Journals are exported for closed or finalized periods.",
    )
    format = forms.ChoiceField(choices=format_choices)
    xlsx = forms.BooleanField(required=False, label="Excel workbook (XLSX) instead of CSV")
    include_pending = forms.BooleanField(
        required=False,
        label="Include charges pending review",
        help_text="Recorded on the export; a finalized period needs an export without them.",
    )


@admin.register(JournalExport)
class JournalExportAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "period",
        "format",
        "kind",
        "lines",
        "debits",
        "credits",
        "charge_count",
        "include_pending",
        "created_by",
        "download",
    ]
    list_filter = ["period", "format", "xlsx", "include_pending"]
    list_select_related = ["period"]
    show_facets = admin.ShowFacets.NEVER
    change_list_template = "admin/journals/journalexport/change_list.html"
    # The file is reached through "download" (the view checks the role),
    # never by its storage URL: MEDIA_URL is not served.
    exclude = ["file"]
    readonly_fields = [
        "period",
        "format",
        "template",
        "xlsx",
        "sha256",
        "debit_total",
        "credit_total",
        "exact_total",
        "lines",
        "charge_count",
        "include_pending",
        "data_hash",
        "created_at",
        "created_by",
        "download",
    ]

    def has_export_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("journals.export_journal")

    @admin.display(description="file")
    def kind(self, obj: JournalExport) -> str:
        return "XLSX" if obj.xlsx else "CSV"

    debits = money_column("debit_total", "debits")
    credits = money_column("credit_total", "credits")

    @admin.display(description="download")
    def download(self, obj: JournalExport) -> str:
        url = reverse("admin:journals_journalexport_download", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, obj.file.name.rsplit("/", 1)[-1])

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("export/", view(self.export_view), name="journals_journalexport_export"),
            path(
                "<int:object_id>/download/",
                view(self.download_view),
                name="journals_journalexport_download",
            ),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {**(extra_context or {}), "can_export": self.has_view_permission(request)}
        return super().changelist_view(request, extra)

    def download_view(self, request: HttpRequest, object_id: int) -> FileResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        export = get_object_or_404(JournalExport, pk=object_id)
        content_type = (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            if export.xlsx
            else "text/csv"
        )
        return FileResponse(
            export.file.open("rb"),
            content_type=content_type,
            as_attachment=True,
            filename=export.file.name.rsplit("/", 1)[-1],
        )

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """Preview (anyone who may see journals), then export (billing admins)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        may_export = self.has_export_permission(request)
        # A link that names only the period (the month-end cycle's) opens the
        # form filled in, not a form already showing "This field is required".
        if request.method == "POST":
            form = ExportForm(request.POST)
        elif request.GET.get("period") and request.GET.get("format"):
            form = ExportForm(request.GET)
        else:
            form = ExportForm(initial=request.GET.dict())
        preview: dict[str, Any] | None = None
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            options = {
                "period": data["period"].period,
                "format": data["format"],
                "include_pending": data["include_pending"],
            }
            try:
                if request.method == "POST" and "export" in request.POST:
                    if not may_export:
                        raise PermissionDenied
                    export = journal_export(
                        actor=actor_for(request),
                        xlsx=data["xlsx"],
                        **options,
                    )
                    url = reverse("admin:journals_journalexport_download", args=[export.pk])
                    messages.success(
                        request,
                        format_html(
                            "Exported {} {}: {} lines, debits {}, credits {}. "
                            '<a href="{}">Download {}</a>',
                            export.period.period,
                            export.format,
                            export.lines,
                            InstitutionSettings.cached().format_money(export.debit_total),
                            InstitutionSettings.cached().format_money(export.credit_total),
                            url,
                            export.file.name.rsplit("/", 1)[-1],
                        ),
                    )
                    return HttpResponseRedirect(reverse("admin:journals_journalexport_changelist"))
                preview = _preview(**options)
            except BillingError as exc:
                form.add_error(None, web_text(exc))
        context = {
            **self.admin_site.each_context(request),
            "title": "Export a journal",
            "opts": self.model._meta,
            "form": form,
            "preview": preview,
            "may_export": may_export,
        }
        return TemplateResponse(request, "admin/journals/journalexport/export.html", context)


def _preview(*, period: str, format: str, include_pending: bool) -> dict[str, Any]:
    prepared = prepare(period=period, format=format, include_pending=include_pending)
    inst = InstitutionSettings.cached()
    table = layouts.table(prepared.journal, prepared.layout.columns, currency=inst.currency)
    rows = [
        [
            (inst.format_money(v) if i in table.number_columns and v != "" else v)
            for i, v in enumerate(row)
        ]
        for row in islice(table.rows, PREVIEW_ROWS)
    ]
    journal = prepared.journal
    return {
        "period": prepared.period.period,
        "format": format,
        "headers": table.headers,
        "rows": rows,
        "numbers": table.number_columns,
        "lines": journal.line_count,
        "charges": journal.charge_count,
        "debits": inst.format_money(journal.debit_total),
        "credits": inst.format_money(journal.credit_total),
        "charged": inst.format_money(journal.charged_total),
        "exact": inst.format_money(journal.exact_total),
        "rounding": inst.format_money(journal.charged_total - journal.exact_total),
        "gl": prepared.layout.base == "gl",
        "builtin": format in FORMATS,
    }


@admin.register(JournalSettings)
class JournalSettingsAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "fund_org_pattern",
        "default_account",
        "description_template",
        "description_max_length",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not JournalSettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(JournalTemplate)
class JournalTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "base", "enabled", "exports"]
    list_filter = ["enabled", "base"]
    prepopulated_fields = {"slug": ["name"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[JournalTemplate]:
        from django.db.models import Count

        return super().get_queryset(request).annotate(n_exports=Count("exports"))

    @admin.display(description="exports", ordering="n_exports")
    def exports(self, obj: JournalTemplate) -> int:
        return int(getattr(obj, "n_exports", 0))

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "columns":
            kwargs["widget"] = forms.Textarea(
                attrs={"rows": 14, "cols": 100, "class": "ocb-monospace"}
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)
