"""Journals: balanced GL, exact reconciliation with statements, safe files, records."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from billing import flags
from billing.audit import Actor
from billing.errors import BillingError
from billing.models import AuditEvent, Charge, Project, Source
from billing.review import charges_review
from billing.services import (
    finalize_blockers,
    period_close,
    period_finalize,
    period_reopen,
    source_set,
)
from journals.builders import ChargeRow, JournalConfig, JournalError, SourceInfo, allocate, build
from journals.models import JournalExport, JournalSettings, JournalTemplate
from journals.services import journal_export
from openchargeback.ledger import check_ledger
from openchargeback.money import round_money
from statements.models import Statement
from statements.services import statements_generate
from tests.factories import (
    FOCUS_ROW_OWNER,
    make_charge,
    make_charges,
    make_closed_month,
    make_import,
    make_source,
)

pytestmark = pytest.mark.django_db

CONFIG = JournalConfig(default_account="740000")


def _accounting(actor: Actor) -> None:
    for slug in ("aws", "azure", "gcp", "hpc"):
        source_set(slug=slug, actor=actor, credit_fund_org=f"RCI-{slug.upper()}")
    settings = JournalSettings.load()
    settings.default_account = "740000"
    settings.save()


@pytest.fixture
def month(defaults: None, actor: Actor) -> str:
    """The shared closed month of tests/conftest.py, built without the importer
    (these tests are about what is exported from it)."""
    return make_closed_month(actor=actor)


@pytest.fixture
def books(month: str, actor: Actor) -> str:
    """The shared closed month, with the accounting set up and statements generated."""
    _accounting(actor)
    statements_generate(period=month, actor=actor, sync=True)
    return month


def _rows(text: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.decode("utf-8"))))


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- Builders (pure) ----------------------------------------------------------------


def test_allocate_keeps_the_rounded_total() -> None:
    parts = [Decimal("10.005"), Decimal("-3.002"), Decimal("0.004")]
    total = round_money(sum(parts, Decimal(0)))
    assert total == Decimal("7.01")
    # floors 10.00, -3.01, 0.00 (6.99); the two missing cents go to the largest remainders
    assert allocate(total, parts) == [Decimal("10.01"), Decimal("-3.00"), Decimal("0.00")]
    assert allocate(Decimal("0.00"), [Decimal("0.004"), Decimal("-0.004")]) == [0, 0]
    with pytest.raises(ValueError, match=r"^1\.00 is not the rounded sum of "):
        allocate(Decimal("1.00"), [Decimal("0.004")])


def _row(n: int, **kw: Any) -> ChargeRow:
    values: dict[str, Any] = {
        "charge_id": n,
        "source": "aws",
        "service": "EC2",
        "pi_email": "ada@example.edu",
        "project_id": "p1",
        "fund_org": "NSF-BIO",
        "billed": Decimal("1.00"),
    }
    values.update(kw)
    return ChargeRow(**values)


SOURCES = {
    "aws": SourceInfo("aws", "RCI-CLOUD", "710000"),
    "hpc": SourceInfo("hpc", "RCI-HPC", ""),
}


def test_gl_debits_per_fund_org_source_account_and_one_credit_per_source_account() -> None:
    rows = [
        _row(1, billed=Decimal("10.004")),
        _row(2, billed=Decimal("5.003"), fund_org="NIH-MED"),
        _row(3, source="hpc", service="CPU", billed=Decimal("7.50"), account_code="720500"),
        _row(4, source="hpc", service="CPU", billed=Decimal("2.50"), project_account="720100"),
    ]
    journal = build("gl", period="2025-01", rows=rows, sources=SOURCES, config=CONFIG)
    debits = [(e.source, e.fund_org, e.account, e.amount) for e in journal.entries if e.is_debit]
    credits = [(e.source, e.fund_org, e.account, e.amount) for e in journal.entries if e.is_credit]
    # the aws line (ada, p1, aws, EC2) is 15.007 -> 15.01: 10.004 gets the cent
    assert debits == [
        ("aws", "NIH-MED", "710000", Decimal("5.00")),
        ("aws", "NSF-BIO", "710000", Decimal("10.01")),
        ("hpc", "NSF-BIO", "720100", Decimal("2.50")),
        ("hpc", "NSF-BIO", "720500", Decimal("7.50")),
    ]
    assert credits == [
        ("aws", "RCI-CLOUD", "710000", Decimal("15.01")),
        ("hpc", "RCI-HPC", "720100", Decimal("2.50")),
        ("hpc", "RCI-HPC", "720500", Decimal("7.50")),
    ]
    assert journal.debit_total == journal.credit_total == Decimal("25.01")
    first = next(e for e in journal.entries if e.is_debit)
    assert (first.fund, first.orgn) == ("NIH", "MED")
    assert first.description == "aws 2025-01 p1"


def test_net_negative_goes_on_the_other_side_and_zero_lines_are_omitted() -> None:
    rows = [
        _row(1, billed=Decimal("-4.00"), fund_org="NSF-BIO"),
        _row(2, billed=Decimal("3.00"), fund_org="NIH-MED", service="S3"),
        _row(3, billed=Decimal("2.00"), fund_org="DOE-LAB", service="RDS"),
        _row(4, billed=Decimal("-2.00"), fund_org="DOE-LAB", service="RDS"),
    ]
    journal = build("gl", period="2025-01", rows=rows, sources=SOURCES, config=CONFIG)
    sides = {(e.fund_org, e.is_debit, e.amount) for e in journal.entries}
    assert ("NSF-BIO", False, Decimal("4.00")) in sides  # a credit line: money back
    assert ("NIH-MED", True, Decimal("3.00")) in sides
    assert not any(e.fund_org == "DOE-LAB" for e in journal.entries)
    assert ("RCI-CLOUD", True, Decimal("1.00")) in sides  # net credit of -1 -> a debit
    assert all(e.amount > 0 for e in journal.entries)
    assert journal.debit_total == journal.credit_total


def test_every_problem_is_listed_at_once() -> None:
    rows = [
        _row(1, source="gcp", fund_org="bad fund"),
        _row(2, fund_org=""),
        _row(3, account_code="12x"),
    ]
    config = JournalConfig(account_pattern=r"\d{6}")
    with pytest.raises(JournalError) as caught:
        build("gl", period="2025-01", rows=rows, sources=SOURCES, config=config)
    text = str(caught.value)
    assert "source gcp has no credit fund/org" in text
    assert "have no fund/org" in text
    assert "'bad fund'" in text
    assert "no account code" in text  # gcp has none and there is no default
    assert "'12x'" in text


def test_descriptions_use_the_template_and_the_limit() -> None:
    config = JournalConfig(
        default_account="1",
        description_template="{pi_email} {project_id} {period} {source}",
        description_max_length=20,
    )
    journal = build("summary", period="2025-01", rows=[_row(1)], sources=SOURCES, config=config)
    assert isinstance(journal.entries, list)  # a list for every format but detail
    assert journal.entries[0].description == "ada@example.edu p1 2"


@st.composite
def _periods(draw: Any) -> list[ChargeRow]:
    count = draw(st.integers(min_value=1, max_value=40))
    rows = []
    for n in range(count):
        subsidy_all = draw(st.booleans())
        rows.append(
            ChargeRow(
                charge_id=n + 1,
                source=draw(st.sampled_from(["aws", "hpc"])),
                service=draw(st.sampled_from(["A", "B"])),
                pi_email=draw(st.sampled_from(["a@x.edu", "b@x.edu"])),
                project_id=draw(st.sampled_from(["p1", "p2", ""])),
                fund_org=draw(st.sampled_from(["NSF-BIO", "NIH-MED", "DOE-LAB"])),
                billed=Decimal(0)
                if subsidy_all
                else draw(st.decimals(min_value=-300, max_value=3000, places=9, allow_nan=False)),
                account_code=draw(st.sampled_from(["", "", "730000"])),
            )
        )
    return rows


@hypothesis_settings(max_examples=200, deadline=None)
@given(rows=_periods())
def test_property_gl_balances_and_every_format_reconciles(rows: list[ChargeRow]) -> None:
    lines: dict[tuple[str, ...], Decimal] = defaultdict(Decimal)
    for r in rows:
        lines[(r.pi_email, r.project_id, r.source, r.service)] += r.billed
    statement_total = sum((round_money(v) for v in lines.values()), Decimal(0))
    made = {
        f: build(f, period="2025-01", rows=rows, sources=SOURCES, config=CONFIG)
        for f in ("gl", "detail", "summary")
    }
    gl = made["gl"]
    assert gl.debit_total - gl.credit_total == 0
    assert gl.charged_total == statement_total
    assert sum((e.signed for e in made["detail"].entries), Decimal(0)) == statement_total
    assert sum((e.signed for e in made["summary"].entries), Decimal(0)) == statement_total
    assert all(e.amount > 0 for e in gl.entries)


# --- Exports through the database -----------------------------------------------------


def test_export_gl_csv_records_and_matches_the_statements(books: str, actor: Actor) -> None:
    export = journal_export(period=books, format="gl", actor=actor)
    rows = _rows(export.file.read())
    statements = sum(s.billed_total for s in Statement.objects.filter(superseded_at=None))
    debit = sum(Decimal(r["debit"]) for r in rows if r["debit"])
    credit = sum(Decimal(r["credit"]) for r in rows if r["credit"])
    assert debit == credit == statements == export.debit_total == export.credit_total
    assert export.lines == len(rows)
    assert export.charge_count == 5
    assert len(export.sha256) == 64
    assert export.created_by == actor.name
    assert AuditEvent.objects.filter(action="journal.export").count() == 1
    assert check_ledger(period=books).problems == []


def test_detail_rows_add_up_to_the_statements_with_rounding_rows(books: str, actor: Actor) -> None:
    export = journal_export(period=books, format="detail", actor=actor)
    rows = _rows(export.file.read())
    total = sum(Decimal(r["amount"]) for r in rows)
    statements = sum(s.billed_total for s in Statement.objects.filter(superseded_at=None))
    assert total == statements
    assert {r["kind"] for r in rows} == {"charge", "rounding"}
    assert Decimal("10.005") in {Decimal(r["amount"]) for r in rows}  # full precision


def test_command_json_refusals_and_output(books: str, actor: Actor, tmp_path: Path) -> None:
    target = tmp_path / "gl.xlsx"
    data = json.loads(
        _run(
            "export_journal",
            "--period",
            books,
            "--format",
            "gl",
            "--xlsx",
            "-o",
            str(target),
            "--json",
        )
    )
    assert data["file"] == str(target)
    assert data["format"] == "gl"
    assert data["debit_total"] == data["credit_total"] == "94.09"
    assert data["lines"] == 2  # one debit (NSF-BIO-2024, aws, 740000), one credit
    sheet = load_workbook(target).active
    assert sheet is not None
    assert sheet.freeze_panes == "A2"
    assert sheet["A1"].font.b
    amounts = [c.value for c in sheet["G"][1:] if c.value not in (None, "")]
    assert all(isinstance(v, int | float) for v in amounts)
    assert {c.number_format for c in sheet["G"][1:] if c.value not in (None, "")} == {
        "#,##0.00;-#,##0.00"
    }
    with pytest.raises(CommandError, match="unknown journal format 'nope'"):
        _run("export_journal", "--period", books, "--format", "nope")
    with pytest.raises(CommandError, match=r"folder .* does not exist"):
        _run("export_journal", "--period", books, "-o", str(tmp_path / "no" / "x.csv"))
    # pending charges: refused unless asked for, and then recorded
    period_reopen(period=books, actor=actor, reason="late")
    make_charges(
        {"resource": "late", "billed": "1.00", "pi": None, "review_state": "pending"},
        flags=flags.to_mask(["missing_pi"]),
        **FOCUS_ROW_OWNER,
    )
    period_close(period=books, actor=actor, allow_pending=True)
    with pytest.raises(CommandError, match="1 charge pending review"):
        _run("export_journal", "--period", books)
    data = json.loads(_run("export_journal", "--period", books, "--include-pending", "--json"))
    assert data["include_pending"] is True


def test_formula_injection_is_neutralised_and_commas_do_not_break_columns(
    defaults: None, actor: Actor
) -> None:
    evil = '=HYPERLINK("http://x","y"), "quoted"'
    make_charges(
        {"pi": "ada@example.edu", "project": "p-1", "billed": "2.00", "fund_org": "NSF-BIO"}
    )
    Charge.objects.update(reference_1=evil, review_state="approved")
    period_close(period="2025-01", actor=actor)
    _accounting(actor)
    JournalSettings.objects.filter(pk=1).update(description_template="{source} {project_id}")
    Project.objects.filter(project_id="p-1").update(account_code="-1+2")
    export = journal_export(period="2025-01", format="detail", actor=actor)
    rows = _rows(export.file.read())
    assert rows[0]["reference_1"] == "'" + evil
    assert rows[0]["account"] == "'-1+2"
    assert Decimal(rows[0]["amount"]) == Decimal("2.00")  # amounts are never touched
    export = journal_export(period="2025-01", format="detail", actor=actor, xlsx=True)
    sheet = load_workbook(io.BytesIO(export.file.read())).active
    assert sheet is not None
    values = [c.value for c in sheet[2]]
    assert "'" + evil in values
    assert Decimal(str(values[-1])) == Decimal("2")


@pytest.mark.parametrize("slug", ["plain-gl", "banner", "workday", "peoplesoft"])
def test_institution_layouts_balance(books: str, actor: Actor, slug: str) -> None:
    export = journal_export(period=books, format=slug, actor=actor)
    rows = _rows(export.file.read())
    assert rows
    assert export.template is not None
    assert export.template.slug == slug
    if slug == "banner":
        debit = sum(Decimal(r["Amount"]) for r in rows if r["DR/CR"] == "D")
        credit = sum(Decimal(r["Amount"]) for r in rows if r["DR/CR"] == "C")
        assert {r["Fund"] for r in rows} >= {"NSF", "RCI"}
        assert all(len(r["Description"]) <= 35 for r in rows)
    elif slug == "peoplesoft":
        assert sum(Decimal(r["MONETARY_AMOUNT"]) for r in rows) == 0
        debit = sum(Decimal(r["MONETARY_AMOUNT"]) for r in rows if r["MONETARY_AMOUNT"][0] != "-")
        credit = debit
    else:
        debit_col, credit_col = (
            ("Debit Amount", "Credit Amount")
            if slug == "workday"
            else (
                "Debit",
                "Credit",
            )
        )
        debit = sum(Decimal(r[debit_col]) for r in rows if r[debit_col])
        credit = sum(Decimal(r[credit_col]) for r in rows if r[credit_col])
    assert debit == credit == Decimal("94.09")


def test_a_template_sees_no_settings_and_loads_nothing(books: str, actor: Actor) -> None:
    JournalTemplate.objects.create(
        slug="nosy",
        name="Nosy",
        columns="Secret | {{ settings.SECRET_KEY }}{{ request.META }}{{ user }}{{ perms }}\n"
        "Amount | {{ entry.amount }} | number",
    )
    rows = _rows(journal_export(period=books, format="nosy", actor=actor).file.read())
    assert {r["Secret"] for r in rows} == {""}
    for reach in (
        "{{ entry.__class__ }}",
        "{% load static %}{% static 'x' %}",
        "{% include 'a' %}",
    ):
        template = JournalTemplate(slug="nosy2", name="N", columns=f"X | {reach}")
        with pytest.raises(ValidationError):
            template.full_clean()


def test_a_broken_template_is_refused_on_save() -> None:
    template = JournalTemplate(slug="broken", name="B", columns="A | {% if %}")
    with pytest.raises(ValidationError):
        template.full_clean()
    with pytest.raises(ValidationError):
        JournalTemplate(slug="gl", name="G", columns="A | {{ entry.amount }}").full_clean()


def test_finalize_needs_an_export_of_the_current_data(books: str, actor: Actor) -> None:
    from billing.models import BillingPeriod

    period = BillingPeriod.objects.get(period=books)
    assert any("no journal export yet" in p for p in finalize_blockers(period))
    journal_export(period=books, format="gl", actor=actor)
    assert finalize_blockers(period) == []
    # the data changes: the old export no longer counts
    period_reopen(period=books, actor=actor, reason="fix")
    Charge.objects.filter(resource_id="vm-2").update(fund_org="NIH-MED")
    period_close(period=books, actor=actor)
    statements_generate(period=books, actor=actor, sync=True)
    assert any("changed since the last journal export" in p for p in finalize_blockers(period))
    journal_export(period=books, format="banner", actor=actor)
    period_finalize(period=books, actor=actor)
    export = JournalExport.objects.first()
    assert export is not None
    with pytest.raises(DatabaseError), transaction.atomic():
        JournalExport.objects.filter(pk=export.pk).update(created_by="someone else")
    with pytest.raises(DatabaseError), transaction.atomic():
        JournalExport.objects.filter(pk=export.pk).delete()


def test_check_ledger_reports_stale_statements(books: str, actor: Actor) -> None:
    assert json.loads(_run("check_ledger", "--period", books, "--json"))["ok"] is True
    period_reopen(period=books, actor=actor, reason="x")
    charges_review(charges=Charge.objects.filter(resource_id="db"), action="reset", actor=actor)
    charges_review(
        charges=Charge.objects.filter(resource_id="db"), action="reject", actor=actor, note="n"
    )
    period_close(period=books, actor=actor)
    with pytest.raises(CommandError, match=r"statement totals .* != journal charges"):
        _run("check_ledger", "--period", books)


def test_sources_set_from_the_shell(defaults: None) -> None:
    out = _run(
        "sources",
        "set",
        "AWS",
        "--credit-fund-org",
        "RCI-CLOUD",
        "--account-code",
        "710000",
        "--user",
        "ops",
    )
    assert "credit fund/org RCI-CLOUD, account 710000" in out
    event = AuditEvent.objects.get(action="source.change")
    assert event.actor == "ops"
    assert event.after == {
        "credit_fund_org": "RCI-CLOUD",
        "account_code": "710000",
    }
    with pytest.raises(CommandError, match="unknown source 'nope'"):
        _run("sources", "set", "nope", "--name", "x")
    with pytest.raises(BillingError, match="filename_pattern"):
        source_set(slug="aws", actor=Actor("t"), filename_pattern="(")


# --- Property through the database (SQLite and PostgreSQL) ----------------------------

_money = st.decimals(
    min_value=Decimal("-200"), max_value=Decimal("3000"), places=6, allow_nan=False
)


@hypothesis_settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    charges=st.lists(
        st.tuples(
            st.sampled_from(["aws", "hpc"]),
            st.sampled_from(["ada@example.edu", "bob@example.edu"]),
            st.sampled_from(["p-1", "p-2"]),
            st.sampled_from(["NSF-BIO", "NIH-MED"]),
            _money,
            st.booleans(),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_property_exports_reconcile_with_statements_in_the_database(
    defaults: None, actor: Actor, charges: list[tuple[Any, ...]]
) -> None:
    with transaction.atomic():
        # The charges as an import of one file per source leaves them, pending review.
        slugs = {source for source, *_ in charges}
        imports = {slug: make_import(source=make_source(slug)) for slug in slugs}
        for n, (source, pi, project, fund_org, billed, free) in enumerate(charges):
            make_charge(
                source=make_source(source),
                import_record=imports[source],
                resource=f"r-{n}",
                pi=pi,
                project=f"{project}-{pi[:3]}",
                fund_org=fund_org,
                billed=Decimal(0) if free else billed,
                list_cost=abs(billed) + 400 if free else billed,
                review_state="pending",
            )
        charges_review(charges=Charge.objects.all(), action="approve", actor=actor)
        period_close(period="2025-01", actor=actor)
        _accounting(actor)
        statements_generate(period="2025-01", actor=actor, sync=True)
        statement_total = sum(s.billed_total for s in Statement.objects.filter(superseded_at=None))
        gl = journal_export(period="2025-01", format="gl", actor=actor)
        detail = _rows(journal_export(period="2025-01", format="detail", actor=actor).file.read())
        assert gl.debit_total == gl.credit_total
        assert check_ledger(period="2025-01").charged_total == statement_total
        assert sum((Decimal(r["amount"]) for r in detail), Decimal(0)) == statement_total
        assert check_ledger(period="2025-01").problems == []
        transaction.set_rollback(True)


def test_editing_a_source_in_the_admin_is_audited_like_the_shell(defaults: None) -> None:
    from billing.roles import BILLING_ADMIN
    from tests.conftest import role_client

    client = role_client(BILLING_ADMIN)
    aws = Source.objects.get(slug="aws")
    form = {
        "name": aws.name,
        "filename_pattern": aws.filename_pattern,
        "credit_fund_org": "RCI-CLOUD",
        "account_code": "740100",
        "enabled": "on",
        "provider_names": aws.provider_names,
        "cost_basis": "billed",
        "commitment_handling": "central",
    }
    response = client.post(f"/admin/billing/source/{aws.pk}/change/", form)
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="source.change")
    assert event.after == {"credit_fund_org": "RCI-CLOUD", "account_code": "740100"}
    assert event.channel == "admin"
    page = client.post("/admin/billing/source/add/", {**form, "slug": "AWS"})
    assert "already exists" in page.content.decode()
    client.post(
        "/admin/billing/source/add/",
        {**form, "slug": "IBM", "name": "IBM Cloud", "provider_names": ""},
    )
    assert Source.objects.filter(slug="ibm").exists()
    assert AuditEvent.objects.filter(action="source.create", object_repr__icontains="ibm").exists()


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("=1+2", "'=1+2"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("@cmd", "'@cmd"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-1.5", "-1.5"),
        ("+3", "+3"),
        ("NSF-BIO", "NSF-BIO"),
    ],
)
def test_neutralise(text: str, shown: str) -> None:
    from openchargeback.spreadsheet import neutralise

    assert neutralise(text) == shown


def test_statement_line_items_csv_is_safe_too(defaults: None, actor: Actor) -> None:
    from statements import building

    rows = [{"resource": f"r-{n}"} for n in range(building.DETAIL_LIMIT + 1)]
    rows[0]["resource_name"] = "=HYPERLINK(1)"
    make_charges(*rows, billed="1.00", **{**FOCUS_ROW_OWNER, "project": "p-1"})
    Charge.objects.update(review_state="approved")
    period_close(period="2025-01", actor=actor)
    statement = statements_generate(period="2025-01", actor=actor, sync=True).created[0]
    assert statement.line_items
    items = _rows(statement.line_items.read())
    assert len(items) == building.DETAIL_LIMIT + 1
    assert items[0]["resource_name"] == "'=HYPERLINK(1)"
    assert sum(Decimal(r["billed_cost"]) for r in items) == statement.billed_total
