"""Finalize guard: a period needs current statements for every billable project.

Statements are not generated yet by this version, so any period with
billable (approved) charges is reported as missing them; the statements
issue replaces this with a comparison against the generated records.
"""

from __future__ import annotations

from billing.models import BillingPeriod, Charge


def missing_statements(period: BillingPeriod) -> list[str]:
    billable = (
        Charge.objects.filter(period=period, review_state=Charge.ReviewState.APPROVED)
        .values("pi_id", "project_id")
        .distinct()
        .count()
    )
    if billable:
        return [
            f"no current statements for {billable:,} billable PI projects (generate them first)"
        ]
    return []
