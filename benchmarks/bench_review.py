"""Review-queue benchmark: the admin's charge changelist on a large period.

What it measures
----------------
1. Loads N charges (default 1,000,000) into a fresh database the way a user
   would: the synthetic FOCUS file of ``benchmarks/bench_ingest.py`` (cached in the
   work directory) imported by ``openchargeback ingest`` in a child process
   (not timed here; see ``benchmarks/bench_ingest.py``).
2. Puts exactly one charge in ten (N/10, 100,000 for 1M) in the review queue
   (``review_state = pending``), the rest approved.
3. Renders review-queue pages through Django's test client as a superuser,
   exactly as the admin serves them (templates, filters, counts, paging):
   the unfiltered queue, the pending queue, a flag reason, one PI, pending
   sorted by billed cost, and a search. Each page is rendered once to warm
   up, then ``--repeat`` times (default 3); the median seconds are printed.
4. Times the bulk "Approve" action on "all N/10 matching charges" (the
   admin's select-across on the pending filter), which writes one AuditEvent
   per charge, and checks that every pending charge is approved and audited.

SQLite by default (a database in a temporary directory); PostgreSQL when
``DATABASE_URL`` is ``postgres://...`` (a database ``<dbname>_bench`` is
created and dropped; the database in the URL is never touched).

How to run
----------
From the project root, with the project's virtualenv::

    .venv/bin/python benchmarks/bench_review.py                 # 1M charges, 100k pending
    .venv/bin/python benchmarks/bench_review.py --rows 100000   # quicker
    DATABASE_URL=postgres://user:pass@localhost/ocb .venv/bin/python benchmarks/bench_review.py

Options: ``--workdir DIR`` (default ``benchmarks/out``), ``--repeat N``,
``--seed N``, ``--keep`` (keep the run directory / bench database).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench_common import bench, scratch_site


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20260901)
    parser.add_argument("--workdir", type=Path, default=bench.DEFAULT_WORKDIR)
    parser.add_argument("--keep", action="store_true")
    return parser.parse_args(argv)


def load(args: argparse.Namespace, run_dir: Path, url: str, backend: str) -> None:
    """Generate (cached) and ingest the file."""
    meta = bench.ensure_file(args.workdir, args.rows, args.seed, sys.stderr)
    print(f"ingesting {args.rows:,} rows into {backend} (not timed) ...", file=sys.stderr)
    result = bench.ingest_once(backend, meta, url, run_dir, sys.stderr)
    print(f"  {result.seconds:.1f} s", file=sys.stderr)


def setup_django(url: str, run_dir: Path) -> None:
    os.environ.update(bench.app_env(url, run_dir / "instance"))
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openchargeback.settings")
    import django

    django.setup()


def timed(work: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = work()
    return time.perf_counter() - start, value


def run(args: argparse.Namespace, run_dir: Path, url: str, backend: str) -> int:
    load(args, run_dir, url, backend)
    setup_django(url, run_dir)

    from django.contrib.admin import helpers
    from django.contrib.auth import get_user_model
    from django.db.models import Count, F
    from django.test import Client

    from billing import flags
    from billing.models import AuditEvent, Charge

    pending_target = args.rows // 10
    Charge.objects.filter(review_state="pending").update(review_state="approved")
    marked = Charge.objects.alias(slot=F("id") % 10).filter(slot=0).update(review_state="pending")
    print(f"{marked:,} of {args.rows:,} charges pending review", file=sys.stderr)
    assert abs(marked - pending_target) <= 1, marked

    flagged = Charge.objects.exclude(flags=0).values_list("flags", flat=True).first()
    reason = flags.from_mask(flagged)[0] if flagged else "missing_pi"
    pi = (
        Charge.objects.exclude(pi=None)
        .values("pi__email")
        .annotate(n=Count("id"))
        .order_by("-n")
        .first()
    )
    sample = Charge.objects.order_by("-id").values_list("resource_id", flat=True).first()

    user = get_user_model().objects.create_superuser("bench", "bench@example.edu", "x")
    client = Client()
    client.force_login(user)
    url_base = "/admin/billing/charge/"
    pages = [
        ("queue, unfiltered", url_base),
        ("queue, pending", url_base + "?review_state__exact=pending"),
        (f"queue, reason={reason}", url_base + f"?reason={reason}"),
        ("queue, one PI", url_base + f"?pi={pi['pi__email'] if pi else 'x@example.edu'}"),
        ("pending by billed cost", url_base + "?review_state__exact=pending&o=-10"),
        ("search a resource id", url_base + f"?q={sample}"),
    ]
    print(f"\n{backend}, {args.rows:,} charges, {marked:,} pending:")
    figures: list[tuple[str, float]] = []
    for name, page in pages:
        response = client.get(page)
        if response.status_code != 200:
            raise SystemExit(f"{page}: HTTP {response.status_code}")
        times = [timed(lambda page=page: client.get(page))[0] for _ in range(args.repeat)]
        figures.append((name, statistics.median(times)))
        print(f"  {name:<34} {figures[-1][1]:7.3f} s (median of {args.repeat})")

    before = AuditEvent.objects.count()
    ids = list(
        Charge.objects.filter(review_state="pending").order_by("id").values_list("id", flat=True)
    )
    seconds, response = timed(
        lambda: client.post(
            url_base + "?review_state__exact=pending",
            {
                "action": "approve",
                "select_across": "1",
                "index": "0",
                helpers.ACTION_CHECKBOX_NAME: ids[:100],
            },
        )
    )
    if response.status_code != 302:
        raise SystemExit(f"bulk approve: HTTP {response.status_code}")
    left = Charge.objects.filter(review_state="pending").count()
    audited = AuditEvent.objects.count() - before
    print(
        f"  {'bulk approve, all matching':<34} {seconds:7.3f} s "
        f"({len(ids):,} charges, {len(ids) / seconds:,.0f}/s, {audited:,} audit events)"
    )
    if left or audited != len(ids):
        raise SystemExit(f"bulk approve left {left} pending and wrote {audited} audit events")

    print("\n| page | seconds |\n|---|---|")
    for name, value in figures:
        print(f"| {name} | {value:.3f} |")
    print(f"| bulk approve {len(ids):,} (audited) | {seconds:.2f} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with scratch_site("review-", keep=args.keep, parent=args.workdir) as (run_dir, url, backend):
        return run(args, run_dir, url, backend)


if __name__ == "__main__":
    sys.exit(main())
