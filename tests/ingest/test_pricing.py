"""Pricing on-premises usage with the rate card (ingest.usage.pricing): hand-computed
amounts, compared exactly. No database."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.usage.pricing import (
    UNMAPPED,
    Owner,
    PricedRow,
    PricingError,
    RateBook,
    RateTerms,
    price,
)
from ingest.usage.records import BYTES_PER_TB, SECONDS_PER_HOUR, Resource, Usage
from openchargeback.money import from_nanos

ADA = Owner("ada@example.edu", "proj-a", "NSF-BIO-2024")
BOB = Owner("bob@example.edu", "proj-b", "NIH-GEN-2025")
OWNERS = {"lab-a": ADA, "lab-a-gpu": ADA, "lab-b": BOB}


def terms(
    rate_id: int = 1,
    *,
    resource: Resource = "cpu",
    service: str = "standard",
    qos: str = "",
    start: date = date(2025, 3, 1),
    rate: str = "0.01",
    subsidy: str = "0",
    allowance: str = "0",
    credit: str = "0",
    cap: str | None = None,
) -> RateTerms:
    return RateTerms(
        rate_id=rate_id,
        resource=resource,
        service=service,
        qos=qos,
        effective_from=start,
        list_rate=Decimal(rate),
        subsidy_percent=Decimal(subsidy),
        free_allowance=Decimal(allowance),
        monthly_credit=Decimal(credit),
        monthly_cap=None if cap is None else Decimal(cap),
    )


def hours(
    account: str,
    day: int,
    quantity: Fraction | int,
    *,
    resource: Resource = "cpu",
    service: str = "standard",
    qos: str = "normal",
    jobs: int = 1,
) -> Usage:
    return Usage(resource, account, service, qos, date(2025, 3, day), Fraction(quantity), jobs)


def stored(account: str, day: date, terabytes: str, *, tier: str = "project") -> Usage:
    """A day of a quota holding `terabytes`, as the quota reader makes it."""
    days = 30 if day.month in (4, 6, 9, 11) else 31
    size = int(Decimal(terabytes) * BYTES_PER_TB)
    return Usage("storage", account, tier, "", day, Fraction(size, BYTES_PER_TB * days))


def month_of(year: int, month: int) -> list[date]:
    first = date(year, month, 1)
    days = []
    while first.month == month:
        days.append(first)
        first += timedelta(days=1)
    return days


def listed(rows: list[PricedRow]) -> Decimal:
    return from_nanos(sum(r.list_nanos for r in rows))


def billed(rows: list[PricedRow]) -> Decimal:
    return from_nanos(sum(r.billed_nanos for r in rows))


# --- the worked examples -----------------------------------------------------------------


def test_a_72_cpu_job_of_a_day_and_2h30_is_1908_cpu_hours_billed_after_subsidy() -> None:
    # 72 CPUs from 2025-03-03 00:00 for 1-02:30:00: 24 h on the 3rd, 2.5 h on the 4th.
    usages = [
        hours("lab-a", 3, Fraction(72 * 24 * SECONDS_PER_HOUR, SECONDS_PER_HOUR)),
        hours("lab-a", 4, Fraction(72 * 9000, SECONDS_PER_HOUR)),
    ]
    book = RateBook([terms(rate="0.01", subsidy="25")])
    rows = price(usages, book=book, owners=OWNERS, period="2025-03")
    assert [r.quantity for r in rows] == [1728, 180]
    assert [r.list_cost for r in rows] == [Decimal("17.28"), Decimal("1.80")]
    assert [r.billed_cost for r in rows] == [Decimal("12.96"), Decimal("1.35")]
    assert listed(rows) == Decimal("19.08")
    assert billed(rows) == Decimal("14.31")
    assert sum(r.quantity for r in rows) == 1908
    first = rows[0]
    assert (first.start_day, first.end_day) == (date(2025, 3, 3), date(2025, 3, 4))
    assert (first.owner, first.unmapped, first.jobs, first.free_quantity) == (ADA, False, 1, 0)
    assert first.terms.rate_id == 1


def test_gpu_hours_are_priced_on_their_own_rate_apart_from_the_cpu_hours() -> None:
    book = RateBook(
        [
            terms(1, service="gpu", rate="0.02"),
            terms(2, resource="gpu", service="gpu", rate="0.50"),
        ]
    )
    usages = [
        hours("lab-a", 5, 36, service="gpu"),
        hours("lab-a", 5, 9, resource="gpu", service="gpu"),
    ]
    rows = price(usages, book=book, owners=OWNERS, period="2025-03")
    by_resource = {r.resource: r for r in rows}
    assert by_resource["cpu"].list_cost == Decimal("0.72")
    assert by_resource["gpu"].list_cost == Decimal("4.50")
    assert by_resource["gpu"].billed_cost == Decimal("4.50")
    assert (by_resource["cpu"].terms.rate_id, by_resource["gpu"].terms.rate_id) == (1, 2)
    assert by_resource["gpu"].unit == "GPU-hour"


def test_a_rate_change_on_the_15th_prices_each_day_at_the_rate_of_that_day() -> None:
    book = RateBook(
        [terms(1, rate="0.01"), terms(2, rate="0.02", start=date(2025, 3, 15))],
    )
    # 4 CPUs from the 14th 22:00 to the 15th 02:00: 8 CPU-hours on each day.
    rows = price(
        [hours("lab-a", 14, 8), hours("lab-a", 15, 8)], book=book, owners=OWNERS, period="2025-03"
    )
    assert [(r.start_day.day, r.terms.rate_id, r.list_cost) for r in rows] == [
        (14, 1, Decimal("0.08")),
        (15, 2, Decimal("0.16")),
    ]
    assert listed(rows) == billed(rows) == Decimal("0.24")


def test_storage_12_5_tb_all_march_with_1_tb_free_and_half_subsidised() -> None:
    book = RateBook(
        [terms(resource="storage", service="project", rate="5", subsidy="50", allowance="1")]
    )
    usages = [stored("lab-a", day, "12.5") for day in month_of(2025, 3)]
    rows = price(usages, book=book, owners=OWNERS, period="2025-03")
    assert len(rows) == 1
    row = rows[0]
    assert (row.start_day, row.end_day) == (date(2025, 3, 1), date(2025, 4, 1))
    assert row.quantity == Fraction(25, 2)
    assert row.free_quantity == 1
    assert row.list_cost == Decimal("62.50")
    # (12.5 - 1) TB-months x $5 x 50%
    assert row.billed_cost == Decimal("28.75")
    assert (row.qos, row.jobs, row.unit) == ("", 0, "TB-month")


# --- allowance, credit, cap ---------------------------------------------------------------


def test_the_free_cpu_allowance_runs_out_part_way_through_a_day() -> None:
    book = RateBook([terms(rate="0.01", allowance="100")])
    rows = price(
        [hours("lab-a", 1, 80), hours("lab-a", 2, 50), hours("lab-a", 3, 10)],
        book=book,
        owners=OWNERS,
        period="2025-03",
    )
    assert [r.free_quantity for r in rows] == [80, 20, 0]
    assert [r.billed_cost for r in rows] == [Decimal("0.00"), Decimal("0.30"), Decimal("0.10")]
    assert listed(rows) == Decimal("1.40")


def test_the_monthly_credit_comes_off_in_day_order_after_the_subsidy() -> None:
    book = RateBook([terms(rate="0.10", subsidy="50", credit="2")])
    rows = price(
        [hours("lab-a", 1, 30), hours("lab-a", 2, 40), hours("lab-a", 3, 10)],
        book=book,
        owners=OWNERS,
        period="2025-03",
    )
    # after subsidy 1.50, 2.00, 0.50; the $2 credit takes 1.50 then 0.50
    assert [r.billed_cost for r in rows] == [Decimal("0.00"), Decimal("1.50"), Decimal("0.50")]
    assert listed(rows) == Decimal("8.00")


def test_the_monthly_cap_stops_billing_for_the_rest_of_the_month() -> None:
    book = RateBook([terms(rate="1", cap="10")])
    rows = price(
        [hours("lab-a", 1, 8), hours("lab-a", 2, 5), hours("lab-a", 3, 3)],
        book=book,
        owners=OWNERS,
        period="2025-03",
    )
    assert [r.billed_cost for r in rows] == [Decimal("8.00"), Decimal("2.00"), Decimal("0.00")]
    assert listed(rows) == Decimal("16.00")
    assert billed(rows) == Decimal("10.00")


def test_the_cap_is_per_project_and_bob_is_billed_in_full() -> None:
    book = RateBook([terms(rate="1", cap="10")])
    rows = price(
        [hours("lab-a", 1, 12), hours("lab-b", 1, 12)], book=book, owners=OWNERS, period="2025-03"
    )
    assert {r.owner.project_id: r.billed_cost for r in rows} == {
        "proj-a": Decimal("10.00"),
        "proj-b": Decimal("10.00"),
    }


@pytest.mark.parametrize(
    ("new_allowance", "free_on_the_20th", "billed_on_the_20th"),
    [("150", 70, Decimal("0.60")), ("50", 0, Decimal("2.00"))],
)
def test_allowance_used_before_a_rate_change_counts_against_the_new_allowance(
    new_allowance: str, free_on_the_20th: int, billed_on_the_20th: Decimal
) -> None:
    book = RateBook(
        [
            terms(1, rate="0.01", allowance="100"),
            terms(2, rate="0.02", allowance=new_allowance, start=date(2025, 3, 15)),
        ]
    )
    rows = price(
        [hours("lab-a", 10, 80), hours("lab-a", 20, 100)],
        book=book,
        owners=OWNERS,
        period="2025-03",
    )
    assert [r.free_quantity for r in rows] == [80, free_on_the_20th]
    assert [r.billed_cost for r in rows] == [Decimal("0.00"), billed_on_the_20th]


def test_credit_and_cap_used_before_a_rate_change_carry_over() -> None:
    book = RateBook(
        [
            terms(1, rate="1", credit="3", cap="10"),
            terms(2, rate="1", credit="5", cap="12", start=date(2025, 3, 15)),
        ]
    )
    rows = price(
        [hours("lab-a", 10, 9), hours("lab-a", 20, 10)], book=book, owners=OWNERS, period="2025-03"
    )
    # 10th: 9 - 3 credit = 6. 20th: 10 - (5 - 3) credit = 8, but only 12 - 6 = 6 left under the cap.
    assert [r.billed_cost for r in rows] == [Decimal("6.00"), Decimal("6.00")]


def test_two_accounts_of_one_project_share_its_allowance_in_account_name_order() -> None:
    book = RateBook([terms(rate="1", allowance="10")])
    rows = price(
        [hours("lab-a-gpu", 1, 10), hours("lab-a", 1, 10)],
        book=book,
        owners=OWNERS,
        period="2025-03",
    )
    assert {r.account: (r.free_quantity, r.billed_cost) for r in rows} == {
        "lab-a": (10, Decimal("0.00")),
        "lab-a-gpu": (0, Decimal("10.00")),
    }


def test_qos_without_a_rate_of_their_own_share_the_any_qos_rate_and_its_allowance() -> None:
    book = RateBook([terms(rate="1", allowance="10")])
    rows = price(
        [hours("lab-a", 1, 6, qos="normal"), hours("lab-a", 1, 6, qos="long")],
        book=book,
        owners=OWNERS,
        period="2025-03",
    )
    assert sum(r.free_quantity for r in rows) == 10
    assert billed(rows) == Decimal("2.00")
    assert {r.qos for r in rows} == {"normal", "long"}


def test_storage_allowance_is_a_daily_level_shared_by_the_projects_quotas_in_name_order() -> None:
    book = RateBook([terms(resource="storage", service="project", rate="10", allowance="1")])
    april = month_of(2025, 4)
    usages = [stored("lab-a-gpu", d, "1") for d in april] + [
        stored("lab-a", d, "0.6") for d in april
    ]
    rows = price(usages, book=book, owners=OWNERS, period="2025-04")
    by_quota = {r.account: r for r in rows}
    assert by_quota["lab-a"].free_quantity == Fraction(3, 5)
    assert by_quota["lab-a"].billed_cost == Decimal("0.00")
    assert by_quota["lab-a-gpu"].free_quantity == Fraction(2, 5)
    assert by_quota["lab-a-gpu"].list_cost == Decimal("10.00")
    assert by_quota["lab-a-gpu"].billed_cost == Decimal("6.00")


def test_storage_rows_split_where_the_rate_changes() -> None:
    book = RateBook(
        [
            terms(1, resource="storage", service="project", rate="3.10"),
            terms(2, resource="storage", service="project", rate="6.20", start=date(2025, 3, 15)),
        ]
    )
    rows = price(
        [stored("lab-a", d, "1") for d in month_of(2025, 3)],
        book=book,
        owners=OWNERS,
        period="2025-03",
    )
    assert [(r.start_day.day, r.end_day, r.quantity) for r in rows] == [
        (1, date(2025, 3, 15), Fraction(14, 31)),
        (15, date(2025, 4, 1), Fraction(17, 31)),
    ]
    # 14 days x $3.10/31 + 17 days x $6.20/31
    assert [r.list_cost for r in rows] == [Decimal("1.40"), Decimal("3.40")]


def test_a_gap_in_a_quotas_days_starts_a_new_row() -> None:
    book = RateBook([terms(resource="storage", service="project", rate="31")])
    days = [date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 5)]
    rows = price(
        [stored("lab-a", d, "1") for d in days], book=book, owners=OWNERS, period="2025-03"
    )
    assert [(r.start_day.day, r.end_day.day, r.list_cost) for r in rows] == [
        (1, 3, Decimal("2.00")),
        (5, 6, Decimal("1.00")),
    ]


# --- owners and rates ------------------------------------------------------------------------


def test_an_unmapped_account_is_priced_on_its_own_and_says_so() -> None:
    book = RateBook([terms(rate="1", allowance="10")])
    rows = price(
        [hours("stray", 1, 10), hours("other", 1, 10), hours("LAB-A", 1, 4)],
        book=book,
        owners=OWNERS,
        period="2025-03",
    )
    by_account = {r.account: r for r in rows}
    assert by_account["stray"].unmapped
    assert by_account["other"].unmapped
    assert by_account["stray"].owner == UNMAPPED == Owner("", "", "")
    # each unmapped account has its own allowance
    assert by_account["stray"].free_quantity == by_account["other"].free_quantity == 10
    # names match ignoring case
    assert (by_account["LAB-A"].owner, by_account["LAB-A"].unmapped) == (ADA, False)


def test_a_qos_rate_wins_over_the_any_qos_rate_once_it_has_started() -> None:
    book = RateBook(
        [
            terms(1, rate="0.01"),
            terms(2, qos="high", rate="0.05", start=date(2025, 3, 10)),
        ]
    )
    assert book.in_force("cpu", "standard", "high", date(2025, 3, 9)) == terms(1, rate="0.01")
    high = book.in_force("cpu", "standard", "high", date(2025, 3, 10))
    normal = book.in_force("cpu", "standard", "normal", date(2025, 3, 10))
    assert high is not None
    assert high.rate_id == 2
    assert normal is not None
    assert normal.rate_id == 1
    assert book.in_force("cpu", "standard", "normal", date(2025, 2, 28)) is None
    assert book.in_force("gpu", "standard", "normal", date(2025, 3, 10)) is None
    rows = price(
        [hours("lab-a", 9, 100, qos="high"), hours("lab-a", 10, 100, qos="high")],
        book=book,
        owners=OWNERS,
        period="2025-03",
    )
    assert [r.list_cost for r in rows] == [Decimal("1.00"), Decimal("5.00")]


def test_usage_without_a_rate_is_refused_with_what_to_add() -> None:
    book = RateBook([terms(service="standard")])
    with pytest.raises(PricingError) as cpu:
        price([hours("lab-a", 4, 1, service="gpu")], book=book, owners=OWNERS, period="2025-03")
    assert str(cpu.value) == (
        "no CPU-hour rate for partition 'gpu' (QOS 'normal') on 2025-03-04; "
        "add one under Rates in the admin"
    )
    with pytest.raises(PricingError) as disk:
        price([stored("lab-a", date(2025, 3, 2), "1")], book=book, owners=OWNERS, period="2025-03")
    assert str(disk.value) == (
        "no TB-month rate for storage tier 'project' on 2025-03-02; "
        "add one under Rates in the admin"
    )


def test_a_rate_that_starts_later_in_the_month_does_not_price_earlier_days() -> None:
    book = RateBook([terms(start=date(2025, 3, 10))])
    with pytest.raises(PricingError, match="on 2025-03-09"):
        price([hours("lab-a", 9, 1)], book=book, owners=OWNERS, period="2025-03")


def test_usage_outside_the_period_and_bad_periods_are_refused() -> None:
    book = RateBook([terms(start=date(2025, 1, 1))])
    with pytest.raises(PricingError, match="outside period 2025-04"):
        price([hours("lab-a", 31, 1)], book=book, owners=OWNERS, period="2025-04")
    with pytest.raises(PricingError, match="YYYY-MM"):
        price([], book=book, owners=OWNERS, period="2025-13")
    with pytest.raises(PricingError, match="negative"):
        price([hours("lab-a", 1, -1)], book=book, owners=OWNERS, period="2025-03")


def test_two_rates_for_the_same_key_and_day_are_refused() -> None:
    with pytest.raises(ValueError, match="same day"):
        RateBook([terms(1), terms(2, rate="0.02")])


# --- exactness -------------------------------------------------------------------------------


def test_a_merged_storage_row_is_its_exact_days_rounded_once() -> None:
    # 1 TB at $1/TB-month: each of 31 days is $0.032258064516..., which rounded
    # day by day would add up to $1.000000015.
    book = RateBook([terms(resource="storage", service="project", rate="1")])
    rows = price(
        [stored("lab-a", d, "1") for d in month_of(2025, 3)],
        book=book,
        owners=OWNERS,
        period="2025-03",
    )
    assert [r.list_nanos for r in rows] == [1_000_000_000]
    assert [r.billed_nanos for r in rows] == [1_000_000_000]


def test_rows_round_half_to_even_at_the_nano_unit() -> None:
    book = RateBook([terms(rate="0.000000001")])
    quantities = [Fraction(1, 2), Fraction(3, 2), Fraction(5, 2), Fraction(7, 3)]
    rows = price(
        [hours(f"lab-{i}", 1, q) for i, q in enumerate(quantities)],
        book=book,
        owners={},
        period="2025-03",
    )
    assert [r.list_nanos for r in rows] == [0, 2, 2, 2]


def test_seven_cpu_seconds_are_kept_to_the_nano() -> None:
    book = RateBook([terms(rate="0.01")])
    rows = price(
        [hours("lab-a", 1, Fraction(7, SECONDS_PER_HOUR))],
        book=book,
        owners=OWNERS,
        period="2025-03",
    )
    # 7/3600 x 0.01 = 0.0000194444... -> 19444 nano-units
    assert rows[0].list_nanos == 19_444
    assert rows[0].list_cost == Decimal("0.000019444")


amounts = st.integers(min_value=0, max_value=5000).map(lambda n: Decimal(n) / 100)


@settings(max_examples=150, deadline=None)
@given(
    rate=st.integers(min_value=0, max_value=10**7).map(lambda n: Decimal(n).scaleb(-6)),
    subsidy=st.integers(min_value=0, max_value=10000).map(lambda n: Decimal(n).scaleb(-2)),
    allowance=amounts,
    credit=amounts,
    cap=st.none() | amounts,
    usage=st.lists(
        st.tuples(
            st.sampled_from(["lab-a", "lab-a-gpu", "lab-b", "stray"]),
            st.integers(min_value=1, max_value=31),
            st.fractions(min_value=0, max_value=500, max_denominator=3600),
        ),
        max_size=25,
    ),
)
def test_each_project_is_billed_exactly_the_month_rules_say(
    rate: Decimal,
    subsidy: Decimal,
    allowance: Decimal,
    credit: Decimal,
    cap: Decimal | None,
    usage: list[tuple[str, int, Fraction]],
) -> None:
    book = RateBook(
        [
            RateTerms(
                rate_id=1,
                resource="cpu",
                service="standard",
                qos="",
                effective_from=date(2025, 3, 1),
                list_rate=rate,
                subsidy_percent=subsidy,
                free_allowance=allowance,
                monthly_credit=credit,
                monthly_cap=cap,
            )
        ]
    )
    usages = [hours(account, day, quantity) for account, day, quantity in usage]
    rows = price(usages, book=book, owners=OWNERS, period="2025-03")
    assert len(rows) == len(usages)
    per_owner: dict[str, list[PricedRow]] = defaultdict(list)
    for row in rows:
        exact_list = row.quantity * Fraction(rate) * 10**9
        assert abs(row.list_nanos - exact_list) <= Fraction(1, 2)
        assert 0 <= row.billed_nanos <= row.list_nanos
        per_owner[row.owner.project_id or row.account].append(row)
    for owned in per_owner.values():
        total = sum((r.quantity for r in owned), Fraction(0))
        free = sum((r.free_quantity for r in owned), Fraction(0))
        assert free == min(total, Fraction(allowance))
        after_subsidy = (total - free) * Fraction(rate) * (1 - Fraction(subsidy) / 100)
        expected = max(Fraction(0), after_subsidy - Fraction(credit))
        if cap is not None:
            expected = min(expected, Fraction(cap))
        got = sum(r.billed_nanos for r in owned)
        # each row rounds on its own, by at most half a nano-unit
        assert abs(got - expected * 10**9) <= Fraction(len(owned), 2)
        if cap is not None:
            assert got <= Fraction(cap) * 10**9
