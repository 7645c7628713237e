"""What the Import admin asks about a finished import, without changing it:
where its kept copy is (only inside MEDIA_ROOT, so a tampered record cannot
serve another file) and the name it downloads under. The upload pages' reads
are ingest.uploads.selectors; the rate card's and mappings' ingest.usage.selectors."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from ingest.models import Import


def kept_copy(record: Import) -> Path | None:
    """The kept copy of the imported file, or None if it is not there."""
    media = Path(settings.MEDIA_ROOT).resolve()
    kept = (media / record.stored_file).resolve() if record.stored_file else None
    if kept is None or not kept.is_relative_to(media) or not kept.is_file():
        return None
    return kept


def kept_name(record: Import) -> str:
    """The name the kept copy downloads under: the file's own name, with the
    compression the copy was kept in (a plain CSV is kept zstd-compressed)."""
    kept = record.stored_file
    name = record.file_name
    return name + ".zst" if kept.endswith(".zst") and not name.endswith(".zst") else name
