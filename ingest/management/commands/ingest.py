"""Import FOCUS files (CSV, CSV.gz, Parquet) as charges. Safe to re-run: rows
already imported for the source are skipped, so nothing is counted twice.

The files of one source and month given together are one delivery (a
month's part files): one transaction, occurrences counted across them."""

from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from billing.audit import Actor
from billing.basis import label as basis_label
from billing.commands import BillingCommand
from billing.errors import BillingError
from billing.models import Source
from billing.periods import parse_period
from billing.periods import period_in_name as detect_period
from billing.selectors import detect_source
from billing.services import source_for_slug
from ingest.focus.services import (
    DeliveryFile,
    DeliveryResult,
    ImportResult,
    IngestError,
    delivery_import,
)
from openchargeback.money import format_money, money_str


class Progress:
    """A one-line progress bar on stderr, shown only on a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty()
        self.last = 0.0
        self.started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.2 and done < total):
            return
        self.last = now
        fraction = min(done / total, 1.0) if total else 1.0
        filled = int(fraction * 30)
        bar = "#" * filled + "-" * (30 - filled)
        elapsed = now - self.started
        sys.stderr.write(f"\r{self.label} [{bar}] {fraction:6.1%} {elapsed:6.1f}s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.last:
            sys.stderr.write("\n")
            sys.stderr.flush()


class Command(BillingCommand):
    help = "Import FOCUS billing files (CSV, CSV.gz or Parquet) into a source."
    takes_dry_run = True
    dry_run_help = "Parse and report; write nothing."
    takes_json = True
    takes_user = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE", help="FOCUS files to import.")
        parser.add_argument(
            "--source",
            "-s",
            help="Source slug (aws, azure, hpc, ...). Default: detected from the file name.",
        )
        parser.add_argument(
            "--period",
            "-p",
            help="Expected billing period YYYY-MM; rows of other months are flagged "
            "period_mismatch (and stored in their own month).",
        )
        parser.add_argument(
            "--replace",
            action="store_true",
            help="Make the source's charges for the files' periods exactly the rows of the "
            "files given (one source and month: a month's part files; open periods only); "
            "review decisions on unchanged rows are kept.",
        )
        parser.add_argument(
            "--route-by-provider",
            action="store_true",
            help="Split a multi-provider FOCUS file by ProviderName into the sources that "
            "claim each provider (`sources set SLUG --provider-names ...`).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        actor = self.actor(options)
        names: list[str] = options["files"]
        if options["period"]:
            options["period"] = parse_period(options["period"])
        if options["route_by_provider"]:
            if options["source"]:
                raise BillingError("--route-by-provider chooses the sources; drop --source")
            plan = self._routed(names)
        else:
            plan = self._deliveries(names, options)
        # A file routed by provider is imported into all its sources or none.
        with transaction.atomic() if options["route_by_provider"] else nullcontext():
            deliveries = self._import(plan, options, actor, many=len(names) > 1 or len(plan) > 1)
        if options["json"]:
            self.stdout.write(json.dumps(_combined(deliveries)))

    def _import(
        self,
        plan: list[tuple[Source, list[DeliveryFile]]],
        options: dict[str, Any],
        actor: Actor,
        *,
        many: bool,
    ) -> list[DeliveryResult]:
        deliveries: list[DeliveryResult] = []
        for number, (source, items) in enumerate(plan, start=1):
            bars = [Progress(Path(item.display_name or "").name) for item in items]
            for item, bar in zip(items, bars, strict=True):
                item.progress = bar
            try:
                delivery = delivery_import(
                    files=items,
                    source=source,
                    actor=actor,
                    expected_period=options["period"],
                    dry_run=options["dry_run"],
                    replace=options["replace"],
                )
            except (IngestError, BillingError) as exc:
                done = sum(1 for d in deliveries if d.status == "imported")
                if options["route_by_provider"]:
                    done = 0  # rolled back with the rest of the file
                tail = (
                    f" ({done} earlier deliver{'ies' if done != 1 else 'y'} imported)"
                    if done
                    else ""
                )
                raise CommandError(f"{exc}{tail}") from None
            finally:
                for bar in bars:
                    bar.close()
            deliveries.append(delivery)
            if not options["json"]:
                for result in delivery.files:
                    self.stdout.write(import_summary(result))
                if many:
                    self.stdout.write(delivery_summary(delivery, number, len(plan)))
        return deliveries

    def _deliveries(
        self, names: list[str], options: dict[str, Any]
    ) -> list[tuple[Source, list[DeliveryFile]]]:
        """The files grouped into deliveries by source and month hint (--period or the
        file name), in the order given. Under --replace they must form one delivery."""
        groups: dict[tuple[int, str], tuple[Source, list[DeliveryFile]]] = {}
        first: tuple[str, Source, str] | None = None  # name, source, hint
        for name in names:
            path = Path(name)
            source = source_for_slug(options["source"]) if options["source"] else self._detect(path)
            hint = options["period"] or detect_period(name) or ""
            if first is None:
                first = (name, source, hint)
            if options["replace"]:
                other, other_source, other_hint = first
                why = ""
                if source.pk != other_source.pk:
                    why = f"is source {source.slug} but {other} is {other_source.slug}"
                elif hint and other_hint and hint != other_hint:
                    why = f"is for {hint} but {other} is for {other_hint}"
                if why:
                    raise BillingError(
                        f"{name}: {why}; a --replace delivery is one source and one month: "
                        "import them separately; nothing was imported"
                    )
                key = (source.pk, "")
            else:
                key = (source.pk, hint)
            groups.setdefault(key, (source, []))[1].append(
                DeliveryFile(path=path, display_name=name)
            )
        return list(groups.values())

    def _routed(self, names: list[str]) -> list[tuple[Source, list[DeliveryFile]]]:
        """Each file split by provider: one delivery per source, in slug order."""
        from ingest.focus.routing import route_by_provider

        plan: dict[int, tuple[Source, list[DeliveryFile]]] = {}
        for name in names:
            for source, providers in route_by_provider(path=Path(name), display_name=name):
                plan.setdefault(source.pk, (source, []))[1].append(
                    DeliveryFile(path=Path(name), display_name=name, providers=providers)
                )
        return sorted(plan.values(), key=lambda item: item[0].slug)

    def _detect(self, path: Path) -> Any:
        source = detect_source(path.name)
        if source is None:
            raise BillingError(
                f"{path.name}: cannot tell the source from the file name; pass --source"
            )
        return source


def import_summary(result: ImportResult) -> str:
    """The one-line summary of an import (also used by the usage converters)."""
    if result.status == "already_imported":
        return result.message
    verb = "would import" if result.status == "dry_run" else "imported"
    flags = ", ".join(f"{k} {v}" for k, v in sorted(result.flags.items()))
    text = (
        f"{result.file}: {verb} {result.charges_created:,} charges into "
        f"{', '.join(result.periods) or '-'} for {result.source}, "
        f"billed {format_money(result.billed_total)} "
        f"(exact {money_str(result.billed_total)}, {basis_label(result.cost_basis)}); "
        f"{result.duplicates_skipped:,} duplicates skipped; "
        f"{result.flagged:,} flagged for review"
    )
    if flags:
        text += f" ({flags})"
    if result.commitment:
        text += f"; {commitment_summary(result)}"
    if result.charges_removed:
        text += f"; {result.charges_removed:,} charges of earlier imports removed"
    if result.values_rounded:
        text += f"; {result.values_rounded:,} costs had digits beyond 1e-9 (rounded)"
    if result.allocation_origins:
        text += (
            f"; {result.allocation_origins:,} origin rows of split allocations not billed "
            "(their allocated rows are)"
        )
    if result.import_id and result.status == "imported":
        text += f" [import #{result.import_id}]"
    # What finance ticks against the vendor's invoices; nothing for a file without InvoiceId.
    if any(result.invoice_totals):
        for invoice, total in result.invoice_totals.items():
            text += f"\n  invoice {invoice or '(no InvoiceId)'}: billed {total}"
    for skipped in result.skipped_patterns:
        text += f"\n  {skipped}"
    for entry in result.conformance:
        lines = ", ".join(str(line) for line in entry["lines"])
        where = f" (first lines {lines})" if lines else ""
        columns = f": {', '.join(entry['columns'])}" if entry.get("columns") else ""
        text += f"\n  FOCUS: {entry['message']}{columns}: {entry['rows']:,} rows{where}"
    return text


def delivery_summary(delivery: DeliveryResult, number: int, count: int) -> str:
    """The line after a delivery's files: which files formed it, and its totals."""
    files = len(delivery.files)
    text = (
        f"delivery {number} of {count} ({delivery.source}, "
        f"{', '.join(delivery.periods) or '-'}): {files} file{'s' if files != 1 else ''} "
        f"({', '.join(r.file for r in delivery.files)}); "
    )
    if delivery.status == "already_imported":
        return text + "already imported; nothing changed"
    verb = "would import" if delivery.status == "dry_run" else "imported"
    text += (
        f"{verb} {delivery.charges_created:,} charges, "
        f"billed {format_money(delivery.billed_total)} "
        f"(exact {money_str(delivery.billed_total)}); "
        f"{delivery.duplicates_skipped:,} duplicates skipped"
    )
    if delivery.charges_removed:
        text += f"; {delivery.charges_removed:,} charges of earlier imports removed"
    if delivery.delivery:
        text += f" [delivery {delivery.delivery}]"
    return text


