"""``{{ amount|money }}``: an exact amount in the institution's currency format."""

from __future__ import annotations

from decimal import Decimal

from django import template

from billing.models import InstitutionSettings

register = template.Library()


@register.filter
def money(value: Decimal | None) -> str:
    if value is None:
        return ""
    return InstitutionSettings.cached().format_money(value)
