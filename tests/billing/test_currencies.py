"""Charges in another BillingCurrency: exchange rates per currency and month,
conversion at import and when a rate is recorded or changed, approval refused
without a rate, the rate shown on statements and in the journal, locks."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib import admin
from django.contrib.admin import helpers
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.test import Client

from billing.audit import Actor
from billing.currencies import CurrencyError, convert, describe, parse_currency, parse_rate
from billing.errors import BillingError
from billing.exchange import exchange_rate_set, exchange_rates_import
from billing.models import AuditEvent, BillingPeriod, Charge, ExchangeRate, FlagRule, Source
from billing.review import charges_reapply_rules, charges_review
from billing.roles import BILLING_ADMIN, REVIEWER, VIEWER
from billing.services import finalize_blockers, period_close, period_finalize, period_reopen
from ingest.focus.services import file_import
from journals.services import journal_export
from statements.models import Statement
from statements.services import statements_generate
from tests.billing.test_summaries import assert_in_step
from tests.conftest import focus_row, role_client
from tests.statements.test_statements import _pdf_strings

HINT = "`openchargeback exchange_rates set EUR --period 2025-01 --rate R`"


# --- pure: codes, rates, conversion -------------------------------------------


def test_conversion_is_exact_and_rounds_half_even_to_the_nano_unit() -> None:
    assert convert(Decimal("100.00"), "1.0850") == Decimal("108.50")
    assert convert(Decimal("-100.123456789"), "1.0850") == Decimal("-108.633950616")
    # 0.000000001 x 0.5 = half a nano: to the even neighbour (0); 3 x 0.5 = 1.5 -> 2
    assert convert(Decimal("0.000000001"), "0.5") == Decimal(0)
    assert convert(Decimal("0.000000003"), "0.5") == Decimal("0.000000002")
    big = Decimal("9000000000.123456789")  # near the int64 nano limit, no float anywhere
    assert convert(big, "1") == big
    assert describe(Decimal("1234.5"), "EUR", "1.0850", "USD") == "EUR 1,234.50 at 1.0850 USD/EUR"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "above zero"),
        ("-1.2", "above zero"),
        ("abc", "not a number"),
        ("NaN", "not a finite number"),
        ("", "not a number"),
        ("1.0000000000001", "more than 12 decimal places"),
    ],
)
def test_bad_rates_are_refused(text: str, message: str) -> None:
    with pytest.raises(CurrencyError, match=message):
        parse_rate(text)


def test_rates_keep_the_digits_written() -> None:
    assert parse_rate(" 1.0850 ") == "1.0850"
    assert parse_rate("149.2") == "149.2"


@pytest.mark.parametrize(
    ("code", "message"),
    [("EU", "not a currency code"), ("E1R", "not a currency code"), ("EUX", "not an ISO 4217")],
)
def test_bad_currency_codes_are_refused(code: str, message: str) -> None:
    with pytest.raises(CurrencyError, match=message):
        parse_currency(code, home="USD")


def test_the_home_currency_needs_no_rate() -> None:
    with pytest.raises(CurrencyError, match="USD is the home currency"):
        parse_currency("usd", home="USD")
    assert parse_currency(" eur", home="USD") == "EUR"


# --- fixtures -----------------------------------------------------------------


@pytest.fixture
def eur_month(defaults: None, focus_file: Callable[..., Path], actor: Actor) -> Source:
    """2025-01 on aws: EUR 100.00 (list 120.00) and USD 50.00, both for ada's proj-a."""
    rows = [
        focus_row(resource="vm-eu", billed="100.00", list_cost="120.00", currency="EUR"),
        focus_row(resource="vm-us", billed="50.00"),
    ]
    source = Source.objects.get(slug="aws")
    file_import(path=focus_file(rows), source=source, actor=actor)
    return source


def _eur() -> Charge:
    return Charge.objects.get(resource_id="vm-eu")


# --- without a rate -------------------------------------------------------------


