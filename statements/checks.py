"""Finalize guard: a period needs current statements for every billable PI project."""

from __future__ import annotations

from billing.models import BillingPeriod


def missing_statements(period: BillingPeriod) -> list[str]:
    from statements.services import missing_statements as check

    return check(period)
