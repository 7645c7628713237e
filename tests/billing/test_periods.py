"""billing.periods: the one definition of a billing month (pure, no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from billing.errors import BillingError
from billing.periods import (
    days_in_month,
    month_bounds,
    month_instants,
    month_of,
    next_month,
    parse_period,
    period_in_name,
    previous_month,
)
from ingest.focus.errors import IngestError


@pytest.mark.parametrize("text", ["2025-01", " 2025-12 ", "1900-01", "9999-12"])
def test_parse_period_accepts_yyyy_mm_in_the_stored_range(text: str) -> None:
    assert parse_period(text) == text.strip()


@pytest.mark.parametrize(
    "text",
    [
        "2025-13",
        "2025-00",
        "2025-1",
        "25-01",
        "1899-12",
        "0000-01",
        "\uff12\uff10\uff12\uff15-01",
        "",
    ],
)
def test_parse_period_refuses_anything_else_with_one_message(text: str) -> None:
    with pytest.raises(BillingError) as caught:
        parse_period(text)
    assert str(caught.value) == f"period {text.strip()!r} is not a month in the form YYYY-MM"


def test_an_app_gets_its_own_error_type() -> None:
    with pytest.raises(IngestError, match="is not a month in the form YYYY-MM"):
        month_bounds("2025-13", error=IngestError)


def test_month_bounds_dates_and_instants() -> None:
    assert month_bounds("2024-02") == (date(2024, 2, 1), date(2024, 3, 1))
    assert month_bounds("2024-12") == (date(2024, 12, 1), date(2025, 1, 1))
    assert month_instants("2024-12") == (
        datetime(2024, 12, 1, tzinfo=UTC),
        datetime(2025, 1, 1, tzinfo=UTC),
    )
    assert days_in_month("2024-02") == 29
    assert days_in_month("2025-02") == 28


def test_month_of_keeps_the_written_offset() -> None:
    assert month_of(date(2025, 3, 31)) == "2025-03"
    assert month_of(datetime.fromisoformat("2024-10-01T00:00:00+02:00")) == "2024-10"


def test_neighbouring_months() -> None:
    assert previous_month("2025-01") == "2024-12"
    assert previous_month("2025-07") == "2025-06"
    assert next_month("2024-12") == "2025-01"


@pytest.mark.parametrize(
    ("name", "period"),
    [
        ("aws-2025-01.csv", "2025-01"),
        ("cur_2025_03.parquet", "2025-03"),
        ("export202511.csv.gz", "2025-11"),
        ("file-12025-01.csv", None),  # inside a longer number
        ("2025-13.csv", None),
        ("notes.csv", None),
    ],
)
def test_period_in_name(name: str, period: str | None) -> None:
    assert period_in_name(name) == period
