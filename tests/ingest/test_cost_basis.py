"""Cost basis per source: billed (BilledCost) or amortised (EffectiveCost),
commitment purchases and unused commitment sent to a central project or
excluded, and the spec's commitment discount examples under both bases."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.audit import Actor
from billing.basis import label as basis_label
from billing.errors import BillingError
from billing.models import PI, AuditEvent, BillingPeriod, Charge, Project, Source
from billing.review import charges_review
from billing.services import period_close, source_set
from ingest.focus import basis
from ingest.focus.errors import IngestError
from ingest.focus.services import file_import
from ingest.usage.ratecard import rate_card_sources
from journals.models import JournalSettings
from journals.services import journal_export
from openchargeback.ledger import check_ledger
from statements.building import DETAIL_LIMIT
from statements.models import Statement
from statements.selectors import missing_statements, plan
from statements.services import statements_generate
from tests.conftest import FOCUS_COLUMNS, focus_row, tags, write_focus

pytestmark = pytest.mark.django_db

# The spec's commitment discount examples (specification/data/commitment_discount_*),
# with Tags added so the rows have an owner.
SPEC_COLUMNS = [
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeFrequency",
    "PricingCategory",
    "ResourceId",
    "BilledCost",
    "EffectiveCost",
    "ConsumedQuantity",
    "ConsumedUnit",
    "CommitmentDiscountId",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountUnit",
    "ServiceName",
    "Tags",
]
COMMITMENT = "arn:aws:savingsplans::123456789012:savingsplan/sp-1"
PURCHASER = tags(pi_email="cloud@example.edu", project_id="cloud-team", fund_org="IT-0001")
ADA = tags(pi_email="ada@example.edu", project_id="proj-a", fund_org="NSF-BIO-2024")


def _month(period: str) -> tuple[str, str]:
    year, month = map(int, period.split("-"))
    following = f"{year + month // 12}-{month % 12 + 1:02d}"
    return f"{period}-01T00:00:00Z", f"{following}-01T00:00:00Z"


def spec_row(
    period: str,
    *,
    category: str = "Usage",
    frequency: str = "Usage-Based",
    billed: str,
    effective: str,
    status: str = "",
    commitment: str = COMMITMENT,
    resource: str = "i-0abc",
    hour: int = 0,
    tag_text: str = ADA,
    end: str | None = None,
) -> dict[str, str]:
    start, following = _month(period)
    charge_start = f"{period}-01T{hour:02d}:00:00Z"
    return {
        "BillingPeriodStart": start,
        "BillingPeriodEnd": following,
        "ChargePeriodStart": charge_start,
        "ChargePeriodEnd": end or f"{period}-01T{hour + 1:02d}:00:00Z",
        "ChargeCategory": category,
        "ChargeFrequency": frequency,
        "PricingCategory": "Committed" if commitment else "Standard",
        "ResourceId": resource,
        "BilledCost": billed,
        "EffectiveCost": effective,
        "ConsumedQuantity": "1.00" if status != "Unused" else "null",
        "ConsumedUnit": "Hour" if status != "Unused" else "null",
        "CommitmentDiscountId": commitment or "null",
        "CommitmentDiscountQuantity": effective if commitment else "null",
        "CommitmentDiscountStatus": status or "null",
        "CommitmentDiscountUnit": "USD" if commitment else "null",
        "ServiceName": "Amazon EC2",
        "Tags": tag_text,
    }


def january(tmp_path: Path) -> Path:
    """Purchase scenario 1 (one-time 1-year $8,760) and usage scenarios 1, 3 and 4."""
    rows = [
        spec_row(
            "2023-01",
            category="Purchase",
            frequency="One-Time",
            billed="8760.00",
            effective="0.00",
            resource=COMMITMENT,
            tag_text=PURCHASER,
            end="2024-01-01T00:00:00Z",
        ),
        spec_row("2023-01", billed="0.00", effective="1.00", status="Used", hour=0),
        spec_row("2023-01", billed="0.00", effective="0.75", status="Used", hour=1),
        spec_row(
            "2023-01",
            billed="0.00",
            effective="0.25",
            status="Unused",
            hour=1,
            resource=COMMITMENT,
            tag_text=PURCHASER,
        ),
        spec_row(
            "2023-01", billed="0.50", effective="0.50", commitment="", hour=2, resource="i-0def"
        ),
    ]
    return write_focus(tmp_path / "aws_2023-01.csv", rows, SPEC_COLUMNS)


def february(tmp_path: Path) -> Path:
    """The same commitment a month later: only usage (usage scenario 2: all unused)."""
    rows = [
        spec_row("2023-02", billed="0.00", effective="1.00", status="Used", hour=0),
        spec_row(
            "2023-02",
            billed="0.00",
            effective="1.00",
            status="Unused",
            hour=1,
            resource=COMMITMENT,
            tag_text=PURCHASER,
        ),
    ]
    return write_focus(tmp_path / "aws_2023-02.csv", rows, SPEC_COLUMNS)


@pytest.fixture
def central(defaults: None) -> Project:
    pi = PI.objects.create(email="cio@example.edu", name="Central IT")
    return Project.objects.create(project_id="it-commitments", pi=pi, default_fund_org="IT-9999")


@pytest.fixture
def aws() -> Source:
    return Source.objects.get(slug="aws")


def amortise(source: Source, actor: Actor, **extra: Any) -> Source:
    return source_set(slug=source.slug, actor=actor, cost_basis="amortised", **extra)


def by_project(period: str) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for charge in Charge.objects.filter(period__period=period).exclude(review_state="rejected"):
        code = charge.project.project_id if charge.project else ""
        totals[code] = totals.get(code, Decimal(0)) + charge.billed_cost
    return totals


# --- the pure rule --------------------------------------------------------------------


def test_commitment_kind_names_purchases_and_unused_commitment() -> None:
    assert basis.commitment_kind("Purchase", "sp-1", "") == basis.PURCHASE
    assert basis.commitment_kind("purchase", "sp-1", "") == basis.PURCHASE
    assert basis.commitment_kind("Purchase", "", "") == ""  # a marketplace purchase
    assert basis.commitment_kind("Usage", "sp-1", "Unused") == basis.UNUSED
    assert basis.commitment_kind("Usage", "sp-1", "Used") == ""


def test_amortised_bills_effective_cost_and_keeps_the_invoiced_amount() -> None:
    # Covered usage without a ListCost: list follows the effective cost.
    assert basis.amortised(
        category="Usage", list_nanos=0, billed_nanos=0, effective_nanos=10**9
    ) == (10**9, 10**9, 0)
    # A purchase amortised into later usage lists and bills nothing.
    assert basis.amortised(
        category="Purchase", list_nanos=8760 * 10**9, billed_nanos=8760 * 10**9, effective_nanos=0
    ) == (0, 0, 8760 * 10**9)
    # Ordinary usage: nothing changes, nothing invoiced apart.
    assert basis.amortised(
        category="Usage", list_nanos=3 * 10**9, billed_nanos=2 * 10**9, effective_nanos=2 * 10**9
    ) == (3 * 10**9, 2 * 10**9, None)
    assert basis_label("billed") == "billed cost"
    assert basis_label("amortised") == "amortised cost (EffectiveCost)"


# --- the spec's examples under both bases ------------------------------------------------


def test_billed_basis_bills_the_purchase_to_the_purchaser_in_january(
    defaults: None, aws: Source, actor: Actor, tmp_path: Path
) -> None:
    result = file_import(path=january(tmp_path), source=aws, actor=actor)
    assert result.cost_basis == "billed"
    assert by_project("2023-01") == {
        "cloud-team": Decimal("8760.00"),
        "proj-a": Decimal("0.50"),
    }
    purchase = Charge.objects.get(charge_category="Purchase")
    assert purchase.cost_basis == "billed"
    assert purchase.invoiced_cost is None
    assert purchase.commitment_discount_id == COMMITMENT
    assert purchase.charge_frequency == "One-Time"
    unused = Charge.objects.get(commitment_discount_status="Unused")
    assert unused.billed_cost == Decimal(0)


def test_amortised_basis_bills_usage_its_effective_cost_and_commitment_centrally(
    central: Project, aws: Source, actor: Actor, tmp_path: Path
) -> None:
    amortise(aws, actor, commitment_project_id=central.pk)
    result = file_import(path=january(tmp_path), source=aws, actor=actor)
    assert result.cost_basis == "amortised"
    assert result.commitment == {"central purchase": 1, "central unused": 1}
    assert by_project("2023-01") == {
        "it-commitments": Decimal("0.25"),  # the purchase bills 0, unused 0.25
        "proj-a": Decimal("2.25"),  # 1.00 + 0.75 covered, 0.50 on demand
    }
    purchase = Charge.objects.get(charge_category="Purchase")
    assert (purchase.billed_cost, purchase.list_cost) == (Decimal(0), Decimal(0))
    assert purchase.invoiced_cost == Decimal("8760.00")
    assert purchase.cost_basis == "amortised"
    assert purchase.pi is not None
    assert purchase.pi.email == "cio@example.edu"
    assert purchase.fund_org == "IT-9999"  # the project's default
    assert purchase.tags["project_id"] == "cloud-team"  # kept for reference
    assert purchase.review_state == "approved"
    covered = Charge.objects.get(effective_cost=Decimal("0.75"))
    assert (covered.billed_cost, covered.list_cost) == (Decimal("0.75"), Decimal("0.75"))
    assert covered.invoiced_cost == Decimal(0)
    on_demand = Charge.objects.get(resource_id="i-0def")
    assert on_demand.invoiced_cost is None

    file_import(path=february(tmp_path), source=aws, actor=actor)
    assert by_project("2023-02") == {"it-commitments": Decimal("1.00"), "proj-a": Decimal("1.00")}


def test_amortised_central_fund_org_overrides_the_project_default(
    central: Project, aws: Source, actor: Actor, tmp_path: Path
) -> None:
    amortise(aws, actor, commitment_project_id=central.pk, commitment_fund_org="IT-1234")
    file_import(path=january(tmp_path), source=aws, actor=actor)
    assert set(Charge.objects.filter(project=central).values_list("fund_org", flat=True)) == {
        "IT-1234"
    }


def test_amortised_exclude_rejects_commitment_charges_with_a_note_and_audit(
    defaults: None, aws: Source, actor: Actor, tmp_path: Path
) -> None:
    amortise(aws, actor, commitment_handling="exclude")
    result = file_import(path=january(tmp_path), source=aws, actor=actor)
    assert result.commitment == {"exclude purchase": 1, "exclude unused": 1}
    assert result.billed_total == Decimal("2.25")  # the excluded 0.25 is in no total
    rejected = Charge.objects.filter(review_state="rejected")
    assert rejected.count() == 2
    purchase = rejected.get(charge_category="Purchase")
    assert "commitment purchase" in purchase.review_note
    assert purchase.reviewed_by == actor.name
    assert purchase.project is not None
    assert purchase.project.project_id == "cloud-team"  # who bought it, for reference
    assert "unused commitment" in rejected.get(commitment_discount_status="Unused").review_note
    assert by_project("2023-01") == {"proj-a": Decimal("2.25")}
    events = AuditEvent.objects.filter(action="charge.exclude_commitment")
    assert sorted(int(e.object_id) for e in events) == sorted(r.pk for r in rejected)


def test_amortised_dry_run_reports_the_same_and_writes_nothing(
    central: Project, aws: Source, actor: Actor, tmp_path: Path
) -> None:
    amortise(aws, actor, commitment_project_id=central.pk)
    dry = file_import(path=january(tmp_path), source=aws, actor=actor, dry_run=True)
    assert Charge.objects.count() == 0
    real = file_import(path=january(tmp_path), source=aws, actor=actor)
    assert (dry.billed_total, dry.commitment, dry.cost_basis) == (
        real.billed_total,
        real.commitment,
        real.cost_basis,
    )
    assert real.billed_total == Decimal("2.50")


def test_reimporting_an_amortised_file_changes_nothing(
    central: Project, aws: Source, actor: Actor, tmp_path: Path
) -> None:
    amortise(aws, actor, commitment_project_id=central.pk)
    path = january(tmp_path)
    file_import(path=path, source=aws, actor=actor)
    again = file_import(path=path, source=aws, actor=actor, replace=True)
    assert again.status == "already_imported"
    assert by_project("2023-01")["it-commitments"] == Decimal("0.25")


# --- guards -------------------------------------------------------------------------


def test_amortised_central_without_a_project_is_refused(
    defaults: None, aws: Source, actor: Actor
) -> None:
    with pytest.raises(BillingError, match="commitment project"):
        amortise(aws, actor)
    aws.refresh_from_db()
    assert aws.cost_basis == "billed"
    with pytest.raises(CommandError, match="commitment project") as exc:
        call_command("sources", "set", "aws", "--cost-basis", "amortised")
    assert "\n" not in str(exc.value)


def test_import_refuses_an_amortised_source_missing_its_project(
    defaults: None, aws: Source, actor: Actor, tmp_path: Path
) -> None:
    # Set below the service layer (as a broken migration or fixture could).
    Source.objects.filter(pk=aws.pk).update(cost_basis="amortised")
    aws.refresh_from_db()
    with pytest.raises(IngestError) as exc:
        file_import(path=january(tmp_path), source=aws, actor=actor)
    message = str(exc.value)
    assert message.startswith("aws_2023-01.csv: source aws bills the amortised cost")
    assert "nothing was imported" in message
    assert "\n" not in message
    assert Charge.objects.count() == 0


def test_sources_set_changes_the_basis_audited(
    central: Project, aws: Source, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command(
        "sources",
        "set",
        "aws",
        "--cost-basis",
        "amortised",
        "--commitment-project",
        "it-commitments",
        "--commitment-fund-org",
        "IT-1234",
    )
    out = capsys.readouterr().out
    assert "bills the amortised cost" in out
    assert "it-commitments" in out
    aws.refresh_from_db()
    assert (aws.cost_basis, aws.commitment_project_id, aws.commitment_fund_org) == (
        "amortised",
        central.pk,
        "IT-1234",
    )
    event = AuditEvent.objects.filter(action="source.change").latest("id")
    assert event.after is not None
    assert event.after["cost_basis"] == "amortised"
    call_command("sources", "set", "aws", "--commitment-handling", "exclude", "--json")
    data = json.loads(capsys.readouterr().out)
    assert data["commitment_handling"] == "exclude"
    with pytest.raises(CommandError, match="no project 'nope'"):
        call_command("sources", "set", "aws", "--commitment-project", "nope")


def test_ingest_command_names_the_basis(
    central: Project, aws: Source, actor: Actor, tmp_path: Path, capsys: Any
) -> None:
    call_command("ingest", str(january(tmp_path)), "--source", "aws", "--dry-run")
    assert "billed cost" in capsys.readouterr().out
    amortise(aws, actor, commitment_project_id=central.pk)
    call_command("ingest", str(january(tmp_path)), "--source", "aws")
    out = capsys.readouterr().out
    assert "amortised cost (EffectiveCost)" in out
    assert "2 commitment charges to it-commitments" in out


def test_rejected_commitment_can_be_reset_like_any_charge(
    defaults: None, aws: Source, actor: Actor, tmp_path: Path
) -> None:
    amortise(aws, actor, commitment_handling="exclude")
    file_import(path=january(tmp_path), source=aws, actor=actor)
    changed = charges_review(
        charges=Charge.objects.filter(review_state="rejected"), action="reset", actor=actor
    )
    assert changed == 2


# --- statements: discount vs subsidy, credits, categories, empty statements -------------

CATEGORY_COLUMNS = [*FOCUS_COLUMNS, "ChargeCategory"]


def _row(category: str = "Usage", **kwargs: Any) -> dict[str, str]:
    return {**focus_row(**kwargs), "ChargeCategory": category}


def _close_and_generate(actor: Actor, period: str = "2025-01") -> Any:
    charges_review(
        charges=Charge.objects.filter(review_state="pending"), action="approve", actor=actor
    )
    period_close(period=period, actor=actor)
    return statements_generate(period=period, actor=actor, sync=True)


def _pdf_text(statement: Statement) -> str:
    if shutil.which("pdftotext") is None:  # pragma: no cover - poppler-utils is a test dependency
        pytest.skip("pdftotext is not installed")
    done = subprocess.run(
        ["pdftotext", "-layout", statement.pdf.path, "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    return " ".join(done.stdout.split())  # words, whatever the layout


def _import(rows: list[dict[str, str]], tmp_path: Path, actor: Actor, **kwargs: Any) -> None:
    slug = kwargs.pop("slug", "aws")
    path = write_focus(
        tmp_path / f"{slug}-{len(rows)}-{uuid.uuid4().hex}.csv", rows, CATEGORY_COLUMNS
    )
    file_import(path=path, source=Source.objects.get(slug=slug), actor=actor, **kwargs)


def test_credits_are_itemised_never_folded_into_other_resources(
    defaults: None, tmp_path: Path, actor: Actor
) -> None:
    usage = [_row(resource=f"vm-{n:03d}", billed="0.01", list_cost="0.02") for n in range(175)]
    credit = _row(
        "Credit",
        resource="promo-credit",
        service="AWS Promotional Credit",
        billed="-2.61",
        list_cost="0",
    )
    _import([*usage, credit], tmp_path, actor)
    result = _close_and_generate(actor)
    (statement,) = result.created
    data = plan(statement.period).statements[0].data
    assert [c.resource_id for c in data.credits] == ["promo-credit"]
    assert data.remainder is not None
    assert data.remainder.resources == 175 - DETAIL_LIMIT
    assert data.remainder.billed == Decimal("1.35")  # usage only: the credit is not in it
    assert data.credit_total == Decimal("-2.61")
    # list 3.50, provider discount 1.75, credits -2.61: due -0.86; never "subsidy 174.6%"
    assert (data.list_total, data.discount_total, data.billed_total) == (
        Decimal("3.50"),
        Decimal("1.75"),
        Decimal("-0.86"),
    )
    assert data.difference_percent("discount") == Decimal("50.0")
    assert statement.discount_total == Decimal("1.75")
    text = _pdf_text(statement)
    assert "CREDITS" in text
    assert "Total credits" in text
    assert "promo-credit" in text
    assert "-$2.61" in text
    assert "135 other resources" in text
    assert "PROVIDER DISCOUNT" in text
    assert "INSTITUTIONAL SUBSIDY" not in text
    assert "Cost basis: billed cost." in text


def _statement_of(*lines: tuple[str, str, str, str, str]) -> Any:
    """StatementData from (service, category, list, billed, difference kind) lines."""
    from statements.building import Institution, StatementData, build_lines

    return StatementData(
        period="2025-01",
        pi_email="ada@example.edu",
        pi_name="Ada",
        project_id="proj-a",
        project_title="",
        fund_orgs=("NSF-BIO-2024",),
        lines=build_lines(
            ("aws", service, 1, Decimal(lst), Decimal(billed), category, kind)
            for service, category, lst, billed, kind in lines
        ),
        resources=(),
        remainder=None,
        charge_ids_digest="",
        charge_count=len(lines),
        institution=Institution(name="Research Computing"),
    )


def test_a_share_of_list_is_shown_only_where_it_means_something() -> None:
    from statements.building import share_of_list

    assert share_of_list(Decimal("25.00"), Decimal("100.00")) == Decimal("25.0")
    assert share_of_list(Decimal("100.00"), Decimal("100.00")) == Decimal("100.0")
    assert share_of_list(Decimal("0.00"), Decimal("100.00")) == Decimal("0.0")
    assert share_of_list(Decimal("324.50"), Decimal("100.00")) is None  # above the list price
    assert share_of_list(Decimal("-5.00"), Decimal("100.00")) is None  # a markup, not a share
    assert share_of_list(Decimal("5.00"), Decimal("0.00")) is None
    assert share_of_list(Decimal("5.00"), Decimal("-10.00")) is None

    plain = _statement_of(("EC2", "", "80.00", "60.00", "subsidy"))
    assert plain.difference_percent("subsidy") == Decimal("25.0")
    assert plain.discount_percent == Decimal("25.0")
    # A refund written as usage (list 0, billed -224.50) makes list minus billed
    # 244.50 on a list price of 100: no "subsidy 244.5%".
    refund = _statement_of(
        ("EC2", "", "100.00", "80.00", "subsidy"), ("Refund", "", "0", "-224.50", "subsidy")
    )
    assert refund.difference("subsidy") == Decimal("244.50")
    assert refund.difference_percent("subsidy") is None
    assert refund.discount_percent is None
    # A credit alone: no list price, no percentage of it.
    credit_only = _statement_of(("Credit", "Credit", "0", "-50.00", "discount"))
    assert credit_only.difference_percent("discount") is None
    assert credit_only.discount_percent is None
    # A credit beside usage stays out of the share (it is listed as a credit).
    with_credit = _statement_of(
        ("EC2", "", "10.00", "5.00", "discount"), ("Credit", "Credit", "0", "-32.45", "discount")
    )
    assert with_credit.difference_percent("discount") == Decimal("50.0")


@pytest.mark.parametrize(
    ("lines", "shown"),
    [
        ((("EC2", "", "80.00", "60.00", "subsidy"),), "(25.0%)"),
        (
            (("EC2", "", "100.00", "80.00", "subsidy"), ("Refund", "", "0", "-224.50", "subsidy")),
            None,
        ),
        ((("Credit", "Credit", "0", "-50.00", "discount"),), None),
    ],
)
def test_the_pdf_prints_no_meaningless_percentage(
    lines: tuple[tuple[str, str, str, str, str], ...], shown: str | None
) -> None:
    from datetime import UTC, datetime

    from statements import pdf
    from tests.statements.test_statements import _pdf_strings

    data = _statement_of(*lines)
    text = _pdf_strings(
        pdf.render(data, number="2025-01-0001-v1", generated_at=datetime(2025, 2, 1, tzinfo=UTC))
    )
    assert re.findall(r"\(?-?[\d.,]+%\)?", text) == ([shown] if shown else [])
    assert "%" in text if shown else "%" not in text


def test_categories_are_labelled_and_kept_apart_from_usage(
    defaults: None, tmp_path: Path, actor: Actor
) -> None:
    rows = [
        _row(resource="vm", billed="100.00", list_cost="120.00"),
        _row("Tax", resource="tax", billed="8.00"),
        _row("Adjustment", resource="adj", billed="-1.00"),
        _row("Purchase", resource="support", service="AWS Support", billed="29.00"),
        _row("Credit", resource="credit", billed="-5.00", list_cost="-5.00"),
    ]
    _import(rows, tmp_path, actor)
    (statement,) = _close_and_generate(actor).created
    data = plan(statement.period).statements[0].data
    assert [(line.category, line.billed) for line in data.lines] == [
        ("", Decimal("100.00")),
        ("Purchase", Decimal("29.00")),
        ("Adjustment", Decimal("-1.00")),
        ("Tax", Decimal("8.00")),
        ("Credit", Decimal("-5.00")),
    ]
    assert data.list_total - data.discount_total + data.credit_total == data.billed_total
    text = _pdf_text(statement)
    for label in ("Tax", "Adjustment", "Purchase", "Credit"):
        assert label in text


def test_rate_card_sources_show_a_subsidy_and_cloud_sources_a_provider_discount(
    defaults: None, tmp_path: Path, actor: Actor
) -> None:
    _import([_row(resource="vm", billed="60.00", list_cost="80.00")], tmp_path, actor)
    hpc = [
        _row(
            resource="slurm/chem/standard/-/cpu",
            service="Slurm CPU-hours",
            billed="25.00",
            list_cost="100.00",
        )
    ]
    path = write_focus(tmp_path / "converted.csv", hpc, CATEGORY_COLUMNS)
    file_import(
        path=path,
        source=Source.objects.get(slug="hpc"),
        actor=actor,
        display_name=basis.conversion_name("slurm", "2025-01"),
    )
    assert rate_card_sources() == {"hpc"}
    (statement,) = _close_and_generate(actor).created
    data = plan(statement.period).statements[0].data
    assert data.difference("discount") == Decimal("20.00")
    assert data.difference("subsidy") == Decimal("75.00")
    assert data.differences == ("discount", "subsidy")
    text = _pdf_text(statement)
    assert "PROVIDER DISCOUNT" in text
    assert "INSTITUTIONAL SUBSIDY" in text
    assert "Disc./subsidy" in text


def test_a_statement_with_nothing_to_bill_is_not_generated_or_emailed(
    defaults: None, tmp_path: Path, actor: Actor, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        _row(resource="free-tier", project="proj-zero", billed="0", list_cost="0"),
        _row(resource="free-too", project="proj-zero", billed="0.001", list_cost="0.001"),
        _row(resource="gpu", project="proj-covered", billed="0", list_cost="400.00"),
        _row(resource="vm", project="proj-paid", billed="12.00"),
    ]
    _import(rows, tmp_path, actor)
    charges_review(
        charges=Charge.objects.filter(review_state="pending"), action="approve", actor=actor
    )
    period_close(period="2025-01", actor=actor)
    call_command("generate", "--period", "2025-01", "--sync", "--send")
    out = capsys.readouterr().out
    assert "generated 2 statements" in out
    assert "1 skipped as empty" in out
    projects = set(Statement.objects.values_list("project__project_id", flat=True))
    assert projects == {"proj-covered", "proj-paid"}  # fully subsidised is still a statement
    assert len(mail.outbox) == 1
    assert len(mail.outbox[0].attachments) == 2
    assert missing_statements(BillingPeriod.objects.get(period="2025-01")) == []


def test_amortised_statement_equals_the_journal_and_both_name_the_basis(
    central: Project, aws: Source, actor: Actor, tmp_path: Path
) -> None:
    amortise(aws, actor, commitment_project_id=central.pk)
    source_set(slug="aws", actor=actor, credit_fund_org="RCI-AWS")
    settings = JournalSettings.load()
    settings.default_account = "740000"
    settings.save()
    file_import(path=january(tmp_path), source=aws, actor=actor)
    result = _close_and_generate(actor, "2023-01")
    totals = {s.project.project_id: s.billed_total for s in result.created}
    assert totals == {"it-commitments": Decimal("0.25"), "proj-a": Decimal("2.25")}
    for statement in result.created:
        assert "Cost basis: amortised cost (EffectiveCost)." in _pdf_text(statement)
    export = journal_export(period="2023-01", format="gl", actor=actor)
    assert export.cost_basis == "amortised cost (EffectiveCost)"
    assert export.debit_total == sum(totals.values()) == Decimal("2.50")
    assert check_ledger(period="2023-01").problems == []
    detail = journal_export(period="2023-01", format="detail", actor=actor, xlsx=True)
    from openpyxl import load_workbook

    workbook = load_workbook(detail.file.path, read_only=True)
    assert workbook.properties.subject == "Cost basis: amortised cost (EffectiveCost)"


# --- review list, broken pipes ------------------------------------------------------


def test_review_list_orders_by_absolute_amount(
    defaults: None, tmp_path: Path, actor: Actor, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        _row(resource=f"r-{n}", billed=amount, pi="")
        for n, amount in enumerate(["0.01", "-2.61", "1.00", "0.50"])
    ]
    _import(rows, tmp_path, actor)
    call_command("review", "list", "--period", "2025-01", "--json")
    amounts = [row["billed_cost"] for row in json.loads(capsys.readouterr().out)]
    assert amounts == ["-2.61", "1.00", "0.50", "0.01"]


@pytest.mark.parametrize("args", [["help"], ["env_reference"]])
def test_a_closed_output_pipe_ends_the_command_quietly(args: list[str], tmp_path: Path) -> None:
    from tests.ingest_helpers import ROOT, cli_env

    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes (`... | head -0`)
    try:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=cli_env(tmp_path),
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write)
    assert done.returncode == 1
    assert done.stderr == ""
