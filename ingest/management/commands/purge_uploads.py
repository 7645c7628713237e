"""Discard uploads left on the admin's import page and never imported, and
the temporary files interrupted writes left behind."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser

from billing.commands import BillingCommand
from ingest.uploads.services import uploads_purge
from openchargeback.files import sweep_temporaries
from openchargeback.text import count

# Far longer than any write or job takes (Q_TIMEOUT), so no live write is touched.
_DAY = timedelta(days=1)


class Command(BillingCommand):
    help = (
        "Discard uploads (files dropped on the import page) that were neither imported nor "
        "discarded and have not changed for --days days; their staged copies are deleted. "
        "Also removes temporary files a killed process left in the media folder (untouched "
        "for a day)."
    )

    takes_user = True
    takes_dry_run = True
    dry_run_help = "Report what would be discarded and removed; change nothing."
    user_help = "Acting user for the log (default: OS user)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=30, help="Age in days (default 30).")

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = options["dry_run"]
        purged = uploads_purge(
            older_than=timedelta(days=options["days"]), actor=self.actor(options), dry_run=dry_run
        )
        swept = sweep_temporaries(
            Path(settings.MEDIA_ROOT), older_than=_DAY.total_seconds(), dry_run=dry_run
        )
        if dry_run:
            self.stdout.write(
                f"Dry run, nothing changed: would discard {count(len(purged), 'upload')} older "
                f"than {options['days']} days; would remove "
                f"{count(len(swept), 'temporary file')} left by interrupted writes."
            )
            return
        self.stdout.write(
            f"Discarded {count(len(purged), 'upload')} older than {options['days']} days; "
            f"removed {count(len(swept), 'temporary file')} left by interrupted writes."
        )
