"""The ingest limits as configured (docs/security.md, "Limits")."""

from __future__ import annotations

from django.conf import settings

from ingest.focus.parsers import Limits


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
