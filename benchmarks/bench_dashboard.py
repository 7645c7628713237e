"""Dashboard benchmark: the admin pages that add up a year of charges.

What it measures
----------------
1. Loads 12 periods of N charges each (default 500,000, so 6M charges) into
   a fresh database: the synthetic FOCUS file of ``benchmarks/bench_ingest.py``
   imported by ``openchargeback ingest`` in a child process (not timed), then
   copied in SQL into the 11 months before it, spread over four sources (not
   timed), with a share of the charges left pending review.
2. Times, in this process: rebuilding the charge summaries of one period
   (what a replace import does for the periods it touches), approving 100
   pending charges (the summaries follow the changed charges), then rendering
   the admin index (the dashboard: totals, cycle, three charts), a period
   page, a PI page and a project page through Django's test client as a
   logged-in superuser; each page once cold and then the median of five.
3. Checks: the dashboard's billed total equals ``SUM(billed_cost)`` of the
   period's charges that are not rejected.

SQLite by default (a database in a temporary directory); PostgreSQL when
``DATABASE_URL`` is ``postgres://...`` (a database ``<dbname>_bench`` is
created and dropped; the database in the URL is never touched).

How to run
----------
From the project root, with the project's virtualenv::

    .venv/bin/python benchmarks/bench_dashboard.py                  # 12 x 500,000
    .venv/bin/python benchmarks/bench_dashboard.py --rows 50000     # quicker
    DATABASE_URL=postgres://user:pass@localhost/ocb .venv/bin/python benchmarks/bench_dashboard.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from bench_common import bench, ingest_and_setup, run_in_scratch_site

MONTHS = 12
SOURCES = ("aws", "azure", "gcp", "hpc")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500_000, help="Charges per period.")
    parser.add_argument("--seed", type=int, default=20260901)
    parser.add_argument("--workdir", type=Path, default=bench.DEFAULT_WORKDIR)
    parser.add_argument("--keep", action="store_true")
    return parser.parse_args(argv)


def earlier_months(period: str, count: int) -> list[str]:
    year, month = map(int, period.split("-"))
    months = []
    for _ in range(count):
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
        months.append(f"{year:04d}-{month:02d}")
    return months


def copy_months(period: str) -> list[str]:
    """Copy the imported period's charges into the 11 months before it, each
    charge to one of four sources; returns every period, oldest first."""
    from django.db import connection, transaction

    from billing.audit import Actor
    from billing.models import BillingPeriod, Charge, Source
    from billing.services import period_open

    actor = Actor("bench", "cli")
    source_ids = [Source.objects.get(slug=slug).pk for slug in SOURCES]
    fields = [
        f.column
        for f in Charge._meta.concrete_fields
        if f.column not in ("id", "period_id", "source_id", "occurrence")
    ]
    columns = ", ".join(fields)
    table = Charge._meta.db_table
    months = earlier_months(period, MONTHS - 1)
    with transaction.atomic():
        source_case = " ".join(f"WHEN {i} THEN {pk}" for i, pk in enumerate(source_ids))
        for n, month in enumerate(months, start=1):
            target = period_open(period=month, actor=actor, note="benchmark copy")
            with connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {table} (period_id, source_id, occurrence, {columns}) "
                    f"SELECT %s, CASE (id %% {len(source_ids)}) {source_case} END, "
                    f"occurrence + %s, {columns} FROM {table} WHERE period_id = %s",
                    # a copy is the same line item seen again: a new occurrence
                    [target.pk, n * 1000, BillingPeriod.objects.get(period=period).pk],
                )
    return sorted([period, *months])


def timed_get(client: object, url: str, repeat: int = 5) -> tuple[float, float, bytes]:
    cold_started = time.perf_counter()
    response = client.get(url)  # type: ignore[attr-defined]
    cold = time.perf_counter() - cold_started
    if response.status_code != 200:
        raise bench.BenchmarkFailed(f"GET {url}: HTTP {response.status_code}")
    warm = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(url)  # type: ignore[attr-defined]
        warm.append(time.perf_counter() - started)
    return cold, statistics.median(warm), response.content


def run(args: argparse.Namespace, run_dir: Path, url: str, backend: str) -> int:
    ingest_and_setup(args, run_dir, url, backend)
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.db.models import Sum
    from django.test import Client

    from billing import summaries
    from billing.audit import Actor
    from billing.models import PI, BillingPeriod, Charge, InstitutionSettings, Project
    from billing.review import charges_review

    period = bench.PERIOD
    print(f"copying into {MONTHS - 1} earlier months (not timed) ...", file=sys.stderr)
    started = time.perf_counter()
    months = copy_months(period)
    periods = list(BillingPeriod.objects.filter(period__in=months).order_by("period"))
    with transaction.atomic():
        summaries.rebuild(p.pk for p in periods)
    total = Charge.objects.count()
    print(f"  {total:,} charges in {time.perf_counter() - started:.0f} s", file=sys.stderr)

    started = time.perf_counter()
    with transaction.atomic():
        summaries.rebuild([periods[-1].pk])
    rebuild_seconds = time.perf_counter() - started
    # A reviewer approving 100 charges: the summaries follow charge by charge.
    pending = Charge.objects.filter(period=periods[-1], review_state="pending")
    chosen = Charge.objects.filter(pk__in=list(pending.values_list("pk", flat=True)[:100]))
    started = time.perf_counter()
    approved = charges_review(charges=chosen, action="approve", actor=Actor("bench", "cli"))
    review_seconds = time.perf_counter() - started

    user = get_user_model().objects.create_superuser("bench", "bench@example.edu", "bench")
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    pi = PI.objects.order_by("pk").first()
    project = Project.objects.order_by("pk").first()
    assert pi is not None
    assert project is not None
    pages = [
        ("dashboard (admin index)", "/admin/"),
        (f"period page {period}", f"/admin/billing/billingperiod/{periods[-1].pk}/change/"),
        ("PI page", f"/admin/billing/pi/{pi.pk}/change/"),
        ("project page", f"/admin/billing/project/{project.pk}/change/"),
    ]
    print(f"\n{backend}, {len(periods)} periods x {args.rows:,} charges = {total:,} charges:")
    print(f"  rebuild the summaries of one period   {rebuild_seconds:6.2f} s")
    print(f"  approve {approved} charges (summaries kept)  {review_seconds:6.2f} s")
    dashboard = b""
    for name, page in pages:
        cold, warm, body = timed_get(client, page)
        dashboard = dashboard or body
        print(f"  {name:<36} {cold:6.3f} s cold, {warm:6.3f} s median of 5")

    expected = Charge.objects.filter(period=periods[-1]).exclude(review_state="rejected")
    billed = expected.aggregate(t=Sum("billed_cost"))["t"]
    shown = InstitutionSettings.cached().format_money(billed)
    if shown.encode() not in dashboard:
        raise bench.BenchmarkFailed(f"the dashboard does not show the billed total {shown}")
    print(f"  dashboard billed total {shown} = SUM(billed_cost) of the period's charges")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_in_scratch_site("ocb-dashboard-bench-", parse_args(argv), run)


if __name__ == "__main__":
    sys.exit(main())
