"""Every CSV the product writes is well-formed with hostile text in it: it parses
back into the same rows and columns, formulas are neutralised in the files people
open, and the files that are imported again read back exactly what was exported."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import given
from hypothesis import strategies as st

from billing.audit import Actor
from billing.exchange import exchange_rate_set
from billing.models import PI, ExchangeRate, Project, Source
from billing.review import charges_review
from billing.services import period_close
from ingest.focus.services import file_import
from ingest.models import AccountMapping
from ingest.usage.mapping_files import account_mapping_export, account_mapping_import
from ingest.usage.mappings import account_mapping_create
from journals.layouts import Table
from journals.writers import write_csv
from openchargeback.csvfile import CRLF, LF, CsvWriter, csv_text
from openchargeback.spreadsheet import neutralise, restore
from statements.services import line_items_csv, statements_generate
from tests.conftest import focus_row

CALC = "=cmd|' /C calc'!A0"
# Text that breaks naive CSV or runs in a spreadsheet; none has spaces around it
# (importers drop those, as they always have).
HOSTILE = [
    "a\rb",
    "a\nb",
    "a\r\nb",
    'quote"d',
    '"',
    "x,y",
    CALC,
    "=1+1",
    "+1+1",
    "-1+1",
    "@SUM(A1)",
    "\tx",
    "\rx",
    "'=already",
    "''+twice",
    "'plain",
    "NSF-BIO",
]
# What the services store (they drop spaces around names, as the importers do).
STORABLE = [v for v in HOSTILE if v.strip() == v]
FORMULA = re.compile(r"^[=+\-@\t\r]")
QUOTED = re.compile(r'"(?:[^"]|"")*"')


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def assert_well_formed(text: str, line_end: str, rows: int, columns: int) -> None:
    """Outside quoted fields the only line breaks are `rows` terminators `line_end`."""
    bare = QUOTED.sub("", text)
    assert bare.count(line_end) == rows
    assert bare.replace(line_end, "").count("\r") == 0
    assert bare.replace(line_end, "").count("\n") == 0
    parsed = parse(text)
    assert len(parsed) == rows
    assert {len(r) for r in parsed} == {columns}


def assert_neutralised(cells: list[str]) -> None:
    for cell in cells:
        if FORMULA.match(cell):
            assert re.fullmatch(r"[+-]?\d+(\.\d+)?", cell), cell  # only plain numbers


# --- the writer -----------------------------------------------------------------------


@pytest.mark.parametrize("line_end", [CRLF, LF])
@pytest.mark.parametrize("neutralise_", [True, False])
def test_every_hostile_value_is_one_quoted_cell(line_end: str, neutralise_: bool) -> None:
    rows = [["name", "amount"], *([value, Decimal("-12.34")] for value in HOSTILE)]
    text = csv_text(rows, neutralise=neutralise_, line_end=line_end)  # type: ignore[arg-type]
    assert_well_formed(text, line_end, rows=len(rows), columns=2)
    parsed = parse(text)
    assert [r[1] for r in parsed[1:]] == ["-12.34"] * len(HOSTILE)  # numbers untouched
    names = [r[0] for r in parsed[1:]]
    if neutralise_:
        assert_neutralised(names)
        assert [restore(n) for n in names] == HOSTILE
    else:
        assert names == HOSTILE
    assert '"a\rb"' in text  # the bare CR that csv.writer(lineterminator="\n") leaves bare


def test_numbers_are_never_formulas_and_nul_is_dropped() -> None:
    text = csv_text(
        [[Decimal("-12.34"), Decimal("1E-7"), -5, "-5", "-1.5", "a\0b", None, True]],
        neutralise=True,
    )
    assert text == "-12.34,0.0000001,-5,-5,-1.5,ab,,True\r\n"


def test_the_writer_refuses_other_line_ends() -> None:
    with pytest.raises(ValueError, match="CRLF or LF"):
        CsvWriter(io.StringIO(), neutralise=True, line_end="\r")  # type: ignore[arg-type]


@given(st.text())
def test_restore_undoes_neutralise_for_any_text(text: str) -> None:
    assert restore(neutralise(text)) == text
    assert not FORMULA.match(neutralise(text)) or re.fullmatch(r"[+-]?\d+(\.\d+)?", text)


# --- journal CSV ----------------------------------------------------------------------


def test_journal_csv_keeps_amounts_and_neutralises_text() -> None:
    rows = [[value, Decimal("-12.34"), Decimal("0.0000001")] for value in HOSTILE]
    out = io.BytesIO()
    count = write_csv(
        Table(headers=["=description", "debit", "credit"], number_columns={1, 2}, rows=iter(rows)),
        out,
    )
    text = out.getvalue().decode("utf-8")
    assert count == len(HOSTILE)
    assert_well_formed(text, CRLF, rows=len(HOSTILE) + 1, columns=3)
    parsed = parse(text)
    assert parsed[0] == ["'=description", "debit", "credit"]
    assert all(r[1:] == ["-12.34", "0.0000001"] for r in parsed[1:])
    assert_neutralised([r[0] for r in parsed])
    assert [restore(r[0]) for r in parsed[1:]] == HOSTILE


# --- statement line items ------------------------------------------------------------


@pytest.mark.django_db
def test_line_items_csv_with_hostile_resource_names(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    from billing.models import Charge

    rows = [focus_row(resource=f"r-{n}", billed="-1.25") for n in range(len(HOSTILE))]
    rows.append(focus_row(resource="r-pos", billed="10.00"))
    file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)
    for n, value in enumerate(HOSTILE):
        Charge.objects.filter(resource_id=f"r-{n}").update(resource_name=value)
    charges_review(charges=Charge.objects.all(), action="approve", actor=actor)
    period_close(period="2025-01", actor=actor)
    [statement] = statements_generate(period="2025-01", actor=actor, sync=True).created
    text = line_items_csv(statement).decode("utf-8")
    parsed = parse(text)
    columns = len(parsed[0])
    assert_well_formed(text, CRLF, rows=len(HOSTILE) + 2, columns=columns)
    items = [dict(zip(parsed[0], r, strict=True)) for r in parsed[1:]]
    for item in items:
        assert_neutralised(list(item.values()))
    names = {item["resource_id"]: restore(item["resource_name"]) for item in items}
    assert [names[f"r-{n}"] for n in range(len(HOSTILE))] == HOSTILE
    assert sorted(Decimal(i["billed_cost"]) for i in items)[0] == Decimal("-1.25")


# --- account mappings: for people, and imported again -------------------------------


@pytest.mark.django_db
def test_account_mapping_export_imports_back_exactly(tmp_path: Path) -> None:
    actor = Actor(name="t", channel="cli")
    pi = PI.objects.create(email="ada@example.edu")
    project = Project.objects.create(project_id="p-1", pi=pi, default_fund_org="DEFAULT-1")
    for n, value in enumerate(STORABLE):
        account_mapping_create(
            actor=actor, kind="slurm", name=value, project=project, fund_org=f"-F{n}"
        )
    account_mapping_create(
        actor=actor,
        kind="sub_account",
        name=CALC,
        project=project,
        source=Source.objects.get(slug="aws"),
        effective_from=date(2025, 1, 1),
    )
    before = sorted(AccountMapping.objects.values_list("kind", "name", "fund_org"))
    text = account_mapping_export()
    parsed = parse(text)
    assert_well_formed(text, CRLF, rows=len(STORABLE) + 2, columns=8)
    assert_neutralised([cell for row in parsed for cell in row])
    path = tmp_path / "mappings.csv"
    path.write_bytes(text.encode("utf-8"))
    result = account_mapping_import(path=path, actor=actor)
    assert (result.created, result.updated, result.unchanged) == (0, 0, len(STORABLE) + 1)
    # and into an empty installation: the same mappings, byte for byte
    AccountMapping.objects.all().delete()
    result = account_mapping_import(path=path, actor=actor)
    assert result.created == len(STORABLE) + 1
    assert sorted(AccountMapping.objects.values_list("kind", "name", "fund_org")) == before
    out = tmp_path / "again.csv"
    call_command("account_mappings", "export", "--output", str(out), stdout=io.StringIO())
    assert out.read_bytes() == text.encode("utf-8")


# --- exchange rates: for people, and imported again ---------------------------------


@pytest.mark.django_db
def test_exchange_rate_export_imports_back_exactly(
    defaults: None, focus_file: Callable[..., Path], actor: Actor, tmp_path: Path
) -> None:
    row = focus_row(resource="vm-eu", billed="100.00", currency="EUR")
    file_import(path=focus_file([row]), source=Source.objects.get(slug="aws"), actor=actor)
    notes = {"EUR": "a\rb", "GBP": CALC, "JPY": 'quote"d\r\n@x'}
    for code, note in notes.items():
        exchange_rate_set(currency=code, period="2025-01", rate="1.5", note=note, actor=actor)
    out = tmp_path / "rates.csv"
    call_command("exchange_rates", "export", "--output", str(out), stdout=io.StringIO())
    text = out.read_bytes().decode("utf-8")
    assert_well_formed(text, CRLF, rows=len(notes) + 1, columns=6)
    parsed = parse(text)
    assert_neutralised([cell for row in parsed for cell in row])
    ExchangeRate.objects.update(note="")
    call_command("exchange_rates", "import", str(out), stdout=io.StringIO())
    assert dict(ExchangeRate.objects.values_list("currency", "note")) == notes


# --- converter output: read by the importer, not by people --------------------------


@pytest.mark.django_db
def test_converted_storage_usage_keeps_hostile_quota_names_exactly(tmp_path: Path) -> None:
    from billing.models import Charge
    from ingest.usage.rates import rate_create

    rate_create(
        actor=Actor(name="t", channel="cli"),
        resource="storage",
        service="standard",
        qos="",
        effective_from=date(2024, 1, 1),
        list_rate=Decimal("5"),
    )
    names = STORABLE
    quotas = tmp_path / "quotas.csv"
    report = csv_text([["quota", "bytes_used"], *([n, "1 TB"] for n in names)], neutralise=False)
    quotas.write_bytes(report.encode("utf-8"))
    focus = tmp_path / "focus.csv"
    call_command(
        "storage_usage",
        "--period",
        "2025-03",
        "--quotas",
        str(quotas),
        "--output",
        str(focus),
        "--ingest",
        stdout=io.StringIO(),
    )
    text = focus.read_bytes().decode("utf-8")
    parsed = parse(text)
    assert_well_formed(text, LF, rows=len(names) + 1, columns=len(parsed[0]))
    column = parsed[0].index("SubAccountId")
    assert sorted(r[column] for r in parsed[1:]) == sorted(names)  # no apostrophes
    assert sorted(Charge.objects.values_list("sub_account_id", flat=True)) == sorted(names)


@pytest.mark.django_db
def test_exchange_rate_import_names_the_line_a_row_starts_on(tmp_path: Path) -> None:
    path = tmp_path / "rates.csv"
    path.write_bytes(
        b'currency,period,rate,note\r\nEUR,2025-01,1.1,"two\r\nlines"\r\nEUX,2025-01,1,\r\n'
    )
    with pytest.raises(CommandError) as refused:
        call_command("exchange_rates", "import", str(path), stdout=io.StringIO())
    assert str(refused.value).startswith("rates.csv, line 4, column currency:")
