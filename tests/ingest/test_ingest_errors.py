"""Bad and tricky FOCUS input (SPEC §3 hard errors, locked periods; §9 exit codes).

Every hard error must raise IngestError with a one-line message naming the
file (and line/column where the spec asks) and write nothing at all: no
charge, import, period, PI, project or audit row, and no file kept under
MEDIA_ROOT. Awkward but valid input (BOMs, CRLF, quoted newlines, NULLs)
must import.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing.audit import Actor
from billing.models import PI, AuditEvent, BillingPeriod, Charge, Project, Source
from ingest.focus.services import ImportResult, IngestError, file_import
from ingest.models import Import
from tests.conftest import FOCUS_COLUMNS, focus_row, write_focus
from tests.ingest_helpers import (
    focus_lines,
    join_lines,
    manage,
    migrate,
    replace_field,
    rows_for,
    stored_files,
    table_counts,
)

BILLED = FOCUS_COLUMNS.index("BilledCost")
LIST = FOCUS_COLUMNS.index("ListCost")
BPS = FOCUS_COLUMNS.index("BillingPeriodStart")
CPS = FOCUS_COLUMNS.index("ChargePeriodStart")
RNAME = FOCUS_COLUMNS.index("ResourceName")
TAGS = FOCUS_COLUMNS.index("Tags")

Reject = Callable[..., str]
Accept = Callable[..., ImportResult]


# --- fixtures -----------------------------------------------------------------------


@pytest.fixture
def aws(defaults: None) -> Source:
    return Source.objects.get(slug="aws")


def _db_state() -> dict[str, int]:
    return {
        "charges": Charge.objects.count(),
        "imports": Import.objects.count(),
        "periods": BillingPeriod.objects.count(),
        "audit": AuditEvent.objects.count(),
        "pis": PI.objects.count(),
        "projects": Project.objects.count(),
    }


def _media_files(settings: Any) -> list[Path]:
    media = Path(settings.MEDIA_ROOT)
    return sorted(p for p in media.rglob("*") if p.is_file()) if media.exists() else []


@pytest.fixture
def reject(aws: Source, actor: Actor, settings: Any) -> Reject:
    """reject(path, **kwargs): import must fail cleanly; returns the message."""

    def run(path: Path, **kwargs: Any) -> str:
        before = _db_state()
        periods_before = dict(BillingPeriod.objects.values_list("period", "status"))
        with pytest.raises(IngestError) as excinfo:
            file_import(path=path, source=kwargs.pop("source", aws), actor=actor, **kwargs)
        message = str(excinfo.value)
        assert message, "empty error message"
        assert "\n" not in message, f"not one line: {message!r}"
        assert "\r" not in message, f"not one line: {message!r}"
        assert "Traceback" not in message
        assert path.name in message, f"file not named: {message!r}"
        assert _db_state() == before, "a rejected file wrote rows"
        assert dict(BillingPeriod.objects.values_list("period", "status")) == periods_before
        assert _media_files(settings) == [], "a rejected file left a stored copy"
        return message

    return run


@pytest.fixture
def accept(aws: Source, actor: Actor, settings: Any) -> Accept:
    """accept(path, **kwargs): import must succeed and keep one stored copy."""

    def run(path: Path, **kwargs: Any) -> ImportResult:
        result = file_import(path=path, source=kwargs.pop("source", aws), actor=actor, **kwargs)
        assert result.status == "imported", result.message
        assert result.import_id is not None
        assert Import.objects.filter(pk=result.import_id).exists()
        assert len(_media_files(settings)) == 1
        return result

    return run


def _write(tmp_path: Path, name: str, text: str, newline: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def _good_lines(count: int = 5) -> list[str]:
    return focus_lines(rows_for(count))


# --- empty / header-only / wrong columns ---------------------------------------------


def test_empty_file_is_rejected_and_writes_nothing(tmp_path: Path, reject: Reject) -> None:
    path = tmp_path / "aws_2025-01.csv"
    path.write_bytes(b"")
    message = reject(path)
    assert "empty" in message


def test_empty_gzip_file_is_rejected_and_writes_nothing(tmp_path: Path, reject: Reject) -> None:
    path = tmp_path / "aws_2025-01.csv.gz"
    path.write_bytes(gzip.compress(b""))
    message = reject(path)
    assert "empty" in message


@pytest.mark.parametrize(
    "tail", ["", "\n", "\r\n", "\n\n\n", "\r\n  \r\n"], ids=["no-eol", "lf", "crlf", "blanks", "ws"]
)
def test_header_only_file_is_rejected_and_writes_nothing(
    tmp_path: Path, reject: Reject, tail: str
) -> None:
    path = tmp_path / "aws_2025-01.csv"
    path.write_bytes((",".join(FOCUS_COLUMNS) + tail).encode())
    message = reject(path)
    assert "no data rows" in message


def test_missing_billed_cost_column_is_rejected_naming_the_column(
    tmp_path: Path, reject: Reject
) -> None:
    columns = [c for c in FOCUS_COLUMNS if c != "BilledCost"]
    rows = [{k: v for k, v in row.items() if k in columns} for row in rows_for(3)]
    path = write_focus(tmp_path / "aws_2025-01.csv", rows, columns)
    message = reject(path)
    assert "line 1" in message
    assert "missing required column" in message
    assert "BilledCost" in message


def test_missing_billing_period_start_column_is_rejected_naming_the_column(
    tmp_path: Path, reject: Reject
) -> None:
    columns = [c for c in FOCUS_COLUMNS if c != "BillingPeriodStart"]
    rows = [{k: v for k, v in row.items() if k in columns} for row in rows_for(3)]
    path = write_focus(tmp_path / "aws_2025-01.csv", rows, columns)
    message = reject(path)
    assert "missing required column BillingPeriodStart" in message


def test_duplicate_billed_cost_column_is_rejected(tmp_path: Path, reject: Reject) -> None:
    lines = _good_lines(2)
    lines = [f"{line},{line.split(',')[BILLED]}" for line in lines]
    lines[0] = lines[0].rsplit(",", 1)[0] + ", billedcost "
    path = _write(tmp_path, "aws_2025-01.csv", join_lines(lines))
    message = reject(path)
    assert "line 1" in message
    assert "are both BilledCost" in message


def test_csv_with_unrelated_columns_is_rejected_as_not_focus(
    tmp_path: Path, reject: Reject
) -> None:
    path = _write(
        tmp_path,
        "aws_2025-01.csv",
        "name,email,department,amount\nAda,ada@example.edu,BIO,10.00\n",
    )
    message = reject(path)
    assert "not a FOCUS file" in message
    assert "BillingPeriodStart" in message
    assert "BilledCost" in message


def test_semicolon_delimited_file_is_rejected_saying_semicolon(
    tmp_path: Path, reject: Reject
) -> None:
    lines = [line.replace(",", ";") for line in _good_lines(3)]
    path = _write(tmp_path, "aws_2025-01.csv", join_lines(lines))
    message = reject(path)
    assert "semicolon" in message
    assert "comma" in message


# --- bad values ----------------------------------------------------------------------


def test_non_numeric_cost_is_rejected_naming_line_and_column(
    tmp_path: Path, reject: Reject
) -> None:
    lines = _good_lines(5)
    lines[2] = replace_field(lines[2], BILLED, "abc")  # physical line 3
    path = _write(tmp_path, "aws_2025-01.csv", join_lines(lines))
    message = reject(path)
    assert re.search(r"\bline 3\b", message), message
    assert f"column {BILLED + 1} (BilledCost)" in message
    assert "'abc'" in message
    assert "nothing was imported" in message


def test_bad_cost_in_a_later_chunk_rolls_back_the_chunks_already_inserted(
    tmp_path: Path, reject: Reject, settings: Any
) -> None:
    settings.OPENCHARGEBACK_INGEST_CHUNK_ROWS = 2
    lines = _good_lines(9)
    lines[8] = replace_field(lines[8], BILLED, "12.50 USD")  # physical line 9, 5th chunk
    path = _write(tmp_path, "aws_2025-01.csv", join_lines(lines))
    message = reject(path)
    assert re.search(r"\bline 9\b", message), message
    assert "BilledCost" in message


def test_several_bad_rows_are_all_reported_up_to_a_limit(tmp_path: Path, reject: Reject) -> None:
    lines = _good_lines(10)
    for n in range(2, 10):  # physical lines 3..10
        lines[n] = replace_field(lines[n], BILLED, f"x{n}")
    path = _write(tmp_path, "aws_2025-01.csv", join_lines(lines))
    message = reject(path)
    for line in (3, 4, 5, 6, 7):
        assert re.search(rf"\bline {line}\b", message), message
    assert "(and 3 more)" in message


@pytest.mark.parametrize(
    "value", ["NaN", "nan", "sNaN", "Inf", "inf", "-Infinity", "+Infinity", "1e400"]
)
def test_non_finite_billed_cost_is_rejected(tmp_path: Path, reject: Reject, value: str) -> None:
    lines = _good_lines(4)
    lines[3] = replace_field(lines[3], BILLED, value)  # physical line 4
    path = _write(tmp_path, "aws_2025-01.csv", join_lines(lines))
    message = reject(path)
    assert re.search(r"\bline 4\b", message), message
    assert "BilledCost" in message
    assert repr(value) in message


@pytest.mark.parametrize("value", ["", "NULL", "$1.25", "1.25 USD", "--1"])
def test_empty_or_malformed_billed_cost_is_rejected(
    tmp_path: Path, reject: Reject, value: str
) -> None:
    lines = _good_lines(3)
    lines[1] = replace_field(lines[1], BILLED, value)  # line 2
    path = _write(tmp_path, "aws_2025-01.csv", join_lines(lines))
    message = reject(path)
    assert re.search(r"\bline 2\b", message), message
    assert f"column {BILLED + 1} (BilledCost): not a number: {value!r}" in message


@pytest.mark.parametrize("value", ["NaN", "-Infinity"])
def test_non_finite_list_cost_is_rejected_naming_list_cost(
    tmp_path: Path, reject: Reject, value: str
) -> None:
    lines = _good_lines(3)
    lines[2] = replace_field(lines[2], LIST, value)
    path = _write(tmp_path, "aws_2025-01.csv", join_lines(lines))
    message = reject(path)
    assert re.search(r"\bline 3\b", message), message
    assert f"column {LIST + 1} (ListCost)" in message


@pytest.mark.parametrize(
    ("column", "value"),
    [
        (BPS, "2025-02-30T00:00:00Z"),
        (BPS, "2025-02-30"),
        (BPS, "NULL"),
        (CPS, "2025-02-30T00:00:00Z"),
        (CPS, "2025-13-01"),
    ],
    ids=["bps-datetime", "bps-date", "bps-null", "cps-feb30", "cps-month13"],
)
def test_impossible_date_is_rejected_naming_line_and_column(
    tmp_path: Path, reject: Reject, column: int, value: str
) -> None:
    lines = _good_lines(4)
    lines[3] = replace_field(lines[3], column, value)
    path = _write(tmp_path, "aws_2025-01.csv", join_lines(lines))
    message = reject(path)
    assert re.search(r"\bline 4\b", message), message
    assert f"({FOCUS_COLUMNS[column]})" in message
    assert "not a date" in message


# --- bytes that are not UTF-8 text ---------------------------------------------------


def test_binary_garbage_with_nul_bytes_is_rejected(tmp_path: Path, reject: Reject) -> None:
    data = bytearray(random.Random(7).randbytes(20_000))
    data[0:4] = b"\x00\x01\x02\x03"  # make sure: NULs, and no gzip/Parquet magic
    path = tmp_path / "aws_2025-01.csv"
    path.write_bytes(bytes(data))
    message = reject(path)
    assert "binary" in message


def test_random_non_utf8_bytes_without_nul_are_rejected(tmp_path: Path, reject: Reject) -> None:
    rng = random.Random(11)
    data = bytes(rng.randrange(0x0B, 0x100) for _ in range(20_000))  # no NUL, no \n
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    path = tmp_path / "aws_2025-01.csv"
    path.write_bytes(data)
    message = reject(path)
    assert "not UTF-8" in message
    assert "line 1" in message


def test_corrupt_gzip_file_is_rejected(tmp_path: Path, reject: Reject) -> None:
    path = tmp_path / "aws_2025-01.csv.gz"
    path.write_bytes(b"\x1f\x8b" + random.Random(3).randbytes(5_000))
    message = reject(path)
    assert "cannot read" in message


def test_truncated_gzip_file_is_rejected(tmp_path: Path, reject: Reject) -> None:
    whole = gzip.compress(join_lines(_good_lines(3_000)).encode())
    path = tmp_path / "aws_2025-01.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    reject(path)


def test_corrupt_parquet_file_is_rejected(tmp_path: Path, reject: Reject) -> None:
    path = tmp_path / "aws_2025-01.parquet"
    path.write_bytes(b"PAR1" + b"not really parquet" * 50)
    message = reject(path)
    assert "Parquet" in message


def test_invalid_utf8_byte_on_line_4_is_rejected_naming_line_4(
    tmp_path: Path, reject: Reject
) -> None:
    lines = [line.encode() for line in _good_lines(6)]
    lines[3] = lines[3].replace(b"r-000002", b"r-\xff00002", 1)  # ResourceId, line 4
    path = tmp_path / "aws_2025-01.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    message = reject(path)
    assert re.search(r"\bline 4\b", message), message
    assert "not UTF-8" in message


def test_latin1_text_in_a_large_file_is_rejected_naming_its_line(
    tmp_path: Path, reject: Reject, settings: Any
) -> None:
    settings.OPENCHARGEBACK_INGEST_CHUNK_ROWS = 500
    lines = [line.encode() for line in _good_lines(3_000)]
    lines[2_500] = replace_field(lines[2_500].decode(), RNAME, "Caf@").encode()
    lines[2_500] = lines[2_500].replace(b"Caf@", b"Caf\xe9")  # Latin-1 e-acute
    path = tmp_path / "aws_2025-01.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    message = reject(path)
    assert re.search(r"\bline 2501\b", message), message


def test_encoding_error_names_the_offending_byte_and_offset(tmp_path: Path, reject: Reject) -> None:
    lines = [line.encode() for line in _good_lines(3)]
    lines[2] = replace_field(lines[2].decode(), RNAME, "Caf@").encode()
    lines[2] = lines[2].replace(b"Caf@", b"Caf\xe9")
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / "aws_2025-01.csv"
    path.write_bytes(data)
    offset = data.index(b"\xe9")
    message = reject(path)
    assert "line 3" in message
    assert f"byte 0xe9 at offset {offset}" in message


def test_invalid_utf8_in_an_ignored_column_is_rejected(tmp_path: Path, reject: Reject) -> None:
    columns = [*FOCUS_COLUMNS, "RegionName"]
    rows = [{**row, "RegionName": "Sao Paulo"} for row in rows_for(5)]
    lines = [line.encode() for line in focus_lines(rows, columns)]
    lines[3] = lines[3].replace(b"Sao Paulo", b"S\xe3o Paulo")  # Latin-1, line 4
    path = tmp_path / "aws_2025-01.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    message = reject(path)
    assert re.search(r"\bline 4\b", message), message


# --- size limits ---------------------------------------------------------------------


def test_file_over_the_size_limit_is_rejected_before_parsing(
    tmp_path: Path, reject: Reject, settings: Any
) -> None:
    path = write_focus(tmp_path / "aws_2025-01.csv", rows_for(50))
    settings.OPENCHARGEBACK_INGEST_MAX_FILE_BYTES = path.stat().st_size - 1
    message = reject(path)
    assert "OPENCHARGEBACK_INGEST_MAX_FILE_BYTES" in message
    assert f"{path.stat().st_size:,} bytes" in message


def test_file_at_the_size_limit_is_accepted(tmp_path: Path, accept: Accept, settings: Any) -> None:
    path = write_focus(tmp_path / "aws_2025-01.csv", rows_for(50))
    settings.OPENCHARGEBACK_INGEST_MAX_FILE_BYTES = path.stat().st_size
    assert accept(path).charges_created == 50


@pytest.mark.parametrize(
    "limit", [30_000, 300_000], ids=["over-limit-in-header", "over-limit-mid-stream"]
)
def test_decompression_bomb_is_rejected(
    tmp_path: Path, reject: Reject, settings: Any, limit: int
) -> None:
    settings.OPENCHARGEBACK_INGEST_CHUNK_ROWS = 100
    text = join_lines(focus_lines([focus_row(resource="bomb")] * 20_000)).encode()
    assert len(text) > 10 * limit
    path = tmp_path / "aws_2025-01.csv.gz"
    path.write_bytes(gzip.compress(text, compresslevel=9))
    assert path.stat().st_size < limit  # small on disk: only the uncompressed guard can stop it
    settings.OPENCHARGEBACK_INGEST_MAX_UNCOMPRESSED_BYTES = limit
    message = reject(path)
    assert "decompresses to more than" in message
    assert "OPENCHARGEBACK_INGEST_MAX_UNCOMPRESSED_BYTES" in message


def test_gzip_file_under_the_uncompressed_limit_is_accepted(
    tmp_path: Path, accept: Accept, settings: Any
) -> None:
    text = join_lines(_good_lines(200)).encode()
    path = tmp_path / "aws_2025-01.csv.gz"
    path.write_bytes(gzip.compress(text))
    settings.OPENCHARGEBACK_INGEST_MAX_UNCOMPRESSED_BYTES = len(text) + 1
    assert accept(path).charges_created == 200


# --- broken CSV structure -------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [(RNAME, "web,server"), (BILLED, "12,50")],
    ids=["comma-in-resource-name", "decimal-comma-in-billed-cost"],
)
def test_row_with_too_many_fields_is_rejected_naming_its_line(
    tmp_path: Path, reject: Reject, column: int, value: str
) -> None:
    lines = _good_lines(6)
    lines[3] = replace_field(lines[3], column, value)  # unquoted comma, line 4
    path = _write(tmp_path, "aws_2025-01.csv", join_lines(lines))
    message = reject(path)
    assert re.search(r"\bline 4\b", message), message


def test_unterminated_quote_at_end_of_file_is_rejected_and_writes_nothing(
    tmp_path: Path, reject: Reject
) -> None:
    text = join_lines(_good_lines(4))
    cut = text.rindex('""fund_org""')  # a download cut inside the last row's Tags
    path = _write(tmp_path, "aws_2025-01.csv", text[:cut])
    message = reject(path)
    assert "a quoted field is never closed" in message


def test_unterminated_quote_error_names_the_line_where_the_record_starts(
    tmp_path: Path, reject: Reject
) -> None:
    text = join_lines(_good_lines(4))
    cut = text.rindex('""fund_org""')  # the last record starts on line 5
    path = _write(tmp_path, "aws_2025-01.csv", text[:cut])
    message = reject(path)
    assert re.search(r"\bline 5\b", message), message


# --- awkward but valid input -----------------------------------------------------------


def test_utf8_bom_at_start_of_file_imports(tmp_path: Path, accept: Accept) -> None:
    path = _write(tmp_path, "aws_2025-01.csv", "\ufeff" + join_lines(_good_lines(3)))
    result = accept(path)
    assert result.charges_created == 3
    assert result.periods == ["2025-01"]
    assert result.flagged == 0


def test_second_bom_at_start_of_first_data_line_imports(tmp_path: Path, accept: Accept) -> None:
    lines = _good_lines(3)
    lines[1] = "\ufeff" + lines[1]
    path = _write(tmp_path, "aws_2025-01.csv", "\ufeff" + join_lines(lines))
    result = accept(path)
    assert result.charges_created == 3
    assert result.periods == ["2025-01"]
    first = Charge.objects.get(line_number=2)
    assert first.period.period == "2025-01"
    assert first.billed_cost == Decimal("1.25")


def test_bom_on_a_data_line_does_not_change_the_fingerprint(
    tmp_path: Path, aws: Source, actor: Actor
) -> None:
    """A file joined from two exports (BOM mid-file) duplicates the plain file's rows."""
    lines = _good_lines(3)
    plain = _write(tmp_path, "aws_a.csv", join_lines(lines))
    file_import(path=plain, source=aws, actor=actor)
    lines[1] = "\ufeff" + lines[1]
    joined = _write(tmp_path, "aws_b.csv", join_lines(lines))
    result = file_import(path=joined, source=aws, actor=actor)
    assert result.status == "already_imported"
    assert Charge.objects.count() == 3


