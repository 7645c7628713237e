"""Files the site keeps (statement PDFs, journals, backups) are written to a
temporary file beside their final name, flushed to disk and renamed: a crash
or a full disk never leaves a half file under the final name."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary_affixes(target: Path) -> tuple[str, str]:
    return f".{target.name}.", ".tmp"


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside `target` to write to; renamed to `target` (after
    fsync) when the block ends without an error, removed otherwise."""
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temporary_affixes(target)
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(temporary, target)
        fsync_dir(target.parent)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomically(target: Path, content: bytes | BinaryIO) -> None:
    """Write `content` (bytes, or a binary file read from its start) to `target`
    through :func:`atomic_path`: all of it or, on any error, nothing."""
    with atomic_path(target) as temporary:
        if isinstance(content, bytes):
            temporary.write_bytes(content)
            return
        with open(temporary, "wb") as fh:
            content.seek(0)
            shutil.copyfileobj(content, fh, 1 << 20)


def _is_stale(path: Path, cutoff: float) -> bool:
    """A plain file last written before `cutoff` (what _unlink_if_stale removes)."""
    try:
        return not path.is_symlink() and path.is_file() and path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False


def _unlink_if_stale(path: Path, cutoff: float) -> bool:
    """Remove `path` if it is a plain file last written before `cutoff`; a file
    finished or removed meanwhile (by its writer, or a concurrent cleanup) is
    simply not there any more."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_mtime >= cutoff:
            return False
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def remove_stale_temporaries(target: Path, *, older_than: float) -> int:
    """Remove the temporaries of `target` nobody has written to for `older_than`
    seconds; returns how many. A writer killed outright (SIGKILL, power loss)
    never removes its own; a younger one may be another writer's, in progress.
    Lists `target`'s folder: for a likely retry, not for every write."""
    prefix, suffix = _temporary_affixes(target)
    cutoff = time.time() - older_than
    try:
        names = os.listdir(target.parent)
    except FileNotFoundError:
        return 0
    removed = 0
    for name in names:
        if not (name.startswith(prefix) and name.endswith(suffix)):
            continue
        if "." in name[len(prefix) : -len(suffix)]:
            continue  # mkstemp's random part has no dot: this is another target's
        removed += _unlink_if_stale(target.parent / name, cutoff)
    return removed


# Hidden temporaries the project's writers create beside their targets: the
# atomic writer's `.NAME.RANDOM.tmp`, an import's or upload's `.incoming-*`
# copy (and its `.part`), a converter's `.focus-*.csv`.
_TEMPORARY = re.compile(r"\..+\.tmp|\.incoming-.+|\.focus-.+\.csv")


def sweep_temporaries(root: Path, *, older_than: float, dry_run: bool = False) -> list[Path]:
    """Remove, under `root`, the temporaries interrupted writers left (a process
    killed outright never removes its own) once nobody has written to them for
    `older_than` seconds; returns the paths removed (with `dry_run`, those that
    would be, and removes nothing). Every other file is left."""
    cutoff = time.time() - older_than
    removed: list[Path] = []
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if not _TEMPORARY.fullmatch(name):
                continue
            if _is_stale(path, cutoff) if dry_run else _unlink_if_stale(path, cutoff):
                removed.append(path)
    return removed
