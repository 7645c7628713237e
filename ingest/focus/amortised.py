"""The amortised cost basis applied to an import's rows (the rule itself is
pure, in ingest.focus.basis): each row bills its EffectiveCost; commitment
purchases and unused commitment go to the source's central commitment
project, or are stored rejected (excluded) and audited.

This is the pricing side of a FOCUS row (what amount it bills); who pays is
ingest.focus.attribution.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from django.utils import timezone

from billing.audit import Actor, charge_event, log_audit
from billing.basis import AMORTISED, BILLED, CENTRAL, EXCLUDE
from billing.models import AuditEvent, Charge, Project, Source
from billing.rules import RuleSet, attribution_flags
from ingest.focus import basis as cost_basis
from ingest.focus.attribution import Who
from ingest.focus.bulk import BATCH
from ingest.focus.errors import IngestError
from ingest.focus.rows import (
    B_BILLED,
    B_CATEGORY,
    B_COMMITMENT_ID,
    B_COMMITMENT_STATUS,
    B_EFFECTIVE,
    B_LIST,
)
from ingest.models import Import

# The basis columns of a row under the billed basis (ingest.focus.bulk.BASIS_COLUMNS).
BILLED_TAIL: tuple[str, int | None] = (BILLED, None)


class CostBasis:
    """The amortised basis for one import (ingest.focus.basis): each row bills its
    EffectiveCost; commitment purchases and unused commitment go to the
    source's central commitment project, or are stored rejected (excluded)."""

    def __init__(self, *, handling: str, central: tuple[Any, ...] | None, ruleset: RuleSet):
        self.handling = handling
        self.central = central  # bulk.WHO_COLUMNS but the tags, for central handling
        self.project_code = central[-2] if central is not None else ""
        self.central_flags: tuple[int, dict[str, Any], str] = (0, {}, "{}")
        if central is not None:
            mask, details = attribution_flags(
                ruleset,
                pi_email=central[-1],
                project_id=central[-2],
                fund_org=central[2],
            )
            self.central_flags = (mask, details, json.dumps(details) if details else "{}")
            self.central = central[:-2]
        self.counts: Counter[str] = Counter()

    @classmethod
    def for_source(cls, source: Source, name: str, ruleset: RuleSet) -> CostBasis | None:
        # As stored now (the caller's object may be older than a `sources set`).
        source.refresh_from_db(
            fields=[
                "cost_basis",
                "commitment_handling",
                "commitment_project",
                "commitment_fund_org",
            ]
        )
        if source.cost_basis != AMORTISED:
            return None
        if source.commitment_handling != CENTRAL:
            return cls(handling=EXCLUDE, central=None, ruleset=ruleset)
        project = None
        if source.commitment_project_id is not None:
            project = (
                Project.objects.select_related("pi").filter(pk=source.commitment_project_id).first()
            )
        if project is None:
            raise IngestError(
                f"{name}: source {source.slug} bills the amortised cost and sends commitment "
                "charges to a central project, but has no commitment project: set one with "
                f"`openchargeback sources set {source.slug} --commitment-project PROJECT`; "
                "nothing was imported"
            )
        fund_org = (source.commitment_fund_org or project.default_fund_org)[:100]
        central = (
            project.pi_id,
            project.pk,
            fund_org,
            "",
            "",
            "",
            "",
            project.project_id,
            project.pi.email if project.pi else "",
        )
        return cls(handling=CENTRAL, central=central, ruleset=ruleset)

    def apply(
        self, base: tuple[Any, ...], who: Who
    ) -> tuple[tuple[Any, ...], Who, tuple[str, int | None], str | None]:
        """(base, who, basis columns, forced review state) of one row."""
        listed, billed, invoiced = cost_basis.amortised(
            category=base[B_CATEGORY],
            list_nanos=base[B_LIST],
            billed_nanos=base[B_BILLED],
            effective_nanos=base[B_EFFECTIVE],
        )
        if listed != base[B_LIST] or billed != base[B_BILLED]:
            row = list(base)
            row[B_LIST], row[B_BILLED] = listed, billed
            base = tuple(row)
        tail = (AMORTISED, invoiced)
        kind = cost_basis.commitment_kind(
            base[B_CATEGORY], base[B_COMMITMENT_ID], base[B_COMMITMENT_STATUS]
        )
        if not kind:
            return base, who, tail, None
        self.counts[f"{self.handling} {kind}"] += 1
        if self.central is None:
            return base, who, tail, Charge.ReviewState.REJECTED.value
        mask, details, details_json = self.central_flags
        # The purchaser's tags stay on the charge for reference.
        central = Who((*self.central, who.values[-1]), mask, details, details_json)
        return base, central, tail, None

    def record_excluded(self, record: Import, actor: Actor) -> None:
        """Note why on the charges this import excluded, and audit each one."""
        if not any(key.startswith(EXCLUDE) for key in self.counts):
            return
        excluded = Charge.objects.filter(
            import_record=record, review_state=Charge.ReviewState.REJECTED
        )
        rows = list(
            excluded.values_list(
                "pk",
                "period_id",
                "billed_cost",
                "charge_category",
                "commitment_discount_id",
                "commitment_discount_status",
            )
        )
        now = timezone.now()
        by_kind: dict[str, list[int]] = {}
        events = []
        for pk, period_id, billed, category, commitment_id, status in rows:
            kind = cost_basis.commitment_kind(category, commitment_id, status)
            by_kind.setdefault(kind, []).append(pk)
            events.append(
                charge_event(
                    created_at=now,
                    actor=actor,
                    action="charge.exclude_commitment",
                    charge_id=pk,
                    period_id=period_id,
                    after={"review_state": "rejected", "billed_cost": str(billed)},
                    reason=cost_basis.EXCLUDE_NOTES.get(kind, ""),
                )
            )
        for kind, ids in by_kind.items():
            for start in range(0, len(ids), BATCH):
                Charge.objects.filter(pk__in=ids[start : start + BATCH]).update(
                    reviewed_by=actor.name,
                    reviewed_at=now,
                    review_note=cost_basis.EXCLUDE_NOTES.get(kind, ""),
                )
        AuditEvent.objects.bulk_create(events, batch_size=2000)
        log_audit(actor, "charge.exclude_commitment", count=len(events))