def test_crlf_line_endings_import(tmp_path: Path, accept: Accept) -> None:
    path = _write(tmp_path, "aws_2025-01.csv", join_lines(_good_lines(4)), newline="\r\n")
    assert b"\r\n" in path.read_bytes()
    result = accept(path)
    assert result.charges_created == 4
    assert result.flagged == 0  # Tags (last column) parsed without a trailing \r
    charge = Charge.objects.order_by("line_number").first()
    assert charge is not None
    assert charge.pi is not None
    assert charge.pi.email == "ada@example.edu"
    assert charge.fund_org == "NSF-BIO-2024"
    assert charge.resource_id == "r-000000"
    assert charge.tags == {
        "pi_email": "ada@example.edu",
        "project_id": "proj-a",
        "fund_org": "NSF-BIO-2024",
    }


def test_quoted_field_with_newline_imports_and_keeps_the_newline(
    tmp_path: Path, accept: Accept
) -> None:
    rows = rows_for(3)
    rows[0]["ResourceName"] = "two\nlines"
    path = write_focus(tmp_path / "aws_2025-01.csv", rows)
    assert path.read_text().count("\n") == 5  # header + 3 records on 5 physical lines
    result = accept(path)
    assert result.charges_created == 3
    assert Charge.objects.filter(resource_name="two\nlines").count() == 1


