"""Admin pages for pricing on-premises usage and attributing cloud usage: the
rate card (locked once a month it priced is finalized, superseded by newer
rates) and the account mappings (Slurm accounts, storage quotas and cloud
accounts -> project, PI, fund/org), with a CSV import and export, the
unmapped cloud accounts by cost, and applying the cloud mappings to pending
charges. Every change goes through the services (ingest.usage.rates,
ingest.usage.mappings, ingest.usage.mapping_files, ingest.focus.cloud_accounts;
audited). ingest/admin.py imports this module so that its pages are
registered."""

from __future__ import annotations

import tempfile
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.http import urlencode

from billing.adminkit import actor_for
from billing.errors import BillingError
from billing.models import InstitutionSettings
from ingest.focus.cloud_accounts import account_mappings_apply, unmapped_sub_accounts
from ingest.models import AccountMapping, Rate
from ingest.usage.mapping_files import account_mapping_export, account_mapping_import
from ingest.usage.mappings import (
    MAPPING_FIELDS,
    account_mapping_check,
    account_mapping_create,
    account_mapping_delete,
    account_mapping_update,
)
from ingest.usage.rates import (
    RATE_FIELDS,
    rate_check,
    rate_create,
    rate_delete,
    rate_lock,
    rate_update,
    rates_with_windows,
)
from ingest.usage.selectors import (
    cloud_mapping_sources,
    open_periods,
    rates_in_force,
    rates_starting_after,
    rates_superseded,
)
from openchargeback.money import format_money, money_str

MAX_MAPPING_FILE_BYTES = 10 * 1024**2


def _plain(value: Decimal) -> str:
    """12.50 -> '12.5', 100.00 -> '100'."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def rate_money(value: Decimal | None) -> str:
    """An amount with every decimal it has (a rate of $0.0025 per CPU-hour is
    not $0.00), in the institution's currency and separators."""
    if value is None:
        return "—"
    places = max(2, -int(value.normalize().as_tuple().exponent))
    settings = InstitutionSettings.cached()
    return format_money(
        value,
        currency=settings.currency,
        thousands=settings.thousands_separator,
        decimal_point=settings.decimal_separator,
        places=places,
    )


# --- Rates -----------------------------------------------------------------------------


class RateForm(forms.ModelForm):
    class Meta:
        model = Rate
        fields = list(RATE_FIELDS)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        resource, start = data.get("resource"), data.get("effective_from")
        if resource and start and data.get("service"):
            try:
                rate_check(
                    resource=resource,
                    service=data["service"].strip(),
                    qos=(data.get("qos") or "").strip(),
                    effective_from=start,
                    exclude_pk=self.instance.pk,
                )
            except BillingError as exc:
                raise ValidationError(str(exc)) from None
        return data


class InForceFilter(admin.SimpleListFilter):
    title = "in force"
    parameter_name = "in_force"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("now", "In force today"), ("future", "Starts later"), ("past", "Superseded")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Rate]) -> QuerySet[Rate]:
        today = timezone.localdate()
        if self.value() == "now":
            return rates_in_force(queryset, today)
        if self.value() == "future":
            return rates_starting_after(queryset, today)
        if self.value() == "past":
            return rates_superseded(queryset, today)
        return queryset


class LockedFilter(admin.SimpleListFilter):
    title = "locked (priced a finalized month)"
    parameter_name = "locked"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Locked"), ("no", "Editable")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Rate]) -> QuerySet[Rate]:
        if self.value() in ("yes", "no"):
            return queryset.filter(Q(locked=self.value() == "yes"))
        return queryset


