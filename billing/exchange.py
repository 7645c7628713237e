"""Exchange rates and the conversion of charges in another currency (the
ORM side of billing.currencies, which is pure): the home currency, what lacks
a rate and how to record one, recording rates (one or a CSV) and converting.
See docs/decisions/0007-currencies.md."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from billing import summaries
from billing.audit import Actor, audit, charge_event, log_audit
from billing.errors import BillingError
from billing.models import AuditEvent, BillingPeriod
from billing.periods import parse_period
from billing.services import period_locked, period_open
from openchargeback.spreadsheet import restore
from openchargeback.text import count


def home_currency() -> str:
    """The installation's one billing currency (InstitutionSettings.currency)."""
    from billing.models import InstitutionSettings

    return InstitutionSettings.load().currency.upper()


def needs_rate(home: str) -> Q:
    """Charges in another BillingCurrency that no exchange rate has converted."""
    return ~Q(billing_currency__in=["", home]) & Q(exchange_rate="")


@dataclass(frozen=True)
class MissingRate:
    currency: str
    period: str
    charges: int


def missing_rates(charges: Any) -> list[MissingRate]:
    """Among `charges`, those in another currency without a rate, per currency and month."""
    rows = (
        charges.filter(needs_rate(home_currency()))
        .values_list("billing_currency", "period__period")
        .annotate(n=Count("id"))
        .order_by("period__period", "billing_currency")
    )
    return [MissingRate(currency, period, n) for currency, period, n in rows]


def rates_which(missing: list[MissingRate]) -> str:
    which = ", ".join(f"{m.currency} {m.period}" for m in missing[:3])
    if len(missing) > 3:
        which += f" and {len(missing) - 3} more"
    return which


def rate_hint(missing: list[MissingRate]) -> str:
    first = missing[0]
    return (
        f"`openchargeback exchange_rates set {first.currency} --period {first.period} "
        f"--rate R` (R = {home_currency()} per {first.currency})"
    )


def missing_rate_reason(missing: list[MissingRate]) -> str:
    """One line: how many charges lack a rate, which, and how to record one."""
    total = sum(m.charges for m in missing)
    return (
        f"{count(total, 'charge')} in another currency cannot be approved without an exchange "
        f"rate ({rates_which(missing)}): record one with {rate_hint(missing)}"
    )


_CONVERT_BATCH = 2000


