"""The sources' admin pages: a source's name, filename pattern, accounting and
cost basis, changed through billing.services (validated, audited)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from billing.adminkit import actor_for
from billing.models import Source
from billing.services import source_add, source_set


class SourceForm(forms.ModelForm):
    class Meta:
        model = Source
        fields = [
            "slug",
            "name",
            "filename_pattern",
            "credit_fund_org",
            "account_code",
            "enabled",
            "provider_names",
            # Cost basis (docs/decisions/0006-cost-basis.md)
            "cost_basis",
            "commitment_handling",
            "commitment_project",
            "commitment_fund_org",
        ]

    def clean_slug(self) -> str:
        from billing.services import normalise_slug

        slug = normalise_slug(self.cleaned_data["slug"])
        if Source.objects.filter(slug=slug).exists():
            raise forms.ValidationError(f"Source {slug!r} already exists.")
        return slug


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    form = SourceForm
    list_display = [
        "slug",
        "name",
        "filename_pattern",
        "credit_fund_org",
        "account_code",
        "cost_basis",
        "enabled",
    ]
    list_filter = ["enabled", "cost_basis"]
    search_fields = ["slug", "name"]
    autocomplete_fields = ["commitment_project"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["slug"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Source, form: Any, change: bool) -> None:
        """Through the same services (and audit trail) as `openchargeback sources`."""
        actor = actor_for(request)
        data = form.cleaned_data
        basis = {
            "cost_basis": data["cost_basis"],
            "commitment_handling": data["commitment_handling"],
            "commitment_project_id": data["commitment_project"].pk
            if data["commitment_project"]
            else None,
            "commitment_fund_org": data["commitment_fund_org"],
        }
        changed_basis = {
            f: value for f, value in basis.items() if f.removesuffix("_id") in form.changed_data
        }
        if change:
            fields = (
                "name",
                "filename_pattern",
                "credit_fund_org",
                "account_code",
                "enabled",
                "provider_names",
            )
            saved = source_set(
                slug=obj.slug,
                actor=actor,
                **{f: data[f] for f in fields if f in form.changed_data},
                **changed_basis,
            )
        else:
            saved = source_add(
                slug=data["slug"],
                name=data["name"],
                filename_pattern=data["filename_pattern"],
                credit_fund_org=data["credit_fund_org"],
                account_code=data["account_code"],
                enabled=data["enabled"],
                actor=actor,
            )
            if data.get("provider_names"):
                saved = source_set(
                    slug=saved.slug, actor=actor, provider_names=data["provider_names"]
                )
            if changed_basis:
                saved = source_set(slug=saved.slug, actor=actor, **changed_basis)
        obj.pk = saved.pk
