"""Prices on-premises usage with the rate card: list price, free allowance,
subsidy, monthly credit and cap, per project and month. Pure: no ORM, no I/O.

:func:`price` takes the :class:`~ingest.usage.records.Usage` records of one month (from
the Slurm and storage readers), a :class:`RateBook` (the rate card) and the
account -> owner mapping, and returns :class:`PricedRow` values the converters
write as FOCUS rows (``ListCost`` = list, ``BilledCost`` = billed).

Rules, per owner (the mapped project; an unmapped account on its own) x rate
card entry (resource, service, QOS of the rate in force) x month, in day
order, and within a day in account-name order:

(a) list = quantity x list rate;
(b) free allowance: CPU and GPU hours are free up to ``free_allowance`` hours
    per month (a day can be partly free). Storage's allowance is a level in
    TB: each day the first ``free_allowance`` TB of the project's quotas in
    the tier are free, i.e. ``free_allowance / days_in_month`` TB-months;
(c) billed = chargeable quantity x list rate x (1 - subsidy % / 100);
(d) the monthly credit is taken off billed amounts until it is used up;
(e) billed amounts stop at the monthly cap.

When a rate changes mid-month each day uses the terms in force that day; what
the month has used of the allowance, credit and cap carries over (the new
terms leave ``new limit - used so far``, at least 0).

Everything is exact (:class:`~fractions.Fraction`); each output row is rounded
once, to integer nano-units, half to even (the storage quantum of
:mod:`openchargeback.money`; ``round()`` of a Fraction rounds half to even).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from billing.errors import BillingError
from billing.periods import month_bounds
from ingest.usage.records import Resource, Usage
from openchargeback.money import NANOS_PER_UNIT, from_nanos

__all__ = [
    "UNIT",
    "UNMAPPED",
    "Owner",
    "PricedRow",
    "PricingError",
    "RateBook",
    "RateTerms",
    "price",
]

UNIT: dict[str, str] = {"cpu": "CPU-hour", "gpu": "GPU-hour", "storage": "TB-month"}
SERVICE_NOUN: dict[str, str] = {"cpu": "partition", "gpu": "partition", "storage": "storage tier"}

_MAX_NANOS = 2**63 - 1  # what one MoneyField value holds


class PricingError(BillingError, ValueError):
    """Usage that cannot be priced (no rate in force, a day outside the period): one line."""


@dataclass(frozen=True)
class RateTerms:
    """One rate card entry, as pricing sees it (amounts exact, per unit or per month)."""

    rate_id: int
    resource: Resource
    service: str
    qos: str
    effective_from: date
    list_rate: Decimal
    subsidy_percent: Decimal = Decimal(0)
    free_allowance: Decimal = Decimal(0)
    monthly_credit: Decimal = Decimal(0)
    monthly_cap: Decimal | None = None

    @property
    def unit(self) -> str:
        return UNIT[self.resource]


@dataclass(frozen=True)
class Owner:
    """Who pays for an account: PI email, project id and fund/org ("" when unmapped)."""

    pi_email: str
    project_id: str
    fund_org: str


UNMAPPED = Owner("", "", "")

_Key = tuple[str, str, str]  # resource, service, qos


class RateBook:
    """The rate card: which terms are in force for a resource, service, QOS and day."""

    def __init__(self, terms: Iterable[RateTerms]) -> None:
        by_key: dict[_Key, list[RateTerms]] = defaultdict(list)
        for item in terms:
            by_key[(item.resource, item.service, item.qos)].append(item)
        self._terms: dict[_Key, list[RateTerms]] = {}
        self._starts: dict[_Key, list[date]] = {}
        for key, items in by_key.items():
            items.sort(key=lambda t: t.effective_from)
            starts = [t.effective_from for t in items]
            if len(set(starts)) != len(starts):
                raise ValueError(f"two rates for {key} start on the same day")
            self._terms[key] = items
            self._starts[key] = starts

    def __len__(self) -> int:
        return sum(len(items) for items in self._terms.values())

    def _latest(self, key: _Key, day: date) -> RateTerms | None:
        starts = self._starts.get(key)
        if not starts:
            return None
        index = bisect_right(starts, day)
        return self._terms[key][index - 1] if index else None

    def in_force(self, resource: str, service: str, qos: str, day: date) -> RateTerms | None:
        """The latest rate for (resource, service, qos) that started on or before
        ``day``; else the latest such rate for any QOS (qos ""); else None."""
        hit = self._latest((resource, service, qos), day)
        if hit is None and qos:
            hit = self._latest((resource, service, ""), day)
        return hit


@dataclass(frozen=True)
class PricedRow:
    """Priced usage of one account: one day (CPU, GPU) or consecutive days
    (storage, same quota and terms). ``end_day`` is exclusive."""

    resource: Resource
    account: str
    service: str
    qos: str
    start_day: date
    end_day: date
    quantity: Fraction
    free_quantity: Fraction
    list_nanos: int
    billed_nanos: int
    terms: RateTerms
    owner: Owner
    unmapped: bool
    jobs: int

    @property
    def list_cost(self) -> Decimal:
        return from_nanos(self.list_nanos)

    @property
    def billed_cost(self) -> Decimal:
        return from_nanos(self.billed_nanos)

    @property
    def unit(self) -> str:
        return UNIT[self.resource]


def nanos(value: Fraction) -> int:
    """An exact amount as integer nano-units, rounded half to even."""
    result = round(value * NANOS_PER_UNIT)
    if abs(result) > _MAX_NANOS:
        raise PricingError(f"amount too large: {from_nanos(result)}")
    return result


def month_days(period: str) -> tuple[date, int]:
    """'2025-03' -> (date(2025, 3, 1), 31)."""
    first, following = month_bounds(period, error=PricingError)
    return first, (following - first).days


def missing_rate_message(usage: Usage) -> str:
    noun = SERVICE_NOUN.get(usage.resource, "service")
    qos = f" (QOS {usage.qos!r})" if usage.qos else ""
    return (
        f"no {UNIT[usage.resource]} rate for {noun} {usage.service!r}{qos} on "
        f"{usage.day.isoformat()}; add one under Rates in the admin"
    )


@dataclass
class _Item:
    """One usage record on its way through the rules (exact values)."""

    usage: Usage
    terms: RateTerms
    owner: Owner
    unmapped: bool
    group: tuple[str, str, str, str, str]
    free: Fraction = Fraction(0)
    listed: Fraction = Fraction(0)
    billed: Fraction = Fraction(0)


@dataclass
class _Used:
    """What one owner has used of a rate entry's month so far."""

    free: Fraction = Fraction(0)  # CPU/GPU: hours free so far this month
    free_today: dict[date, Fraction] = field(default_factory=dict)  # storage: TB-months per day
    credit: Fraction = Fraction(0)
    billed: Fraction = Fraction(0)


