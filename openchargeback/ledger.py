"""The ledger check: a period's journal against its statements. Reads only.

Σ journal debits = Σ credits; Σ charged to fund/orgs = Σ current statement
totals; every approved charge on exactly one current statement. It reads both
the journals and the statements apps, so it lives in the project package,
which may import every app (docs/decisions/0004-app-boundaries.md); neither
app imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Sum

from billing.models import Charge
from journals.selectors import prepare
from openchargeback.money import CENT
from statements.models import Statement, StatementCharge
from statements.selectors import plan

APPROVED = Charge.ReviewState.APPROVED


@dataclass
class LedgerCheck:
    period: str
    debit_total: Decimal
    credit_total: Decimal
    charged_total: Decimal
    statement_total: Decimal
    charges: int
    charges_on_statements: int
    problems: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "debit_total": f"{self.debit_total.quantize(CENT):f}",
            "credit_total": f"{self.credit_total.quantize(CENT):f}",
            "charged_total": f"{self.charged_total.quantize(CENT):f}",
            "statement_total": f"{self.statement_total.quantize(CENT):f}",
            "charges": self.charges,
            "charges_on_statements": self.charges_on_statements,
            "ok": not self.problems,
            "problems": self.problems,
        }


def check_ledger(*, period: str) -> LedgerCheck:
    """Σ debits = Σ credits; Σ charged to fund/orgs (debits less money given back)
    = Σ statement totals; every approved charge on exactly one current statement."""
    prepared = prepare(period=period, format="gl")
    journal = prepared.journal
    obj = prepared.period
    current = Statement.objects.filter(period=obj, superseded_at=None)
    statement_total = current.aggregate(t=Sum("billed_total"))["t"] or Decimal(0)
    links = StatementCharge.objects.filter(statement__in=current)
    linked = links.count()
    distinct = links.values("charge_id").distinct().count()
    not_approved = links.exclude(charge__review_state=APPROVED).count()
    problems = []
    if journal.debit_total != journal.credit_total:
        problems.append(
            f"debits {journal.debit_total} != credits {journal.credit_total} "
            f"(difference {journal.debit_total - journal.credit_total})"
        )
    if statement_total != journal.charged_total:
        problems.append(
            f"statement totals {statement_total} != journal charges {journal.charged_total} "
            f"(difference {statement_total - journal.charged_total}); regenerate the statements"
        )
    if linked != distinct:
        problems.append(f"{linked - distinct:,} charges are on more than one current statement")
    missing = journal.charge_count - distinct + not_approved
    if missing:
        # PI projects with nothing to bill ($0.00 on every line) have no statement.
        missing -= sum(data.charge_count for data in plan(obj).empty)
    if missing:
        problems.append(
            f"{journal.charge_count:,} approved charges, {distinct - not_approved:,} of them "
            "on current statements: regenerate the statements"
        )
    if not_approved:
        problems.append(f"{not_approved:,} charges on current statements are no longer approved")
    return LedgerCheck(
        period=obj.period,
        debit_total=journal.debit_total,
        credit_total=journal.credit_total,
        charged_total=journal.charged_total,
        statement_total=statement_total,
        charges=journal.charge_count,
        charges_on_statements=distinct,
        problems=problems,
    )
