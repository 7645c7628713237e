"""`openchargeback backup` and `restore`: a site restored from a backup has the
same period totals, statements (hashes and PDFs) and a balanced ledger.

The sites are SQLite databases run by `manage.py` in subprocesses, so the test
is the same on the PostgreSQL CI run; PostgreSQL's pg_dump/pg_restore path is
tested there too when `DATABASE_URL` is postgres.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import fresh_database_url
from tests.ingest_helpers import manage, migrate, query


def _statements(instance: Path) -> list[tuple[object, ...]]:
    return query(
        instance,
        "SELECT number, content_hash, pdf_sha256, pdf FROM statements_statement ORDER BY number",
    )


def _periods(instance: Path) -> list[dict[str, object]]:
    done = manage(instance, "periods", "list", "--json")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site after the demo's month-end: statements, emails, a journal, kept files."""
    site = migrate(tmp_path_factory.mktemp("original"))
    done = manage(site, "demo", "--no-admin-user", "--output", str(site / "samples"), timeout=600)
    assert done.returncode == 0, done.stderr
    return site


def test_a_restored_site_equals_the_original(original: Path, tmp_path: Path) -> None:
    done = manage(original, "backup", "--output", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout)
    archive = Path(written["file"])
    assert archive.parent == tmp_path
    assert archive.name.startswith("openchargeback-")
    assert written["database"] == "sqlite"
    assert written["files"] > 50
    assert [p.name for p in tmp_path.iterdir()] == [archive.name]  # no temporary left

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    done = manage(fresh, "restore", str(archive), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files"] == written["files"]

    assert _periods(fresh) == _periods(original)
    statements = _statements(fresh)
    assert statements == _statements(original)
    assert len(statements) == 51
    for _number, _content, pdf_sha256, pdf in statements:
        data = (fresh / "files" / str(pdf)).read_bytes()
        assert hashlib.sha256(data).hexdigest() == pdf_sha256
    ledger = manage(fresh, "check_ledger", "--period", "2026-08")
    assert ledger.returncode == 0, ledger.stdout + ledger.stderr
    assert manage(fresh, "migrate", "--check").returncode == 0

    # A second restore would overwrite the data: refused, one line, exit 1.
    again = manage(fresh, "restore", str(archive))
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        "CommandError: nothing restored: this site's database already has billing data; "
        "restore into a fresh database, or pass --force to replace it"
    ]
    assert manage(fresh, "restore", str(archive), "--force").returncode == 0
    assert _statements(fresh) == statements


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive")
    done = manage(site, "restore", str(junk))
    assert done.returncode == 1
    assert "not a backup archive" in done.stderr
    assert "Traceback" not in done.stderr
    pg = tmp_path / "pg.tar.gz"
    with tarfile.open(pg, "w:gz") as archive:
        manifest = tmp_path / "manifest.json"
        manifest.write_text(json.dumps({"format": 1, "database": "postgresql"}))
        archive.add(manifest, arcname="manifest.json")
    done = manage(site, "restore", str(pg))
    assert done.returncode == 1
    assert "is a postgresql backup; this site's database is sqlite" in done.stderr


def test_backup_to_an_unwritable_place_says_so(original: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    done = manage(original, "backup", "--output", str(blocked / "b.tar.gz"))
    assert done.returncode == 1
    assert done.stderr.startswith("CommandError: backup not written:")
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="pg_dump and pg_restore need a PostgreSQL server (CI's second pass)",
)
def test_postgresql_backup_restores_into_a_fresh_database(tmp_path: Path) -> None:
    with (
        fresh_database_url(tmp_path, "backup_a") as first,
        fresh_database_url(tmp_path, "backup_b") as second,
    ):
        sites = {"a": first, "b": second}

        def run(role: str, *args: str) -> subprocess.CompletedProcess[str]:
            return manage(tmp_path / role, *args, timeout=600, database_url=sites[role])

        for step in (
            ("migrate", "--no-input"),
            ("demo", "--no-admin-user", "--output", str(tmp_path / "samples")),
            ("backup", "--output", str(tmp_path / "pg.tar.gz")),
        ):
            done = run("a", *step)
            assert done.returncode == 0, done.stderr
        done = run("b", "restore", str(tmp_path / "pg.tar.gz"))
        assert done.returncode == 0, done.stderr
        listed = [run(role, "periods", "list", "--json").stdout for role in ("a", "b")]
        assert listed[0] == listed[1]
        assert json.loads(listed[0])
        statements = [
            run(role, "shell", "-v", "0", "-c", _STATEMENT_HASHES).stdout for role in ("a", "b")
        ]
        assert statements[0] == statements[1]
        assert len(statements[0].splitlines()) == 51
        assert run("b", "check_ledger", "--period", "2026-08").returncode == 0


_STATEMENT_HASHES = (
    "from statements.models import Statement as S\n"
    "for s in S.objects.order_by('number'): print(s.number, s.content_hash, s.pdf_sha256, "
    "__import__('hashlib').sha256(s.pdf.read()).hexdigest())"
)