def _resolve(
    usages: Iterable[Usage],
    *,
    book: RateBook,
    owners: Mapping[str, Owner],
    first: date,
    days: int,
    period: str,
) -> list[_Item]:
    items: list[_Item] = []
    last = first + timedelta(days=days - 1)
    for usage in usages:
        if usage.resource not in UNIT:
            raise PricingError(f"unknown resource {usage.resource!r} for {usage.account!r}")
        if not first <= usage.day <= last:
            raise PricingError(
                f"usage of {usage.account!r} on {usage.day.isoformat()} is outside period {period}"
            )
        if usage.quantity < 0:
            raise PricingError(
                f"negative {UNIT[usage.resource]} quantity for {usage.account!r} on "
                f"{usage.day.isoformat()}"
            )
        terms = book.in_force(usage.resource, usage.service, usage.qos, usage.day)
        if terms is None:
            raise PricingError(missing_rate_message(usage))
        account_key = usage.account.lower()
        found = owners.get(account_key)
        owner = found if found is not None else UNMAPPED
        who = ("account", account_key) if found is None else ("project", owner.project_id)
        group = (*who, terms.resource, terms.service, terms.qos)
        items.append(_Item(usage, terms, owner, found is None, group))
    return items


def _apply_rules(members: list[_Item], days: int) -> None:
    """Allowance, subsidy, credit and cap for one owner x rate entry, in day order."""
    used = _Used()
    for item in members:
        usage, terms = item.usage, item.terms
        quantity = usage.quantity
        rate = Fraction(terms.list_rate)
        allowance = Fraction(terms.free_allowance)
        if usage.resource == "storage":
            today = used.free_today.get(usage.day, Fraction(0))
            left = max(Fraction(0), allowance / days - today)
            free = min(quantity, left)
            used.free_today[usage.day] = today + free
        else:
            left = max(Fraction(0), allowance - used.free)
            free = min(quantity, left)
            used.free += free
        billed = (quantity - free) * rate * (1 - Fraction(terms.subsidy_percent) / 100)
        credit = min(billed, max(Fraction(0), Fraction(terms.monthly_credit) - used.credit))
        used.credit += credit
        billed -= credit
        if terms.monthly_cap is not None:
            billed = min(billed, max(Fraction(0), Fraction(terms.monthly_cap) - used.billed))
        used.billed += billed
        item.free, item.listed, item.billed = free, quantity * rate, billed


