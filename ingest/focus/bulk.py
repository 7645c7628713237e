"""How the FOCUS importer writes and looks up charges in bulk: the prepared
row's column layout, COPY (PostgreSQL) or one executemany (SQLite), the
existence query for duplicates, and the database settings of a bulk load
(garbage collector off, a bigger SQLite page cache, the per-row insert
trigger suspended). No business rules: the importer decides what to write."""

from __future__ import annotations

import functools
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connection

from billing.models import Charge
from billing.triggers import CHARGE_INSERT_TRIGGER, CHARGE_INSERT_TRIGGER_SQL
from ingest.focus.rows import BASE_COLUMNS

# Ids or fingerprints per query (well under SQLite's variable limit).
BATCH = 500

# The charge columns an attribution fills (ingest.focus.attribution.Who.values), in order.
WHO_COLUMNS = (
    "pi_id",
    "project_id",
    "fund_org",
    "cost_center",
    "reference_1",
    "reference_2",
    "account_code",
    "tags",
)
# The cost basis of a row (ingest.focus.basis) and the file's BilledCost when
# it bills another amount (ingest.focus.amortised).
BASIS_COLUMNS = ("cost_basis", "invoiced_cost")
# One prepared charge row: period, base columns, attribution, flags, basis.
ROW_COLUMNS = (
    "period_id",
    *BASE_COLUMNS,
    *WHO_COLUMNS,
    "flags",
    "flag_details",
    "review_state",
    *BASIS_COLUMNS,
)
R_FINGERPRINT = ROW_COLUMNS.index("fingerprint")
R_OCCURRENCE = ROW_COLUMNS.index("occurrence")
R_BILLED = ROW_COLUMNS.index("billed_cost")
R_FLAGS = ROW_COLUMNS.index("flags")
R_STATE = ROW_COLUMNS.index("review_state")
# Columns that are the same for every row of an import.
_CONSTANT_COLUMNS = ("source_id", "import_record_id", "reviewed_by", "reviewed_at", "review_note")


@contextmanager
def bulk_load() -> Iterator[None]:
    """The garbage collector off and, on SQLite, a bigger page cache, while importing.

    Rows are acyclic; the cyclic garbage collector only slows a bulk load.
    Inserting into the (random) fingerprint index of a large table thrashes
    SQLite's default 2 MB cache. Both are restored afterwards.
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with _sqlite_bulk_settings():
            yield
    finally:
        if gc_was_enabled:
            gc.enable()


@contextmanager
def _sqlite_bulk_settings() -> Iterator[None]:
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        previous = cursor.fetchone()[0]
        cursor.execute(f"PRAGMA cache_size = -{settings.OPENCHARGEBACK_SQLITE_IMPORT_CACHE_KIB:d}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA cache_size = {int(previous):d}")


@contextmanager
def insert_trigger_suspended() -> Iterator[None]:
    """SQLite only: drop the per-row finalized-period insert trigger for this
    transaction and put it back before commit (see billing/triggers.py).

    The importer checks that every period it writes to is open, under
    SQLite's single write lock; the trigger guards every other writer.
    """
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER IF EXISTS {CHARGE_INSERT_TRIGGER}")
    yield
    with connection.cursor() as cursor:
        cursor.execute(CHARGE_INSERT_TRIGGER_SQL)


def existing_charges(*, source_id: int, fingerprints: list[str]) -> dict[tuple[str, int], int]:
    """(fingerprint, occurrence) -> charge id of the source's charges with these fingerprints."""
    found: dict[tuple[str, int], int] = {}
    if not fingerprints:
        return found
    table = Charge._meta.db_table
    with connection.cursor() as cursor:
        for start in range(0, len(fingerprints), BATCH):
            batch = fingerprints[start : start + BATCH]
            marks = ", ".join(["%s"] * len(batch))
            cursor.execute(
                f"SELECT fingerprint, occurrence, id FROM {table} "  # noqa: S608 - fixed names
                f"WHERE source_id = %s AND fingerprint IN ({marks})",
                [source_id, *batch],
            )
            for fingerprint, occurrence, pk in cursor.fetchall():
                found[(fingerprint, occurrence)] = pk
    return found


def bulk_insert(rows: list[tuple[Any, ...]], *, source_id: int, import_id: int) -> None:
    """Insert charge rows (laid out as ROW_COLUMNS): COPY on PostgreSQL, one
    executemany on SQLite."""
    table = Charge._meta.db_table
    columns = ", ".join((*ROW_COLUMNS, *_CONSTANT_COLUMNS))
    if connection.vendor == "postgresql":
        constants = (source_id, import_id, "", None, "")
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
        ):
            copy.set_types(_copy_types())
            write_row = copy.write_row
            for row in rows:
                write_row(row + constants)
        return
    marks = ", ".join(["%s"] * len(ROW_COLUMNS))
    sql = (
        f"INSERT INTO {table} ({columns}) "  # noqa: S608 - fixed names, integer ids
        f"VALUES ({marks}, {int(source_id):d}, {int(import_id):d}, '', NULL, '')"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


_PG_COPY_TYPES = {
    "IntegerField": "int4",
    "PositiveIntegerField": "int4",
    "BigIntegerField": "int8",
    "ForeignKey": "int8",
    "DateTimeField": "timestamptz",
}


@functools.cache
def _copy_types() -> list[str]:
    """The COPY column types, so psycopg dumps each value without looking its type up.

    Text and JSON columns travel as text (the JSON is already serialised).
    """
    fields = {f.attname: f for f in Charge._meta.concrete_fields}
    return [
        _PG_COPY_TYPES.get(fields[name].get_internal_type(), "text")
        for name in (*ROW_COLUMNS, *_CONSTANT_COLUMNS)
    ]
