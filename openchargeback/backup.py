"""Backups: the database and the kept files (statement PDFs, journals, the
original import files) in one archive, and the restore of such an archive
into a fresh site.

The archive is a ``.tar.gz`` holding ``manifest.json``, the database
(``database.sqlite3``, taken with SQLite's online backup API while the site
runs; or ``database.pgdump``, ``pg_dump --format=custom``) and ``files/``,
a copy of ``MEDIA_ROOT``. It is written to a temporary file, fsynced and
renamed, so a half-written backup never has the final name.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, connections
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from billing.errors import BillingError
from openchargeback.files import atomic_path, fsync_dir

FORMAT = 1
SQLITE_NAME = "database.sqlite3"
PG_NAME = "database.pgdump"


class BackupError(BillingError):
    """Something the person running the command can fix (shown as one line); a
    BillingError, so every user error is caught the same way."""


@dataclass
class BackupResult:
    path: Path
    database: str
    files: int
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "database": self.database,
            "files": self.files,
            "bytes": self.bytes,
        }


# --- helpers -----------------------------------------------------------------------


def _pg_env(db: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """Connection arguments for pg_dump/pg_restore, the password in the environment."""
    args = ["--dbname", db["NAME"]]
    if db.get("HOST"):
        args += ["--host", str(db["HOST"])]
    if db.get("PORT"):
        args += ["--port", str(db["PORT"])]
    if db.get("USER"):
        args += ["--username", str(db["USER"])]
    env = dict(os.environ)
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    return args, env


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    except FileNotFoundError:
        raise BackupError(
            f"{command[0]} not found: install the PostgreSQL client tools "
            "(Debian: apt-get install postgresql-client)"
        ) from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise BackupError(f"{what} failed: {last}")


def _migrations() -> dict[str, str]:
    latest: dict[str, str] = {}
    for app, name in MigrationRecorder(connection).applied_migrations():
        if name > latest.get(app, ""):
            latest[app] = name
    return dict(sorted(latest.items()))


# --- backup ------------------------------------------------------------------------


def backup(output: Path) -> BackupResult:
    """Write a backup of the database and MEDIA_ROOT to `output` (a .tar.gz)."""
    vendor = connection.vendor
    media = Path(settings.MEDIA_ROOT)
    files = 0
    with tempfile.TemporaryDirectory(prefix="ocb-backup-") as work:
        dump = Path(work) / (SQLITE_NAME if vendor == "sqlite" else PG_NAME)
        if vendor == "sqlite":
            connection.ensure_connection()
            target = sqlite3.connect(dump)
            try:
                connection.connection.backup(target)  # consistent, while the site runs
            finally:
                target.close()
        elif vendor == "postgresql":
            args, env = _pg_env(connection.settings_dict)
            _run(
                ["pg_dump", "--format=custom", "--no-owner", "--file", str(dump), *args],
                env,
                "pg_dump",
            )
        else:  # pragma: no cover - only SQLite and PostgreSQL are supported
            raise BackupError(f"backups of {vendor} databases are not supported")
        manifest = {
            "format": FORMAT,
            "created_at": timezone.now().isoformat(),
            "database": vendor,
            "migrations": _migrations(),
        }
        with (
            atomic_path(output) as temporary,
            tarfile.open(temporary, "w:gz", compresslevel=6) as archive,
        ):
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
            archive.add(dump, arcname=dump.name)
            if media.exists():
                for path in sorted(media.rglob("*")):
                    if path.is_file() and not path.name.startswith("."):
                        archive.add(path, arcname=f"files/{path.relative_to(media)}")
                        files += 1
    return BackupResult(output, vendor, files, output.stat().st_size)


# --- restore -----------------------------------------------------------------------


def _has_data() -> bool:
    tables = set(connection.introspection.table_names())
    if "billing_billingperiod" not in tables:
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM billing_billingperiod")
        return bool(cursor.fetchone()[0])


def restore(archive_path: Path, *, force: bool = False) -> dict[str, Any]:
    """Put a backup in place of this site's (empty) database and MEDIA_ROOT."""
    if not archive_path.is_file():
        raise BackupError(f"{archive_path}: no such file")
    try:
        archive = tarfile.open(archive_path, "r:gz")  # noqa: SIM115 - closed by `with` below
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{archive_path}: not a backup archive ({exc})") from None
    with archive, tempfile.TemporaryDirectory(prefix="ocb-restore-") as work:
        try:
            manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        except (KeyError, ValueError, TypeError):
            raise BackupError(f"{archive_path}: not a backup archive (no manifest)") from None
        if manifest.get("format") != FORMAT:
            raise BackupError(f"{archive_path}: backup format {manifest.get('format')!r} unknown")
        vendor = connection.vendor
        if manifest["database"] != vendor:
            raise BackupError(
                f"{archive_path} is a {manifest['database']} backup; this site's database is "
                f"{vendor} (DATABASE_URL): restore it into a {manifest['database']} site"
            )
        if _has_data() and not force:
            raise BackupError(
                "this site's database already has billing data; restore into a fresh "
                "database, or pass --force to replace it"
            )
        media = Path(settings.MEDIA_ROOT)
        if media.exists() and any(media.iterdir()) and not force:
            raise BackupError(
                f"MEDIA_ROOT ({media}) is not empty; restore into an empty folder, "
                "or pass --force to replace its files"
            )
        archive.extractall(work, filter="data")
        root = Path(work)
        if vendor == "sqlite":
            _restore_sqlite(root / SQLITE_NAME)
        else:
            _restore_postgresql(root / PG_NAME)
        files = 0
        if (root / "files").exists():
            if force and media.exists():
                shutil.rmtree(media)
            shutil.copytree(root / "files", media, dirs_exist_ok=True)
            files = sum(1 for p in media.rglob("*") if p.is_file())
    return {"file": str(archive_path), "database": vendor, "files": files, **manifest}


def _restore_sqlite(dump: Path) -> None:
    target = Path(connection.settings_dict["NAME"])
    connections.close_all()
    source = sqlite3.connect(dump)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.close(fd)
        staged = sqlite3.connect(name)
        try:
            source.backup(staged)
        finally:
            staged.close()
    finally:
        source.close()
    for suffix in ("-wal", "-shm"):  # the old database's journal must not outlive it
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    os.replace(name, target)
    fsync_dir(target.parent)


def _restore_postgresql(dump: Path) -> None:
    args, env = _pg_env(connection.settings_dict)
    connections.close_all()
    _run(
        ["pg_restore", "--clean", "--if-exists", "--no-owner", "--exit-on-error", *args, str(dump)],
        env,
        "pg_restore",
    )
