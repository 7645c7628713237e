"""A Parquet file's columns as the importer's text (timestamps with their
offset, exact decimals, nested values as JSON) and its header from the
metadata alone, refused when a row group is over the limit before anything
is decoded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ingest.focus.columns import clean_text
from ingest.focus.errors import IngestError
from ingest.focus.limits import Limits


def is_text(kind: Any) -> bool:
    import pyarrow as pa

    return bool(kind in (pa.string(), pa.large_string(), pa.binary(), pa.large_binary()))


def text_length(array: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if array.type in (pa.string(), pa.large_string()):
        return pc.utf8_length(array)
    return pc.binary_length(array)


def text_columns(path: Path) -> list[str]:
    """The top-level string and binary columns of a Parquet file."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    return [f.name for f in schema if is_text(f.type)]


def arrow_text(array: Any, *, legacy: bool = False) -> list[str]:
    """One Parquet column as text.

    Timestamps keep their zone as an offset (``2024-10-01T00:00:00+0200``;
    without a zone, no offset: UTC), dates are ``YYYY-MM-DD``, decimals and
    integers their exact digits, maps, structs and lists JSON. ``legacy``
    gives what fingerprint version 1 hashed (timestamps without their zone).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_timestamp(kind):
        zone = "%z" if kind.tz is not None and not legacy else ""
        array = pc.strftime(array, format=f"%Y-%m-%dT%H:%M:%S{zone}")
    elif pa.types.is_date(kind):
        array = pc.strftime(array, format="%Y-%m-%d")
    elif pa.types.is_nested(kind):
        return [_json_text(v) for v in array.to_pylist()]
    elif not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        array = pc.cast(array, pa.string())
    return [clean_text(v) for v in array.to_pylist()]


def _json_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        value = dict(value)  # a Parquet map arrives as (key, value) pairs
    return json.dumps(value, ensure_ascii=False, default=str)


def parquet_header(path: Path, name: str, limits: Limits) -> list[str]:
    """The column names, from the metadata alone (nothing is decoded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise IngestError(f"{name}: unreadable Parquet file ({exc})") from None
    metadata = handle.metadata
    if metadata.num_columns > limits.max_columns:
        raise IngestError(
            f"{name}, schema: {metadata.num_columns:,} columns, more than the "
            f"{limits.max_columns:,} allowed (OPENCHARGEBACK_INGEST_MAX_COLUMNS)"
        )
    if metadata.num_rows == 0:
        raise IngestError(f"{name}: the Parquet file has no rows; nothing to import")
    most = limits.max_row_group_bytes
    first = 0
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        size = max(
            group.total_byte_size,
            sum(group.column(c).total_uncompressed_size for c in range(group.num_columns)),
        )
        if size > most:
            raise IngestError(
                f"{name}, rows {first + 1:,} to {first + group.num_rows:,}: a row group of "
                f"{size:,} bytes uncompressed, more than the {most:,} allowed "
                "(OPENCHARGEBACK_INGEST_MAX_ROW_GROUP_BYTES); write the file with smaller "
                "row groups"
            )
        first += group.num_rows
    return list(handle.schema_arrow.names)
