"""The kept copy of each imported file: its SHA-256, the copier that keeps
the original while the rows are parsed, and the rename into MEDIA_ROOT once
the import commits (imports/<source>/<sha256><suffix>)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

from django.conf import settings

from ingest.focus.errors import IngestError
from ingest.focus.parsers import FocusReader
from openchargeback.files import fsync_dir


def sha256_of(path: Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def keep(stored_tmp: Path, *, source_slug: str, sha256: str, kind: str) -> str:
    """Move a finished copy into place; the path it is stored under, relative to MEDIA_ROOT."""
    relative = Path("imports") / source_slug / f"{sha256}{stored_suffix(kind)}"
    final = Path(settings.MEDIA_ROOT) / relative
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(stored_tmp, final)
    fsync_dir(final.parent)
    return str(relative)


def stored_suffix(kind: str) -> str:
    return {"parquet": ".parquet", "csv.gz": ".csv.gz"}.get(kind, ".csv.zst")


class Copier:
    """Keeps the original file while the rows are parsed.

    A plain CSV is zstd-compressed by the parser itself as it reads the bytes
    (one pass over the file, on the parser's core); .csv.gz and Parquet are
    already compressed and are copied as they are in a thread. The copy goes
    to a temporary file that is fsynced and only renamed into place once the
    import commits.
    """

    def __init__(self, reader: FocusReader) -> None:
        self.reader = reader
        storage = Path(settings.MEDIA_ROOT) / "imports"
        storage.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=storage, prefix=".incoming-", suffix=".tmp")
        os.close(handle)
        self.tmp = Path(name)
        if reader.kind == "csv":
            self.tmp.unlink()  # the parser creates it when the copy is complete
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.reader.kind == "csv":
            self.reader.keep_copy_to = self.tmp
        else:
            self.thread = threading.Thread(target=self._copy, daemon=True)
            self.thread.start()

    def _copy(self) -> None:
        try:
            with open(self.reader.path, "rb") as src, open(self.tmp, "wb") as raw:
                shutil.copyfileobj(src, raw, 1 << 20)
                raw.flush()
                os.fsync(raw.fileno())
        except BaseException as exc:  # re-raised in finish()
            self.error = exc

    def finish(self) -> Path:
        self._join()
        name = self.reader.display_name
        if self.error is not None:
            reason = getattr(self.error, "strerror", None) or self.error
            raise IngestError(
                f"{name}: could not keep a copy of the file: {reason}; nothing was imported"
            )
        if not self.tmp.is_file():
            reason = self.reader.keep_copy_error or "the copy is missing"
            raise IngestError(
                f"{name}: could not keep a copy of the file: {reason}; nothing was imported"
            )
        return self.tmp

    def cleanup(self) -> None:
        self._join()
        self.reader.keep_copy_to = None
        self.tmp.unlink(missing_ok=True)
        self.tmp.with_name(self.tmp.name + ".part").unlink(missing_ok=True)

    def _join(self) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None
