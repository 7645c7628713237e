"""Import the files waiting in the inbox (a folder per source); for cron or a schedule.
``--dry-run`` checks them with the importer's dry run and moves nothing."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError

from billing.commands import BillingCommand
from ingest.uploads.inbox import inbox_process, inbox_root


class Command(BillingCommand):
    help = (
        "Import every FOCUS file waiting in OPENCHARGEBACK_INBOX_DIR/<source>/, then move it "
        "to done/ or failed/ (with the reason). Exit 1 if any file failed."
    )

    takes_json = True
    json_help = "Print a JSON array."
    takes_user = True
    takes_dry_run = True
    dry_run_help = "Check each waiting file with the importer's dry run; import and move nothing."

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = options["dry_run"]
        outcomes = inbox_process(actor=self.actor(options), dry_run=dry_run)
        if options["json"]:
            self.stdout.write(json.dumps([o.as_dict() for o in outcomes]))
        elif not outcomes:
            self.stdout.write(f"Nothing waiting in {inbox_root()}.")
        for outcome in outcomes if not options["json"] else []:
            status = _WOULD.get(outcome.status, outcome.status) if dry_run else outcome.status
            self.stdout.write(f"{outcome.source}/{outcome.file}: {status}. {outcome.message}")
        if dry_run and not options["json"]:
            self.stdout.write("Dry run: nothing imported, moved or written.")
        failed = [o for o in outcomes if o.status == "failed"]
        if failed:
            names = ", ".join(f"{o.source}/{o.file}" for o in failed)
            files = f"{len(failed)} inbox file{'s' if len(failed) != 1 else ''}"
            if dry_run:
                raise CommandError(f"{files} would fail ({names}); nothing was moved")
            raise CommandError(f"{files} failed ({names}); the reasons are beside them in failed/")


# What a dry run's outcomes mean.
_WOULD = {"dry_run": "would be imported", "failed": "would fail"}
