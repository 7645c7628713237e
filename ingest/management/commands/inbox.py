"""Import the files waiting in the inbox (a folder per source); for cron or a schedule."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError

from billing.commands import BillingCommand
from ingest.uploads.inbox import inbox_root, process_inbox


class Command(BillingCommand):
    help = (
        "Import every FOCUS file waiting in OPENCHARGEBACK_INBOX_DIR/<source>/, then move it "
        "to done/ or failed/ (with the reason). Exit 1 if any file failed."
    )

    takes_json = True
    json_help = "Print a JSON array."
    takes_user = True

    def handle(self, *args: Any, **options: Any) -> None:
        outcomes = process_inbox(actor=self.actor(options))
        if options["json"]:
            self.stdout.write(json.dumps([o.as_dict() for o in outcomes]))
        elif not outcomes:
            self.stdout.write(f"Nothing waiting in {inbox_root()}.")
        for outcome in outcomes if not options["json"] else []:
            self.stdout.write(
                f"{outcome.source}/{outcome.file}: {outcome.status}. {outcome.message}"
            )
        failed = [o for o in outcomes if o.status == "failed"]
        if failed:
            names = ", ".join(f"{o.source}/{o.file}" for o in failed)
            raise CommandError(
                f"{len(failed)} inbox file{'s' if len(failed) != 1 else ''} failed ({names}); "
                "the reasons are beside them in failed/"
            )
