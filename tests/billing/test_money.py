"""The money type: exact parsing, one rounding, formatting, exact database sums."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from django.db.models import Sum
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.fields import MoneyField
from billing.models import InstitutionSettings
from openchargeback.money import (
    ROUNDING_MODE,
    MoneyError,
    format_money,
    from_nanos,
    money_str,
    parse_money,
    parse_nanos,
    round_money,
    to_nanos,
)


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("0.00000080000", 800),
        ("-12.5", -12_500_000_000),
        ("1.2E-7", 120),
        ("+3", 3_000_000_000),
        (".5", 500_000_000),
        ("5.", 5_000_000_000),
        (" 7.25 ", 7_250_000_000),
        ("1234567.123456789", 1_234_567_123_456_789),
    ],
)
def test_parse_nanos_is_exact(text: str, nanos: int) -> None:
    assert parse_nanos(text) == (nanos, False)


def test_parse_nanos_rounds_sub_nano_digits_half_even_and_says_so() -> None:
    assert parse_nanos("0.00036383999999999996") == (363_840, True)
    assert parse_nanos("0.0000000025") == (2, True)
    assert parse_nanos("0.0000000035") == (4, True)
    assert parse_nanos("-0.0000000035") == (-4, True)
    assert parse_nanos("0.00000000250") == (2, True)
    assert parse_nanos("0.0000000025000001") == (3, True)


@pytest.mark.parametrize("bad", ["", "-", ".", "abc", "NaN", "inf", "-Infinity", "1,5", "1e999999"])
def test_parse_nanos_refuses_what_is_not_a_finite_number(bad: str) -> None:
    with pytest.raises(MoneyError):
        parse_nanos(bad)


@given(
    st.decimals(
        min_value=Decimal("-1000000000"),
        max_value=Decimal("1000000000"),
        places=12,
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_parse_nanos_matches_decimal_half_even(value: Decimal) -> None:
    text = format(value, "f")
    expected = int((value * 10**9).to_integral_value(rounding=ROUND_HALF_EVEN))
    assert parse_nanos(text)[0] == expected


@given(st.integers(min_value=-(2**62), max_value=2**62))
def test_nanos_round_trip(nanos: int) -> None:
    assert to_nanos(from_nanos(nanos)) == nanos


def test_to_nanos_refuses_floats_and_excess_precision() -> None:
    with pytest.raises(TypeError):
        to_nanos(0.1)  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        to_nanos(Decimal("0.0000000001"))


def test_one_rounding_function_with_a_named_mode() -> None:
    assert ROUNDING_MODE == "ROUND_HALF_UP"
    assert round_money(Decimal("2.345")) == Decimal("2.35")
    assert round_money(Decimal("-2.345")) == Decimal("-2.35")
    assert round_money(Decimal("2.344999999")) == Decimal("2.34")


def test_format_money_for_people() -> None:
    assert format_money(Decimal("-1234567.005")) == "-$1,234,567.01"
    assert format_money(Decimal("0")) == "$0.00"
    assert format_money(Decimal("1234.5"), currency="EUR", thousands=".", decimal_point=",") == (
        "€1.234,50"
    )
    assert format_money(Decimal("99"), currency="XYZ") == "XYZ 99.00"


def test_money_str_never_uses_exponent_notation() -> None:
    assert money_str(from_nanos(800)) == "0.0000008"
    assert money_str(parse_money("1E+3")) == "1000"


def test_money_field_refuses_floats() -> None:
    with pytest.raises(TypeError):
        MoneyField().get_prep_value(0.1)


@pytest.mark.django_db
def test_money_field_round_trips_and_sums_exactly_in_the_database() -> None:
    # Ten values whose float sum is not exact (0.1 + 0.2 != 0.3 in binary).
    InstitutionSettings.objects.all().delete()
    obj = InstitutionSettings.objects.create(pk=1, large_charge_threshold=Decimal("0.000000001"))
    obj.refresh_from_db()
    assert obj.large_charge_threshold == Decimal("0.000000001")
    total = InstitutionSettings.objects.aggregate(t=Sum("large_charge_threshold"))["t"]
    assert total == Decimal("0.000000001")


@pytest.mark.django_db
@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.decimals(
            min_value=Decimal("-100000"),
            max_value=Decimal("100000"),
            places=9,
            allow_nan=False,
            allow_infinity=False,
        ),
        min_size=1,
        max_size=30,
    )
)
def test_database_sum_equals_exact_decimal_sum(values: list[Decimal]) -> None:
    from billing.models import PI, BillingPeriod, Charge, Source
    from ingest.models import Import

    Charge.objects.all().delete()
    Import.objects.all().delete()
    source, _ = Source.objects.get_or_create(slug="sum-test", defaults={"name": "Sum"})
    period, _ = BillingPeriod.objects.get_or_create(period="2025-01")
    imp = Import.objects.create(
        file_name="x.csv", sha256="0" * 64, stored_file="", file_size=1, source=source, actor="t"
    )
    pi, _ = PI.objects.get_or_create(email="sum@example.edu")
    Charge.objects.bulk_create(
        Charge(
            period=period,
            source=source,
            import_record=imp,
            line_number=i + 2,
            fingerprint=f"{i:032x}",
            pi=pi,
            list_cost=value,
            contracted_cost=value,
            billed_cost=value,
            effective_cost=value,
        )
        for i, value in enumerate(values)
    )
    total = Charge.objects.aggregate(t=Sum("billed_cost"))["t"]
    assert total == sum(values, Decimal(0))
