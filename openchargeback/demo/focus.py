"""The FOCUS samples: each cloud or central-IT source's rows for a month, with
the planted scenarios (:data:`SCENARIOS`) and Azure's reservation, as CSV."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from openchargeback.csvfile import LF, CsvWriter
from openchargeback.demo.institution import Population, Resource, hex_digits
from openchargeback.demo.months import Month, parse_month
from openchargeback.demo.sources import (
    CLOUD_SOURCES,
    COLUMNS,
    FOCUS_SOURCES,
    PROFILES,
    SOURCES,
    Commitment,
    Profile,
    Service,
    Special,
)

# Rows planted in every month, across the FOCUS files: scenario -> (rows, eligible sources).
# The flag reasons of billing/flags.py plus the two "no tags at all" spellings. Rows
# without usable tags (invalid, empty, NULL) also count as missing PI, project and
# fund/org, so those three get a single explicit row each.
_FOCUS = FOCUS_SOURCES
_PLAN: dict[str, tuple[int, tuple[str, ...]]] = {
    "missing_pi": (1, _FOCUS),
    "invalid_pi_email": (2, _FOCUS),
    "missing_project": (1, _FOCUS),
    "missing_fund_org": (1, _FOCUS),
    "invalid_fund_org": (2, _FOCUS),
    "pattern_match": (2, CLOUD_SOURCES),
    "period_mismatch": (2, _FOCUS),
    "currency_mismatch": (2, ("azure", "gcp")),
    "large_charge": (2, CLOUD_SOURCES),
    "project_pi_mismatch": (2, _FOCUS),
    "invalid_tags": (2, _FOCUS),
    "empty_tags": (1, _FOCUS),
    "null_tags": (1, _FOCUS),
}
SCENARIOS: tuple[str, ...] = tuple(_PLAN)

_FIELDS = ("pi_email", "project_id", "fund_org")

_INVALID_FUND_ORGS = ("bio 2024/001", "TBD", "Chem-Startup", "nsf_geo_2025", "12345")
_EUR_REGIONS = {"azure": "westeurope", "gcp": "europe-west4"}


# --- Rows ------------------------------------------------------------------------


@dataclass
class _Line:
    cells: dict[str, str]
    tags: dict[str, str | int] | str  # a str is written as is (broken, empty, NULL)
    project: str = ""  # set when the row must come after a normal row of this project


def _quantize(value: Decimal, places: int) -> Decimal:
    result = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return abs(result) if result.is_zero() else result  # never "-0.00"


def _money(value: Decimal, profile: Profile) -> str:
    # Exact to 1e-9 (what the ingest keeps), written with up to 10 decimals like real
    # exports: "0.0000004170".
    exact = _quantize(value, min(profile.places, 9))
    text = format(_quantize(exact, profile.places), "f")
    if profile.trim and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _ts(moment: datetime, profile: Profile) -> str:
    if profile.timestamps == "space":
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _tags(
    resource: Resource,
    *,
    drop: str = "",
    pi_email: str | None = None,
    fund_org: str | None = None,
) -> dict[str, str | int]:
    values = {
        "pi_email": resource.project.pi.email if pi_email is None else pi_email,
        "project_id": resource.project.project_id,
        "fund_org": resource.project.fund_org if fund_org is None else fund_org,
    }
    tags: dict[str, str | int] = {
        key: values[fld]
        for key, fld in zip(resource.tag_keys, _FIELDS, strict=True)
        if fld != drop and not resource.untagged
    }
    tags.update(resource.tag_extras)
    return tags


class _FileBuilder:
    """The rows of one source-month file."""

    def __init__(
        self, profile: Profile, month: Month, population: Population, rng: random.Random
    ) -> None:
        self.profile = profile
        self.month = month
        self.population = population
        self.rng = rng

    def line(
        self,
        resource: Resource,
        start: datetime,
        end: datetime,
        *,
        quantity: Decimal,
        price: str,
        billing: Month | None = None,
        category: str = "Usage",
        service: str | None = None,
        service_category: str | None = None,
        description: str | None = None,
        resource_id: str | None = None,
        resource_name: str | None = None,
        publisher: str | None = None,
        currency: str = "USD",
        region: str | None = None,
        tags: dict[str, str | int] | str | None = None,
    ) -> _Line:
        p = self.profile
        billing = billing or self.month
        list_cost = quantity * Decimal(price)
        billed = list_cost * p.billed_share
        contracted = billed if p.contract_is_billed else list_cost
        svc = resource.service
        cells = {
            "BillingAccountId": p.account_id,
            "BillingAccountName": p.account_name,
            "BillingPeriodStart": _ts(billing.start, p),
            "BillingPeriodEnd": _ts(billing.end, p),
            "ChargePeriodStart": _ts(start, p),
            "ChargePeriodEnd": _ts(end, p),
            "BillingCurrency": currency,
            "ListCost": _money(list_cost, p),
            "ListUnitPrice": price,
            "ContractedCost": _money(contracted, p),
            "BilledCost": _money(billed, p),
            "EffectiveCost": _money(billed, p),
            "ChargeCategory": category,
            "ChargeDescription": svc.description if description is None else description,
            "ConsumedQuantity": format(quantity, "f"),
            "ConsumedUnit": svc.unit,
            "ProviderName": p.provider,
            "PublisherName": p.publisher if publisher is None else publisher,
            "InvoiceIssuerName": p.issuer,
            "RegionId": resource.region if region is None else region,
            "ResourceId": resource.resource_id if resource_id is None else resource_id,
            "ResourceName": resource.resource_name if resource_name is None else resource_name,
            "ServiceCategory": svc.category if service_category is None else service_category,
            "ServiceName": svc.name if service is None else service,
            "SubAccountId": resource.sub_account[0],
            "SubAccountName": resource.sub_account[1],
            "CommitmentDiscountId": "",
            "CommitmentDiscountStatus": "",
            "CommitmentDiscountCategory": "",
        }
        return _Line(cells, _tags(resource) if tags is None else tags)

    def quantity(self, service: Service) -> Decimal:
        low, high = service.qty
        return Decimal(self.rng.randint(low, high)).scaleb(-service.qty_places)

    def windows(self, service: Service) -> list[tuple[datetime, datetime]]:
        """Charge periods for one resource this month."""
        start, end = self.month.start, self.month.end
        if service.period == "month":
            return [(start, end)]
        if service.period == "week":
            weeks = [
                (start + timedelta(days=d), min(start + timedelta(days=d + 7), end))
                for d in range(0, self.month.days, 7)
            ]
            kept = [w for w in weeks if self.rng.random() < 0.85]
            return kept or weeks[:1]
        days = sorted(self.rng.sample(range(self.month.days), self.rng.randint(2, 5)))
        return [(start + timedelta(days=d), start + timedelta(days=d + 1)) for d in days]

    def usage(self, resource: Resource, **kwargs: object) -> _Line:
        """One ordinary usage row of ``resource`` in a random window of the month."""
        start, end = self.rng.choice(self.windows(resource.service))
        return self.line(
            resource,
            start,
            end,
            quantity=self.quantity(resource.service),
            price=resource.service.price,
            **kwargs,  # type: ignore[arg-type]
        )

    # -- the file ---------------------------------------------------------------
    def build(self, scenarios: Sequence[str]) -> list[_Line]:
        rng = self.rng
        normal: list[_Line] = []
        used: list[Resource] = []
        resources = self.population.resources[self.profile.slug]
        for resource in resources:
            if rng.random() < 0.08 and len(resources) > 1:
                continue  # idle this month
            used.append(resource)
            for start, end in self.windows(resource.service):
                line = self.line(
                    resource,
                    start,
                    end,
                    quantity=self.quantity(resource.service),
                    price=resource.service.price,
                )
                normal.append(line)
        if not used:
            used.append(resources[0])
            normal.append(self.usage(resources[0]))
        normal.sort(key=lambda ln: (ln.cells["ChargePeriodStart"], ln.cells["ResourceId"]))
        if self.profile.commitment is not None:
            normal.extend(self.commitment(self.profile.commitment, normal, used))
        # Credits and planted rows go to resources with tags (an untagged project's
        # rows are all ordinary usage, for its sub-account mapping to attribute).
        tagged = [r for r in used if not r.untagged] or used
        low, high = self.profile.credits_per_month
        for resource in rng.sample(tagged, min(len(tagged), rng.randint(low, high))):
            normal.append(self.credit(resource))
        planted = [self.planted(kind, rng.choice(tagged)) for kind in scenarios]
        return self.interleave(normal, planted)

    def commitment(
        self, commitment: Commitment, normal: list[_Line], used: list[Resource]
    ) -> list[_Line]:
        """Cover the month's usage of one service by a reservation: the covered rows bill
        0 with an EffectiveCost at the reserved price; the month's purchase (BilledCost,
        EffectiveCost 0) and its unused hours (EffectiveCost only) are added. The
        EffectiveCost of the used and unused rows adds up to the purchase exactly."""
        p = self.profile
        price = Decimal(commitment.unit_price)
        covered = [ln for ln in normal if ln.cells["ChargeDescription"] == commitment.covers]
        if not covered:
            return []
        hours = Decimal(0)
        for ln in covered:
            quantity = Decimal(ln.cells["ConsumedQuantity"])
            hours += quantity
            ln.cells.update(
                BilledCost=_money(Decimal(0), p),
                EffectiveCost=_money(quantity * price, p),
                CommitmentDiscountId=commitment.commitment_id,
                CommitmentDiscountStatus="Used",
                CommitmentDiscountCategory="Usage",
            )
        bought = (hours / commitment.utilisation).to_integral_value(ROUND_CEILING)
        owner = next(r for r in used if r.resource_id == covered[0].cells["ResourceId"])
        rows = []
        for kind, quantity in (("purchase", bought), ("unused", bought - hours)):
            line = self.line(
                owner,
                self.month.start,
                self.month.end,
                quantity=quantity,
                price=commitment.unit_price,
                category="Purchase" if kind == "purchase" else "Usage",
                description=commitment.description
                if kind == "purchase"
                else "Unused reservation hours, NC6s v3",
                resource_id=commitment.commitment_id,
                resource_name=commitment.resource_name,
            )
            cost = _money(quantity * price, p)
            zero = _money(Decimal(0), p)
            line.cells.update(CommitmentDiscountId=commitment.commitment_id)
            line.cells.update(CommitmentDiscountCategory="Usage")
            if kind == "purchase":
                line.cells.update(
                    ListCost=cost,
                    ContractedCost=cost,
                    BilledCost=cost,
                    EffectiveCost=zero,
                    ConsumedQuantity="",
                    ConsumedUnit="",
                )
            else:
                line.cells.update(
                    ListCost=zero,
                    ListUnitPrice="",
                    ContractedCost=zero,
                    BilledCost=zero,
                    EffectiveCost=cost,
                    CommitmentDiscountStatus="Unused",
                )
            rows.append(line)
        return rows

    def credit(self, resource: Resource) -> _Line:
        amount = -Decimal(self.rng.randint(5000, 80000)).scaleb(-2)
        line = self.line(
            resource,
            self.month.start,
            self.month.end,
            quantity=Decimal(0),
            price="0",
            category="Credit",
            description=self.profile.credit,
        )
        money = _money(amount, self.profile)
        line.cells.update(
            ListCost=_money(Decimal(0), self.profile),
            ListUnitPrice="",
            ContractedCost=money,
            BilledCost=money,
            EffectiveCost=money,
            ConsumedQuantity="",
            ConsumedUnit="",
        )
        return line

    def interleave(self, normal: list[_Line], planted: list[_Line]) -> list[_Line]:
        """Insert planted rows at random places, each after a normal row of its project."""
        first: dict[str, int] = {}
        for i, ln in enumerate(normal):
            first.setdefault(_project_of(ln), i)
        slots: dict[int, list[_Line]] = {}
        for ln in planted:
            low = first[ln.project] + 1 if ln.project else 1
            slots.setdefault(self.rng.randint(low, len(normal)), []).append(ln)
        out: list[_Line] = []
        for i in range(len(normal) + 1):
            out.extend(slots.get(i, ()))
            if i < len(normal):
                out.append(normal[i])
        return out

    def planted(self, kind: str, resource: Resource) -> _Line:
        """One row that trips ``kind`` (and, for rows without tags, the missing_* rules)."""
        rng = self.rng
        pi = resource.project.pi
        pid = resource.project.project_id
        line: _Line
        if kind in ("missing_pi", "missing_project", "missing_fund_org"):
            drop = {"missing_pi": "pi_email", "missing_project": "project_id"}.get(kind, "fund_org")
            line = self.usage(resource, tags=_tags(resource, drop=drop))
            if kind == "missing_project":
                return line  # no project: it may go anywhere
        elif kind == "invalid_pi_email":
            first, last = pi.name.lower().split()[0], pi.name.lower().split()[-1]
            bad = rng.choice((f"{first[0]}{last}", pi.name, pi.email.split(".")[0] + "@"))
            line = self.usage(resource, tags=_tags(resource, pi_email=bad))
        elif kind == "invalid_fund_org":
            bad = rng.choice(_INVALID_FUND_ORGS)
            line = self.usage(resource, tags=_tags(resource, fund_org=bad))
        elif kind == "pattern_match":
            line = self.special(resource, rng.choice(self.profile.marketplace), category="Purchase")
        elif kind == "large_charge":
            assert self.profile.large is not None
            line = self.special(resource, self.profile.large, large=True)
        elif kind == "period_mismatch":
            prev = self.month.previous()
            day = rng.randrange(prev.days)
            start = prev.start + timedelta(days=day)
            line = self.line(
                resource,
                start,
                start + timedelta(days=1),
                quantity=self.quantity(resource.service),
                price=resource.service.price,
                billing=prev,
                description=resource.service.description + " (late usage record)",
            )
        elif kind == "currency_mismatch":
            region = _EUR_REGIONS.get(self.profile.slug, resource.region)
            line = self.usage(resource, currency="EUR", region=region)
        elif kind == "project_pi_mismatch":
            others = [p for p in self.population.pis if p != pi]
            line = self.usage(resource, tags=_tags(resource, pi_email=rng.choice(others).email))
        elif kind == "invalid_tags":
            email, fund = pi.email, resource.project.fund_org
            raw = rng.choice(
                (
                    "{pi_email: broken",
                    f'{{"pi_email": "{email}", "project_id": "{pid}", "fund_org": "{fund}"',
                    f"pi_email={email};project_id={pid};fund_org={fund}",
                    f"{{'pi_email': '{email}', 'project_id': '{pid}'}}",
                )
            )
            return self.usage(resource, tags=raw)
        elif kind == "empty_tags":
            return self.usage(resource, tags="")
        elif kind == "null_tags":
            return self.usage(resource, tags="NULL")
        else:  # pragma: no cover - _PLAN and this dispatch are kept in step
            raise ValueError(f"unknown scenario {kind!r}")
        line.project = pid
        return line

    def special(
        self, resource: Resource, special: Special, *, category: str = "Usage", large: bool = False
    ) -> _Line:
        rng = self.rng
        values: dict[str, str | int] = dict(resource.fields)
        values.update(
            n=1, hex8=hex_digits(rng, 8), hex13=hex_digits(rng, 13), hex17=hex_digits(rng, 17)
        )
        name = special.resource_name.format(**values)
        values["name"] = name
        price = Decimal(special.price)
        if large:
            # Enough hours for a billed amount between 10,500 and 14,500 (> the default
            # 10,000 large-charge threshold), whatever this source's discount.
            target = Decimal(rng.randint(10500, 14500))
            hours = (target / (price * self.profile.billed_share)).to_integral_value(ROUND_CEILING)
            quantity = hours
        else:
            quantity = Decimal(1)
        line = self.line(
            resource,
            self.month.start,
            self.month.end,
            quantity=quantity,
            price=special.price,
            category=category,
            service=special.service,
            service_category=special.category,
            description=special.description,
            resource_id=special.resource_id.format(**values),
            resource_name=name,
            publisher=special.publisher or None,
        )
        line.cells["ConsumedUnit"] = special.unit
        return line


def _project_of(line: _Line) -> str:
    if isinstance(line.tags, str):
        return ""
    for key, value in line.tags.items():
        if key.strip().lower() in ("project_id", "user:project_id"):
            return str(value)
    return ""


def plan_month(month: str, *, seed: int = 2026) -> dict[str, list[str]]:
    """Which planted scenarios go into which source's file for ``month``."""
    parse_month(month)
    rng = random.Random(f"{seed}:{month}:plan")  # noqa: S311 - sample data, not security
    plan: dict[str, list[str]] = {slug: [] for slug in SOURCES}
    for kind, (count, eligible) in _PLAN.items():
        for slug in rng.sample(eligible, count):
            plan[slug].append(kind)
    return plan


def focus_lines(source: str, month: str, *, seed: int, population: Population) -> list[_Line]:
    year, number = parse_month(month)
    rng = random.Random(f"{seed}:{source}:{month}")  # noqa: S311 - sample data, not security
    builder = _FileBuilder(PROFILES[source], Month(year, number), population, rng)
    return builder.build(plan_month(month, seed=seed)[source])


def focus_csv(lines: Sequence[_Line]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = CsvWriter(buffer, neutralise=False, line_end=LF)  # input files, as providers write
    writer.writerow(COLUMNS)
    for ln in lines:
        tags = ln.tags if isinstance(ln.tags, str) else json.dumps(ln.tags, ensure_ascii=False)
        writer.writerow([*(ln.cells[c] for c in COLUMNS[:-1]), tags])
    return buffer.getvalue().encode("utf-8")