def test_a_foreign_charge_without_a_rate_stays_unconverted_and_pending(eur_month: Source) -> None:
    eur = _eur()
    assert eur.review_state == "pending"
    assert "currency_mismatch" in eur.flag_reasons
    assert (eur.billed_cost, eur.list_cost, eur.exchange_rate) == (
        Decimal("100.00"),
        Decimal("120.00"),
        "",
    )
    assert eur.original_billed_cost is None


def test_approving_it_without_a_rate_is_refused_with_the_way_out(
    eur_month: Source, actor: Actor
) -> None:
    with pytest.raises(BillingError) as refused:
        charges_review(charges=Charge.objects.filter(pk=_eur().pk), action="approve", actor=actor)
    message = str(refused.value)
    assert "\n" not in message
    assert "1 charge in another currency" in message
    assert "EUR 2025-01" in message
    assert HINT in message
    assert "(R = USD per EUR)" in message
    assert _eur().review_state == "pending"
    assert not AuditEvent.objects.filter(action="charge.approve").exists()


def test_review_approve_command_refuses_then_leaves_only_those_pending(
    eur_month: Source, focus_file: Callable[..., Path], actor: Actor, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(CommandError, match="nothing was approved"):
        call_command("review", "approve", "--id", str(_eur().pk), "--user", "rita")
    # a pending USD charge beside it (a large one): approved; the EUR one is left and counted
    rows = [focus_row(resource="big", billed="20000.00")]
    file_import(path=focus_file(rows, name="aws_more.csv"), source=eur_month, actor=actor)
    call_command("review", "approve", "--period", "2025-01", "--user", "rita")
    out = capsys.readouterr().out
    assert out.startswith("Approve: 1 charges changed. Left pending: 1 charge in another")
    assert HINT in out
    assert Charge.objects.get(resource_id="big").review_state == "approved"
    assert _eur().review_state == "pending"
    with pytest.raises(CommandError, match="nothing was approved"):  # only EUR is left
        call_command("review", "approve", "--period", "2025-01", "--json")


def test_reapplying_rules_keeps_it_pending_while_there_is_no_rate(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    """Even with the currency_mismatch rule off, a charge with no rate is never billable."""
    FlagRule.objects.filter(reason="currency_mismatch").update(enabled=False)
    rows = [focus_row(resource="vm-eu", billed="100.00", currency="EUR")]
    file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)
    eur = _eur()
    assert (eur.flags, eur.review_state) == (0, "pending")
    charges_reapply_rules(charges=Charge.objects.all(), actor=actor)
    assert _eur().review_state == "pending"
    assert_in_step()
    exchange_rate_set(currency="EUR", period="2025-01", rate="1.0850", actor=actor)
    charges_reapply_rules(charges=Charge.objects.all(), actor=actor)
    assert _eur().review_state == "approved"
    assert_in_step()


# --- recording a rate -----------------------------------------------------------


def test_a_rate_recorded_after_the_import_converts_and_then_allows_approval(
    eur_month: Source, actor: Actor
) -> None:
    change = exchange_rate_set(
        currency="eur", period="2025-01", rate="1.0850", note="ECB 2025-01-31", actor=actor
    )
    assert (change.created, change.changed, change.converted) == (True, True, 1)
    eur = _eur()
    assert (eur.billed_cost, eur.list_cost) == (Decimal("108.50"), Decimal("130.20"))
    assert (eur.original_billed_cost, eur.original_list_cost) == (Decimal("100"), Decimal("120"))
    assert (eur.invoiced_cost, eur.exchange_rate) == (Decimal("100"), "1.0850")
    # the provider's own numbers stay as in the file
    assert eur.effective_cost == Decimal("100")
    assert eur.contracted_cost == Decimal("100")
    assert_in_step()
    event = AuditEvent.objects.get(action="exchange_rate.create")
    assert event.after == {
        "currency": "EUR",
        "period": "2025-01",
        "rate": "1.0850",
        "note": "ECB 2025-01-31",
    }
    converted = AuditEvent.objects.get(action="charge.convert")
    assert converted.before is not None
    assert converted.after is not None
    assert converted.before["billed_cost"] == "100.00"
    assert converted.after["billed_cost"] == "108.50"
    assert charges_review(charges=Charge.objects.all(), action="approve", actor=actor) == 1
    assert "currency_mismatch" in _eur().flag_reasons  # informative, no longer blocking


def test_a_rate_recorded_before_the_import_converts_at_import(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    exchange_rate_set(currency="EUR", period="2025-01", rate="1.0850", actor=actor)
    rows = [focus_row(resource="vm-eu", billed="100.00", currency="EUR")]
    file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)
    eur = _eur()
    assert (eur.billed_cost, eur.original_billed_cost, eur.exchange_rate) == (
        Decimal("108.50"),
        Decimal("100"),
        "1.0850",
    )
    assert_in_step()


def test_a_changed_rate_reconverts_from_the_original_amounts(
    eur_month: Source, actor: Actor
) -> None:
    exchange_rate_set(currency="EUR", period="2025-01", rate="1.0850", actor=actor)
    charges_review(charges=Charge.objects.all(), action="approve", actor=actor)
    change = exchange_rate_set(currency="EUR", period="2025-01", rate="1.1", actor=actor)
    assert (change.created, change.converted) == (False, 1)
    eur = _eur()
    assert (eur.billed_cost, eur.list_cost) == (Decimal("110.00"), Decimal("132.00"))
    assert (eur.original_billed_cost, eur.review_state) == (Decimal("100"), "approved")
    assert_in_step()
    event = AuditEvent.objects.get(action="exchange_rate.change")
    assert (event.before, event.after) == ({"rate": "1.0850"}, {"rate": "1.1"})
    # the same value again (other digits), or once more: nothing changes
    again = exchange_rate_set(currency="EUR", period="2025-01", rate="1.100", actor=actor)
    assert (again.changed, again.converted, again.rate.rate) == (False, 0, "1.1")
    assert AuditEvent.objects.filter(action="charge.convert").count() == 2


def test_rates_are_refused_for_a_finalized_month_and_below_the_orm(
    eur_month: Source, actor: Actor
) -> None:
    exchange_rate_set(currency="EUR", period="2025-01", rate="1.0850", actor=actor)
    charges_review(charges=Charge.objects.all(), action="approve", actor=actor)
    period_close(period="2025-01", actor=actor)
    # closed: its EUR charges may be on statements already
    with pytest.raises(BillingError, match=r"is closed and has 1 charge in EUR.*reopen it first"):
        exchange_rate_set(currency="EUR", period="2025-01", rate="1.2", actor=actor)
    # recording the same rate again is a no-op, even while closed (re-runs are safe)
    same = exchange_rate_set(currency="EUR", period="2025-01", rate="1.085", actor=actor)
    assert not same.changed
    # a currency none of its charges use may still be recorded while closed
    assert exchange_rate_set(currency="GBP", period="2025-01", rate="1.25", actor=actor).created
    BillingPeriod.objects.filter(period="2025-01").update(status="finalized")
    with pytest.raises(BillingError, match="finalized: its exchange rates are permanent"):
        exchange_rate_set(currency="EUR", period="2025-01", rate="1.2", actor=actor)
    with pytest.raises(CommandError, match="finalized"):
        call_command("exchange_rates", "set", "CHF", "--period", "2025-01", "--rate", "1.1")
    rate = ExchangeRate.objects.get(currency="EUR")
    for sql, params in (
        ("UPDATE billing_exchangerate SET rate = '9' WHERE id = %s", [rate.pk]),
        ("DELETE FROM billing_exchangerate WHERE id = %s", [rate.pk]),
        (
            "INSERT INTO billing_exchangerate (period_id, currency, rate, note, created_at, "
            "created_by, updated_at, updated_by) VALUES (%s, 'JPY', '0.0067', '', "
            "CURRENT_TIMESTAMP, 'x', CURRENT_TIMESTAMP, 'x')",
            [rate.period_id],
        ),
    ):
        with (
            pytest.raises(DatabaseError, match="finalized"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, params)
    assert ExchangeRate.objects.get(pk=rate.pk).rate == "1.0850"
    assert ExchangeRate.objects.count() == 2


def test_reopened_month_may_change_its_rate(eur_month: Source, actor: Actor) -> None:
    exchange_rate_set(currency="EUR", period="2025-01", rate="1.0850", actor=actor)
    charges_review(charges=Charge.objects.all(), action="approve", actor=actor)
    period_close(period="2025-01", actor=actor)
    period_reopen(period="2025-01", actor=actor, reason="ECB corrected the rate")
    assert exchange_rate_set(currency="EUR", period="2025-01", rate="1.09", actor=actor).converted
    assert _eur().billed_cost == Decimal("109.00")


def test_finalize_is_blocked_by_approved_charges_without_a_rate(
    eur_month: Source, actor: Actor
) -> None:
    """Data approved before currencies were enforced cannot be finalized as is."""
    Charge.objects.update(review_state="approved")
    with pytest.raises(BillingError, match=r"cannot be closed: 1 approved charge in another"):
        period_close(period="2025-01", actor=actor)
    # A month closed before closing checked currencies:
    BillingPeriod.objects.filter(period="2025-01").update(status="closed")
    problems = finalize_blockers(BillingPeriod.objects.get(period="2025-01"))
    assert any(
        p.startswith("1 approved charge in another currency without an exchange rate (EUR 2025-01)")
        for p in problems
    )
    with pytest.raises(BillingError, match="approved charge in another currency"):
        period_finalize(period="2025-01", actor=actor)


# --- statements and journals ----------------------------------------------------


def test_statement_and_journal_bill_the_converted_amount_to_the_cent(
    eur_month: Source, actor: Actor
) -> None:
    from billing.services import source_set

    source_set(slug="aws", actor=actor, credit_fund_org="RCI-AWS", account_code="740000")
    exchange_rate_set(currency="EUR", period="2025-01", rate="1.0850", actor=actor)
    charges_review(charges=Charge.objects.all(), action="approve", actor=actor)
    period_close(period="2025-01", actor=actor)
    result = statements_generate(period="2025-01", actor=actor, sync=True)
    statement = Statement.objects.get(pk=result.created[0].pk)
    assert statement.billed_total == Decimal("158.50")  # 108.50 + 50.00, in USD
    assert statement.list_total == Decimal("180.20")
    shown = _pdf_strings(statement.pdf.read())
    assert "incl. EUR 100.00 at 1.0850 USD/EUR" in shown
    assert "$158.50" in shown

    detail = journal_export(period="2025-01", format="detail", actor=actor)
    rows = list(csv.DictReader(io.StringIO(detail.file.read().decode())))
    eur_row = next(r for r in rows if r["original_currency"])
    assert (eur_row["original_currency"], eur_row["exchange_rate"]) == ("EUR", "1.0850")
    assert Decimal(eur_row["original_amount"]) == Decimal("100")
    assert Decimal(eur_row["amount"]) == Decimal("108.50")
    usd_row = next(r for r in rows if not r["original_currency"])
    assert (usd_row["original_amount"], usd_row["exchange_rate"]) == ("", "")
    assert sum(Decimal(r["amount"]) for r in rows) == statement.billed_total
    gl = journal_export(period="2025-01", format="gl", actor=actor)
    assert gl.debit_total == gl.credit_total == statement.billed_total


def test_statements_without_conversions_hash_as_before(month: str) -> None:
    """Adding the conversions to the statement data re-issues no existing statement."""
    from statements.building import StatementData
    from statements.selectors import plan

    planned = plan(BillingPeriod.objects.get(period=month))
    data = planned.statements[0].data
    assert data.conversions == ()
    fields = {f: getattr(data, f) for f in StatementData.__dataclass_fields__}
    import dataclasses
    import hashlib

    # The hash of the release before conversions: labels (the cost basis, what a
    # difference is called, the sources' display names) and empty later fields
    # (credits, categories) left out.
    without = dataclasses.asdict(data)
    assert without["source_names"] == (("aws", "Amazon Web Services"),)
    del without["conversions"], without["bases"], without["source_names"]
    for key in ("credits", "more_credits"):
        if not without[key]:
            del without[key]
    for item in (*without["lines"], *without["resources"]):
        item.pop("difference", None)
        if not item["category"]:
            del item["category"]
    text = json.dumps(without, sort_keys=True, default=str, separators=(",", ":"))
    assert data.content_hash() == hashlib.sha256(text.encode()).hexdigest()
    assert StatementData(**fields).content_hash() == data.content_hash()


def test_pricing_currency_and_virtual_currencies_are_never_added_to_money(
    month: str, actor: Actor
) -> None:
    """FOCUS 1.2 PricingCurrency* (credits, tokens) are stored as text; totals are unchanged."""
    from statements.selectors import plan

    period = BillingPeriod.objects.get(period=month)
    before = [(p.key, p.data.billed_total, p.data.list_total) for p in plan(period).statements]
    charge = Charge.objects.filter(review_state="approved").order_by("pk").first()
    assert charge is not None
    Charge.objects.filter(pk=charge.pk).update(
        pricing_currency="credits",
        pricing_currency_list_unit_price="0.25",
        pricing_currency_contracted_unit_price="0.2",
        pricing_currency_effective_cost="500000",
    )
    after = [(p.key, p.data.billed_total, p.data.list_total) for p in plan(period).statements]
    assert after == before
    assert_in_step()
    from billing.services import source_set
    from journals.selectors import prepare

    source_set(slug="aws", actor=actor, credit_fund_org="RCI-AWS", account_code="740000")
    gl = prepare(period=month, format="summary").journal
    assert gl.charged_total == sum((b for _k, b, _l in before), Decimal(0))


# --- exchange_rates command: set, list, import, export ------------------------------


def test_set_list_and_export_commands(
    eur_month: Source, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    call_command(
        "exchange_rates", "set", "EUR", "--period", "2025-01", "--rate", "1.0850", "--user", "bo"
    )
    assert capsys.readouterr().out.strip() == (
        "EUR 2025-01: 1.0850 USD per EUR (recorded); 1 charge converted."
    )
    call_command("exchange_rates", "set", "EUR", "--period", "2025-01", "--rate", "1.085")
    assert "(unchanged); 0 charges converted" in capsys.readouterr().out
    call_command("exchange_rates", "list", "--json")
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["currency"], listed["period"], listed["rate"]) == ("EUR", "2025-01", "1.0850")
    assert listed["updated_by"] == "bo"
    out = tmp_path / "rates.csv"
    call_command("exchange_rates", "export", "--output", str(out))
    rows = list(csv.DictReader(out.open()))
    assert [(r["currency"], r["period"], r["rate"]) for r in rows] == [("EUR", "2025-01", "1.0850")]
    # the export imports back unchanged
    call_command("exchange_rates", "import", str(out), "--json")
    assert json.loads(capsys.readouterr().out)["unchanged"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["USD", "--rate", "1"], "USD is the home currency"),
        (["EUX", "--rate", "1"], "EUX is not an ISO 4217 currency code"),
        (["E", "--rate", "1"], "not a currency code"),
        (["EUR", "--rate", "0"], "must be above zero"),
        (["EUR", "--rate", "-1.1"], "must be above zero"),
        (["EUR", "--rate", "one"], "not a number"),
    ],
)
def test_set_refuses_bad_input_in_one_line(
    defaults: None, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    currency, *rest = args
    with pytest.raises(CommandError) as refused:
        call_command("exchange_rates", "set", currency, "--period", "2025-01", *rest)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)
    assert not ExchangeRate.objects.exists()
    assert not BillingPeriod.objects.exists()


