"""The admin kit: what every app's admin pages share.

Who acts (``actor_for``), records nobody edits (``ReadOnlyAdmin``), money
columns, the confirmation page of an action that asks for more
(``action_page``), the filter typed into a box (``TextInputFilter``) and the
settings page whose regular expression can be tried before saving
(``RegexPreviewAdmin``). It lives in billing, the core, so that every app's
admin may use it (docs/decisions/0004-app-boundaries.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import urlencode

from billing import selectors
from billing.audit import Actor
from billing.models import BillingPeriod, InstitutionSettings, PatternRule, validate_regex


def actor_for(request: HttpRequest) -> Actor:
    """The signed-in user of an admin request, as the actor of what it changes."""
    user = request.user
    if isinstance(user, AnonymousUser):  # admin_view lets only signed-in staff through
        raise PermissionDenied
    return Actor.for_user(user)


def money_column(field: str, description: str) -> Callable[[Any, Any], str]:
    """A changelist column (or read-only field) showing a money field the way
    the institution writes amounts, sortable by the field."""

    @admin.display(description=description, ordering=field)
    def column(model_admin: Any, obj: Any) -> str:
        return InstitutionSettings.cached().format_money(getattr(obj, field))

    return column


def action_summary(count: int, noun: str, extra: str = "") -> str:
    """'Selected: 1,234 charges, billed total $5.00.' for confirmation pages."""
    text = f"Selected: {count:,} {noun}{'' if count == 1 else 's'}"
    return f"{text}, {extra}." if extra else f"{text}."


def changelist_url(model_admin: admin.ModelAdmin, request: HttpRequest) -> str:
    """The changelist as the user left it: an action's POST goes to the
    changelist's own URL, so its query string (the filters) is in request.GET."""
    opts = model_admin.model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    query = request.GET.urlencode()
    return f"{url}?{query}" if query else url


def action_context(
    model_admin: admin.ModelAdmin, request: HttpRequest, *, action: str
) -> dict[str, Any]:
    """What every confirmation page posts back (the action and the selection,
    with ``apply``) and where its Cancel goes (the list, filters kept)."""
    return {
        "action": action,
        "cancel_url": changelist_url(model_admin, request),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
    }


def action_page(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    *,
    action: str,
    form: forms.Form,
    title: str,
    intro: str,
    summary: str,
    details: list[str] | None = None,
    submit_label: str = "",
) -> TemplateResponse:
    """The confirmation page of an admin action that asks for more (a note, a
    reason) or shows what will happen (``details``: lines of safe HTML): it
    posts the selection back with ``apply``; Cancel keeps the list's filters."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "intro": intro,
        "summary": summary,
        "details": details or [],
        "opts": model_admin.model._meta,
        "form": form,
        "submit_label": submit_label or title,
        **action_context(model_admin, request, action=action),
    }
    return TemplateResponse(request, "admin/billing/action_form.html", context)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records nobody edits through forms: viewed, filtered, acted on."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TextInputFilter(admin.SimpleListFilter):
    """A filter typed into a box: PIs, projects and fund/orgs are too many to list."""

    template = "admin/billing/input_filter.html"
    placeholder = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("", "")]  # a filter with no lookups is not shown at all

    def choices(self, changelist: Any) -> Any:
        other = {
            key: value
            for key, value in changelist.get_filters_params().items()
            if key != self.parameter_name
        }
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "hidden": [
                (key, item)
                for key, value in other.items()
                for item in (value if isinstance(value, list) else [value])
            ],
            "placeholder": self.placeholder,
        }

    def text(self) -> str:
        return (self.value() or "").strip()


class PatternPreviewForm(forms.Form):
    pattern = forms.CharField(max_length=500, validators=[validate_regex])
    target = forms.ChoiceField(
        choices=PatternRule.Target.choices, initial=PatternRule.Target.ANY, required=False
    )
    period = forms.ModelChoiceField(
        queryset=BillingPeriod.objects.order_by("-period"),
        to_field_name="period",
        required=False,
        empty_label="current period",
    )


class RegexPreviewAdmin(admin.ModelAdmin):
    """A settings page whose regular expression can be tried before saving.

    The change form gets a "Test against the current period" button that
    posts the unsaved fields to a read-only preview page (in a new tab).
    """

    change_form_template = "admin/billing/regex_change_form.html"
    preview_template = ""
    preview_fields: tuple[str, ...] = ("pattern",)

    def get_urls(self) -> list[Any]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_preview"
        view = self.admin_site.admin_view(self.preview_view)
        return [path("preview/", view, name=name), *super().get_urls()]

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """A read: GET only. The change form's button posts its unsaved fields;
        they are sent on (303) as the query of the GET that runs the preview,
        so that the preview stays a bounded, repeatable read."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            names = (*self.preview_fields, "period", "exclude")
            query = {n: request.POST.get(n) or request.GET.get(n) for n in names}
            url = request.path + "?" + urlencode({n: v for n, v in query.items() if v})
            return HttpResponseRedirect(url, status=303)
        form = PatternPreviewForm(request.GET or None)
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Test a {self.opts.verbose_name}",
            "form": form,
            "preview_fields": self.preview_fields,
            "preview_seconds": f"{selectors.PREVIEW_SECONDS:g}",
            "preview_value_chars": selectors.PREVIEW_VALUE_CHARS,
        }
        if form.is_valid():
            period = form.cleaned_data["period"] or selectors.current_period()
            context["period"] = period
            if period is not None:
                context["result"] = self.run_preview(request, form.cleaned_data, period)
        return TemplateResponse(request, self.preview_template, context)

    def run_preview(
        self, request: HttpRequest, data: dict[str, Any], period: BillingPeriod
    ) -> Any:  # pragma: no cover - every subclass implements it
        raise NotImplementedError