def test_error_after_a_quoted_newline_names_the_physical_line(
    tmp_path: Path, reject: Reject
) -> None:
    rows = rows_for(4)
    rows[0]["ResourceName"] = "two\nlines"  # record 1 spans lines 2-3
    rows[2]["BilledCost"] = "abc"  # record 3 starts on physical line 5
    path = write_focus(tmp_path / "aws_2025-01.csv", rows)
    message = reject(path)
    assert re.search(r"\bline 5\b", message), message
    assert "BilledCost" in message


def test_line_number_after_a_quoted_newline_is_the_physical_line(
    tmp_path: Path, accept: Accept
) -> None:
    rows = rows_for(3)
    rows[0]["ResourceName"] = "two\nlines"  # lines 2-3; the next record starts on line 4
    path = write_focus(tmp_path / "aws_2025-01.csv", rows)
    accept(path)
    second = Charge.objects.get(resource_id="r-000001")
    assert second.line_number == 4


@pytest.mark.parametrize("null", ["NULL", "null", ""])
def test_null_list_cost_falls_back_to_billed_cost(
    tmp_path: Path, accept: Accept, null: str
) -> None:
    rows = [focus_row(billed="7.50", list_cost=null, resource="r-null")]
    rows.append(focus_row(billed="2.00", list_cost="3.00", resource="r-list"))
    path = write_focus(tmp_path / "aws_2025-01.csv", rows)
    accept(path)
    fallback = Charge.objects.get(resource_id="r-null")
    assert fallback.list_cost == Decimal("7.50") == fallback.billed_cost
    assert fallback.discount == 0
    explicit = Charge.objects.get(resource_id="r-list")
    assert explicit.list_cost == Decimal("3.00")
    assert explicit.billed_cost == Decimal("2.00")


