"""Faults: a full disk while storing PDFs, journals and import files, an
import killed half way, and a statement's render killed while writing its
PDF. Nothing half-written is ever kept or recorded, and running the same
command (or job) again once the fault is gone finishes the work.

The full disk is a real one: a tiny tmpfs mounted as MEDIA_ROOT (needs root,
as in CI; skipped elsewhere), filled up before the write.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from billing.audit import Actor
from billing.errors import BillingError
from billing.models import Charge, Source
from billing.services import source_set
from ingest.focus.errors import IngestError
from ingest.focus.services import file_import
from ingest.models import Import
from journals.models import JournalExport
from journals.services import journal_export
from statements import tasks
from statements.models import Statement
from statements.services import statements_generate
from tests.conftest import focus_row
from tests.ingest_helpers import ROOT, manage, migrate, query, start_manage, table_counts


class Disk:
    """A 1 MiB tmpfs: fill() takes the free space, free() gives it back."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / ".filler"

    def fill(self) -> None:
        with open(self.filler, "ab", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\0" * 4096)
            except OSError:
                pass

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def files(self) -> list[str]:
        return sorted(
            str(p.relative_to(self.root))
            for p in self.root.rglob("*")
            if p.is_file() and p != self.filler
        )


@pytest.fixture
def disk(settings: Any, tmp_path: Path) -> Iterator[Disk]:
    root = tmp_path / "tiny-disk"
    root.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("mounting a tiny tmpfs needs root: " + mounted.stderr.decode().strip())
    settings.MEDIA_ROOT = root
    try:
        yield Disk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def _temporaries(disk: Disk) -> list[str]:
    return [name for name in disk.files() if Path(name).name.startswith(".")]


def test_statements_on_a_full_disk_fail_cleanly_and_finish_later(
    month: str, actor: Actor, disk: Disk
) -> None:
    disk.fill()
    result = statements_generate(period=month, actor=actor, sync=True)
    assert len(result.created) == 3
    failed = Statement.objects.filter(status=Statement.Status.FAILED)
    assert failed.count() == 3
    assert {s.error for s in failed} == {"could not store the PDF: No space left on device"}
    assert not any(s.pdf for s in failed)
    assert disk.files() == []  # not a byte under a final name, no temporary left

    disk.free()
    again = statements_generate(period=month, actor=actor, sync=True)
    assert len(again.created) == 3  # failed versions are replaced by new ones
    for statement in Statement.objects.filter(superseded_at=None):
        assert statement.status == Statement.Status.READY
        assert statement.version == 2
        data = (disk.root / statement.pdf.name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == statement.pdf_sha256
    assert _temporaries(disk) == []


# Writes `argv[1]` as a render stores a PDF, and is SIGKILLed half way.
KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from openchargeback.files import atomic_path

with atomic_path(Path(sys.argv[1])) as temporary:
    temporary.write_bytes(b"%PDF-1.4 half")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_while_writing(target: Path) -> Path:
    """The temporary a worker SIGKILLed while storing `target` leaves (its own
    clean-up never runs)."""
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], cwd=ROOT, check=False)
    assert done.returncode == -signal.SIGKILL
    (temporary,) = target.parent.glob(f".{target.name}.*.tmp")
    return temporary


def _queued_statement(month: str, actor: Actor, settings: Any) -> tuple[Statement, Path]:
    """A statement whose render job a worker took, and the PDF it was writing."""
    statements_generate(period=month, actor=actor)  # jobs queued on commit: none run here
    statement = Statement.objects.order_by("number").first()
    assert statement is not None
    assert statement.status == Statement.Status.RENDERING
    target = Path(settings.MEDIA_ROOT) / "statements" / month / f"{statement.number}.pdf"
    return statement, target


def _handed_out_again(statement: Statement, settings: Any) -> None:
    """Make it Q_RETRY (> Q_TIMEOUT) seconds later, when the queue hands the job out again."""
    later = settings.Q_CLUSTER["timeout"] + 1
    Statement.objects.filter(pk=statement.pk).update(
        generated_at=statement.generated_at - timedelta(seconds=later)
    )


