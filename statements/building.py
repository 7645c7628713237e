"""What a statement shows, computed from charges: pure data, no ORM, no I/O.

Rounding (SPEC §2) happens here and only here for statements: each
*statement line* (period x PI x project x source x service) is rounded to
cents with :func:`openchargeback.money.round_money`; the statement's totals
are sums of rounded lines. The journals use the same lines, so the totals of
statements and journals agree to the cent.

A line's ChargeCategory (Credit, Tax, Adjustment, Purchase; Usage is the
ordinary line) keeps it apart from the usage of the same service and labels
it. The difference between list price and billed amount is a *provider
discount* or an *institutional subsidy* by where the price comes from
(ingest.focus.basis); credits are neither: they are listed as credits, and every
credit is itemised (never folded into the "other resources" row).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from decimal import Decimal

from openchargeback.money import ROUNDING_MODE, round_money

# Resources listed in the PDF's detail section; the rest go in one
# remainder row and every line item goes in the attached CSV.
DETAIL_LIMIT = 40
# Credits itemised in their own section (beyond: one "more credits" row, still credits).
CREDIT_LIMIT = 200

CREDIT = "Credit"
SUBSIDY = "subsidy"
DISCOUNT = "discount"

ZERO = Decimal(0)


@dataclass(frozen=True)
class Institution:
    name: str
    contact_email: str = ""
    contact_phone: str = ""
    address: str = ""
    currency: str = "USD"
    thousands_separator: str = ","
    decimal_separator: str = "."


class _Rounded:
    """Exact list and billed sums, shown rounded to cents."""

    list_exact: Decimal
    billed_exact: Decimal

    @property
    def list_amount(self) -> Decimal:
        return round_money(self.list_exact)

    @property
    def billed(self) -> Decimal:
        return round_money(self.billed_exact)

    @property
    def discount(self) -> Decimal:
        return self.list_amount - self.billed


@dataclass(frozen=True)
class Line(_Rounded):
    """One statement line: a source's service, rounded to cents.

    ``category`` is the ChargeCategory label for Credit, Tax, Adjustment and
    Purchase lines ('' for usage); ``difference`` says what list minus billed
    is: 'subsidy' (the site's rate card) or 'discount' (the provider's).
    """

    source: str
    service: str
    charges: int
    list_exact: Decimal
    billed_exact: Decimal
    category: str = ""
    difference: str = SUBSIDY

    @property
    def is_credit(self) -> bool:
        return self.category == CREDIT


@dataclass(frozen=True)
class Resource(_Rounded):
    """Charges of one resource (shown for information, rounded on their own)."""

    resource_id: str
    resource_name: str
    service: str
    charges: int
    list_exact: Decimal
    billed_exact: Decimal
    category: str = ""


@dataclass(frozen=True)
class Remainder(_Rounded):
    resources: int
    charges: int
    list_exact: Decimal
    billed_exact: Decimal


@dataclass(frozen=True)
class Conversion:
    """Charges of a statement line that were billed in another currency: their
    amount in that currency and the rate that converted them (shown, not summed)."""

    source: str
    service: str
    currency: str
    rate: str
    original_billed: Decimal


@dataclass(frozen=True)
class Revision:
    """The statement a new version replaces: its number, date and amount due.

    Printed on the new version (and named in its email), never hashed: it says
    which version this is, not what was charged."""

    number: str
    version: int
    generated_at: datetime
    billed_before: Decimal
    billed_after: Decimal

    @property
    def change(self) -> Decimal:
        return self.billed_after - self.billed_before

    @property
    def date(self) -> str:
        return f"{self.generated_at:%Y-%m-%d}"

    def sentences(self, money: Callable[[Decimal], str]) -> tuple[str, str]:
        """What the new version says, amounts formatted by `money`: (which statement
        it replaces, the amount due before and after)."""
        replaces = (
            f"This statement replaces statement {self.number} "
            f"(version {self.version}) of {self.date}."
        )
        if not self.change:
            moved = "unchanged"
        else:
            moved = f"{'up' if self.change > 0 else 'down'} {money(abs(self.change))}"
        amounts = (
            f"Amount due was {money(self.billed_before)}, now {money(self.billed_after)} ({moved})."
        )
        return replaces, amounts


@dataclass(frozen=True)
class StatementData:
    """Everything one statement shows; its hash identifies the content."""

    period: str
    pi_email: str
    pi_name: str
    project_id: str
    project_title: str
    fund_orgs: tuple[str, ...]
    lines: tuple[Line, ...]
    resources: tuple[Resource, ...]
    remainder: Remainder | None
    charge_ids_digest: str
    charge_count: int
    institution: Institution
    credits: tuple[Resource, ...] = ()
    more_credits: Remainder | None = None
    # (source, cost basis) of the statement's charges: 'billed' or 'amortised'.
    bases: tuple[tuple[str, str], ...] = ()
    conversions: tuple[Conversion, ...] = ()
    # (source slug, display name) of the sources on the statement: what people read.
    source_names: tuple[tuple[str, str], ...] = ()

    def source_name(self, slug: str) -> str:
        """A source's display name (its slug when it has none)."""
        return dict(self.source_names).get(slug) or slug

    @property
    def list_total(self) -> Decimal:
        """List price of everything but credits (a credit has no list price)."""
        return sum((line.list_amount for line in self.lines if not line.is_credit), ZERO)

    @property
    def billed_total(self) -> Decimal:
        return sum((line.billed for line in self.lines), ZERO)

    @property
    def credit_total(self) -> Decimal:
        return sum((line.billed for line in self.lines if line.is_credit), ZERO)

    @property
    def discount_total(self) -> Decimal:
        """Provider discount plus institutional subsidy (credits are apart):
        list_total - discount_total + credit_total = billed_total."""
        return self.list_total - self.billed_total + self.credit_total

    def difference(self, kind: str) -> Decimal:
        """The provider discount ('discount') or institutional subsidy ('subsidy')."""
        return sum(
            (
                line.discount
                for line in self.lines
                if line.difference == kind and not line.is_credit
            ),
            ZERO,
        )

    @property
    def differences(self) -> tuple[str, ...]:
        """The kinds of difference the statement shows: those with an amount, else
        the kind of its lines (a cloud statement says 'provider discount $0.00')."""
        kinds = tuple(k for k in (DISCOUNT, SUBSIDY) if self.difference(k))
        if kinds:
            return kinds
        present = {line.difference for line in self.lines if not line.is_credit}
        return tuple(k for k in (DISCOUNT, SUBSIDY) if k in present)[:1] or (SUBSIDY,)

    def difference_percent(self, kind: str) -> Decimal | None:
        """A difference as a percentage of list, one decimal; None where a share
        of list means nothing (see :func:`share_of_list`)."""
        lines = [line for line in self.lines if line.difference == kind and not line.is_credit]
        if any(line.billed < 0 or line.list_amount < 0 for line in lines):
            return None  # a refund written as usage: its amount is not a reduction of list
        return share_of_list(self.difference(kind), self.list_total)

    @property
    def is_empty(self) -> bool:
        """Nothing to show: every line is $0.00 list and $0.00 billed (not generated)."""
        return all(not line.list_amount and not line.billed for line in self.lines)

    @property
    def exact_billed(self) -> Decimal:
        return sum((line.billed_exact for line in self.lines), ZERO)

    @property
    def discount_percent(self) -> Decimal | None:
        """Discount and subsidy as a percentage of list, one decimal; None where
        a share of list means nothing (see :func:`share_of_list`)."""
        usage = [line for line in self.lines if not line.is_credit]
        if any(line.billed < 0 or line.list_amount < 0 for line in usage):
            return None
        return share_of_list(self.discount_total, self.list_total)

    @property
    def fund_org(self) -> str:
        return ", ".join(self.fund_orgs)

    def content_hash(self) -> str:
        # The data only: a new release that draws statements differently does
        # not re-issue (and re-send) statements whose numbers did not change.
        # So labels (what a difference is called, the cost basis named) stay
        # out, and fields added later count only when they hold something.
        data = asdict(self)
        data.pop("bases")
        data.pop("source_names")  # a renamed source is the same data
        for key in ("credits", "more_credits"):
            if not data[key]:
                data.pop(key)
        for item in (*data["lines"], *data["resources"]):
            item.pop("difference", None)
            if not item["category"]:
                item.pop("category")
        if not data["conversions"]:  # statements without conversions hash as before
            del data["conversions"]
        text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def share_of_list(difference: Decimal, list_total: Decimal) -> Decimal | None:
    """`difference` as a percentage of `list_total`, one decimal, or None when the
    percentage would mislead: no positive list price, or a difference below zero
    or above the list price (credits or refunds in it; never "subsidy 324.5%")."""
    if list_total <= 0 or difference < 0 or difference > list_total:
        return None
    percent = difference * 100 / list_total
    return percent.quantize(Decimal("0.1"), rounding=ROUNDING_MODE)