def test_literal_null_tags_row_lands_flagged_for_review(tmp_path: Path, accept: Accept) -> None:
    rows = [
        focus_row(tag_text="NULL", resource="r-null"),
        focus_row(resource="r-ok"),
    ]
    path = write_focus(tmp_path / "aws_2025-01.csv", rows)
    result = accept(path)
    assert result.charges_created == 2
    assert result.flagged == 1
    charge = Charge.objects.get(resource_id="r-null")
    assert charge.pi is None
    assert charge.project is None
    assert {"missing_pi", "missing_project", "missing_fund_org"} <= set(charge.flag_reasons)
    assert "invalid_tags" not in charge.flag_reasons  # NULL means "no tags", not bad JSON
    assert charge.review_state == Charge.ReviewState.PENDING
    assert charge.tags in ({}, "{}")
    ok = Charge.objects.get(resource_id="r-ok")
    assert ok.flags == 0
    assert ok.review_state == Charge.ReviewState.APPROVED


def test_invalid_json_tags_row_lands_flagged_invalid_tags(tmp_path: Path, accept: Accept) -> None:
    path = write_focus(tmp_path / "aws_2025-01.csv", [focus_row(tag_text="{pi_email: ada")])
    result = accept(path)
    assert result.charges_created == 1
    charge = Charge.objects.get()
    assert {"invalid_tags", "missing_pi"} <= set(charge.flag_reasons)
    assert charge.review_state == Charge.ReviewState.PENDING


