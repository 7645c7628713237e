"""Finalize guard: a period needs a journal export of its current data.

Journal exports are not produced yet by this version, so any period with
billable (approved) charges is reported as missing one; the journals issue
replaces this with a comparison against the recorded exports.
"""

from __future__ import annotations

from billing.models import BillingPeriod, Charge


def missing_journal_export(period: BillingPeriod) -> list[str]:
    if Charge.objects.filter(period=period, review_state=Charge.ReviewState.APPROVED).exists():
        return ["no journal export of the current data (export one first)"]
    return []
