"""Import FOCUS files (CSV, CSV.gz, Parquet) as charges. Safe to re-run: rows
already imported for the source are skipped, so nothing is counted twice."""

from __future__ import annotations

import json
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.services import Actor, BillingError, detect_source, source_for_slug
from ingest.basis import label as basis_label
from ingest.services import ImportResult, IngestError, import_file
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


class Command(BaseCommand):
    help = "Import FOCUS billing files (CSV, CSV.gz or Parquet) into a source."

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
            "--dry-run", action="store_true", help="Parse and report; write nothing."
        )
        parser.add_argument(
            "--replace",
            action="store_true",
            help="Make the source's charges for the file's periods exactly the file's rows "
            "(open periods only); review decisions on unchanged rows are kept.",
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")
        parser.add_argument("--user", help="Acting user for the audit trail (default: OS user).")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = Actor.from_cli(options["user"])
        results: list[ImportResult] = []
        for name in options["files"]:
            path = Path(name)
            try:
                source = (
                    source_for_slug(options["source"]) if options["source"] else self._detect(path)
                )
                progress = Progress(path.name)
                try:
                    result = import_file(
                        path=path,
                        source=source,
                        actor=actor,
                        expected_period=options["period"],
                        dry_run=options["dry_run"],
                        replace=options["replace"],
                        display_name=name,
                        progress=progress,
                    )
                finally:
                    progress.close()
            except (IngestError, BillingError) as exc:
                done = sum(1 for r in results if r.status == "imported")
                tail = f" ({done} earlier file{'s' if done != 1 else ''} imported)" if done else ""
                raise CommandError(f"{exc}{tail}") from None
            results.append(result)
            if not options["json"]:
                self.stdout.write(import_summary(result))
        if options["json"]:
            self.stdout.write(json.dumps(_combined(results)))

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
    if result.import_id and result.status == "imported":
        text += f" [import #{result.import_id}]"
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


def _combined(results: list[ImportResult]) -> dict[str, Any]:
    """One JSON object for the whole run: totals plus each file."""
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
    }