# --- locked periods ----------------------------------------------------------------------


def test_closed_period_is_refused_whole_with_how_to_reopen(tmp_path: Path, reject: Reject) -> None:
    BillingPeriod.objects.create(period="2025-01", status="closed")
    path = write_focus(tmp_path / "aws_2025-01.csv", rows_for(3))
    message = reject(path)
    assert "2025-01" in message
    assert "closed" in message
    assert "periods reopen" in message
    assert "nothing was imported" in message


def test_closed_expected_period_is_refused(tmp_path: Path, reject: Reject) -> None:
    BillingPeriod.objects.create(period="2025-01", status="closed")
    path = write_focus(tmp_path / "aws_2025-01.csv", rows_for(3))
    message = reject(path, expected_period="2025-01")
    assert "closed" in message
    assert "periods reopen" in message


def test_finalized_period_is_refused_as_permanent(tmp_path: Path, reject: Reject) -> None:
    BillingPeriod.objects.create(period="2025-01", status="finalized")
    path = write_focus(tmp_path / "aws_2025-01.csv", rows_for(3))
    message = reject(path)
    assert "2025-01" in message
    assert "finalized" in message
    assert "permanent" in message
    assert "reopen" not in message


@pytest.mark.parametrize("closed_first", [False, True], ids=["open-rows-first", "closed-first"])
@pytest.mark.parametrize("open_exists", [False, True], ids=["new-open", "existing-open"])
def test_file_with_open_and_closed_period_rows_writes_nothing(
    tmp_path: Path, reject: Reject, settings: Any, closed_first: bool, open_exists: bool
) -> None:
    settings.OPENCHARGEBACK_INGEST_CHUNK_ROWS = 3  # open rows are inserted before the refusal
    BillingPeriod.objects.create(period="2025-01", status="closed")
    if open_exists:
        BillingPeriod.objects.create(period="2025-02", status="open")
    open_rows = rows_for(7, resource_prefix="feb", period="2025-02")
    closed_rows = rows_for(2, resource_prefix="jan", period="2025-01")
    rows = closed_rows + open_rows if closed_first else open_rows + closed_rows
    path = write_focus(tmp_path / "aws_mixed.csv", rows)
    message = reject(path)
    assert "period 2025-01 is closed" in message
    if not open_exists:
        assert not BillingPeriod.objects.filter(period="2025-02").exists()


