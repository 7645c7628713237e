"""Discard uploads left on the admin's import page and never imported."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from billing.services import Actor
from ingest.uploads import uploads_purge
from openchargeback.text import count


class Command(BaseCommand):
    help = (
        "Discard uploads (files dropped on the import page) that were neither imported nor "
        "discarded and have not changed for --days days; their staged copies are deleted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=30, help="Age in days (default 30).")
        parser.add_argument("--user", help="Acting user for the log (default: OS user).")

    def handle(self, *args: Any, **options: Any) -> None:
        purged = uploads_purge(
            older_than=timedelta(days=options["days"]), actor=Actor.from_cli(options["user"])
        )
        self.stdout.write(
            f"Discarded {count(len(purged), 'upload')} older than {options['days']} days."
        )