def charges_convert(*, charges: Any, actor: Actor, note: str = "") -> int:
    """Convert `charges` in another currency with the exchange rate of their
    currency and month, in open periods (others are left alone).

    The file's amounts stay in original_list_cost / original_billed_cost
    (and the file's BilledCost in invoiced_cost); list_cost and billed_cost
    become those amounts times the rate (billing.currencies.convert), and
    exchange_rate the rate. Re-converting starts from the originals, so a
    changed rate never compounds. A charge with no rate is left unconverted
    and, if it was approved, put back to pending review: it cannot be billed.
    Each changed charge is audited; summaries are kept right. Safe to re-run.
    Returns how many charges changed.
    """
    from billing.currencies import convert
    from billing.models import Charge, ExchangeRate
    from openchargeback.money import MoneyError

    home = home_currency()
    foreign = charges.exclude(billing_currency__in=["", home]).filter(
        period__status=BillingPeriod.Status.OPEN
    )
    pairs = list(foreign.values_list("pk", "period_id"))
    if not pairs:
        return 0
    period_ids = {period_id for _, period_id in pairs}
    rates = {
        (period_id, currency): rate
        for period_id, currency, rate in ExchangeRate.objects.filter(
            period_id__in=period_ids
        ).values_list("period_id", "currency", "rate")
    }
    ids = [pk for pk, _ in pairs]
    fields = ["list_cost", "billed_cost", "original_list_cost", "original_billed_cost"]
    fields += ["invoiced_cost", "exchange_rate", "review_state", "reviewed_by", "reviewed_at"]
    fields += ["review_note"]
    now = timezone.now()
    changed = 0
    with summaries.tracking(ids, period_ids):
        for start in range(0, len(ids), _CONVERT_BATCH):
            batch = Charge.objects.filter(pk__in=ids[start : start + _CONVERT_BATCH]).only(
                "pk", "period_id", "billing_currency", "review_state", *fields
            )
            updated, events = [], []
            for charge in batch:
                before = {
                    "billed_cost": str(charge.billed_cost),
                    "list_cost": str(charge.list_cost),
                    "exchange_rate": charge.exchange_rate,
                    "review_state": charge.review_state,
                }
                rate = rates.get((charge.period_id, charge.billing_currency))
                if rate is None:
                    if charge.exchange_rate or charge.review_state != Charge.ReviewState.APPROVED:
                        continue
                    charge.review_state = Charge.ReviewState.PENDING
                    charge.reviewed_by, charge.reviewed_at = actor.name, now
                    charge.review_note = (
                        f"no {charge.billing_currency} exchange rate for this month"
                    )
                else:
                    if not charge.exchange_rate:  # amounts as in the file
                        charge.original_list_cost = charge.list_cost
                        charge.original_billed_cost = charge.billed_cost
                    original_list = charge.original_list_cost
                    original_billed = charge.original_billed_cost
                    assert original_list is not None
                    assert original_billed is not None
                    try:
                        charge.list_cost = convert(original_list, rate)
                        charge.billed_cost = convert(original_billed, rate)
                    except MoneyError as exc:
                        raise BillingError(f"charge {charge.pk}: {exc}") from None
                    if charge.invoiced_cost is None:
                        charge.invoiced_cost = original_billed
                    charge.exchange_rate = rate
                after = {
                    "billed_cost": str(charge.billed_cost),
                    "list_cost": str(charge.list_cost),
                    "exchange_rate": charge.exchange_rate,
                    "review_state": charge.review_state,
                }
                if after == before:
                    continue
                updated.append(charge)
                events.append(
                    charge_event(
                        created_at=now,
                        actor=actor,
                        action="charge.convert",
                        charge_id=charge.pk,
                        period_id=charge.period_id,
                        before=before,
                        after=after,
                        reason=note,
                    )
                )
            Charge.objects.bulk_update(updated, fields, batch_size=500)
            AuditEvent.objects.bulk_create(events)
            changed += len(updated)
    if changed:
        log_audit(actor, "charge.convert", count=changed)
    return changed


@dataclass(frozen=True)
class RateChange:
    """What exchange_rate_set did: the rate, whether it is new or changed, and
    how many charges it (re)converted."""

    rate: Any  # billing.models.ExchangeRate
    created: bool
    changed: bool
    converted: int


def _rate_fields(rate: Any) -> dict[str, str]:
    return {"rate": rate.rate, "note": rate.note}


def exchange_rate_check(
    *, currency: str, period: str, rate: str, note: str | None = None
) -> tuple[str, str, str, str | None]:
    """(code, rate text, month, note) of a rate that may be recorded as given;
    BillingError (one line) if not. Writes nothing (the admin form asks first)."""
    from billing.currencies import CurrencyError, parse_currency, parse_rate

    try:
        code = parse_currency(currency, home=home_currency())
        text = parse_rate(rate)
    except CurrencyError as exc:
        raise BillingError(str(exc)) from None
    note = None if note is None else note.strip()
    if note is not None and len(note) > 300:
        raise BillingError("the note is longer than 300 characters")
    month = parse_period(period)
    obj = BillingPeriod.objects.filter(period=month).first()
    if obj is not None and not _same_as_recorded(obj, code, text, note):
        _refuse_rate_lock(obj, code)
    return code, text, month, note