def test_a_render_killed_while_writing_leaves_no_temporary_once_its_job_runs_again(
    month: str, actor: Actor, settings: Any
) -> None:
    statement, target = _queued_statement(month, actor, settings)
    temporary = _killed_while_writing(target)
    _handed_out_again(statement, settings)
    age = time.time() - settings.Q_CLUSTER["timeout"] - 1
    os.utime(temporary, (age, age))

    tasks.render_statement(statement.pk)

    statement.refresh_from_db()
    assert statement.status == Statement.Status.READY
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]
    assert hashlib.sha256(target.read_bytes()).hexdigest() == statement.pdf_sha256


def test_a_retried_render_leaves_a_write_in_progress_alone(
    month: str, actor: Actor, settings: Any
) -> None:
    """A temporary younger than the job timeout may be a second job's write of
    the same statement (queued by a second `generate`), still running."""
    statement, target = _queued_statement(month, actor, settings)
    temporary = _killed_while_writing(target)
    _handed_out_again(statement, settings)

    tasks.render_statement(statement.pk)

    statement.refresh_from_db()
    assert statement.status == Statement.Status.READY
    assert sorted(target.parent.iterdir()) == sorted([target, temporary])


def test_a_journal_on_a_full_disk_is_not_recorded(month: str, actor: Actor, disk: Disk) -> None:
    source_set(slug="aws", actor=actor, credit_fund_org="RCI-AWS", account_code="740000")
    statements_generate(period=month, actor=actor, sync=True)
    before = disk.files()
    disk.fill()
    with pytest.raises(BillingError, match="No space left on device; nothing was recorded"):
        journal_export(period=month, format="detail", xlsx=True, actor=actor)
    assert not JournalExport.objects.exists()
    assert disk.files() == before
    disk.free()
    export = journal_export(period=month, format="detail", xlsx=True, actor=actor)
    assert hashlib.sha256(export.file.read()).hexdigest() == export.sha256


def test_an_import_on_a_full_disk_leaves_nothing(
    defaults: None, focus_file: Callable[..., Path], actor: Actor, disk: Disk
) -> None:
    rows = [focus_row(resource=f"r-{i}", billed="1.00") for i in range(2000)]
    path = focus_file(rows)
    aws = Source.objects.get(slug="aws")
    disk.fill()
    with pytest.raises(
        IngestError, match=r"could not keep a copy of the file: .*No space left on device"
    ):
        file_import(path=path, source=aws, actor=actor)
    assert not Import.objects.exists()
    assert not Charge.objects.exists()
    assert disk.files() == []
    disk.free()
    result = file_import(path=path, source=aws, actor=actor)
    assert result.charges_created == 2000
    assert disk.files() == [Import.objects.get().stored_file]


def test_an_import_killed_half_way_leaves_nothing_and_runs_again(tmp_path: Path) -> None:
    """SIGKILL in the middle of a large import: no import, no charge, no kept
    file; the same command again imports everything once."""
    site = migrate(tmp_path / "site")
    big = tmp_path / "aws_2025-01.csv"
    from tests.conftest import write_focus

    write_focus(big, [focus_row(resource=f"r-{i}", billed="0.10") for i in range(200_000)])
    child = start_manage(site, "ingest", str(big), "--source", "aws")
    deadline = time.monotonic() + 60
    # Wait until the import is under way (the file's copy is being kept) ...
    while not list((site / "files").rglob(".incoming-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # ... and rows are being inserted
    assert child.poll() is None, "the import finished before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)

    # The parser process it forked stops too (it does not wait for ever on a
    # pipe nobody reads).
    def helpers() -> list[str]:
        found = subprocess.run(["pgrep", "-f", str(big)], capture_output=True, text=True)
        return found.stdout.split()

    deadline = time.monotonic() + 30
    while helpers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert helpers() == [], "the killed import's parser process is still running"

    counts = table_counts(site)
    assert counts["billing_charge"] == 0
    assert counts["ingest_import"] == 0
    kept = [p for p in (site / "files").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert kept == []

    done = manage(site, "ingest", str(big), "--source", "aws", timeout=600)
    assert done.returncode == 0, done.stderr
    assert query(site, "SELECT COUNT(*), SUM(billed_cost) FROM billing_charge") == [
        (200_000, 200_000 * 100_000_000)
    ]
