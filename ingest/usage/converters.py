"""Slurm and storage usage into FOCUS: read, price, write, and import.

The converters behind ``openchargeback slurm-usage`` and ``storage-usage``.
A :class:`Conversion` holds one month of priced usage
(:mod:`ingest.usage.sacct` or :mod:`ingest.usage.quotas`, then :mod:`ingest.usage.pricing`
with the rate card and the account mappings). It can be written as a FOCUS
CSV, imported through the normal ingest path (:func:`conversion_import`:
the same validation, flags, deduplication and kept file as any provider's
export), or summarised per PI and project without writing anything (what-if).

Each FOCUS row carries ``ListCost`` = usage x list rate (the full value) and
``BilledCost`` = what the PI pays after the free allowance, subsidy, credit
and cap, and Tags naming the PI, project and fund/org under the first tag key
the site's tag mapping looks for. Usage of an account with no mapping keeps
its cost and gets the :data:`~billing.rules.UNMAPPED_ACCOUNT_TAG` tag, so the
import flags it for review (never dropped).

A month is converted as a whole and imported with ``--replace`` semantics for
that month and source: running it again with the same input changes nothing,
and with corrected input replaces the month's rows (decisions on rows that
did not change are kept).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from django.conf import settings

from billing.audit import Actor
from billing.models import InstitutionSettings, Source, TagMapping
from billing.periods import month_bounds
from billing.rules import UNMAPPED_ACCOUNT_TAG
from ingest.focus.basis import conversion_name
from ingest.focus.errors import IngestError
from ingest.focus.services import ImportResult, file_import
from ingest.usage.mappings import owners
from ingest.usage.pricing import PricedRow, PricingError, price
from ingest.usage.quotas import QuotaSummary, read_quotas
from ingest.usage.rates import rate_book
from ingest.usage.sacct import SacctOptions, SacctSummary, read_sacct
from openchargeback.csvfile import LF, CsvWriter
from openchargeback.files import write_atomically
from openchargeback.money import from_nanos, money_str

__all__ = [
    "FOCUS_FIELDS",
    "Conversion",
    "OwnerTotal",
    "conversion_import",
    "quantity_text",
    "slurm_conversion",
    "storage_conversion",
]

FOCUS_FIELDS = (
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ServiceCategory",
    "ServiceName",
    "ResourceId",
    "ResourceName",
    "SubAccountId",
    "SubAccountName",
    "ProviderName",
    "ConsumedQuantity",
    "ConsumedUnit",
    "PricingUnit",
    "ListUnitPrice",
    "ListCost",
    "ContractedCost",
    "BilledCost",
    "EffectiveCost",
    "BillingCurrency",
    "ChargeDescription",
    "Tags",
)
# The unit of ConsumedQuantity, by resource (plural, as FOCUS exports write it).
_CONSUMED_UNIT = {"cpu": "CPU-hours", "gpu": "GPU-hours", "storage": "TB-months"}
_SERVICE = {"cpu": "Slurm CPU-hours", "gpu": "Slurm GPU-hours", "storage": "Storage"}
_KIND_LABEL = {"slurm": "Slurm account", "storage": "Storage quota"}
# Shown quantities are rounded for reading; costs come from the exact usage.
_QUANTITY_PLACES = Decimal("0.000001")


@dataclass(frozen=True)
class OwnerTotal:
    """What-if line: one PI x project (unmapped accounts on their own)."""

    pi_email: str
    project_id: str
    account: str  # the unmapped account, "" for mapped usage
    rows: int
    list_cost: Decimal
    billed_cost: Decimal

    @property
    def subsidy(self) -> Decimal:
        return self.list_cost - self.billed_cost


@dataclass
class Conversion:
    """One month of priced usage from one Slurm or storage report."""

    kind: str  # slurm | storage
    period: str
    input_name: str
    rows: list[PricedRow]
    summary: SacctSummary | QuotaSummary
    unmapped: list[str] = field(default_factory=list)
    _csv: bytes | None = field(default=None, init=False, repr=False)

    @property
    def list_cost(self) -> Decimal:
        return from_nanos(sum(row.list_nanos for row in self.rows))

    @property
    def billed_cost(self) -> Decimal:
        return from_nanos(sum(row.billed_nanos for row in self.rows))

    def by_owner(self) -> list[OwnerTotal]:
        """Totals per PI and project, unmapped accounts last."""
        sums: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        for row in self.rows:
            key = (
                row.owner.pi_email,
                row.owner.project_id,
                row.account if row.unmapped else "",
            )
            entry = sums[key]
            entry[0] += 1
            entry[1] += row.list_nanos
            entry[2] += row.billed_nanos
        totals = [
            OwnerTotal(
                pi_email=pi,
                project_id=project,
                account=account,
                rows=n,
                list_cost=from_nanos(listed),
                billed_cost=from_nanos(billed),
            )
            for (pi, project, account), (n, listed, billed) in sums.items()
        ]
        return sorted(totals, key=lambda t: (bool(t.account), t.pi_email, t.project_id, t.account))

    def focus_csv(self) -> bytes:
        """The FOCUS CSV of the month (UTF-8, header first); built once."""
        if self._csv is None:
            buffer = io.StringIO(newline="")
            # read by our own importer, never opened as a spreadsheet: no apostrophes;
            # LF, as earlier versions wrote it (the same month converts to the same bytes)
            writer = CsvWriter(buffer, neutralise=False, line_end=LF)
            writer.writerow(FOCUS_FIELDS)
            writer.writerows(_focus_rows(self))
            self._csv = buffer.getvalue().encode()
        return self._csv

    def write(self, path: Path) -> None:
        """Write the FOCUS CSV to ``path`` atomically (nothing half written)."""
        try:
            write_atomically(path, self.focus_csv())
        except OSError as exc:
            raise IngestError(
                f"{path}: could not write the FOCUS file: {exc.strerror or exc}"
            ) from exc

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "period": self.period,
            "input": self.input_name,
            "rows": len(self.rows),
            "list_cost": money_str(self.list_cost),
            "billed_cost": money_str(self.billed_cost),
            "subsidy": money_str(self.list_cost - self.billed_cost),
            "unmapped": self.unmapped,
            "input_summary": _summary_dict(self.summary),
            "owners": [
                {
                    "pi_email": t.pi_email,
                    "project_id": t.project_id,
                    "unmapped_account": t.account,
                    "rows": t.rows,
                    "list_cost": money_str(t.list_cost),
                    "subsidy": money_str(t.subsidy),
                    "billed_cost": money_str(t.billed_cost),
                }
                for t in self.by_owner()
            ],
        }


def _summary_dict(summary: SacctSummary | QuotaSummary) -> dict[str, Any]:
    """The reader's account of its input, JSON-ready (hours and TB-months as exact text)."""
    result: dict[str, Any] = {}
    for item in fields(summary):
        value = getattr(summary, item.name)
        if isinstance(value, Fraction):
            value = _quantity(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        result[item.name] = value
    return result


def slurm_conversion(
    *, lines: Iterable[str], name: str, period: str, options: SacctOptions
) -> Conversion:
    """Price a month of ``sacct`` output (see :func:`ingest.usage.sacct.read_sacct`)."""
    usages, summary = read_sacct(lines, name=name, period=period, options=options)
    return _priced("slurm", usages, summary, name=name, period=period)


def storage_conversion(*, path: Path, name: str, period: str, tier: str) -> Conversion:
    """Price a month of a storage quota report (see :func:`ingest.usage.quotas.read_quotas`)."""
    usages, summary = read_quotas(path, name=name, period=period, default_tier=tier)
    return _priced("storage", usages, summary, name=name, period=period)


def _priced(
    kind: str, usages: Any, summary: SacctSummary | QuotaSummary, *, name: str, period: str
) -> Conversion:
    try:
        rows = price(usages, book=rate_book(), owners=owners(kind), period=period)
    except PricingError as exc:
        raise IngestError(f"{name}: {exc}; nothing was written") from exc
    unmapped = sorted({row.account for row in rows if row.unmapped})
    return Conversion(
        kind=kind, period=period, input_name=name, rows=rows, summary=summary, unmapped=unmapped
    )


def conversion_import(
    *, conversion: Conversion, source: Source, actor: Actor, dry_run: bool = False
) -> ImportResult:
    """Import the month through the normal ingest path, replacing the source's
    earlier rows for the month (idempotent: the same input changes nothing)."""
    # The name marks the source as priced by the rate card (ingest.usage.ratecard).
    display = conversion_name(conversion.kind, conversion.period)
    staging = Path(settings.MEDIA_ROOT) / "converted"
    try:
        staging.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=staging, prefix=".focus-", suffix=".csv")
        with os.fdopen(handle, "wb") as fh:
            fh.write(conversion.focus_csv())
    except OSError as exc:
        raise IngestError(
            f"{display}: could not write the FOCUS file to convert: {exc.strerror or exc}; "
            "nothing was imported"
        ) from exc
    try:
        return file_import(
            path=name,
            source=source,
            actor=actor,
            expected_period=conversion.period,
            dry_run=dry_run,
            replace=True,
            display_name=display,
        )
    finally:
        Path(name).unlink(missing_ok=True)