def _rates_csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rates.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_import_records_every_rate_and_converts(
    eur_month: Source, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _rates_csv(
        tmp_path,
        "\ufeffCurrency,Period,Rate,Note\n"
        "EUR,2025-01,1.0850,ECB\n"
        "gbp,2025-01,1.25,\n"
        "EUR,2025-01,1.085,same value twice is fine\n"
        "\n"
        "JPY,2025-02,0.0067,\n",
    )
    call_command("exchange_rates", "import", str(path), "--dry-run")
    assert capsys.readouterr().out.startswith("Dry run, nothing written: would record 3 rates")
    assert not ExchangeRate.objects.exists()
    assert _eur().exchange_rate == ""
    assert not BillingPeriod.objects.filter(period="2025-02").exists()
    call_command("exchange_rates", "import", str(path))
    assert "3 new, 0 changed, 0 unchanged; 1 charge converted" in capsys.readouterr().out
    assert sorted(ExchangeRate.objects.values_list("currency", "rate")) == [
        ("EUR", "1.0850"),
        ("GBP", "1.25"),
        ("JPY", "0.0067"),
    ]
    assert _eur().billed_cost == Decimal("108.50")
    assert_in_step()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "EUR,2025-01,1.0850\nGBP,2025-01,1.25\nEUR,2025-01,1.09\n",
            "rates.csv, line 4, column rate: conflicting exchange rates for EUR 2025-01: "
            "1.09 here, 1.0850 on line 2; nothing was recorded",
        ),
        ("EUR,2025-01,1.0850\nXYZ,2025-01,1\n", "rates.csv, line 3, column currency: XYZ"),
        ("USD,2025-01,1\n", "rates.csv, line 2, column currency: USD is the home currency"),
        ("EUR,2025-1,1\n", "rates.csv, line 2, column period: period '2025-1'"),
        ("EUR,2025-01,\n", "rates.csv, line 2, column rate: rate '' is not a number"),
        ("EUR,2025-01,-2\n", "rates.csv, line 2, column rate: rate -2 must be above zero"),
    ],
)
def test_import_refuses_bad_files_whole(
    eur_month: Source, tmp_path: Path, body: str, message: str
) -> None:
    path = _rates_csv(tmp_path, "currency,period,rate\n" + body)
    with pytest.raises(CommandError) as refused:
        call_command("exchange_rates", "import", str(path))
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)
    assert not ExchangeRate.objects.exists()
    assert _eur().exchange_rate == ""


