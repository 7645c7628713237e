"""Statement benchmark: project statements per second, inline and with workers.

What it measures
----------------
1. Builds a fresh site (not timed): two closed periods, 2025-01 and 2025-02,
   each with ``--statements`` PI projects (default 1,000; three projects per
   PI) of ``--resources`` resources each (default 30, over 3 services: a
   typical statement, within the "≤ 50 resources" of the target), loaded
   with ``openchargeback ingest`` and approved with ``review approve``.
2. ``openchargeback generate --period 2025-01 --sync``: planning, recording
   and rendering every PDF in one process. Wall time of the command.
3. ``openchargeback generate --period 2025-02`` queues one render job per
   statement; then ``openchargeback qcluster`` with ``--workers`` workers
   (default 2) is started and timed until every statement has its PDF.
   Wall time from the cluster's start (its own start-up included).
4. Checks both periods: every statement rendered, Σ statement totals equal
   to the sum of the rounded lines computed independently.

SQLite by default (a database in a temporary directory); PostgreSQL when
``DATABASE_URL`` is ``postgres://...`` (a database ``<dbname>_bench`` is
created and dropped; the database in the URL is never touched).

How to run
----------
From the project root, with the project's virtualenv::

    .venv/bin/python benchmarks/bench_statements.py
    .venv/bin/python benchmarks/bench_statements.py --statements 200 --resources 50
    DATABASE_URL=postgres://user:pass@localhost/ocb .venv/bin/python benchmarks/bench_statements.py

Options: ``--workers N``, ``--keep`` (keep the run directory / bench database).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_common import ROOT, bench, run_in_scratch_site

SERVICES = ("Compute", "Block storage", "GPU")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--statements", type=int, default=1000)
    parser.add_argument("--resources", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", action="store_true")
    return parser.parse_args(argv)


def write_focus(path: Path, period: str, statements: int, resources: int) -> int:
    """One row per resource; PI k//3 owns projects 3k..3k+2. Returns the row count."""
    start = f"{period}-01T00:00:00Z"
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer: csv.DictWriter[str] | None = None
        for s in range(statements):
            tags = json.dumps(
                {
                    "pi_email": f"pi{s // 3:04d}@example.edu",
                    "project_id": f"project-{s:05d}",
                    "fund_org": f"NSF-BIO-{2020 + s % 6}",
                }
            )
            for r in range(resources):
                cents = 1_000 + (s * 7919 + r * 104_729) % 900_000  # 10.00 .. 9,009.99
                billed = f"{cents // 100}.{cents % 100:02d}{(s + r) % 10}"  # sub-cent digits
                day = f"{period}-{1 + r % 28:02d}"
                row = {
                    "BillingPeriodStart": start,
                    "BillingPeriodEnd": start,
                    "ChargePeriodStart": f"{day}T00:00:00Z",
                    "ChargePeriodEnd": f"{day}T23:59:59Z",
                    "ListCost": f"{cents * 5 // 400}.{(cents * 5 // 4) % 100:02d}",
                    "ContractedCost": billed,
                    "BilledCost": billed,
                    "EffectiveCost": billed,
                    "BillingCurrency": "USD",
                    "ResourceId": f"res-{s:05d}-{r:03d}",
                    "ResourceName": f"resource {r} of project {s}",
                    "ServiceName": SERVICES[r % len(SERVICES)],
                    "Tags": tags,
                }
                if writer is None:
                    writer = csv.DictWriter(fh, fieldnames=list(row), lineterminator="\n")
                    writer.writeheader()
                writer.writerow(row)
                rows += 1
    return rows


def command(env: dict[str, str], *args: str) -> float:
    child = bench.run_child([*bench.openchargeback_cmd(), *args], env)
    if child.returncode != 0:
        raise bench.fail_child(" ".join(args), child)
    return float(child.seconds)


def counts(period: str) -> dict[str, Any]:
    from django.db.models import Count

    from statements.models import Statement

    current = Statement.objects.filter(period__period=period, superseded_at=None)
    return dict(current.values_list("status").annotate(n=Count("id")).order_by())


def check_totals(period: str) -> str:
    """Σ statement totals against rounded lines computed independently."""
    from collections import defaultdict
    from decimal import Decimal

    from billing.models import Charge
    from openchargeback.money import round_money
    from statements.models import Statement

    lines: dict[tuple[Any, ...], Decimal] = defaultdict(Decimal)
    for key in Charge.objects.filter(period__period=period, review_state="approved").values_list(
        "pi_id", "project_id", "source_id", "service_name", "billed_cost"
    ):
        lines[key[:4]] += key[4]
    expected = sum((round_money(v) for v in lines.values()), Decimal(0))
    total = sum(
        Statement.objects.filter(period__period=period, superseded_at=None).values_list(
            "billed_total", flat=True
        ),
        Decimal(0),
    )
    if total != expected:
        raise bench.BenchmarkFailed(f"{period}: statements {total} != rounded lines {expected}")
    return f"{total:,.2f}"


def run(args: argparse.Namespace, run_dir: Path, url: str, backend: str) -> int:
    env = bench.app_env(url, run_dir / "instance")
    env.update(Q_WORKERS=str(args.workers), Q_LOG_LEVEL="ERROR")
    n = args.statements
    print(f"building a site on {backend}: 2 periods x {n:,} statements ...", file=sys.stderr)
    command(env, "migrate", "--no-input", "-v", "0")
    for period in ("2025-01", "2025-02"):
        path = run_dir / f"bench_{period}.csv"
        rows = write_focus(path, period, n, args.resources)
        command(env, "ingest", str(path), "--source", "aws", "--period", period)
        command(env, "review", "approve", "--period", period, "--user", "bench")
        command(env, "periods", "close", period, "--user", "bench")
    print(f"  {rows:,} charges per period", file=sys.stderr)

    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openchargeback.settings")
    import django

    django.setup()

    inline = command(env, "generate", "--period", "2025-01", "--sync", "--user", "bench")
    done = counts("2025-01")
    if done.get("ready") != n:
        raise bench.BenchmarkFailed(f"inline: {done}")

    command(env, "generate", "--period", "2025-02", "--user", "bench")
    started = time.perf_counter()
    cluster = subprocess.Popen(
        [*bench.openchargeback_cmd(), "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while (counts("2025-02").get("ready") or 0) < n:
            if cluster.poll() is not None:
                raise bench.BenchmarkFailed(f"qcluster exited with {cluster.returncode}")
            if time.perf_counter() - started > 3600:
                raise bench.BenchmarkFailed(f"workers: not done after an hour: {counts('2025-02')}")
            time.sleep(0.2)
        workers = time.perf_counter() - started
    finally:
        os.killpg(cluster.pid, signal.SIGTERM)
        try:
            cluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)

    totals = [check_totals(p) for p in ("2025-01", "2025-02")]
    print(f"\n{backend}, {n:,} statements of {args.resources} resources ({rows:,} charges):")
    print(f"  generate --sync (1 process)    {inline:7.1f} s  {n / inline:6.1f} statements/s")
    print(
        f"  generate + {args.workers} qcluster workers  {workers:7.1f} s  "
        f"{n / workers:6.1f} statements/s"
    )
    print(f"  totals reconcile to the cent:  {totals[0]} and {totals[1]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_in_scratch_site("ocb-statements-bench-", parse_args(argv), run)


if __name__ == "__main__":
    sys.exit(main())