def _same_as_recorded(obj: BillingPeriod, code: str, text: str, note: str | None) -> bool:
    """The month already has this rate (by value) and note: recording it changes nothing."""
    from billing.currencies import same_rate
    from billing.models import ExchangeRate

    existing = ExchangeRate.objects.filter(period=obj, currency=code).first()
    return (
        existing is not None
        and same_rate(existing.rate, text)
        and (note is None or note == existing.note)
    )


def _refuse_rate_lock(obj: BillingPeriod, code: str) -> None:
    """Finalized: rates are permanent. Closed: only for a currency none of its charges use."""
    from billing.models import Charge

    if obj.status == BillingPeriod.Status.FINALIZED:
        raise BillingError(
            f"period {obj.period} is finalized: its exchange rates are permanent; "
            "nothing was changed"
        )
    used = Charge.objects.filter(period=obj, billing_currency=code)
    if obj.status == BillingPeriod.Status.CLOSED and used.exists():
        raise BillingError(
            f"period {obj.period} is closed and has {count(used.count(), 'charge')} in {code} "
            f"(its statements may exist): reopen it first with `openchargeback periods reopen "
            f'{obj.period} --reason "..."`; nothing was changed',
            web=f"period {obj.period} is closed and has {count(used.count(), 'charge')} in "
            f"{code} (its statements may exist): reopen it first (Reopen, on the period's "
            "page, with a reason); nothing was changed",
        )


@transaction.atomic
def exchange_rate_set(
    *, currency: str, period: str, rate: str, actor: Actor, note: str | None = None
) -> RateChange:
    """Record (or change) the exchange rate of a currency for a month and
    convert that month's charges in the currency with it.

    Refused for the home currency, an unknown or malformed code, a rate that
    is not a positive number, a finalized month (permanent), and a closed
    month that has charges in the currency (its statements may exist: reopen
    it first). Re-running with the same rate (by value: 1.085 = 1.0850) and
    note changes nothing; a note of None keeps the recorded one.
    """
    from billing.currencies import same_rate
    from billing.models import Charge, ExchangeRate

    code, text, month, note = exchange_rate_check(
        currency=currency, period=period, rate=rate, note=note
    )
    period_open(period=month, actor=actor, note=f"exchange rate {code} recorded")
    obj = period_locked(month)
    used = Charge.objects.filter(period=obj, billing_currency=code)
    existing = ExchangeRate.objects.select_for_update().filter(period=obj, currency=code).first()
    if existing is not None:
        text = existing.rate if same_rate(existing.rate, text) else text
        note = existing.note if note is None else note
        if existing.rate == text and existing.note == note:  # even in a locked month
            return RateChange(existing, created=False, changed=False, converted=0)
    _refuse_rate_lock(obj, code)
    note = note or ""
    now = timezone.now()
    if existing is None:
        saved = ExchangeRate.objects.create(
            period=obj,
            currency=code,
            rate=text,
            note=note,
            created_at=now,
            created_by=actor.name,
            updated_at=now,
            updated_by=actor.name,
        )
        audit(
            actor=actor,
            action="exchange_rate.create",
            obj=saved,
            period=obj,
            after={"currency": code, "period": month, **_rate_fields(saved)},
        )
    else:
        before = _rate_fields(existing)
        existing.rate, existing.note = text, note
        existing.updated_at, existing.updated_by = now, actor.name
        existing.save(update_fields=["rate", "note", "updated_at", "updated_by"])
        saved = existing
        audit(
            actor=actor,
            action="exchange_rate.change",
            obj=saved,
            period=obj,
            before={k: v for k, v in before.items() if _rate_fields(saved)[k] != v},
            after={k: v for k, v in _rate_fields(saved).items() if before[k] != v},
        )
    converted = 0
    if obj.status == BillingPeriod.Status.OPEN:
        converted = charges_convert(
            charges=used, actor=actor, note=f"exchange rate {code} {month}: {text}"
        )
    return RateChange(saved, created=existing is None, changed=True, converted=converted)


RATE_CSV_COLUMNS = ("currency", "period", "rate", "note")