def test_import_refuses_a_locked_month_naming_the_line(
    eur_month: Source, tmp_path: Path, actor: Actor
) -> None:
    BillingPeriod.objects.filter(period="2025-01").update(status="closed")
    path = _rates_csv(tmp_path, "currency,period,rate\nGBP,2025-01,1.25\nEUR,2025-01,1.0850\n")
    with pytest.raises(CommandError, match=r"rates\.csv, line 3: period 2025-01 is closed"):
        call_command("exchange_rates", "import", str(path))
    assert not ExchangeRate.objects.exists()  # GBP on line 2 was rolled back too


def test_import_needs_the_columns(eur_month: Source, tmp_path: Path) -> None:
    path = _rates_csv(tmp_path, "currency,month,rate\nEUR,2025-01,1\n")
    with pytest.raises(CommandError, match=r"rates\.csv, line 1: missing column\(s\) period"):
        call_command("exchange_rates", "import", str(path))
    with pytest.raises(BillingError, match="empty"):
        exchange_rates_import(text="", file_name="x.csv", actor=Actor("t"))


def test_import_refuses_malformed_csv_in_one_line(eur_month: Source, tmp_path: Path) -> None:
    huge = "x" * 200_000  # over the csv module's field size limit
    path = _rates_csv(tmp_path, f"currency,period,rate,note\nEUR,2025-01,1.0850,{huge}\n")
    with pytest.raises(CommandError, match=r"^rates\.csv, line 2: not valid CSV \(field larger"):
        call_command("exchange_rates", "import", str(path))
    assert not ExchangeRate.objects.exists()


