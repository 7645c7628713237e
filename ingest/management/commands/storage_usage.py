"""Storage quotas into FOCUS charges: ``openchargeback storage-usage --period P
--quotas FILE (--output FILE | --ingest | --what-if)``.

Reads a quota report (CSV or JSON; one size per quota, or daily snapshots),
bills TB-months at the rate card's rates for the storage tier, with the free
allowance per project, and maps each quota to its PI, project and fund/org
(docs/integrations/storage.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser

from ingest.focus.errors import IngestError
from ingest.management.converting import ConverterCommand
from ingest.usage.converters import Conversion, quantity_text, storage_conversion
from ingest.usage.quotas import QuotaSummary
from openchargeback.text import count


class Command(ConverterCommand):
    help = "Price a month of storage quotas (CSV or JSON report) as FOCUS charges."
    default_source = "storage"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--quotas",
            required=True,
            metavar="FILE",
            help="Quota report: CSV or JSON with a quota name (or path) and bytes used per "
            "quota, optionally a date per row (daily snapshots) and a tier.",
        )
        parser.add_argument(
            "--tier",
            help="Storage tier of rows that name none (default: OPENCHARGEBACK_STORAGE_TIER).",
        )
        super().add_arguments(parser)

    def convert(self, period: str, options: dict[str, Any]) -> Conversion:
        path = Path(options["quotas"])
        if not path.is_file():
            raise IngestError(f"{path}: no such file")
        return storage_conversion(
            path=path,
            name=path.name,
            period=period,
            tier=options["tier"] or settings.OPENCHARGEBACK_STORAGE_TIER,
        )

    def describe(self, conversion: Conversion) -> str:
        summary = conversion.summary
        assert isinstance(summary, QuotaSummary)
        snapshots = "daily snapshots" if summary.dated else "one size per quota"
        return (
            f"{count(summary.rows, 'report row')} ({snapshots}), {summary.quotas_billed:,} of "
            f"{count(summary.quotas, 'quota')} billed, "
            f"{quantity_text(summary.tb_months, 3)} TB-months "
            f"in {count(len(conversion.rows), 'row')}"
        )
