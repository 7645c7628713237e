"""Concurrent `ingest` processes against one SQLite file (SPEC §3 idempotence, §10).

Each test runs real `manage.py ingest` subprocesses against its own migrated
SQLite database (cloned from one migrated per module), so the tests do not
depend on the backend pytest itself uses and run the same on the PostgreSQL
CI run. Writers must queue (IMMEDIATE transactions + busy timeout), never fail
with "database is locked", and never double count.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_focus
from tests.ingest_helpers import (
    clone_instance,
    migrate,
    query,
    rows_for,
    start_manage,
    stored_files,
)

pytestmark = pytest.mark.slow

PROCESSES = 8
ROWS = 2_000
TIMEOUT = 120  # seconds per process; the whole test takes well under 30 s


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrate(tmp_path_factory.mktemp("concurrency_template"))


@pytest.fixture
def instance(template: Path, tmp_path: Path) -> Path:
    return clone_instance(template, tmp_path / "instance")


def _run_all(instance: Path, argv_list: list[list[str]]) -> list[dict[str, Any]]:
    """Start every command at once, wait for all; return exit code and output of each."""
    procs = [start_manage(instance, *argv) for argv in argv_list]
    deadline = time.monotonic() + TIMEOUT
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            pytest.fail(f"ingest process {proc.pid} did not finish within {TIMEOUT}s")
        results.append({"rc": proc.returncode, "stdout": out, "stderr": err})
    return results


def _charges(instance: Path, source: str | None = None) -> int:
    if source is None:
        return int(query(instance, "SELECT count(*) FROM billing_charge")[0][0])
    sql = (
        "SELECT count(*) FROM billing_charge c JOIN billing_source s ON s.id = c.source_id "
        "WHERE s.slug = ?"
    )
    return int(query(instance, sql, [source])[0][0])


def _assert_clean(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All exited 0 without lock errors or tracebacks; returns the parsed --json outputs."""
    payloads = []
    for n, r in enumerate(results):
        output = r["stdout"] + r["stderr"]
        assert "database is locked" not in output, f"process {n}: {output}"
        assert "Traceback" not in output, f"process {n}: {output}"
        assert r["rc"] == 0, f"process {n} exited {r['rc']}: {r['stderr']}"
        payloads.append(json.loads(r["stdout"]))
    return payloads


def test_concurrent_imports_of_distinct_files_all_land_exactly_once(
    instance: Path, tmp_path: Path
) -> None:
    sources = ["aws", "aws", "aws", "aws", "azure", "azure", "hpc", "gcp"]
    files = []
    for n, source in enumerate(sources):
        rows = rows_for(ROWS, resource_prefix=f"file{n}", billed=f"{n + 1}.25")
        files.append(write_focus(tmp_path / f"{source}_{n}_2025-01.csv", rows))
    argv = [
        ["ingest", str(path), "--source", source, "--json", "--user", f"worker{n}"]
        for n, (path, source) in enumerate(zip(files, sources, strict=True))
    ]

    payloads = _assert_clean(_run_all(instance, argv))

    assert [p["status"] for p in payloads] == ["imported"] * PROCESSES
    assert [p["charges_created"] for p in payloads] == [ROWS] * PROCESSES
    assert all(p["duplicates_skipped"] == 0 for p in payloads)
    assert _charges(instance) == PROCESSES * ROWS
    assert _charges(instance, "aws") == 4 * ROWS
    assert _charges(instance, "azure") == 2 * ROWS
    # Every import is recorded once, with its own stored copy.
    assert query(instance, "SELECT count(*) FROM ingest_import")[0][0] == PROCESSES
    assert len(stored_files(instance)) == PROCESSES
    # One period was created (once), though every process saw it as new.
    assert query(instance, "SELECT period, status FROM billing_billingperiod") == [
        ("2025-01", "open")
    ]
    created = query(
        instance, "SELECT count(*) FROM billing_auditevent WHERE action = 'period.create'"
    )
    assert created[0][0] == 1
    # Totals are exact: sum over files of ROWS * (n + 1.25), in nano-units.
    billed = query(instance, "SELECT sum(billed_cost) FROM billing_charge")[0][0]
    expected = sum(ROWS * (n * 1_000_000_000 + 1_250_000_000) for n in range(PROCESSES))
    assert int(billed) == expected
    # The shared PI and project were created once, not once per process.
    assert query(instance, "SELECT count(*) FROM billing_pi")[0][0] == 1
    assert query(instance, "SELECT count(*) FROM billing_project")[0][0] == 1


def test_concurrent_imports_of_the_same_file_count_it_once(instance: Path, tmp_path: Path) -> None:
    path = write_focus(tmp_path / "aws_2025-01.csv", rows_for(ROWS, resource_prefix="same"))
    argv = [
        ["ingest", str(path), "--source", "aws", "--json", "--user", f"worker{n}"]
        for n in range(PROCESSES)
    ]

    payloads = _assert_clean(_run_all(instance, argv))

    statuses = sorted(p["status"] for p in payloads)
    assert statuses == ["already_imported"] * (PROCESSES - 1) + ["imported"]
    winner = next(p for p in payloads if p["status"] == "imported")
    assert winner["charges_created"] == ROWS
    for p in payloads:
        if p["status"] == "already_imported":
            assert p["charges_created"] == 0
            assert p["files"][0]["import_id"] == winner["files"][0]["import_id"]
            assert "already imported" in p["files"][0]["message"]
    assert _charges(instance) == ROWS
    assert query(instance, "SELECT count(*) FROM ingest_import")[0][0] == 1
    duplicated = query(
        instance,
        "SELECT count(*) FROM (SELECT fingerprint, occurrence FROM billing_charge "
        "GROUP BY source_id, fingerprint, occurrence HAVING count(*) > 1)",
    )
    assert duplicated[0][0] == 0
    assert len(stored_files(instance)) == 1
    imported_events = query(
        instance, "SELECT count(*) FROM billing_auditevent WHERE action = 'import.create'"
    )
    assert imported_events[0][0] == 1
