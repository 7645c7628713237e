"""Writes and reads of the rate card that prices on-premises usage. Every
change is audited. Rates in force during a finalized month are never changed,
only superseded (the account mappings are ingest.usage.mappings)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import BooleanField, Case, OuterRef, Q, QuerySet, Subquery, Value, When

from billing.audit import Actor, audit, audit_change
from billing.errors import BillingError
from billing.models import BillingPeriod
from billing.periods import month_bounds, month_of
from ingest.models import Rate
from ingest.usage.pricing import RateBook, RateTerms
from openchargeback.money import from_nanos, money_str, to_nanos
from openchargeback.text import count

__all__ = [
    "finalized_months",
    "rate_book",
    "rate_check",
    "rate_create",
    "rate_delete",
    "rate_lock",
    "rate_update",
    "rates_with_windows",
]


RATE_FIELDS = (
    "resource",
    "service",
    "qos",
    "effective_from",
    "list_rate",
    "subsidy_percent",
    "free_allowance",
    "monthly_credit",
    "monthly_cap",
    "description",
)

FinalizedMonth = tuple[str, date, date]  # "YYYY-MM", first day, last day


def _month_bounds(period: str) -> tuple[date, date]:
    """The first and last day of ``period``."""
    first, following = month_bounds(period)
    return first, following - timedelta(days=1)


def finalized_months() -> list[FinalizedMonth]:
    """Every finalized billing period with its first and last day, oldest first."""
    periods = (
        BillingPeriod.objects.filter(status=BillingPeriod.Status.FINALIZED)
        .order_by("period")
        .values_list("period", flat=True)
    )
    return [(p, *_month_bounds(p)) for p in periods]


def _finalized_in(start: date, end: date | None, *, lock: bool) -> list[str]:
    """Finalized months with a day in [start, end). With ``lock``, the periods
    of that window are locked until the transaction ends, so none of them can
    be finalized while a rate covering it is written."""
    periods = BillingPeriod.objects.filter(period__gte=month_of(start))
    if end is not None:
        periods = periods.filter(period__lte=month_of(end - timedelta(days=1)))
    if lock:
        periods = periods.select_for_update()
    rows = list(periods.order_by("period").values_list("period", "status"))
    return [p for p, status in rows if status == BillingPeriod.Status.FINALIZED]


def _next_start(
    *, resource: str, service: str, qos: str, after: date, exclude_pk: int | None = None
) -> date | None:
    """When the next rate for the same resource, service and QOS takes over."""
    later = Rate.objects.filter(
        resource=resource, service=service, qos=qos, effective_from__gt=after
    )
    if exclude_pk is not None:
        later = later.exclude(pk=exclude_pk)
    return later.order_by("effective_from").values_list("effective_from", flat=True).first()


def rate_window(rate: Rate) -> tuple[date, date | None]:
    """The days a rate is in force: [effective_from, next rate's start); None: open."""
    end = _next_start(
        resource=rate.resource,
        service=rate.service,
        qos=rate.qos,
        after=rate.effective_from,
        exclude_pk=rate.pk,
    )
    return rate.effective_from, end


def rate_lock(rate: Rate, *, lock: bool = False) -> str:
    """Why the rate can no longer change ("" if it can): the first finalized
    month it is in force in."""
    start, end = rate_window(rate)
    months = _finalized_in(start, end, lock=lock)
    if not months:
        return ""
    more = f" (and {count(len(months) - 1, 'other')})" if len(months) > 1 else ""
    return f"it is in force during finalized period {months[0]}{more}"


def _describe(resource: str, service: str, qos: str, start: date) -> str:
    unit = Rate.Resource(resource).label if resource in Rate.Resource.values else resource
    return f"{unit} rate {service!r}{f' QOS {qos!r}' if qos else ''} from {start.isoformat()}"


def rate_check(
    *, resource: str, service: str, qos: str, effective_from: date, exclude_pk: int | None = None
) -> None:
    """Refuse a rate (new, or a rate's new values) that would be in force on a
    day of a finalized month, so changing prices that were billed."""
    _check_window(
        resource=resource,
        service=service,
        qos=qos,
        start=effective_from,
        exclude_pk=exclude_pk,
        lock=False,
    )


def _check_window(
    *, resource: str, service: str, qos: str, start: date, exclude_pk: int | None, lock: bool
) -> None:
    end = _next_start(
        resource=resource, service=service, qos=qos, after=start, exclude_pk=exclude_pk
    )
    months = _finalized_in(start, end, lock=lock)
    if months:
        _first, last_day = _month_bounds(months[-1])
        raise BillingError(
            f"a {_describe(resource, service, qos, start)} would change prices of finalized "
            f"period {months[0]}{' and later' if len(months) > 1 else ''}; give it an effective "
            f"date after {last_day.isoformat()}"
        )


def _rate_values(rate: Rate) -> dict[str, str]:
    """A rate's terms as strings, for the audit trail."""
    values: dict[str, str] = {}
    for name in RATE_FIELDS:
        value = getattr(rate, name)
        if value is None:
            values[name] = ""
        elif isinstance(value, Decimal):
            # One spelling per amount (0.01 whether typed as 0.010 or read back).
            values[name] = money_str(from_nanos(to_nanos(value)))
        elif isinstance(value, date):
            values[name] = value.isoformat()
        else:
            values[name] = str(value)
    return values


def one_line(exc: ValidationError, what: str) -> BillingError:
    if hasattr(exc, "error_dict"):
        problems = "; ".join(
            f"{'' if name == '__all__' else name + ': '}{' '.join(messages)}"
            for name, messages in exc.message_dict.items()
        )
    else:
        problems = " ".join(exc.messages)
    return BillingError(f"{what}: {problems}")


def _clean_rate(rate: Rate) -> None:
    rate.service = (rate.service or "").strip()
    rate.qos = (rate.qos or "").strip()
    rate.description = (rate.description or "").strip()
    try:
        rate.full_clean(exclude=["created_at", "created_by"])
    except ValidationError as exc:
        raise one_line(exc, "rate") from None


@transaction.atomic
def rate_create(*, actor: Actor, **fields: Any) -> Rate:
    """Add a rate card entry (superseding the one before it from its date on).

    Refused when it would be in force on a day of a finalized month."""
    unknown = set(fields) - set(RATE_FIELDS)
    if unknown:
        raise BillingError(f"unknown rate field(s): {', '.join(sorted(unknown))}")
    rate = Rate(**fields, created_by=actor.name)
    _clean_rate(rate)
    _check_window(
        resource=rate.resource,
        service=rate.service,
        qos=rate.qos,
        start=rate.effective_from,
        exclude_pk=None,
        lock=True,
    )
    rate.save()
    audit(actor=actor, action="rate.create", obj=rate, after=_rate_values(rate))
    return rate


def _locked_rate(rate: Rate) -> Rate:
    fresh = Rate.objects.select_for_update().filter(pk=rate.pk).first()
    if fresh is None:
        raise BillingError(f"rate {rate.pk} does not exist any more")
    return fresh


@transaction.atomic
def rate_update(*, rate: Rate, actor: Actor, **changes: Any) -> Rate:
    """Change a rate that was never in force during a finalized month; a
    locked one is refused (supersede it: add a rate with a later date)."""
    unknown = set(changes) - set(RATE_FIELDS)
    if unknown:
        raise BillingError(f"unknown rate field(s): {', '.join(sorted(unknown))}")
    fresh = _locked_rate(rate)
    reason = rate_lock(fresh, lock=True)
    if reason:
        raise BillingError(
            f"{fresh} cannot be changed: {reason}; supersede it by adding a rate with a "
            "later effective date"
        )
    before = _rate_values(fresh)
    for name, value in changes.items():
        setattr(fresh, name, value)
    _clean_rate(fresh)
    after = _rate_values(fresh)
    if after == before:
        return fresh
    _check_window(
        resource=fresh.resource,
        service=fresh.service,
        qos=fresh.qos,
        start=fresh.effective_from,
        exclude_pk=fresh.pk,
        lock=True,
    )
    fresh.save()
    audit_change(actor=actor, action="rate.change", obj=fresh, before=before, after=after)
    return fresh


@transaction.atomic
def rate_delete(*, rate: Rate, actor: Actor) -> None:
    """Delete a rate that was never in force during a finalized month (the
    rate before it then applies for longer)."""
    fresh = _locked_rate(rate)
    reason = rate_lock(fresh, lock=True)
    if reason:
        raise BillingError(
            f"{fresh} cannot be deleted: {reason}; supersede it by adding a rate with a "
            "later effective date"
        )
    before = _rate_values(fresh)
    audit(actor=actor, action="rate.delete", obj=fresh, before=before)
    fresh.delete()


def _locked_condition(months: list[FinalizedMonth]) -> Q | None:
    """Rows annotated with ``next_from`` whose window has a finalized day."""
    ranges: list[list[date]] = []
    for _period, first, last in months:
        if ranges and ranges[-1][1] + timedelta(days=1) == first:
            ranges[-1][1] = last
        else:
            ranges.append([first, last])
    condition: Q | None = None
    for first, last in ranges:
        overlap = Q(effective_from__lte=last) & (Q(next_from__isnull=True) | Q(next_from__gt=first))
        condition = overlap if condition is None else condition | overlap
    return condition


def rates_with_windows(rates: QuerySet[Rate] | None = None) -> QuerySet[Rate]:
    """Rates annotated with ``next_from`` (the day the next rate takes over,
    None while none does) and ``locked`` (in force during a finalized month)."""
    rates = Rate.objects.all() if rates is None else rates
    following = Rate.objects.filter(
        resource=OuterRef("resource"),
        service=OuterRef("service"),
        qos=OuterRef("qos"),
        effective_from__gt=OuterRef("effective_from"),
    ).order_by("effective_from")
    annotated = rates.annotate(next_from=Subquery(following.values("effective_from")[:1]))
    condition = _locked_condition(finalized_months())
    if condition is None:
        return annotated.annotate(locked=Value(False, output_field=BooleanField()))
    return annotated.annotate(locked=Case(When(condition, then=Value(True)), default=Value(False)))


def rate_terms(rate: Rate) -> RateTerms:
    return RateTerms(
        rate_id=rate.pk,
        resource=rate.resource,  # type: ignore[arg-type]  # checked by a DB constraint
        service=rate.service,
        qos=rate.qos,
        effective_from=rate.effective_from,
        list_rate=rate.list_rate,
        subsidy_percent=rate.subsidy_percent,
        free_allowance=rate.free_allowance,
        monthly_credit=rate.monthly_credit,
        monthly_cap=rate.monthly_cap,
    )


def rate_book() -> RateBook:
    """The whole rate card, for pricing."""
    return RateBook(rate_terms(rate) for rate in Rate.objects.all())
