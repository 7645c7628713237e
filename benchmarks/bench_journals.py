"""Journal benchmark: exporting the journals of a large period.

What it measures
----------------
1. Loads N charges (default 1,000,000) into a fresh database the way a user
   would: the synthetic FOCUS file of ``benchmarks/bench_ingest.py`` (cached in the
   work directory), imported by ``openchargeback ingest`` in a child process
   (not timed). Every charge is approved, untagged ones are given a PI the
   way a reviewer would, the period is closed, the source gets a credit
   fund/org and account, and statements are generated (not timed).
2. Times, in this process: ``journal_export`` as ``gl`` CSV, ``gl`` XLSX,
   ``banner`` CSV (a layout rendered with Django templates), ``summary``
   CSV and ``detail`` CSV (one row per charge), then ``check_ledger``.
   Prints seconds, lines and the growth of this process's peak RSS.
3. Checks: debits = credits = statement totals for every export.

SQLite by default (a database in a temporary directory); PostgreSQL when
``DATABASE_URL`` is ``postgres://...`` (a database ``<dbname>_bench`` is
created and dropped; the database in the URL is never touched).

How to run
----------
From the project root, with the project's virtualenv::

    .venv/bin/python benchmarks/bench_journals.py                 # 1M charges
    .venv/bin/python benchmarks/bench_journals.py --rows 100000   # quicker
    DATABASE_URL=postgres://user:pass@localhost/ocb .venv/bin/python benchmarks/bench_journals.py
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

from bench_common import bench, ingest_and_setup, run_in_scratch_site


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20260901)
    parser.add_argument("--workdir", type=Path, default=bench.DEFAULT_WORKDIR)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--no-statements",
        action="store_true",
        help="Skip generating statements (minutes at 1M charges); compare the exports with "
        "the rounded statement lines computed here instead, and skip check_ledger.",
    )
    return parser.parse_args(argv)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(args: argparse.Namespace, run_dir: Path, url: str, backend: str) -> int:
    ingest_and_setup(args, run_dir, url, backend)
    from decimal import Decimal

    from billing.audit import Actor
    from billing.models import PI, Charge, Project
    from billing.services import period_close, source_set
    from journals.models import JournalSettings
    from journals.services import journal_export
    from openchargeback.ledger import check_ledger
    from statements.models import Statement
    from statements.services import statements_generate

    actor = Actor("bench", "cli")
    period = bench.PERIOD
    # A reviewer's work, in bulk: every charge attributed and approved.
    someone, _ = PI.objects.get_or_create(email="unassigned@example.edu")
    Charge.objects.filter(pi=None).update(pi=someone, project=None)
    Charge.objects.filter(fund_org="").update(fund_org="RCI-UNASSIGNED")
    Charge.objects.update(review_state="approved", flags=0)
    Charge.objects.filter(project__isnull=False).exclude(
        pi_id__in=Project.objects.values("pi_id")
    ).update(project=None)
    period_close(period=period, actor=actor)
    source_set(slug="aws", actor=actor, credit_fund_org="RCI-CLOUD", account_code="740100")
    settings = JournalSettings.load()
    settings.fund_org_pattern = r"^(?P<fund>[^-]*)-?(?P<orgn>.*)$"  # the synthetic codes vary
    settings.save()
    if args.no_statements:
        from django.db.models import Sum

        from openchargeback.money import round_money

        lines = Charge.objects.values("pi", "project", "source", "service_name").annotate(
            t=Sum("billed_cost")
        )
        statements = sum((round_money(line["t"]) for line in lines), Decimal(0))
    else:
        started = time.perf_counter()
        statements_generate(period=period, actor=actor, sync=True)
        statements = sum(
            Statement.objects.filter(superseded_at=None).values_list("billed_total", flat=True),
            Decimal(0),
        )
        seconds = time.perf_counter() - started
        print(f"  statements: {seconds:.1f} s (not timed)", file=sys.stderr)

    print(f"\n{backend}, {args.rows:,} charges, statements total {statements:,.2f}:")
    for format, xlsx in (
        ("gl", False),
        ("gl", True),
        ("banner", False),
        ("summary", False),
        ("detail", False),
    ):
        before = peak_mib()
        started = time.perf_counter()
        export = journal_export(period=period, format=format, xlsx=xlsx, actor=actor)
        seconds = time.perf_counter() - started
        kind = "XLSX" if xlsx else "CSV"
        print(
            f"  export {format:<8} {kind:<5} {seconds:7.2f} s  {export.lines:>9,} lines  "
            f"peak RSS +{max(peak_mib() - before, 0):6.0f} MiB"
        )
        if format in ("gl", "banner") and export.debit_total != export.credit_total:
            raise bench.BenchmarkFailed(f"{format}: unbalanced")
        if format in ("summary", "detail") and export.debit_total != statements:
            raise bench.BenchmarkFailed(f"{format}: {export.debit_total} != {statements}")
    if args.no_statements:
        return 0
    started = time.perf_counter()
    result = check_ledger(period=period)
    seconds = time.perf_counter() - started
    print(f"  check_ledger          {seconds:7.2f} s  {result.problems or 'balanced'}")
    if result.problems:
        raise bench.BenchmarkFailed("; ".join(result.problems))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_in_scratch_site("ocb-journals-bench-", parse_args(argv), run)


if __name__ == "__main__":
    sys.exit(main())