def _tag_keys() -> dict[str, str]:
    """The tag key the site's tag mapping looks for first, per field."""
    keys = {field: field for field in ("pi_email", "project_id", "fund_org")}
    for mapping in TagMapping.objects.filter(field__in=list(keys)):
        if mapping.keys:
            keys[mapping.field] = mapping.keys[0]
    return keys


def _focus_rows(conversion: Conversion) -> Iterator[list[str]]:
    institution = InstitutionSettings.load()
    currency = institution.currency
    provider = institution.name or "Research Computing"
    keys = _tag_keys()
    period = conversion.period
    period_start = f"{period}-01T00:00:00Z"
    _first, following = month_bounds(period)
    period_end = f"{following.isoformat()}T00:00:00Z"
    label = _KIND_LABEL[conversion.kind]
    for row in conversion.rows:
        terms = row.terms
        tags: dict[str, str] = {}
        if not row.unmapped:
            tags[keys["pi_email"]] = row.owner.pi_email
            tags[keys["project_id"]] = row.owner.project_id
            if row.owner.fund_org:
                tags[keys["fund_org"]] = row.owner.fund_org
        else:
            tags[UNMAPPED_ACCOUNT_TAG] = f"{label} {row.account}"
        if conversion.kind == "slurm":
            tags["slurm_account"] = row.account
            tags["partition"] = row.service
            if row.qos:
                tags["qos"] = row.qos
            resource_id = f"slurm/{row.account}/{row.service}/{row.qos or '-'}/{row.resource}"
            where = f"partition {row.service}" + (f", QOS {row.qos}" if row.qos else "")
        else:
            tags["storage_quota"] = row.account
            tags["tier"] = row.service
            resource_id = f"storage/{row.service}/{row.account}"
            where = f"tier {row.service}"
        yield [
            period_start,
            period_end,
            f"{row.start_day.isoformat()}T00:00:00Z",
            f"{row.end_day.isoformat()}T00:00:00Z",
            "Usage",
            "Compute" if conversion.kind == "slurm" else "Storage",
            f"{_SERVICE[row.resource]} ({row.service})",
            resource_id,
            row.account,
            row.account,
            row.owner.project_id or row.account,
            provider,
            _quantity(row.quantity),
            _CONSUMED_UNIT[row.resource],
            row.unit,
            money_str(terms.list_rate),
            money_str(from_nanos(row.list_nanos)),
            money_str(from_nanos(row.billed_nanos)),
            money_str(from_nanos(row.billed_nanos)),
            money_str(from_nanos(row.billed_nanos)),
            currency,
            _description(row, where),
            json.dumps(tags, ensure_ascii=False, sort_keys=True),
        ]


def _quantity(value: Fraction) -> str:
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return money_str(exact.quantize(_QUANTITY_PLACES).normalize())


def quantity_text(value: Fraction, places: int = 2) -> str:
    """An exact quantity rounded for people: ``1,908.5``."""
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return f"{exact.quantize(Decimal(1).scaleb(-places)).normalize():,f}"


def _description(row: PricedRow, where: str) -> str:
    terms = row.terms
    unit = row.unit if row.quantity == 1 else _CONSUMED_UNIT[row.resource]
    parts = [f"{_quantity(row.quantity)} {unit} on {where}"]
    if row.jobs:
        parts.append(f"{row.jobs} job{'s' if row.jobs != 1 else ''}")
    parts.append(f"list {money_str(terms.list_rate)}/{row.unit}")
    if row.free_quantity:
        parts.append(f"{_quantity(row.free_quantity)} {_CONSUMED_UNIT[row.resource]} free")
    if terms.subsidy_percent:
        parts.append(f"{terms.subsidy_percent.normalize():f}% subsidy")
    return "; ".join(parts)