def test_refused_file_imports_once_the_period_is_reopened(
    tmp_path: Path, reject: Reject, accept: Accept
) -> None:
    period = BillingPeriod.objects.create(period="2025-01", status="closed")
    path = write_focus(tmp_path / "aws_2025-01.csv", rows_for(3))
    reject(path)
    period.status = BillingPeriod.Status.OPEN
    period.save()
    assert accept(path).charges_created == 3


# --- the command line (subprocess, own SQLite database) ------------------------------------


@pytest.fixture(scope="module")
def cli_instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrate(tmp_path_factory.mktemp("ingest_errors_cli"))


def _bad_files(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    lines = focus_lines(rows_for(3))
    bad_cost = list(lines)
    bad_cost[2] = replace_field(bad_cost[2], BILLED, "abc")
    files = {
        "empty": b"",
        "header-only": (lines[0] + "\n").encode(),
        "bad-cost": join_lines(bad_cost).encode(),
        "semicolon": join_lines([line.replace(",", ";") for line in lines]).encode(),
        "binary": b"\x00\xff\x10" * 1000,
        "not-focus": b"a,b,c\n1,2,3\n",
    }
    out = {}
    for name, data in files.items():
        path = directory / f"aws_{name}.csv"
        path.write_bytes(data)
        out[name] = path
    return out


def _assert_one_line_command_error(done: Any) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert "Traceback" not in done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("CommandError: "), done.stderr
    return lines[0]


@pytest.mark.parametrize(
    "bad", ["empty", "header-only", "bad-cost", "semicolon", "binary", "not-focus"]
)
def test_cli_bad_file_exits_1_with_one_line_on_stderr(
    cli_instance: Path, tmp_path: Path, bad: str
) -> None:
    path = _bad_files(tmp_path)[bad]
    before = table_counts(cli_instance)
    done = manage(cli_instance, "ingest", str(path), "--source", "aws", "--user", "tester")
    line = _assert_one_line_command_error(done)
    assert path.name in line
    assert done.stdout == ""
    assert table_counts(cli_instance) == before
    assert stored_files(cli_instance) == []


def test_cli_bad_cost_error_names_line_and_column(cli_instance: Path, tmp_path: Path) -> None:
    path = _bad_files(tmp_path)["bad-cost"]
    done = manage(cli_instance, "ingest", str(path), "--source", "aws")
    line = _assert_one_line_command_error(done)
    assert "line 3" in line
    assert "BilledCost" in line


def test_cli_json_on_error_prints_nothing_on_stdout(cli_instance: Path, tmp_path: Path) -> None:
    path = _bad_files(tmp_path)["bad-cost"]
    done = manage(cli_instance, "ingest", str(path), "--source", "aws", "--json")
    _assert_one_line_command_error(done)
    assert done.stdout == ""


def test_cli_missing_file_exits_1(cli_instance: Path, tmp_path: Path) -> None:
    done = manage(cli_instance, "ingest", str(tmp_path / "aws_nope.csv"), "--source", "aws")
    line = _assert_one_line_command_error(done)
    assert "aws_nope.csv" in line
    assert "no such file" in line


def test_cli_unknown_source_exits_1_naming_the_known_sources(
    cli_instance: Path, tmp_path: Path
) -> None:
    path = write_focus(tmp_path / "x_2025-01.csv", rows_for(2))
    before = table_counts(cli_instance)
    done = manage(cli_instance, "ingest", str(path), "--source", "nosuch")
    line = _assert_one_line_command_error(done)
    assert "nosuch" in line
    for slug in ("aws", "azure", "gcp", "hpc", "storage", "it_storage"):
        assert re.search(rf"\b{slug}\b", line), line
    assert table_counts(cli_instance) == before


def test_cli_undetectable_source_exits_1_asking_for_source(
    cli_instance: Path, tmp_path: Path
) -> None:
    path = write_focus(tmp_path / "bill_2025-01.csv", rows_for(2))
    done = manage(cli_instance, "ingest", str(path))
    line = _assert_one_line_command_error(done)
    assert "--source" in line


@pytest.mark.parametrize("period", ["2025-13", "2025-1", "January"])
def test_cli_bad_period_exits_1(cli_instance: Path, tmp_path: Path, period: str) -> None:
    path = write_focus(tmp_path / "aws_2025-01.csv", rows_for(2))
    before = table_counts(cli_instance)
    done = manage(cli_instance, "ingest", str(path), "--source", "aws", "--period", period)
    line = _assert_one_line_command_error(done)
    assert period in line
    assert "YYYY-MM" in line
    assert table_counts(cli_instance) == before


def test_cli_closed_period_exits_1_saying_how_to_reopen(cli_instance: Path, tmp_path: Path) -> None:
    path = write_focus(tmp_path / "aws_1999-01.csv", rows_for(2, period="1999-01"))
    closed = manage(
        cli_instance,
        "shell",
        "-c",
        "from billing.models import BillingPeriod; "
        "BillingPeriod.objects.create(period='1999-01', status='closed')",
    )
    assert closed.returncode == 0, closed.stderr
    before = table_counts(cli_instance)
    done = manage(cli_instance, "ingest", str(path), "--source", "aws", "--json")
    line = _assert_one_line_command_error(done)
    assert "closed" in line
    assert "periods reopen 1999-01" in line
    assert done.stdout == ""
    assert table_counts(cli_instance) == before


def test_cli_without_arguments_exits_2_with_usage(cli_instance: Path) -> None:
    done = manage(cli_instance, "ingest")
    assert done.returncode == 2
    assert "usage:" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_good_file_after_errors_still_imports(cli_instance: Path, tmp_path: Path) -> None:
    """Sanity check that the CLI set-up used above can import at all."""
    path = write_focus(tmp_path / "aws_2031-05.csv", rows_for(4, period="2031-05"))
    before = table_counts(cli_instance)["billing_charge"]
    done = manage(cli_instance, "ingest", str(path), "--source", "aws", "--json")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["status"] == "imported"
    assert payload["charges_created"] == 4
    assert table_counts(cli_instance)["billing_charge"] == before + 4