def commitment_summary(result: ImportResult) -> str:
    """'2 commitment charges to it-commitments' / '... excluded (rejected)'."""
    counts = result.commitment
    central = sum(n for key, n in counts.items() if key.startswith("central"))
    excluded = sum(n for key, n in counts.items() if key.startswith("exclude"))
    parts = []
    if central:
        parts.append(f"{central:,} commitment charges to {result.commitment_project}")
    if excluded:
        parts.append(f"{excluded:,} commitment charges excluded (rejected)")
    return ", ".join(parts)


def _combined(deliveries: list[DeliveryResult]) -> dict[str, Any]:
    """One JSON object for the whole run: totals, each delivery, each file."""
    results: list[ImportResult] = [r for d in deliveries for r in d.files]
    statuses = {r.status for r in results}
    status = (
        "dry_run"
        if "dry_run" in statuses
        else "imported"
        if "imported" in statuses
        else "already_imported"
    )
    flags: dict[str, int] = {}
    for r in results:
        for reason, count in r.flags.items():
            flags[reason] = flags.get(reason, 0) + count
    billed = sum((r.billed_total for r in results), Decimal("0.00"))
    return {
        "status": status,
        "charges_created": sum(r.charges_created for r in results),
        "duplicates_skipped": sum(r.duplicates_skipped for r in results),
        "charges_removed": sum(r.charges_removed for r in results),
        "rows_read": sum(r.rows_read for r in results),
        "flagged": sum(r.flagged for r in results),
        "flags": dict(sorted(flags.items())),
        "billed_total": money_str(billed),
        "periods": sorted({p for r in results for p in r.periods}),
        "values_rounded": sum(r.values_rounded for r in results),
        "files": [r.as_dict() for r in results],
        "deliveries": [d.as_dict() for d in deliveries],
    }
