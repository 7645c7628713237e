"""Storage quota reports into TB-month usage (ingest.usage.quotas; SPEC section 11).

Pure: no database. Every expected quantity is worked out by hand in the test
from the bytes and the days in the month, and compared exactly.
"""

from __future__ import annotations

import gzip
import json
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from ingest.focus.errors import IngestError
from ingest.usage.quotas import QuotaSummary, parse_size, read_quotas
from ingest.usage.records import Usage

TB = 10**12
MIXED_HINT = "give every row a date (daily snapshots) or none (one size for the month)"


def write(tmp_path: Path, filename: str, content: str | bytes) -> Path:
    path = tmp_path / filename
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def read(
    path: Path, *, period: str = "2025-03", default_tier: str = "standard"
) -> tuple[list[Usage], QuotaSummary]:
    return read_quotas(path, name=path.name, period=period, default_tier=default_tier)


def error_for(path: Path, **kwargs: str) -> str:
    with pytest.raises(IngestError) as caught:
        read(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def by_day(usages: list[Usage], account: str) -> dict[date, Fraction]:
    return {u.day: u.quantity for u in usages if u.account == account}


def march(day: int) -> date:
    return date(2025, 3, day)


# --- undated reports ---------------------------------------------------------


def test_undated_quota_bills_every_day_of_march_summing_to_its_tb_months(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "quotas-2025-03.csv", "quota,bytes_used\nlab-a,12.5 TB\n")

    usages, summary = read(path)

    assert len(usages) == 31
    assert [u.day for u in usages] == [march(d) for d in range(1, 32)]
    # 12.5 TB for one of 31 days: 12.5 / 31 = 25/62 TB-months.
    assert {u.quantity for u in usages} == {Fraction(25, 62)}
    assert sum((u.quantity for u in usages), Fraction(0)) == Fraction(25, 2)
    assert all(type(u.quantity) is Fraction for u in usages)
    first = usages[0]
    assert (first.resource, first.account, first.service, first.qos, first.jobs) == (
        "storage",
        "lab-a",
        "standard",
        "",
        0,
    )
    assert summary == QuotaSummary(
        period="2025-03",
        days=31,
        rows=1,
        quotas=1,
        quotas_billed=1,
        dated=False,
        snapshots_before_period=0,
        snapshots_after_period=0,
        tb_months=Fraction(25, 2),
        largest_quota="lab-a",
        largest_bytes=12_500_000_000_000,
        tiers=("standard",),
    )


def test_path_column_binary_units_and_blank_tier_take_the_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "quotas.csv",
        "Path,Used Bytes,Tier\n/gpfs/lab-b,500 GiB,\n/gpfs/lab-c,2 tib,archive\n",
    )

    usages, summary = read(path, period="2025-04")

    # April has 30 days. 500 GiB = 500 * 2**30 = 536,870,912,000 bytes
    # = 2**29 / 10**9 TB = 2**20 / 5**9 = 1048576/1953125 TB-months.
    lab_b = [u for u in usages if u.account == "/gpfs/lab-b"]
    assert len(lab_b) == 30
    assert {u.service for u in lab_b} == {"standard"}
    assert {u.quantity for u in lab_b} == {Fraction(536_870_912_000, 30 * TB)}
    assert sum((u.quantity for u in lab_b), Fraction(0)) == Fraction(1048576, 1953125)
    # 2 TiB = 2**41 bytes = 2**29 / 5**12 TB-months.
    lab_c = [u for u in usages if u.account == "/gpfs/lab-c"]
    assert {u.service for u in lab_c} == {"archive"}
    assert sum((u.quantity for u in lab_c), Fraction(0)) == Fraction(536870912, 244140625)
    assert summary.tiers == ("archive", "standard")
    assert summary.largest_quota == "/gpfs/lab-c"
    assert summary.largest_bytes == 2 * 1024**4


def test_a_path_column_wins_over_a_quota_column_that_may_be_the_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", "path,quota,bytes\n/gpfs/labs/a,50 TB,1 TB\n")

    usages, _ = read(path)

    assert {u.account for u in usages} == {"/gpfs/labs/a"}


