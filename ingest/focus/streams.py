"""The byte streams a CSV is read through: a gzip file refused past the size
and compression-ratio limits (decompression bombs; docs/security.md,
"Limits"), the zstd copy kept while a plain CSV is read, and how far into the
file on disk the reader is (the progress)."""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ingest.focus.limits import Limits

GZIP_MAGIC = b"\x1f\x8b"
# A .csv.gz is measured against ``max_ratio`` once this much is decompressed.
_RATIO_AFTER = 1024 * 1024


class LimitExceeded(Exception):
    pass


class LimitedReader(io.RawIOBase):
    """Refuses to decompress more than ``limits.max_uncompressed`` bytes, or more
    than ``limits.max_ratio`` times what it read from disk (decompression bombs)."""

    def __init__(self, inner: gzip.GzipFile, limits: Limits, name: str) -> None:
        self.inner = inner
        self.limit = limits.max_uncompressed
        self.ratio = limits.max_ratio
        self.name_for_errors = name
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        self.total += len(data)
        if self.total > self.limit:
            raise LimitExceeded(
                f"{self.name_for_errors}: decompresses to more than {self.limit:,} bytes "
                "(the limit is OPENCHARGEBACK_INGEST_MAX_UNCOMPRESSED_BYTES)"
            )
        if self.ratio and self.total > _RATIO_AFTER:
            # What was read from disk so far (gzip reads ahead: never too little).
            fileobj: Any = self.inner.fileobj
            compressed = max(1, fileobj.tell()) if fileobj is not None else 1
            if self.total > self.ratio * compressed:
                raise LimitExceeded(
                    f"{self.name_for_errors}: decompresses to more than {self.ratio} times "
                    f"its size ({self.total:,} bytes from the first {compressed:,}); the "
                    "limit is OPENCHARGEBACK_INGEST_MAX_COMPRESSION_RATIO"
                )
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


class CompressTee(io.RawIOBase):
    """Passes reads through and writes the same bytes zstd-compressed to a file.

    The copy is written to ``<target>.part`` and renamed to ``target`` (after
    an fsync) only when the source was read to the end, so a reader stopped
    early never leaves something that looks complete. zstd (from pyarrow) is
    about three times faster than gzip at a better ratio.
    """

    def __init__(self, inner: IO[bytes], target: Path, on_error: Callable[[OSError], None]) -> None:
        import pyarrow as pa

        self.inner = inner
        self.target = target
        self.partial = target.with_name(target.name + ".part")
        self.out = pa.CompressedOutputStream(str(self.partial), "zstd")
        self.at_end = False
        # A copy that cannot be written (a full disk) stops; reading goes on,
        # and the import is refused when it wants the copy (nothing half kept).
        self.failed = False
        self.on_error = on_error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        if data:
            if not self.failed:
                try:
                    self.out.write(data)
                except OSError as exc:
                    self._fail(exc)
        else:
            self.at_end = True
        buffer[: len(data)] = data
        return len(data)

    def _fail(self, exc: OSError) -> None:
        self.failed = True
        self.on_error(exc)

    def close(self) -> None:
        if not self.closed:
            self.inner.close()
            try:
                self.out.close()
                if self.at_end and not self.failed:
                    fd = os.open(self.partial, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    os.replace(self.partial, self.target)
            except OSError as exc:
                self._fail(exc)
            if self.failed or not self.at_end:
                self.partial.unlink(missing_ok=True)
        super().close()


class CountingReader(io.RawIOBase):
    """Passes reads through and tells how far into the file on disk we are."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)

    def compressed_position(self) -> int:
        fileobj = getattr(getattr(self.inner, "inner", None), "fileobj", None)
        if fileobj is not None:
            try:
                return int(fileobj.tell())
            except (OSError, ValueError):
                return self.position
        return self.position

    def close(self) -> None:
        self.inner.close()
        super().close()


def open_binary(path: Path, kind: str, limits: Limits, name: str) -> IO[bytes]:
    if kind == "csv.gz":
        gz = gzip.GzipFile(filename=str(path), mode="rb")
        return io.BufferedReader(LimitedReader(gz, limits, name), buffer_size=1 << 20)
    return open(path, "rb")
