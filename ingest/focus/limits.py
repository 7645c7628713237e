"""The ingest limits (docs/security.md, "Limits"): what a file may contain,
and their values as configured."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Limits:
    """What a file may contain before it is refused (docs/security.md, "Limits").

    Each is an ``OPENCHARGEBACK_INGEST_*`` setting; the defaults here are the
    settings' defaults. They bound the memory one import takes whatever the
    file's shape: ``chunk_bytes`` and ``chunk_cells`` cap what one chunk
    holds (a chunk has fewer rows than ``chunk_rows`` when its rows are wide).
    """

    max_columns: int = 1_000
    max_header_bytes: int = 64 * 1024
    max_field_chars: int = 64 * 1024
    max_line_bytes: int = 1024 * 1024
    max_uncompressed: int = 16 * 1024**3
    max_ratio: int = 100
    max_row_group_bytes: int = 256 * 1024**2
    chunk_bytes: int = 16 * 1024**2
    chunk_cells: int = 2_000_000
    max_tags_depth: int = 32
    max_tags_chars: int = 32 * 1024


def ingest_limits() -> Limits:
    return Limits(
        max_columns=settings.OPENCHARGEBACK_INGEST_MAX_COLUMNS,
        max_header_bytes=settings.OPENCHARGEBACK_INGEST_MAX_HEADER_BYTES,
        max_field_chars=settings.OPENCHARGEBACK_INGEST_MAX_FIELD_CHARS,
        max_line_bytes=settings.OPENCHARGEBACK_INGEST_MAX_LINE_BYTES,
        max_uncompressed=settings.OPENCHARGEBACK_INGEST_MAX_UNCOMPRESSED_BYTES,
        max_ratio=settings.OPENCHARGEBACK_INGEST_MAX_COMPRESSION_RATIO,
        max_row_group_bytes=settings.OPENCHARGEBACK_INGEST_MAX_ROW_GROUP_BYTES,
        chunk_bytes=settings.OPENCHARGEBACK_INGEST_CHUNK_BYTES,
        max_tags_depth=settings.OPENCHARGEBACK_INGEST_MAX_TAGS_DEPTH,
        max_tags_chars=settings.OPENCHARGEBACK_INGEST_MAX_TAGS_CHARS,
    )
