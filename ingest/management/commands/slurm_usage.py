"""Slurm usage into FOCUS charges: ``openchargeback slurm-usage --period P
(--sacct-file FILE | --run-sacct) (--output FILE | --ingest | --what-if)``.

Reads ``sacct --allocations --parsable2`` output, bills each job's CPU and
GPU hours inside the month at the rate card's rates, day by day, and maps
each Slurm account to its PI, project and fund/org (docs/integrations/slurm.md).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser

from ingest.focus.errors import IngestError
from ingest.management.converting import ConverterCommand
from ingest.usage.converters import Conversion, quantity_text, slurm_conversion
from ingest.usage.sacct import SACCT_ENV, SacctOptions, SacctSummary, sacct_command
from openchargeback.text import count


class Command(ConverterCommand):
    help = "Price a month of Slurm jobs (sacct output) as FOCUS charges."
    default_source = "hpc"

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument(
            "--sacct-file",
            metavar="FILE",
            help="Output of `sacct --allocations --parsable2 --noheader --format "
            "JobID,Account,Partition,QOS,AllocCPUS,AllocTRES,Elapsed,Start,End,State` "
            "(a header line in any column order is also accepted).",
        )
        source.add_argument(
            "--run-sacct",
            action="store_true",
            help="Run sacct for the month (OPENCHARGEBACK_SACCT_COMMAND) and read its output.",
        )
        super().add_arguments(parser)
        parser.add_argument(
            "--states",
            help="Billable job states, comma-separated (default: "
            "OPENCHARGEBACK_SLURM_BILLABLE_STATES).",
        )
        parser.add_argument(
            "--failed-min-minutes",
            type=int,
            help="Bill FAILED jobs only from this many minutes of run time (default: "
            "OPENCHARGEBACK_SLURM_FAILED_MIN_MINUTES).",
        )

    def convert(self, period: str, options: dict[str, Any]) -> Conversion:
        states = options["states"]
        minutes = options["failed_min_minutes"]
        if minutes is None:
            minutes = settings.OPENCHARGEBACK_SLURM_FAILED_MIN_MINUTES
        if minutes < 0:
            raise IngestError("--failed-min-minutes must not be negative")
        sacct_options = SacctOptions(
            billable_states=frozenset(
                s
                for s in (
                    states.split(",") if states else settings.OPENCHARGEBACK_SLURM_BILLABLE_STATES
                )
                if s.strip()
            ),
            failed_min_seconds=minutes * 60,
        )
        if options["run_sacct"]:
            return slurm_conversion(
                lines=_run_sacct(period).splitlines(),
                name=f"sacct {period}",
                period=period,
                options=sacct_options,
            )
        path = Path(options["sacct_file"])
        try:
            with open(path, encoding="utf-8", errors="strict", newline="") as fh:
                return slurm_conversion(
                    lines=fh, name=path.name, period=period, options=sacct_options
                )
        except FileNotFoundError:
            raise IngestError(f"{path}: no such file") from None
        except UnicodeDecodeError as exc:
            raise IngestError(f"{path.name}: not UTF-8 text ({exc.reason})") from None
        except OSError as exc:
            raise IngestError(f"{path}: cannot read: {exc.strerror or exc}") from None

    def describe(self, conversion: Conversion) -> str:
        summary = conversion.summary
        assert isinstance(summary, SacctSummary)
        skipped = sum(summary.skipped_by_state.values())
        states = ", ".join(f"{k} {v:,}" for k, v in sorted(summary.skipped_by_state.items()))
        text = (
            f"{count(summary.lines, 'sacct line')}, {count(summary.jobs_billed, 'job')} billed "
            f"({quantity_text(summary.cpu_hours)} CPU-hours, "
            f"{quantity_text(summary.gpu_hours)} GPU-hours) "
            f"in {count(len(conversion.rows), 'row')}"
        )
        if skipped:
            text += f", {skipped:,} not billable ({states})"
        if summary.jobs_outside_period:
            text += f", {summary.jobs_outside_period:,} outside the month"
        return text


def _run_sacct(period: str) -> str:
    argv = [*shlex.split(settings.OPENCHARGEBACK_SACCT_COMMAND), *sacct_command(period)[1:]]
    try:
        done = subprocess.run(  # noqa: S603 - the site's configured sacct command
            argv,
            capture_output=True,
            text=True,
            timeout=settings.OPENCHARGEBACK_SACCT_TIMEOUT,
            env={**os.environ, **SACCT_ENV},
            check=False,
        )
    except FileNotFoundError:
        raise IngestError(
            f"cannot run {argv[0]!r}: not found (set OPENCHARGEBACK_SACCT_COMMAND, "
            "or use --sacct-file)"
        ) from None
    except subprocess.TimeoutExpired:
        raise IngestError(
            f"{argv[0]} did not finish within {settings.OPENCHARGEBACK_SACCT_TIMEOUT} s "
            "(OPENCHARGEBACK_SACCT_TIMEOUT)"
        ) from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise IngestError(f"{argv[0]} failed (exit {done.returncode}): {reason}")
    return done.stdout
