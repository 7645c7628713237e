"""Write deterministic sample inputs; safe to re-run (it overwrites its own files)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from billing.commands import BillingCommand
from openchargeback.demo.months import parse_month
from openchargeback.demo.sampledata import generate_sample_files
from openchargeback.demo.sources import FOCUS_SOURCES

DEFAULT_MONTHS = "2026-08,2026-09,2026-10"


class Command(BillingCommand):
    help = (
        "Generate realistic sample inputs per source per month: FOCUS CSV files for "
        f"{', '.join(FOCUS_SOURCES)} (aws as two part files; including rows that trip every "
        "auto-flag rule), sacct output for hpc and a quota report for storage, plus the "
        "account mappings CSVs (Slurm and storage; cloud sub-accounts)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output",
            type=Path,
            help="Directory to write to (default: <BASE_DIR>/sample_data). Created if missing.",
        )
        parser.add_argument(
            "--months",
            default=DEFAULT_MONTHS,
            help=f"Comma-separated billing months, YYYY-MM (default: {DEFAULT_MONTHS}).",
        )
        parser.add_argument(
            "--seed", type=int, default=2026, help="Random seed; same seed, same files."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        months = [m.strip() for m in str(options["months"]).split(",") if m.strip()]
        if not months:
            raise CommandError("--months: give at least one month, e.g. --months 2026-09")
        for month in months:
            try:
                parse_month(month)
            except ValueError as exc:
                raise CommandError(f"--months: {exc}") from None
        output = Path(options["output"] or Path(settings.BASE_DIR) / "sample_data")
        if output.exists() and not output.is_dir():
            raise CommandError(f"--output: {output} exists and is not a directory")
        try:
            paths = generate_sample_files(output, months=months, seed=options["seed"])
        except OSError as exc:
            raise CommandError(f"cannot write sample files to {output}: {exc}") from None
        rows = sum(_data_rows(path) for path in paths)
        self.stdout.write(
            f"Wrote {len(paths)} files ({rows:,} rows, {len(set(months))} months, "
            f"seed {options['seed']}) to {output}"
        )


def _data_rows(path: Path) -> int:
    """Jobs of a sacct file (no header line), data rows of a CSV file."""
    with path.open(encoding="utf-8", newline="") as fh:
        if path.name.endswith(".sacct.txt"):
            return sum(1 for line in fh if line.strip())
        return sum(1 for _ in csv.reader(fh)) - 1
