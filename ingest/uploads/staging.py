"""Files dropped on the admin's import page, on disk (no ORM): an upload
handler that streams each file into ``MEDIA_ROOT/uploads/`` under a random
name, refusing one that is too large or not a FOCUS file type, and the small
progress file a background preview or import leaves next to its file."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.template.defaultfilters import filesizeformat

UPLOAD_DIR = "uploads"
# The longest suffix first: "x.csv.gz" is a .csv.gz, not a .gz.
SUFFIXES = (".csv.gz", ".parquet", ".csv")


def staged_suffix(file_name: str) -> str | None:
    """The kept extension of a FOCUS file name, or None for any other file type."""
    lower = file_name.lower()
    return next((s for s in SUFFIXES if lower.endswith(s)), None)


def upload_root() -> Path:
    return Path(settings.MEDIA_ROOT) / UPLOAD_DIR


def size_text(size: int) -> str:
    """1073741824 -> '1.0 GB' (as the admin shows file sizes)."""
    return str(filesizeformat(size)).replace("\xa0", " ")


def max_file_bytes() -> int:
    return int(settings.OPENCHARGEBACK_UPLOAD_MAX_BYTES)


def max_request_bytes() -> int:
    return int(settings.OPENCHARGEBACK_UPLOAD_MAX_REQUEST_BYTES)


def too_large_message(file_name: str) -> str:
    return (
        f"{file_name}: larger than the upload limit of {size_text(max_file_bytes())} "
        "(OPENCHARGEBACK_UPLOAD_MAX_BYTES); nothing was stored"
    )


@dataclass
class Received:
    """One file of an upload request: staged on disk, or refused with a reason."""

    file_name: str
    size: int = 0
    path: Path | None = None  # absolute, under upload_root()
    error: str = ""

    @property
    def relative(self) -> str:
        assert self.path is not None
        return str(self.path.relative_to(Path(settings.MEDIA_ROOT)))


class StagingUploadHandler(FileUploadHandler):
    """Streams each uploaded file straight to ``MEDIA_ROOT/uploads/<random><suffix>``.

    Nothing goes to memory or to the system temporary directory, so a 1 GB
    file is written once. A file over the limit stops being written at the
    limit and is removed; a file of another type is not written at all. The
    view reads :attr:`received` (in request order) instead of ``request.FILES``.
    """

    # Only while a file is being written (Django's parser closes ``file`` on
    # SkipFile, so the attribute must not exist between files).
    file: BinaryIO

    def __init__(self, request: Any = None) -> None:
        super().__init__(request)
        self.received: list[Received] = []
        self.limit = max_file_bytes()
        self._current: Received | None = None
        self._partial: Path | None = None

    def new_file(self, field_name: str, file_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, file_name, *args, **kwargs)
        entry = Received(file_name=file_name)
        self.received.append(entry)
        suffix = staged_suffix(file_name)
        if suffix is None:
            entry.error = (
                f"{file_name}: not a FOCUS file type; upload .csv, .csv.gz or .parquet files"
            )
            raise SkipFile
        root = upload_root()
        root.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=root, prefix=".incoming-", suffix=suffix)
        self.file = os.fdopen(handle, "wb")
        self._partial = Path(name)
        self._current = entry

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:  # noqa: ARG002 - Django's FileUploadHandler signature
        entry = self._current
        assert entry is not None
        entry.size += len(raw_data)
        if entry.size > self.limit:
            entry.error = too_large_message(entry.file_name)
            entry.size = 0
            self._abandon()
            raise SkipFile
        self.file.write(raw_data)

    def file_complete(self, file_size: int) -> None:
        entry, partial = self._current, self._partial
        assert entry is not None
        assert partial is not None
        self.file.close()
        del self.file
        final = partial.with_name(f"{uuid.uuid4().hex}{staged_suffix(entry.file_name)}")
        os.replace(partial, final)
        entry.path = final
        entry.size = file_size
        self._current = self._partial = None
        # Not in request.FILES: the view reads self.received.

    def upload_interrupted(self) -> None:
        self._abandon()

    def discard_partial(self) -> None:
        """Remove a file left half-written (the client went away mid-upload)."""
        self._abandon()

    def _abandon(self) -> None:
        if hasattr(self, "file"):
            self.file.close()
            del self.file
        if self._partial is not None:
            self._partial.unlink(missing_ok=True)
        self._current = self._partial = None


# --- Progress of a preview or an import, visible to every process --------------


def progress_path(staged: Path) -> Path:
    return staged.with_name(staged.name + ".progress")


# Seconds without a report after which a running job's progress says so.
QUIET_SECONDS = 30


class ProgressFile:
    """A ``progress(done, total)`` callback for ``file_import`` that keeps the
    latest position in a small JSON file next to the staged upload.

    The reader reports at each chunk boundary: bytes of the file read so far
    for a CSV (compressed bytes for a .csv.gz), rows for a Parquet file. The
    import runs in one database transaction, so its progress cannot be seen
    through the database; a file, replaced atomically, can be read by the
    web process at any time. Written at most every ``interval`` seconds.
    """

    interval = 0.5

    def __init__(self, staged: Path, step: str) -> None:
        self.path = progress_path(staged)
        self.step = step
        self.unit = "rows" if staged.name.lower().endswith(".parquet") else "bytes"
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < self.interval and done < total:
            return
        self.last = now
        self.write(done, total)

    def write(self, done: int, total: int) -> None:
        data = json.dumps(
            {"step": self.step, "done": done, "total": total, "unit": self.unit, "at": time.time()}
        )
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
        try:
            tmp.write_text(data, encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            # Progress is a courtesy: never fail an import over it.
            tmp.unlink(missing_ok=True)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Progress:
    """The last position a running preview or import reported."""

    done: int
    total: int
    unit: str  # bytes | rows
    age: float  # seconds since the report

    @property
    def percent(self) -> int:
        return max(0, min(100, self.done * 100 // self.total))

    @property
    def quiet(self) -> bool:
        """No report for a while, with the file not read to its end (a slow chunk,
        or a job that hangs; a dead worker shows as stalled once Q_TIMEOUT passes)."""
        return self.age >= QUIET_SECONDS and self.done < self.total

    @property
    def text(self) -> str:
        """'12.0 MB of 40.0 MB read' or '120,000 of 500,000 rows read'."""
        if self.unit == "rows":
            read = f"{self.done:,} of {self.total:,} rows read"
        else:
            read = f"{size_text(self.done)} of {size_text(self.total)} read"
        if self.quiet:
            seconds = int(self.age)
            since = f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"
            read += f"; no progress for {since}"
        return read


def read_progress(staged: Path) -> Progress | None:
    """What the running step last reported, or None when nothing was reported."""
    try:
        data = json.loads(progress_path(staged).read_text(encoding="utf-8"))
        done, total = int(data["done"]), int(data["total"])
        unit, at = str(data.get("unit") or "bytes"), float(data.get("at") or time.time())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if total <= 0:
        return None
    return Progress(done=done, total=total, unit=unit, age=max(0.0, time.time() - at))


def delete_staged(path: Path | None) -> None:
    """Remove a staged file and its progress file (the import keeps its own copy)."""
    if path is not None:
        path.unlink(missing_ok=True)
        ProgressFile(path, "").remove()
