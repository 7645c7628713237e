"""The exchange rates' admin pages: rates recorded and changed through
billing.exchange, checked before saving; none deleted."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from billing.adminkit import actor_for
from billing.errors import BillingError, web_text
from billing.exchange import exchange_rate_check, exchange_rate_set
from billing.models import BillingPeriod, ExchangeRate
from openchargeback.text import count


class ExchangeRateForm(forms.ModelForm):
    """A rate for a currency and month; the month may not have charges yet."""

    month = forms.CharField(
        max_length=7, label="Period", help_text="The billing month, YYYY-MM (e.g. 2024-10)."
    )

    class Meta:
        model = ExchangeRate
        fields = ["currency", "rate", "note"]
        help_texts = {"rate": "Home-currency units per one unit of the currency, e.g. 1.0850."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["month"].initial = self.instance.period.period
            for name in ("month", "currency"):
                if name in self.fields:  # not for read-only users
                    self.fields[name].disabled = True

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            code, text, month, _note = exchange_rate_check(
                currency=data.get("currency", ""),
                period=data.get("month", ""),
                rate=data.get("rate", ""),
                note=data.get("note", ""),
            )
        except BillingError as exc:
            raise forms.ValidationError(web_text(exc)) from None
        data.update(currency=code, rate=text, month=month)
        return data

    def validate_unique(self) -> None:
        """exchange_rate_set records or changes the one rate of a currency and month."""


@admin.register(ExchangeRate)
class ExchangeRateAdmin(admin.ModelAdmin):
    """Exchange rates: recorded and changed through billing.exchange (audited,
    charges converted), never deleted; locked once the month is finalized."""

    form = ExchangeRateForm
    list_display = ["period", "currency", "rate", "note", "updated_by", "updated_at"]
    list_filter = ["currency", "period"]
    list_select_related = ["period"]
    search_fields = ["currency", "note"]
    fields = ["month", "currency", "rate", "note"]
    ordering = ["-period__period", "currency"]

    @admin.display(description="period")
    def month(self, obj: ExchangeRate) -> str:
        """The period, for read-only pages (the form has its own field)."""
        return obj.period.period

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.period.status == BillingPeriod.Status.FINALIZED:
            return False
        return super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: ExchangeRate, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            saved = exchange_rate_set(
                currency=data["currency"],
                period=data["month"],
                rate=data["rate"],
                note=data["note"],
                actor=actor_for(request),
            )
        except BillingError as exc:  # the period was locked after the form was checked
            raise PermissionDenied(web_text(exc)) from None
        for name in ("pk", "period", "currency", "rate", "note", "updated_at", "updated_by"):
            setattr(obj, name, getattr(saved.rate, name))
        self.message_user(
            request,
            f"{count(saved.converted, 'charge')} in {saved.rate.currency} converted.",
            messages.INFO,
        )