def test_a_quota_column_alone_names_the_quota(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", "quota,bytes\nlab-a,1 TB\n")

    usages, _ = read(path)

    assert {u.account for u in usages} == {"lab-a"}


def test_zero_byte_quota_produces_no_records_but_is_counted(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", "quota,bytes_used\nlab-a,0\nlab-b,1 TB\n")

    usages, summary = read(path)

    assert {u.account for u in usages} == {"lab-b"}
    assert (summary.quotas, summary.quotas_billed) == (2, 1)


def test_records_sort_by_account_service_and_day(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", "quota,bytes_used\nzeta,1 TB\nalpha,2 TB\n")

    usages, _ = read(path, period="2025-02")

    keys = [(u.account, u.service, u.day) for u in usages]
    assert keys == sorted(keys)
    assert keys[0] == ("alpha", "standard", date(2025, 2, 1))
    assert keys[-1] == ("zeta", "standard", date(2025, 2, 28))


@pytest.mark.parametrize(
    ("period", "days", "daily"),
    [
        # 7 TB in a 28-day February: 7/28 = 1/4 TB-month a day.
        ("2025-02", 28, Fraction(1, 4)),
        # A leap February has 29 days: 7/29 a day.
        ("2024-02", 29, Fraction(7, 29)),
    ],
)
def test_february_prorates_exactly(tmp_path: Path, period: str, days: int, daily: Fraction) -> None:
    path = write(tmp_path, "q.csv", "quota,bytes_used\nlab-a,7000000000000\n")

    usages, summary = read(path, period=period)

    assert len(usages) == days == summary.days
    assert {u.quantity for u in usages} == {daily}
    assert summary.tb_months == 7


# --- JSON --------------------------------------------------------------------


def test_json_list_and_quotas_object_give_the_same_records(tmp_path: Path) -> None:
    items: list[dict[str, Any]] = [
        {"quota": "lab-a", "bytes_used": 3_000_000_000_000, "tier": None},
        {"Quota Name": "lab-b", "used": "1.5 TB", "tier": "archive"},
    ]
    as_list = write(tmp_path, "list.json", json.dumps(items))
    as_object = write(
        tmp_path, "object.json", json.dumps({"generated": "2025-04-01", "quotas": items})
    )

    list_usages, list_summary = read(as_list)
    object_usages, _ = read(as_object)

    assert list_usages == object_usages
    assert list_summary.rows == 2
    # 3 TB for 31 days is 3 TB-months; 1.5 TB is 3/2.
    assert sum((u.quantity for u in list_usages if u.account == "lab-a"), Fraction(0)) == 3
    assert {u.service for u in list_usages if u.account == "lab-a"} == {"standard"}
    lab_b = [u for u in list_usages if u.account == "lab-b"]
    assert {u.service for u in lab_b} == {"archive"}
    assert sum((u.quantity for u in lab_b), Fraction(0)) == Fraction(3, 2)


def test_json_daily_snapshots(tmp_path: Path) -> None:
    items = [
        {"name": "lab-a", "bytes": 2_000_000_000_000, "date": "2025-03-01"},
        {"name": "lab-a", "bytes": "4 TB", "date": "2025-03-16T08:00:00Z"},
    ]
    path = write(tmp_path, "q.json", json.dumps(items))

    usages, summary = read(path)

    days = by_day(usages, "lab-a")
    assert days[march(15)] == Fraction(2, 31)
    assert days[march(16)] == Fraction(4, 31)
    # 15 days at 2 TB and 16 at 4 TB: (30 + 64) / 31.
    assert summary.tb_months == Fraction(94, 31)
    assert summary.dated


# --- daily snapshots ---------------------------------------------------------


def test_daily_snapshots_carry_forward_and_start_and_stop_billing(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "snapshots.csv",
        "quota,bytes_used,date\n"
        "lab-a,2 TB,2025-02-20\n"  # before March: the size on March 1st
        "lab-a,1 TB,2025-02-10\n"  # older, superseded by the 20th
        "lab-a,4 TB,2025-03-10\n"
        "lab-a,0,2025-03-20\n"  # deleted: billing stops
        "lab-a,9 TB,2025-04-01\n"  # after March: ignored
        "lab-b,1 TB,2025-03-15\n",  # created mid-month
    )

    usages, summary = read(path)

    lab_a = by_day(usages, "lab-a")
    # Days 1-9 at 2 TB (day 5 has no snapshot and repeats the last one),
    # days 10-19 at 4 TB, nothing from the 20th.
    assert sorted(lab_a) == [march(d) for d in range(1, 20)]
    assert lab_a[march(1)] == lab_a[march(5)] == lab_a[march(9)] == Fraction(2, 31)
    assert lab_a[march(10)] == lab_a[march(19)] == Fraction(4, 31)
    assert sum(lab_a.values(), Fraction(0)) == Fraction(9 * 2 + 10 * 4, 31)
    # lab-b exists from the 15th: 17 days at 1 TB.
    lab_b = by_day(usages, "lab-b")
    assert sorted(lab_b) == [march(d) for d in range(15, 32)]
    assert sum(lab_b.values(), Fraction(0)) == Fraction(17, 31)
    assert summary == QuotaSummary(
        period="2025-03",
        days=31,
        rows=6,
        quotas=2,
        quotas_billed=2,
        dated=True,
        snapshots_before_period=2,
        snapshots_after_period=1,
        tb_months=Fraction(58 + 17, 31),
        largest_quota="lab-a",
        largest_bytes=4 * TB,
        tiers=("standard",),
    )
    assert summary.snapshots_outside_period == 3


def test_quota_with_only_later_snapshots_bills_nothing(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "q.csv",
        "quota,bytes_used,day\nlab-a,1 TB,2025-03-01\nlab-z,5 TB,2025-04-02\n",
    )

    usages, summary = read(path)

    assert {u.account for u in usages} == {"lab-a"}
    assert (summary.quotas, summary.quotas_billed, summary.snapshots_after_period) == (2, 1, 1)


def test_tier_change_mid_month_bills_each_day_under_the_tier_in_force(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "q.csv",
        "quota,bytes_used,date,tier\nlab-c,3 TB,2025-03-16,archive\nlab-c,3 TB,2025-03-01,\n",
    )

    usages, summary = read(path)

    standard = [u for u in usages if u.service == "standard"]
    archive = [u for u in usages if u.service == "archive"]
    assert [u.day for u in standard] == [march(d) for d in range(1, 16)]
    assert [u.day for u in archive] == [march(d) for d in range(16, 32)]
    assert sum((u.quantity for u in standard), Fraction(0)) == Fraction(15 * 3, 31)
    assert sum((u.quantity for u in archive), Fraction(0)) == Fraction(16 * 3, 31)
    # Sorted by service within the account: archive days come first.
    assert usages[0].service == "archive"
    assert usages[0].day == march(16)
    assert summary.tiers == ("archive", "standard")
    assert summary.tb_months == 3


# --- file encodings and layouts ----------------------------------------------


def test_gzip_bom_and_crlf_are_read(tmp_path: Path) -> None:
    text = "\ufeffquota,bytes_used\r\nlab-a,1 TB\r\n"
    path = write(tmp_path, "q.csv.gz", gzip.compress(text.encode()))

    usages, summary = read(path)

    assert {u.account for u in usages} == {"lab-a"}
    assert summary.tb_months == 1


def test_tab_delimited_report_with_timestamps(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "q.tsv",
        "quota\tbytes_used\tdate\nlab-a\t1 TB\t2025-03-31 23:59:59\n",
    )

    usages, _ = read(path)

    assert [(u.account, u.day, u.quantity) for u in usages] == [
        ("lab-a", march(31), Fraction(1, 31))
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7", 7),
        ("3 B", 3),
        ("1kb", 1000),
        ("2 MB", 2_000_000),
        ("12.5 TB", 12_500_000_000_000),
        ("1.25 PB", 1_250_000_000_000_000),
        ("1 KiB", 1024),
        ("0.5 kib", 512),
        ("1.5 MiB", 1_572_864),
        ("500 GiB", 536_870_912_000),
        ("2 TiB", 2_199_023_255_552),
        ("1 PiB", 1_125_899_906_842_624),
        ("  12.0  ", 12),
        # More digits than Decimal's default 28-digit context, still exact.
        ("123456789012345678901234567.891 KB", 123456789012345678901234567891),
    ],
)
def test_parse_size_is_exact(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("12x", "not a whole number of bytes"),
        ("1.5", "not a whole number of bytes"),
        ("0.3 KiB", "not a whole number of bytes"),  # 307.2 bytes
        ("1e12", "not a whole number of bytes"),
        ("1,000", "not a whole number of bytes"),
        ("-5", "negative size"),
        ("-1 TB", "negative size"),
        ("12 XB", "unknown unit 'XB' (use B, KB, MB, GB, TB, PB or KiB, MiB, GiB, TiB, PiB)"),
    ],
)
def test_parse_size_refuses(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:  # noqa: PT011 - the whole message is compared below
        parse_size(text)
    assert str(caught.value) == problem


# --- errors ------------------------------------------------------------------


def test_bad_size_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "quotas-2025-03.csv",
        "quota,bytes_used\nlab-a,1 TB\nlab-b,2 TB\nlab-c,12x\n",
    )

    assert error_for(path) == (
        "quotas-2025-03.csv, line 4, column bytes_used: not a whole number of bytes: '12x'"
    )


def test_fractional_bytes_and_negative_sizes_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", "quota,Bytes\nlab-a,0.3 KiB\nlab-b,-3 GB\n")

    assert error_for(path) == (
        "q.csv, line 2, column Bytes: not a whole number of bytes: '0.3 KiB'; "
        "q.csv, line 3, column Bytes: negative size: '-3 GB'"
    )


def test_json_float_is_refused_not_rounded(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "q.json",
        '[{"quota": "lab-a", "bytes": 1000}, {"quota": "lab-b", "bytes": 12.5}]',
    )

    assert error_for(path) == (
        "q.json, item 2, key bytes: a JSON number with a fraction or exponent; give bytes "
        'as an integer, or a string with a unit such as "12.5 TB": 12.5'
    )


def test_json_negative_integer_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "q.json", '{"quotas": [{"path": "/a", "used_bytes": -3}]}')

    assert error_for(path) == "q.json, item 1, key used_bytes: negative size: -3"


