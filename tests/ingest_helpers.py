"""Helpers for the ingest error and concurrency tests.

Raw FOCUS text builders (for files ``write_focus`` cannot express: broken
lines, BOMs, CRLF, bad bytes) and a way to run ``manage.py`` in a subprocess
against its own temporary SQLite database, independent of the backend pytest
itself uses (so these tests behave the same on the PostgreSQL CI run).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.conftest import FOCUS_COLUMNS, focus_row

ROOT = Path(__file__).resolve().parents[1]
DB_NAME = "cli.sqlite3"

# Variables of the pytest process that must not leak into the subprocesses:
# they would point them at pytest's database or files.
_SCRUBBED = (
    "DATABASE_URL",
    "STATIC_ROOT",
    "OPENCHARGEBACK_ENV_FILE",
    "OPENCHARGEBACK_INSTANCE_DIR",
    "LOG_FILE",
    "SECRET_KEY",
)


# --- FOCUS text -----------------------------------------------------------------


def focus_lines(
    rows: Sequence[dict[str, str]], columns: Sequence[str] = FOCUS_COLUMNS
) -> list[str]:
    """The header and one CSV line per row, without line terminators.

    Line ``i`` of the result is physical line ``i + 1`` of a file written with
    :func:`join_lines` (when no field holds a newline).
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().split("\n")[:-1]


def join_lines(lines: Sequence[str], newline: str = "\n") -> str:
    return newline.join(lines) + newline


def replace_field(line: str, index: int, raw: str) -> str:
    """``line`` with field ``index`` (0-based) replaced by ``raw``, written unquoted."""
    fields = next(csv.reader([line]))
    marker = "@@FIELD@@"
    fields[index] = marker
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    return buffer.getvalue().replace(marker, raw)


def rows_for(
    count: int, *, resource_prefix: str = "r", period: str = "2025-01", billed: str = "1.25"
) -> list[dict[str, str]]:
    """``count`` distinct, well-attributed FOCUS rows (different ResourceIds)."""
    return [
        focus_row(period=period, billed=billed, resource=f"{resource_prefix}-{i:06d}")
        for i in range(count)
    ]


# --- manage.py in a subprocess -----------------------------------------------------


def cli_env(instance: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{instance / DB_NAME}",
            "DEBUG": "true",
            "OPENCHARGEBACK_INSTANCE_DIR": str(instance),
            "MEDIA_ROOT": str(instance / "files"),
            "DJANGO_SETTINGS_MODULE": "openchargeback.settings",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def manage(
    instance: Path, *args: str, timeout: float = 120, database_url: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py ARGS`` against the instance's SQLite database (or `database_url`)."""
    env = cli_env(instance)
    if database_url:
        env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_manage(instance: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=cli_env(instance),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def migrate(instance: Path) -> Path:
    """Create and migrate (which also seeds the defaults) the instance's database."""
    instance.mkdir(parents=True, exist_ok=True)
    done = manage(instance, "migrate", "--no-input", timeout=300)
    assert done.returncode == 0, done.stderr
    return instance


def clone_instance(template: Path, instance: Path) -> Path:
    """A copy of a migrated instance's database (faster than migrating again)."""
    instance.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal"):
        src = template / f"{DB_NAME}{suffix}"
        if src.exists():
            shutil.copyfile(src, instance / f"{DB_NAME}{suffix}")
    return instance


def query(instance: Path, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    """Read the instance's database directly (stdlib sqlite3, read-only)."""
    uri = f"file:{instance / DB_NAME}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=30) as conn:
        return conn.execute(sql, params).fetchall()


def table_counts(instance: Path) -> dict[str, int]:
    tables = (
        "billing_charge",
        "ingest_import",
        "billing_billingperiod",
        "billing_auditevent",
        "billing_pi",
        "billing_project",
    )
    return {t: int(query(instance, f"SELECT count(*) FROM {t}")[0][0]) for t in tables}  # noqa: S608


def stored_files(instance: Path) -> list[Path]:
    """Files kept under the instance's MEDIA_ROOT (stored import copies)."""
    media = instance / "files"
    return sorted(p for p in media.rglob("*") if p.is_file()) if media.exists() else []
