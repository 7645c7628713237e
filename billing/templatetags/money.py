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


@register.filter
def money_exact(value: Decimal | None) -> str:
    """Every significant decimal (at least the cents): an unrounded sum of charges."""
    if value is None:
        return ""
    places = max(2, -int(value.normalize().as_tuple().exponent))
    return InstitutionSettings.cached().format_money(value, places=min(places, 9))