class ChargeDigest:
    """An order-independent digest of the charges a statement covers."""

    def __init__(self) -> None:
        self._ids: list[int] = []

    def add(self, charge_id: int) -> None:
        self._ids.append(charge_id)

    def hexdigest(self) -> str:
        digest = hashlib.sha256()
        for charge_id in sorted(self._ids):
            digest.update(charge_id.to_bytes(8, "big"))
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self._ids)


def build_lines(
    rows: Iterable[tuple[str, str, int, Decimal, Decimal]]
    | Iterable[tuple[str, str, int, Decimal, Decimal, str, str]],
) -> tuple[Line, ...]:
    """(source, service, charges, list, billed[, category, difference]) sums -> lines:
    usage largest amount first, then purchases, adjustments, taxes and credits."""
    lines = [_face_value(Line(*row)) for row in rows]
    order = {"": 0, "Purchase": 1, "Adjustment": 2, "Tax": 3, CREDIT: 4}
    lines.sort(
        key=lambda line: (
            order.get(line.category, 5),
            -line.billed_exact,
            -line.list_exact,
            line.source,
            line.service,
        )
    )
    return tuple(lines)


# Lines that are what they are: no list price to take a discount or subsidy off.
_FACE_VALUE = frozenset({"Tax", "Adjustment"})