def test_two_snapshots_for_one_date_name_both_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "q.csv",
        "quota,bytes_used,date\n"
        "lab-a,1 TB,2025-03-04\n"
        "lab-b,1 TB,2025-03-04\n"
        "lab-a,2 TB,2025-03-04T18:00:00\n",
    )

    assert error_for(path) == (
        "q.csv, line 4, column date: a second snapshot of quota 'lab-a' for 2025-03-04 "
        "(the first is on line 2)"
    )


def test_quota_twice_in_undated_report_names_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", "quota,bytes_used\nlab-a,1 TB\nlab-b,1 TB\nlab-a,2 TB\n")

    assert error_for(path) == "q.csv, line 4, column quota: quota 'lab-a' is also on line 2"


def test_quota_twice_in_undated_json_names_both_items(tmp_path: Path) -> None:
    items = [{"name": "lab-a", "bytes": 1}, {"name": "lab-a", "bytes": 2}]
    path = write(tmp_path, "q.json", json.dumps(items))

    assert error_for(path) == "q.json, item 2, key name: quota 'lab-a' is also item 1"


def test_mixed_dated_and_undated_rows_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "q.csv",
        "quota,bytes_used,date\nlab-a,1 TB,2025-03-01\nlab-b,1 TB,\n",
    )

    assert error_for(path) == (
        f"q.csv, line 3, column date: no date, but line 2 has one; {MIXED_HINT}"
    )


