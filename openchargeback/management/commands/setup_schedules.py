"""Register the month-end automation as django-q2 schedules (idempotent);
``--dry-run`` makes the changes and rolls them back."""

from __future__ import annotations

import json
from typing import Any

from billing.commands import BillingCommand
from openchargeback.schedules import setup_schedules


class Command(BillingCommand):
    help = (
        "Create or update the schedules the workers run: inbox import, email retries, the "
        "daily reviewer reminder and (with OPENCHARGEBACK_AUTO_SEND) sending the statements "
        "of closed months. Re-running never duplicates; schedules no longer wanted are removed."
    )

    takes_json = True
    takes_dry_run = True
    dry_run_help = "Report what would be created, updated or removed; write nothing."
    dry_run_rolls_back = True

    def handle(self, *args: Any, **options: Any) -> None:
        report = setup_schedules()
        if options["json"]:
            self.stdout.write(json.dumps(report))
            return
        for what, names in report.items():
            for name in names:
                self.stdout.write(f"{what}: {name}")