@dataclass
class _Row:
    """An output row before rounding (storage rows grow while days are merged)."""

    item: _Item
    end_day: date
    quantity: Fraction
    free: Fraction
    listed: Fraction
    billed: Fraction
    jobs: int

    def sort_key(self) -> tuple[date, str, str, str, str, str]:
        u = self.item.usage
        return (u.day, u.resource, u.account.lower(), u.account, u.service, u.qos)


def _rows(items: list[_Item]) -> list[_Row]:
    rows: list[_Row] = []
    open_rows: dict[tuple[str, str, str], _Row] = {}  # storage: the row a quota's next day may join
    for item in sorted(items, key=lambda i: (i.usage.day, i.usage.account)):
        u = item.usage
        day_after = u.day + timedelta(days=1)
        if u.resource == "storage":
            key = (u.account, u.service, u.qos)
            row = open_rows.get(key)
            if row is not None and row.end_day == u.day and row.item.terms == item.terms:
                # Merged after the per-day rules, so the row's amount is the
                # exact sum of its days, rounded once.
                row.end_day = day_after
                row.quantity += u.quantity
                row.free += item.free
                row.listed += item.listed
                row.billed += item.billed
                row.jobs += u.jobs
                continue
        row = _Row(item, day_after, u.quantity, item.free, item.listed, item.billed, u.jobs)
        rows.append(row)
        if u.resource == "storage":
            open_rows[(u.account, u.service, u.qos)] = row
    return rows


def price(
    usages: Iterable[Usage],
    *,
    book: RateBook,
    owners: Mapping[str, Owner],
    period: str,
) -> list[PricedRow]:
    """Price one month's usage. ``owners`` is keyed by the lower-cased account
    or quota name; an account without an entry is priced on its own and its
    rows say ``unmapped``. Raises :class:`PricingError` for usage with no rate
    in force, outside ``period``, or with a negative quantity.

    Rows come in (first day, resource, account, service, QOS) order.
    """
    first, days = month_days(period)
    items = _resolve(usages, book=book, owners=owners, first=first, days=days, period=period)
    groups: dict[tuple[str, ...], list[_Item]] = defaultdict(list)
    for item in items:
        groups[item.group].append(item)
    for members in groups.values():
        members.sort(key=lambda i: (i.usage.day, i.usage.account.lower(), i.usage.account))
        _apply_rules(members, days)

    rows = sorted(_rows(items), key=_Row.sort_key)
    billed_so_far: dict[tuple[str, ...], int] = defaultdict(int)
    priced: list[PricedRow] = []
    for row in rows:
        item = row.item
        billed = nanos(row.billed)
        cap = item.terms.monthly_cap
        if cap is not None:
            # Rounding each row must not lift the month past the cap either.
            billed = min(billed, max(0, nanos(Fraction(cap)) - billed_so_far[item.group]))
        billed_so_far[item.group] += billed
        u = item.usage
        priced.append(
            PricedRow(
                resource=u.resource,
                account=u.account,
                service=u.service,
                qos=u.qos,
                start_day=u.day,
                end_day=row.end_day,
                quantity=row.quantity,
                free_quantity=row.free,
                list_nanos=nanos(row.listed),
                billed_nanos=billed,
                terms=item.terms,
                owner=item.owner,
                unmapped=item.unmapped,
                jobs=row.jobs,
            )
        )
    return priced