def test_mixed_json_items_are_refused(tmp_path: Path) -> None:
    items = [{"quota": "a", "bytes": 1}, {"quota": "b", "bytes": 1, "Date": "2025-03-02"}]
    path = write(tmp_path, "q.json", json.dumps(items))

    assert error_for(path) == (
        f"q.json, item 2, key Date: a date, but item 1 has none; {MIXED_HINT}"
    )


def test_missing_quota_column_names_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", "project,bytes_used\nlab-a,1 TB\n")

    assert error_for(path) == (
        "q.csv, line 1: no quota name column (quota_name, name, path or quota); "
        "the header has project, bytes_used"
    )


def test_missing_size_column_names_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", "quota,limit\nlab-a,1 TB\n")

    assert error_for(path) == (
        "q.csv, line 1: no size column (bytes_used, used_bytes, bytes or used); "
        "the header has quota, limit"
    )


def test_unknown_date_format_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", "quota,bytes_used,date\nlab-a,1 TB,03/01/2025\n")

    assert error_for(path) == (
        "q.csv, line 2, column date: not a date (YYYY-MM-DD or an ISO timestamp): '03/01/2025'"
    )


def test_impossible_date_and_bad_time_part_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "q.csv",
        "quota,bytes_used,date\nlab-a,1 TB,2025-02-30\nlab-b,1 TB,2025-03-01Tlunch\n",
    )

    assert error_for(path) == (
        "q.csv, line 2, column date: not a date (YYYY-MM-DD or an ISO timestamp): "
        "'2025-02-30'; "
        "q.csv, line 3, column date: not a date (YYYY-MM-DD or an ISO timestamp): "
        "'2025-03-01Tlunch'"
    )