@admin.register(Rate)
class RateAdmin(admin.ModelAdmin):
    """The rate card. A rate in force during a finalized month is read-only and
    cannot be deleted: supersede it with a new rate from a later date."""

    form = RateForm
    save_as = True
    list_display = [
        "resource_unit",
        "service",
        "qos_shown",
        "effective_from",
        "in_force_until",
        "list_price",
        "subsidy",
        "allowance",
        "credit",
        "cap",
        "is_locked",
    ]
    list_filter = ["resource", InForceFilter, LockedFilter, "service"]
    search_fields = ["service", "qos", "description"]
    ordering = ["resource", "service", "qos", "-effective_from"]
    change_form_template = "admin/ingest/rate/change_form.html"
    fieldsets = [
        (None, {"fields": ["resource", "service", "qos", "effective_from"]}),
        (
            "Price",
            {
                "fields": [
                    "list_rate",
                    "subsidy_percent",
                    "free_allowance",
                    "monthly_credit",
                    "monthly_cap",
                ]
            },
        ),
        (None, {"fields": ["description"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Rate]:
        return rates_with_windows(super().get_queryset(request))

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Deleting goes one rate at a time, through the page that checks its lock.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @staticmethod
    def locked(obj: Rate) -> bool:
        annotated = getattr(obj, "locked", None)
        if annotated is None:
            annotated = obj.locked = bool(rate_lock(obj))  # type: ignore[attr-defined]
        return bool(annotated)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_change_permission(request, obj)
        return allowed and not (obj is not None and self.locked(obj))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and not (obj is not None and self.locked(obj))

    # -- columns --------------------------------------------------------------------
    @admin.display(description="resource (unit)", ordering="resource")
    def resource_unit(self, obj: Rate) -> str:
        return obj.get_resource_display()

    @admin.display(description="QOS", ordering="qos")
    def qos_shown(self, obj: Rate) -> str:
        return obj.qos or ("any" if obj.resource != Rate.Resource.STORAGE else "—")

    @admin.display(description="in force until", ordering="next_from")
    def in_force_until(self, obj: Rate) -> str:
        following: date | None = getattr(obj, "next_from", None)
        if following is None:
            return "until superseded"
        return date_format(following - timedelta(days=1))  # like the effective-from column

    @admin.display(description="list rate", ordering="list_rate")
    def list_price(self, obj: Rate) -> str:
        return f"{rate_money(obj.list_rate)} / {obj.get_resource_display()}"

    @admin.display(description="subsidy", ordering="subsidy_percent")
    def subsidy(self, obj: Rate) -> str:
        return f"{_plain(obj.subsidy_percent)}%"

    @admin.display(description="free allowance", ordering="free_allowance")
    def allowance(self, obj: Rate) -> str:
        if not obj.free_allowance:
            return "—"
        if obj.resource == Rate.Resource.STORAGE:
            return f"{_plain(obj.free_allowance)} TB"
        return f"{_plain(obj.free_allowance)} {obj.get_resource_display()}s"

    @admin.display(description="monthly credit", ordering="monthly_credit")
    def credit(self, obj: Rate) -> str:
        return rate_money(obj.monthly_credit) if obj.monthly_credit else "—"

    @admin.display(description="monthly cap", ordering="monthly_cap")
    def cap(self, obj: Rate) -> str:
        return rate_money(obj.monthly_cap)

    @admin.display(description="locked", boolean=True, ordering="locked")
    def is_locked(self, obj: Rate) -> bool:
        return self.locked(obj)

    # -- pages ----------------------------------------------------------------------
    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        context = dict(extra_context or {})
        obj = self.get_object(request, object_id)
        if obj is not None and self.locked(obj):
            context["lock_reason"] = rate_lock(obj)
            if self.has_add_permission(request):
                context["supersede_url"] = self.supersede_url(obj)
        return super().change_view(request, object_id, form_url, extra_context=context)

    def supersede_url(self, obj: Rate) -> str:
        """The add page, filled in with this rate's terms (all but the date)."""
        initial = {
            "resource": obj.resource,
            "service": obj.service,
            "qos": obj.qos,
            "list_rate": money_str(obj.list_rate),
            "subsidy_percent": money_str(obj.subsidy_percent),
            "free_allowance": money_str(obj.free_allowance),
            "monthly_credit": money_str(obj.monthly_credit),
            "description": obj.description,
        }
        if obj.monthly_cap is not None:
            initial["monthly_cap"] = money_str(obj.monthly_cap)
        return reverse("admin:ingest_rate_add") + "?" + urlencode(initial)

    def save_model(self, request: HttpRequest, obj: Rate, form: Any, change: bool) -> None:
        actor = actor_for(request)
        data = form.cleaned_data
        if change:
            changed = {f: data[f] for f in form.changed_data if f in RATE_FIELDS}
            saved = rate_update(rate=obj, actor=actor, **changed)
        else:
            saved = rate_create(actor=actor, **{f: data[f] for f in RATE_FIELDS})
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: Rate) -> None:
        rate_delete(rate=obj, actor=actor_for(request))


# --- Account mappings ------------------------------------------------------------------


class AccountMappingForm(forms.ModelForm):
    class Meta:
        model = AccountMapping
        fields = list(MAPPING_FIELDS)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("kind") and data.get("name") and data.get("source"):
            candidate = AccountMapping(
                pk=self.instance.pk,
                kind=data["kind"],
                source=data["source"],
                name=data["name"].strip(),
                effective_from=data.get("effective_from"),
                effective_to=data.get("effective_to"),
                active=data.get("active", True),
            )
            try:
                account_mapping_check(candidate)
            except BillingError as exc:
                raise ValidationError(str(exc)) from None
        return data


class ApplyForm(forms.Form):
    source = forms.ModelChoiceField(
        queryset=cloud_mapping_sources(),
        required=False,
        empty_label="Every source with cloud mappings",
    )
    period = forms.ModelChoiceField(
        queryset=open_periods(),
        required=False,
        to_field_name="period",
        empty_label="Every open period",
    )


class MappingImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="Header line kind,name,pi_email,project_id,fund_org (any letter case), "
        "plus source,effective_from,effective_to for cloud mappings; kind is slurm, "
        "storage, sub_account, billing_account or resource; a blank fund_org uses the "
        "project's default. Missing PIs and projects are created; the file is imported "
        "whole or not at all.",
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_MAPPING_FILE_BYTES:
            raise ValidationError("The file is larger than 10 MB; is it a mapping file?")
        return upload


@admin.register(AccountMapping)
class AccountMappingAdmin(admin.ModelAdmin):
    """Slurm accounts, storage quotas and cloud accounts, and the project (and PI) that pays."""

    form = AccountMappingForm
    list_display = [
        "name",
        "kind",
        "source",
        "pi",
        "project",
        "fund_org_shown",
        "in_force",
        "active",
    ]
    list_filter = ["kind", "source", "active"]
    list_select_related = ["project__pi", "source"]
    search_fields = ["name", "project__project_id", "project__pi__email", "fund_org"]
    autocomplete_fields = ["project"]
    readonly_fields = ["created_at", "created_by"]
    change_list_template = "admin/ingest/accountmapping/change_list.html"
    actions = ["apply_to_pending"]

    @admin.display(description="in force")
    def in_force(self, obj: AccountMapping) -> str:
        if not obj.is_cloud or (obj.effective_from is None and obj.effective_to is None):
            return "always"
        start = date_format(obj.effective_from) if obj.effective_from else "the start"
        end = date_format(obj.effective_to) if obj.effective_to else "further notice"
        return f"{start} to {end}"

    def has_apply_permission(self, request: HttpRequest) -> bool:
        """Applying changes charges: mapping editors who may also fix attribution."""
        return self.has_change_permission(request) and request.user.has_perm(
            "billing.fix_attribution_charge"
        )

    @admin.action(
        description="Apply selected cloud mappings' sources to pending charges",
        permissions=["apply"],
    )
    def apply_to_pending(self, request: HttpRequest, queryset: QuerySet[AccountMapping]) -> None:
        sources = cloud_mapping_sources(queryset)
        if not sources:
            messages.warning(request, "None of the selected mappings is a cloud mapping.")
            return
        for source in sources:
            try:
                result = account_mappings_apply(actor=actor_for(request), source=source)
            except BillingError as exc:
                messages.error(request, f"{source.slug}: {exc}")
            else:
                messages.success(request, f"{source.slug}: {result.summary()}")

    @admin.display(description="PI", ordering="project__pi__email")
    def pi(self, obj: AccountMapping) -> str:
        return obj.project.pi.email if obj.project.pi else "—"

    @admin.display(description="fund/org", ordering="fund_org")
    def fund_org_shown(self, obj: AccountMapping) -> str:
        if obj.fund_org:
            return obj.fund_org
        default = obj.project.default_fund_org
        return f"{default} (project default)" if default else "—"

    def has_import_permission(self, request: HttpRequest) -> bool:
        return self.has_add_permission(request) and self.has_change_permission(request)

    def get_urls(self) -> list[URLPattern]:
        site = self.admin_site
        return [
            path("import/", site.admin_view(self.import_view), name="ingest_accountmapping_import"),
            path("export/", site.admin_view(self.export_view), name="ingest_accountmapping_export"),
            path(
                "unmapped/",
                site.admin_view(self.unmapped_view),
                name="ingest_accountmapping_unmapped",
            ),
            path("apply/", site.admin_view(self.apply_view), name="ingest_accountmapping_apply"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        extra = {
            **(extra_context or {}),
            "can_import": self.has_import_permission(request),
            "can_apply": self.has_apply_permission(request),
        }
        return super().changelist_view(request, extra_context=extra)

    def response_add(
        self, request: HttpRequest, obj: AccountMapping, post_url_continue: str | None = None
    ) -> HttpResponse:
        """After a cloud mapping is saved (and no other button asked for another
        page), offer to apply it to the pending charges of its source."""
        wants_other = {"_continue", "_addanother", "_popup"} & set(request.POST)
        if obj.is_cloud and not wants_other and self.has_apply_permission(request):
            messages.success(request, f"Added {obj}.")
            query = urlencode({"source": str(obj.source_id)})
            return HttpResponseRedirect(reverse("admin:ingest_accountmapping_apply") + "?" + query)
        return super().response_add(request, obj, post_url_continue)

    def unmapped_view(self, request: HttpRequest) -> HttpResponse:
        """Cloud sub-accounts whose pending charges have no PI or project, by cost."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        can_add = self.has_add_permission(request)
        settings = InstitutionSettings.cached()
        rows = []
        for account in unmapped_sub_accounts():
            map_url = ""
            if can_add and not account.mapped:
                initial = {
                    "kind": str(AccountMapping.Kind.SUB_ACCOUNT),
                    "source": str(account.source_id),
                    "name": account.sub_account_id,
                    "notes": account.sub_account_name,
                }
                map_url = reverse("admin:ingest_accountmapping_add") + "?" + urlencode(initial)
            rows.append(
                {
                    "account": account,
                    "billed": settings.format_money(account.billed),
                    "map_url": map_url,
                }
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Unmapped cloud accounts",
            "rows": rows,
            "can_apply": self.has_apply_permission(request),
        }
        return TemplateResponse(request, "admin/ingest/accountmapping/unmapped.html", context)

    def apply_view(self, request: HttpRequest) -> HttpResponse:
        """Apply the cloud mappings to pending charges: check (dry run), then apply."""
        if not self.has_apply_permission(request):
            raise PermissionDenied
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        form = ApplyForm(request.POST if request.method == "POST" else None, initial=request.GET)
        result = None
        if request.method == "POST" and form.is_valid():
            dry_run = "apply" not in request.POST
            period = form.cleaned_data["period"]
            try:
                result = account_mappings_apply(
                    actor=actor_for(request),
                    source=form.cleaned_data["source"],
                    period=period.period if period else None,
                    dry_run=dry_run,
                )
            except BillingError as exc:
                form.add_error(None, str(exc))
            else:
                if not dry_run:
                    messages.success(request, result.summary())
                    return HttpResponseRedirect(reverse("admin:ingest_accountmapping_unmapped"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Apply cloud account mappings to pending charges",
            "form": form,
            "result": result,
        }
        return TemplateResponse(request, "admin/ingest/accountmapping/apply.html", context)

    def save_model(
        self, request: HttpRequest, obj: AccountMapping, form: Any, change: bool
    ) -> None:
        actor = actor_for(request)
        data = form.cleaned_data
        if change:
            changed = {f: data[f] for f in form.changed_data if f in MAPPING_FIELDS}
            saved = account_mapping_update(mapping=obj, actor=actor, **changed)
        else:
            saved = account_mapping_create(actor=actor, **{f: data[f] for f in MAPPING_FIELDS})
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: AccountMapping) -> None:
        account_mapping_delete(mapping=obj, actor=actor_for(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AccountMapping]) -> None:
        actor = actor_for(request)
        for mapping in queryset:
            account_mapping_delete(mapping=mapping, actor=actor)

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload a mapping CSV: check it (dry run), or import it."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        form = MappingImportForm(request.POST or None, request.FILES or None)
        result = None
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            dry_run = "import" not in request.POST
            try:
                with tempfile.TemporaryDirectory() as scratch:
                    copy = Path(scratch) / "mappings.csv"
                    with copy.open("wb") as out:
                        for chunk in upload.chunks():
                            out.write(chunk)
                    result = account_mapping_import(
                        path=copy,
                        actor=actor_for(request),
                        dry_run=dry_run,
                        display_name=upload.name,
                    )
            except BillingError as exc:
                form.add_error("file", str(exc))
            else:
                if not dry_run:
                    messages.success(request, result.summary())
                    return HttpResponseRedirect(reverse("admin:ingest_accountmapping_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Import account mappings",
            "form": form,
            "result": result,
        }
        return TemplateResponse(request, "admin/ingest/accountmapping/import.html", context)

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """Every mapping as the CSV the import reads."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        response = HttpResponse(account_mapping_export(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="account-mappings.csv"'
        return response
