"""What the benchmark scripts share: the helpers of ``benchmarks/bench_ingest.py``
and a scratch site (a run directory and a database) that is removed after.

Scripts run as ``python benchmarks/bench_NAME.py`` with the project installed
in the virtualenv (``make install``), so the apps import as installed and this
directory, first on ``sys.path``, only adds the ``bench_*`` modules: no name
here is the name of an app.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bench_ingest as bench

ROOT = bench.ROOT


@contextmanager
def scratch_site(
    prefix: str, *, keep: bool, parent: Path | None = None
) -> Iterator[tuple[Path, str, str]]:
    """(run directory, database URL, backend) for one benchmark run.

    SQLite: a file in the run directory. PostgreSQL (``DATABASE_URL`` is
    ``postgres://``): a database ``<dbname>_bench`` on that server, created
    here; the database in the URL is never touched. Both are removed on the
    way out unless `keep`.
    """
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    url = os.environ.get("DATABASE_URL", "")
    pg_name = None
    try:
        if bench.is_postgres(url):
            pg_name, site_url = bench.bench_database_url(url)
            bench.pg_admin_child("create", url, pg_name)
            yield run_dir, site_url, "postgresql"
        else:
            yield run_dir, f"sqlite:///{run_dir / 'db.sqlite3'}", "sqlite"
    finally:
        if keep:
            print(f"kept {run_dir}" + (f" and database {pg_name}" if pg_name else ""))
        else:
            if pg_name:
                if "django" in sys.modules:
                    from django.db import connections

                    connections.close_all()
                bench.pg_admin_child("drop", url, pg_name)
            shutil.rmtree(run_dir, ignore_errors=True)


def ingest_and_setup(args: Any, run_dir: Path, url: str, backend: str) -> None:
    """Import the synthetic file of ``args.rows`` rows (generated once, cached;
    not timed) into the scratch site, then set Django up in this process for it."""
    meta = bench.ensure_file(args.workdir, args.rows, args.seed, sys.stderr)
    print(f"ingesting {args.rows:,} rows into {backend} (not timed) ...", file=sys.stderr)
    bench.ingest_once(backend, meta, url, run_dir, sys.stderr)
    os.environ.update(bench.app_env(url, run_dir / "instance"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openchargeback.settings")
    import django

    django.setup()


def run_in_scratch_site(prefix: str, args: Any, run: Callable[[Any, Path, str, str], int]) -> int:
    """``run(args, run_dir, url, backend)`` in a scratch site; 1 when the benchmark fails."""
    try:
        with scratch_site(prefix, keep=args.keep) as (run_dir, url, backend):
            return run(args, run_dir, url, backend)
    except bench.BenchmarkFailed as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