@dataclass
class RatesImport:
    rows: int = 0
    created: int = 0
    changed: int = 0
    unchanged: int = 0
    converted: int = 0


def exchange_rates_import(  # noqa: C901 - one check per column and line, each naming file, line and column
    *, text: str, file_name: str, actor: Actor, dry_run: bool = False
) -> RatesImport:
    """Record the rates of a CSV (currency, period, rate[, note]; other columns
    such as those of `exchange_rates export` are ignored), all or nothing.

    Every problem names the file, line and column: a malformed or unknown
    code, the home currency, a rate that is not a positive number, a month
    that is not YYYY-MM, two different rates for one currency and month, a
    locked month. Nothing is written unless every row can be recorded.
    """
    import csv
    import io

    from billing.currencies import CurrencyError, parse_currency, parse_rate, same_rate

    home = home_currency()
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))

    def records() -> Iterator[list[str]]:
        """The reader's rows, a malformed CSV (an unterminated quote, a field
        over the csv module's size limit) as one line naming where."""
        try:
            yield from reader
        except csv.Error as exc:
            raise BillingError(
                f"{file_name}, line {reader.line_num}: not valid CSV ({exc})"
            ) from None

    rows = records()
    header = next(rows, None)
    if header is None:
        raise BillingError(f"{file_name}: the file is empty")
    names = [h.strip().lower() for h in header]
    missing = [c for c in RATE_CSV_COLUMNS[:3] if c not in names]
    if missing:
        raise BillingError(
            f"{file_name}, line 1: missing column(s) {', '.join(missing)} "
            f"(expected {', '.join(RATE_CSV_COLUMNS)})"
        )
    index = {name: names.index(name) for name in RATE_CSV_COLUMNS if name in names}
    seen: dict[tuple[str, str], tuple[str, int]] = {}
    wanted: list[tuple[int, str, str, str, str | None]] = []
    next_line = reader.line_num + 1
    for row in rows:  # a line is where its row starts (a quoted note may hold line breaks)
        line, next_line = next_line, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue

        def cell(name: str, row: list[str] = row) -> str:
            """The text as exported: spaces around it dropped, and the apostrophe
            the export puts before formula-like text removed."""
            i = index.get(name)
            return restore(row[i].strip()) if i is not None and i < len(row) else ""

        def where(column: str, line: int = line) -> str:
            return f"{file_name}, line {line}, column {column}"

        try:
            code = parse_currency(cell("currency"), home=home)
        except CurrencyError as exc:
            raise BillingError(f"{where('currency')}: {exc}") from None
        try:
            month = parse_period(cell("period"))
        except BillingError as exc:
            raise BillingError(f"{where('period')}: {exc}") from None
        try:
            rate = parse_rate(cell("rate"))
        except CurrencyError as exc:
            raise BillingError(f"{where('rate')}: {exc}") from None
        note = cell("note") if "note" in index else None
        if note is not None and len(note) > 300:
            raise BillingError(f"{where('note')}: longer than 300 characters")
        prior = seen.get((code, month))
        if prior is not None:
            if not same_rate(prior[0], rate):
                raise BillingError(
                    f"{where('rate')}: conflicting exchange rates for {code} {month}: "
                    f"{rate} here, {prior[0]} on line {prior[1]}; nothing was recorded"
                )
            continue
        seen[(code, month)] = (rate, line)
        wanted.append((line, code, month, rate, note))
    result = RatesImport(rows=len(wanted))
    with transaction.atomic():
        for line, code, month, rate, note in wanted:
            try:
                change = exchange_rate_set(
                    currency=code, period=month, rate=rate, note=note, actor=actor
                )
            except BillingError as exc:
                raise BillingError(f"{file_name}, line {line}: {exc}") from None
            if change.created:
                result.created += 1
            elif change.changed:
                result.changed += 1
            else:
                result.unchanged += 1
            result.converted += change.converted
        if dry_run:
            transaction.set_rollback(True)
    return result