def test_at_most_five_errors_are_shown(tmp_path: Path) -> None:
    rows = "".join(f"lab-{i},oops\n" for i in range(8))
    path = write(tmp_path, "q.csv", "quota,bytes_used\n" + rows)

    message = error_for(path)

    assert message.count("not a whole number of bytes") == 5
    assert message.startswith("q.csv, line 2, column bytes_used:")
    assert message.endswith(
        "q.csv, line 6, column bytes_used: not a whole number of bytes: 'oops' (and 3 more)"
    )


def test_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "q.csv",
        'quota,bytes_used\n\n"lab\na",1 TB\nlab-b,\n',
    )

    assert error_for(path) == (
        "q.csv, line 5, column bytes_used: empty size; give 0 for an empty quota"
    )


def test_row_with_extra_fields_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", "path,bytes_used\n/gpfs/a,b,1 TB\n")

    assert error_for(path) == (
        "q.csv, line 2: 3 fields, but the header has 2 (quote values that contain the delimiter)"
    )


def test_blank_tier_without_default_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", "quota,bytes_used,tier\nlab-a,1 TB,\nlab-b,1 TB,fast\n")

    assert error_for(path, default_tier=" ") == (
        "q.csv, line 2, column tier: no storage tier, and no default tier is set"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "q.txt: the file is empty"),
        ("quota,bytes_used\n", "q.txt: no quota rows; nothing to convert"),
        ("[]", "q.txt: no quota rows; nothing to convert"),
        ('{"data": []}', 'q.txt: a JSON object needs a "quotas" list'),
        (
            '[{"quota": "a", "bytes": 1},',
            "q.txt, line 1, column 29: not valid JSON (Expecting value)",
        ),
        ('[{"quota": "a", "bytes": NaN}]', "q.txt: not valid JSON (NaN is not a number)"),
        ('["lab-a"]', "q.txt, item 1: not an object: 'lab-a'"),
        ('[{"bytes": 1}]', "q.txt, item 1: no quota name (key quota_name, name, path or quota)"),
        ('[{"quota": "a"}]', "q.txt, item 1: no size (key bytes_used, used_bytes, bytes or used)"),
        (
            '[{"quota": "a", "bytes": true}]',
            "q.txt, item 1, key bytes: not a whole number of bytes: true",
        ),
        ('[{"quota": "", "bytes": 1}]', "q.txt, item 1, key quota: empty quota name"),
        (
            '[{"quota": "a", "bytes": 1, "date": 20250301}]',
            "q.txt, item 1, key date: not a date: 20250301",
        ),
    ],
)
def test_unusable_reports_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = write(tmp_path, "q.txt", content)

    assert error_for(path) == message


def test_bad_period_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", "quota,bytes_used\nlab-a,1 TB\n")

    for period in ("2025-13", "0000-01", "2025-3", "March"):
        assert error_for(path, period=period) == (
            f"period {period!r} is not a month in the form YYYY-MM"
        )


def test_missing_file_is_refused(tmp_path: Path) -> None:
    assert error_for(tmp_path / "absent.csv") == "absent.csv: no such file"


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", b"quota,bytes_used\nlab-\xe9,1 TB\n")

    assert error_for(path) == "q.csv, line 2: not UTF-8 text"


def test_two_spellings_of_one_column_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", "quota,bytes_used,Bytes Used\nlab-a,1 TB,2 TB\n")

    assert error_for(path) == (
        "q.csv, line 1: columns 2 (bytes_used) and 3 (Bytes Used) are the same column"
    )


def test_non_ascii_digits_are_not_a_size(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", "quota,bytes_used\nlab-a,\u0661\u0662 TB\n")

    assert error_for(path) == (
        "q.csv, line 2, column bytes_used: not a whole number of bytes: '\u0661\u0662 TB'"
    )
