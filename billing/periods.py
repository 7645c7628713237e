"""Billing months as text, ``YYYY-MM``: what is accepted (one definition, one
message), a month's bounds, the month of a date, the month a file name hints
at, the months either side. Pure: no ORM, no I/O.

Accepted: four ASCII digits, a dash, two digits 01-12, surrounding blanks
ignored, years 1900-9999 (the range ``BillingPeriod.period`` stores).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from billing.errors import BillingError

# The model field's validator (billing.models.period_validator) and the
# parsers below agree on the shape; the year range is checked in parse_period.
PERIOD_RE = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
_PERIOD = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
FIRST_YEAR = 1900  # the database constraint's lower bound ("1900-01")

# A month hinted in a file name: 2025-01, 2025_01 or 202501, not inside a
# longer number (ASCII digits only).
_HINT = re.compile(r"(?<!\d)(20\d{2})[-_]?(0[1-9]|1[0-2])(?!\d)", re.ASCII)


def parse_period(value: str, *, error: type[BillingError] = BillingError) -> str:
    """``' 2025-01 '`` -> ``'2025-01'``; anything else raises ``error`` (a
    BillingError; an app passes its own subclass)."""
    text = value.strip()
    match = _PERIOD.fullmatch(text)
    if match is None or int(match.group(1)) < FIRST_YEAR:
        raise error(f"period {text!r} is not a month in the form YYYY-MM")
    return text


def year_month(period: str, *, error: type[BillingError] = BillingError) -> tuple[int, int]:
    """``'2025-01'`` -> ``(2025, 1)``."""
    text = parse_period(period, error=error)
    return int(text[:4]), int(text[5:])


def month_start(period: str, *, error: type[BillingError] = BillingError) -> date:
    """The first day of ``period``."""
    year, month = year_month(period, error=error)
    return date(year, month, 1)


def month_bounds(period: str, *, error: type[BillingError] = BillingError) -> tuple[date, date]:
    """The first day of ``period`` and the first day of the month after it."""
    year, month = year_month(period, error=error)
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return date(year, month, 1), following


def month_instants(
    period: str, *, error: type[BillingError] = BillingError
) -> tuple[datetime, datetime]:
    """:func:`month_bounds` as aware datetimes, midnight UTC."""
    first, following = month_bounds(period, error=error)
    return (
        datetime(first.year, first.month, 1, tzinfo=UTC),
        datetime(following.year, following.month, 1, tzinfo=UTC),
    )


def days_in_month(period: str, *, error: type[BillingError] = BillingError) -> int:
    first, following = month_bounds(period, error=error)
    return (following - first).days


def month_of(day: date) -> str:
    """The month of a date or datetime as written (an aware datetime is not
    converted to UTC first: ``2024-10-01T00:00+02:00`` is October)."""
    return f"{day.year:04d}-{day.month:02d}"


def next_month(period: str) -> str:
    return month_of(month_bounds(period)[1])


def previous_month(period: str) -> str:
    year, month = year_month(period)
    return f"{year - 1:04d}-12" if month == 1 else f"{year:04d}-{month - 1:02d}"


def period_in_name(filename: str) -> str | None:
    """A month hinted in a file name: 2025-01, 2025_01 or 202501."""
    match = _HINT.search(filename)
    return f"{match.group(1)}-{match.group(2)}" if match else None
