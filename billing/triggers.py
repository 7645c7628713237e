"""Database triggers: the migration operation that installs them per database,
and the SQL of the SQLite trigger that refuses new charges in a finalized period.

Kept here (not only in the migration) because ingest suspends it for the
length of its own transaction: SQLite runs a trigger program for every
inserted row, which halves bulk-insert speed. That is safe because SQLite
allows one writer at a time: while the importer holds the write lock no one
else can insert or finalize, the importer itself refuses any row whose period
is not open, and the trigger is back before the transaction commits (DDL is
transactional in SQLite, so no other connection ever sees it missing).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

CHARGE_INSERT_TRIGGER = "charge_finalized_insert"

CHARGE_INSERT_TRIGGER_SQL = """
    CREATE TRIGGER charge_finalized_insert BEFORE INSERT ON billing_charge
    WHEN (SELECT status FROM billing_billingperiod WHERE id = NEW.period_id) = 'finalized'
    BEGIN SELECT RAISE(ABORT, 'charges of a finalized period cannot be changed'); END
"""


def trigger_operation(
    forward: dict[str, list[str]], reverse: dict[str, list[str]]
) -> migrations.RunPython:
    """A migration step running the SQL for this database (``vendor -> statements``).

    A database without an entry is an error: the locks must never be skipped.
    """

    def runner(statements_by_vendor: dict[str, list[str]]) -> Any:
        def run(_apps: Any, schema_editor: Any) -> None:
            vendor = schema_editor.connection.vendor
            if vendor not in statements_by_vendor:
                raise RuntimeError(f"no immutability triggers for database {vendor!r}")
            for sql in statements_by_vendor[vendor]:
                schema_editor.execute(sql)

        return run

    return migrations.RunPython(runner(forward), runner(reverse))