def test_hyphenated_alias() -> None:
    from openchargeback.cli import _alias

    assert _alias(["openchargeback", "exchange-rates", "list"])[1] == "exchange_rates"


# --- admin --------------------------------------------------------------------


@pytest.mark.parametrize("role", [VIEWER, REVIEWER, BILLING_ADMIN])
def test_admin_records_a_rate_only_for_billing_admins(eur_month: Source, role: str) -> None:
    client = role_client(role)
    data = {"month": "2025-01", "currency": "eur", "rate": "1.0850", "note": "ECB"}
    response = client.post("/admin/billing/exchangerate/add/", data)
    if role != BILLING_ADMIN:
        assert response.status_code == 403
        assert not ExchangeRate.objects.exists()
        return
    assert response.status_code == 302
    rate = ExchangeRate.objects.get()
    assert (rate.currency, rate.rate, rate.updated_by) == ("EUR", "1.0850", "billing_admin")
    assert _eur().billed_cost == Decimal("108.50")
    event = AuditEvent.objects.get(action="exchange_rate.create")
    assert (event.actor, event.channel) == ("billing_admin", "admin")
    # change the rate: re-converted; the currency and month stay as they are
    change = f"/admin/billing/exchangerate/{rate.pk}/change/"
    response = client.post(change, {**data, "currency": "GBP", "rate": "1.1"})
    assert response.status_code == 302
    rate.refresh_from_db()
    assert (rate.currency, rate.rate) == ("EUR", "1.1")
    assert _eur().billed_cost == Decimal("110.00")
    # bad input is a form error; deleting is never offered
    response = client.post("/admin/billing/exchangerate/add/", {**data, "currency": "USD"})
    assert response.status_code == 200
    assert "USD is the home currency" in response.content.decode()
    assert client.post(f"/admin/billing/exchangerate/{rate.pk}/delete/").status_code == 403


