"""What a FOCUS import reports: one file's result, a delivery's, and the
files a delivery is made of. Plain data, no ORM."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from billing.basis import BILLED
from openchargeback.money import money_str


@dataclass
class ImportResult:
    """What an import did (or, for a dry run, would do)."""

    status: str  # imported | already_imported | dry_run
    file: str
    source: str
    import_id: int | None = None
    rows_read: int = 0
    charges_created: int = 0
    duplicates_skipped: int = 0
    charges_removed: int = 0
    flagged: int = 0
    flags: dict[str, int] = field(default_factory=dict)
    billed_total: Decimal = Decimal("0.00")
    periods: list[str] = field(default_factory=list)
    new_periods: list[str] = field(default_factory=list)
    values_rounded: int = 0
    message: str = ""
    # InvoiceId -> Σ BilledCost of the file's rows (exact text); "" = no InvoiceId.
    invoice_totals: dict[str, str] = field(default_factory=dict)
    # FOCUS rules the file breaks: {"rule", "message", "rows", "lines"}.
    conformance: list[dict[str, Any]] = field(default_factory=list)
    # Origin rows of FOCUS 1.3 split allocations, not billed (their allocated rows are).
    allocation_origins: int = 0
    delivery: str = ""  # the UUID shared by the imports of its delivery
    cost_basis: str = BILLED
    # Under the amortised basis: commitment rows sent to the central project or excluded.
    commitment: dict[str, int] = field(default_factory=dict)
    commitment_project: str = ""
    # Saved patterns RE2 cannot run, skipped (billing.selectors.load_ruleset).
    skipped_patterns: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "file": self.file,
            "source": self.source,
            "import_id": self.import_id,
            "rows_read": self.rows_read,
            "charges_created": self.charges_created,
            "duplicates_skipped": self.duplicates_skipped,
            "charges_removed": self.charges_removed,
            "flagged": self.flagged,
            "flags": dict(sorted(self.flags.items())),
            "billed_total": money_str(self.billed_total),
            "periods": self.periods,
            "new_periods": self.new_periods,
            "values_rounded": self.values_rounded,
            "message": self.message,
            "invoice_totals": dict(self.invoice_totals),
            "conformance": list(self.conformance),
            "allocation_origins": self.allocation_origins,
            "delivery": self.delivery,
            "cost_basis": self.cost_basis,
            "commitment": dict(sorted(self.commitment.items())),
            "commitment_project": self.commitment_project,
            "skipped_patterns": list(self.skipped_patterns),
        }


@dataclass
class DeliveryResult:
    """What a delivery (the files imported together in one transaction) did."""

    status: str  # imported | already_imported | dry_run
    source: str
    delivery: str | None  # the UUID its imports share (None unless written)
    files: list[ImportResult]

    @property
    def charges_created(self) -> int:
        return sum(r.charges_created for r in self.files)

    @property
    def duplicates_skipped(self) -> int:
        return sum(r.duplicates_skipped for r in self.files)

    @property
    def charges_removed(self) -> int:
        return sum(r.charges_removed for r in self.files)

    @property
    def billed_total(self) -> Decimal:
        return sum((r.billed_total for r in self.files), Decimal("0.00"))

    @property
    def periods(self) -> list[str]:
        return sorted({p for r in self.files for p in r.periods})

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "source": self.source,
            "delivery": self.delivery,
            "files": [r.file for r in self.files],
            "import_ids": [r.import_id for r in self.files if r.import_id],
            "rows_read": sum(r.rows_read for r in self.files),
            "charges_created": self.charges_created,
            "duplicates_skipped": self.duplicates_skipped,
            "charges_removed": self.charges_removed,
            "flagged": sum(r.flagged for r in self.files),
            "billed_total": money_str(self.billed_total),
            "periods": self.periods,
        }


@dataclass
class DeliveryFile:
    """One file of a delivery.

    ``providers``: keep only the rows whose provider (ServiceProviderName, else
    ProviderName), lower-cased, is in the set (a multi-provider file routed to
    sources, see ingest.focus.routing); None keeps every row.
    """

    path: str | os.PathLike[str]
    display_name: str | None = None
    progress: Callable[[int, int], None] | None = None
    providers: frozenset[str] | None = None
