"""Exporting journals: write the prepared journal (``journals.selectors``) as
CSV or XLSX, store and record it. The ledger check across journals and
statements is the project's (``openchargeback.ledger``)."""

from __future__ import annotations

import hashlib
import tempfile
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from django.db import transaction
from django.utils import timezone

from billing.audit import Actor, audit
from billing.errors import BillingError
from journals import layouts, writers
from journals.models import JournalExport
from journals.selectors import Prepared, prepare
from openchargeback.files import write_atomically


def render(prepared: Prepared, out: BinaryIO, *, xlsx: bool) -> int:
    """Write the file to `out`; returns its number of data lines."""
    from billing.models import InstitutionSettings

    currency = InstitutionSettings.load().currency
    table = layouts.table(prepared.journal, prepared.layout.columns, currency=currency)
    try:
        if xlsx:
            title = f"{prepared.period.period} {prepared.layout.format}"
            exact = prepared.layout.base == "detail"
            subject = f"Cost basis: {prepared.cost_basis}" if prepared.cost_basis else ""
            return writers.write_xlsx(table, out, title=title, exact=exact, subject=subject)
        return writers.write_csv(table, out)
    except ValueError as exc:  # a template column that does not give a number
        raise BillingError(f"journal format {prepared.layout.format}: {exc}") from None


def journal_export(
    *,
    period: str,
    format: str,
    actor: Actor,
    xlsx: bool = False,
    include_pending: bool = False,
    output: Path | None = None,
    dry_run: bool = False,
) -> JournalExport:
    """Build, write and record one journal file; copy it to `output` if given.
    With `dry_run` the file is built (same checks) and neither written nor
    recorded: the export returned is not saved and has no file."""
    prepared = prepare(period=period, format=format, include_pending=include_pending)
    with tempfile.TemporaryFile() as spool:
        lines = render(prepared, spool, xlsx=xlsx)
        sha256 = _sha256(spool)
        if dry_run:
            return _unsaved(
                prepared, lines=lines, sha256=sha256, xlsx=xlsx, actor=actor, now=timezone.now()
            )
        if output is not None:
            _write_output(output, spool)
        return _record(prepared, spool, lines=lines, sha256=sha256, xlsx=xlsx, actor=actor)


def _sha256(fh: BinaryIO) -> str:
    fh.seek(0)
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _unsaved(
    prepared: Prepared, *, lines: int, sha256: str, xlsx: bool, actor: Actor, now: datetime
) -> JournalExport:
    """The export's record, not saved yet and without its file."""
    journal = prepared.journal
    return JournalExport(
        period=prepared.period,
        format=prepared.layout.format,
        template=prepared.layout.template,
        xlsx=xlsx,
        sha256=sha256,
        debit_total=journal.debit_total,
        credit_total=journal.credit_total,
        exact_total=journal.exact_total,
        lines=lines,
        charge_count=journal.charge_count,
        include_pending=prepared.include_pending,
        data_hash=prepared.data_hash,
        created_at=now,
        created_by=actor.name,
        cost_basis=prepared.cost_basis[:300],
    )


def _record(
    prepared: Prepared, spool: BinaryIO, *, lines: int, sha256: str, xlsx: bool, actor: Actor
) -> JournalExport:
    format, include_pending = prepared.layout.format, prepared.include_pending
    now = timezone.now()
    suffix = "xlsx" if xlsx else "csv"
    label = prepared.period.period
    name = f"{label}/journal-{label}-{format}-{now:%Y%m%dT%H%M%S}.{suffix}"
    with transaction.atomic():
        export = _unsaved(prepared, lines=lines, sha256=sha256, xlsx=xlsx, actor=actor, now=now)
        storage = export.file.storage
        relative = storage.get_available_name(export.file.field.generate_filename(export, name))
        target = Path(storage.path(relative))
        try:
            write_atomically(target, spool)
        except OSError as exc:  # a full disk: nothing kept, nothing recorded
            raise BillingError(
                f"could not store the journal file {relative}: {exc.strerror or exc}; "
                "nothing was recorded"
            ) from None
        export.file.name = relative
        try:
            export.save()
            audit(
                actor=actor,
                action="journal.export",
                obj=export,
                period=prepared.period,
                after=export.as_dict() | {"file": export.file.name},
                reason="charges pending review included" if include_pending else "",
            )
        except BaseException:
            target.unlink(missing_ok=True)  # not recorded: not kept
            raise
    return export


def _write_output(path: Path, source: BinaryIO) -> None:
    """Copy `source` to `--output` (atomically: never a half file); a user error
    if the path cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise BillingError(f"--output {path} is a directory; name the file")
    if not path.parent.exists():
        raise BillingError(f"--output {path}: folder {path.parent} does not exist")
    try:
        write_atomically(path, source)
    except OSError as exc:
        raise BillingError(f"--output {path}: {exc.strerror or exc}") from None