def test_admin_rate_of_a_finalized_month_is_read_only(eur_month: Source, actor: Actor) -> None:
    rate = exchange_rate_set(currency="GBP", period="2025-01", rate="1.25", actor=actor).rate
    BillingPeriod.objects.filter(period="2025-01").update(status="finalized")
    client = role_client(BILLING_ADMIN)
    response = client.post(
        f"/admin/billing/exchangerate/{rate.pk}/change/",
        {"month": "2025-01", "currency": "GBP", "rate": "2", "note": ""},
    )
    assert response.status_code == 403
    assert ExchangeRate.objects.get(pk=rate.pk).rate == "1.25"
    model_admin = admin.site._registry[ExchangeRate]
    assert not model_admin.has_delete_permission(None)  # type: ignore[arg-type]


def test_admin_approve_action_leaves_foreign_charges_without_a_rate(
    eur_month: Source, focus_file: Callable[..., Path], actor: Actor
) -> None:
    rows = [focus_row(resource="big", billed="20000.00")]
    file_import(path=focus_file(rows, name="aws_more.csv"), source=eur_month, actor=actor)
    client: Client = role_client(REVIEWER)
    pending = list(Charge.objects.filter(review_state="pending").values_list("pk", flat=True))
    assert len(pending) == 2
    selection = {"action": "approve", helpers.ACTION_CHECKBOX_NAME: pending}
    page = client.post("/admin/billing/charge/", {**selection, "index": 0})
    stays = [str(line) for line in page.context["details"] if "exchange rate" in str(line)]
    assert stays == [
        "Stay pending: 1 charge in another currency cannot be approved without an exchange "
        'rate (EUR 2025-01). <a href="/admin/billing/exchangerate/add/?currency=EUR&amp;'
        'month=2025-01">Record the rate</a> (USD per EUR).'
    ]
    assert _eur().review_state == "pending"
    assert not Charge.objects.filter(pk__in=pending, review_state="approved").exists()
    response = client.post("/admin/billing/charge/", {**selection, "apply": "1"}, follow=True)
    shown = [str(m) for m in response.context["messages"]]
    assert "Approved 1 charge." in shown
    assert any(m.startswith("Left pending: 1 charge in another currency") for m in shown)
    assert _eur().review_state == "pending"
    response = client.post(
        "/admin/billing/charge/",
        {"action": "approve", helpers.ACTION_CHECKBOX_NAME: [_eur().pk], "index": 0},
        follow=True,
    )
    [message] = [str(m) for m in response.context["messages"]]
    assert message.startswith(
        "Nothing was approved: 1 charge in another currency cannot be approved without an "
        "exchange rate (EUR 2025-01)."
    )
    # A link to the form that records it, filled in; no command line for a browser user.
    assert 'href="/admin/billing/exchangerate/add/?currency=EUR&amp;month=2025-01"' in message
    assert "openchargeback" not in message
