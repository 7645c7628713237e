"""What a statement shows, computed from charges: pure data, no ORM, no I/O.

Rounding (SPEC §2) happens here and only here for statements: each
*statement line* (period x PI x project x source x service) is rounded to
cents with :func:`openchargeback.money.round_money`; the statement's totals
are sums of rounded lines. The journals use the same lines, so the totals of
statements and journals agree to the cent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from decimal import Decimal

from openchargeback.money import ROUNDING_MODE, round_money

# Resources listed in the PDF's detail section; the rest go in one
# remainder row and every line item goes in the attached CSV.
DETAIL_LIMIT = 40

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
    """One statement line: a source's service, rounded to cents."""

    source: str
    service: str
    charges: int
    list_exact: Decimal
    billed_exact: Decimal


@dataclass(frozen=True)
class Resource(_Rounded):
    """Charges of one resource (shown for information, rounded on their own)."""

    resource_id: str
    resource_name: str
    service: str
    charges: int
    list_exact: Decimal
    billed_exact: Decimal


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
    conversions: tuple[Conversion, ...] = ()

    @property
    def list_total(self) -> Decimal:
        return sum((line.list_amount for line in self.lines), ZERO)

    @property
    def billed_total(self) -> Decimal:
        return sum((line.billed for line in self.lines), ZERO)

    @property
    def discount_total(self) -> Decimal:
        return self.list_total - self.billed_total

    @property
    def exact_billed(self) -> Decimal:
        return sum((line.billed_exact for line in self.lines), ZERO)

    @property
    def discount_percent(self) -> Decimal | None:
        """Discount as a percentage of list, one decimal; None without a list price."""
        if not self.list_total:
            return None
        percent = self.discount_total * 100 / self.list_total
        return percent.quantize(Decimal("0.1"), rounding=ROUNDING_MODE)

    @property
    def fund_org(self) -> str:
        return ", ".join(self.fund_orgs)

    def content_hash(self) -> str:
        # The data only: a new release that draws statements differently does
        # not re-issue (and re-send) statements whose numbers did not change.
        data = asdict(self)
        if not data["conversions"]:  # statements without conversions hash as before
            del data["conversions"]
        text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


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


def build_lines(rows: Iterable[tuple[str, str, int, Decimal, Decimal]]) -> tuple[Line, ...]:
    """(source, service, charges, list, billed) sums -> lines, largest amount first."""
    lines = [Line(src, svc, n, lst, billed) for src, svc, n, lst, billed in rows]
    lines.sort(key=lambda line: (-line.billed_exact, -line.list_exact, line.source, line.service))
    return tuple(lines)


def build_resources(
    rows: Iterable[tuple[str, str, str, int, Decimal, Decimal]], limit: int = DETAIL_LIMIT
) -> tuple[tuple[Resource, ...], Remainder | None]:
    """Per-resource sums -> the `limit` largest (by list price) and one remainder."""
    resources = [Resource(*row) for row in rows]
    resources.sort(
        key=lambda r: (-r.list_exact, -r.billed_exact, r.service, r.resource_id, r.resource_name)
    )
    shown, rest = resources[:limit], resources[limit:]
    remainder = None
    if rest:
        remainder = Remainder(
            resources=len(rest),
            charges=sum(r.charges for r in rest),
            list_exact=sum((r.list_exact for r in rest), ZERO),
            billed_exact=sum((r.billed_exact for r in rest), ZERO),
        )
    return tuple(shown), remainder