def _face_value(line: Line) -> Line:
    """A tax or adjustment line lists its own amount (a provider may write ListCost 0)."""
    if line.category in _FACE_VALUE and line.list_exact != line.billed_exact:
        return replace(line, list_exact=line.billed_exact)
    return line


def build_resources(
    rows: Iterable[tuple[str, str, str, int, Decimal, Decimal]]
    | Iterable[tuple[str, str, str, int, Decimal, Decimal, str]],
    limit: int = DETAIL_LIMIT,
) -> tuple[tuple[Resource, ...], Remainder | None]:
    """Per-resource sums (credits left out: see :func:`build_credits`) -> the
    `limit` largest (by list price) and one remainder."""
    resources = [r for r in (Resource(*row) for row in rows) if r.category != CREDIT]
    resources.sort(
        key=lambda r: (
            -r.list_exact,
            -r.billed_exact,
            r.service,
            r.resource_id,
            r.resource_name,
            r.category,
        )
    )
    shown, rest = resources[:limit], resources[limit:]
    return tuple(shown), _remainder(rest)


def build_credits(
    rows: Iterable[tuple[str, str, str, int, Decimal, Decimal]]
    | Iterable[tuple[str, str, str, int, Decimal, Decimal, str]],
    limit: int = CREDIT_LIMIT,
) -> tuple[tuple[Resource, ...], Remainder | None]:
    """The credits among per-resource sums, largest first, each on its own row (up
    to `limit`; the rest, if any, in one row that is still labelled credits)."""
    credits = [r for r in (Resource(*row) for row in rows) if r.category == CREDIT]
    credits.sort(key=lambda r: (r.billed_exact, r.service, r.resource_id, r.resource_name))
    return tuple(credits[:limit]), _remainder(credits[limit:])


def _remainder(rest: list[Resource]) -> Remainder | None:
    if not rest:
        return None
    return Remainder(
        resources=len(rest),
        charges=sum(r.charges for r in rest),
        list_exact=sum((r.list_exact for r in rest), ZERO),
        billed_exact=sum((r.billed_exact for r in rest), ZERO),
    )
