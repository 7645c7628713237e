"""Cloud account mappings: who pays for a cloud sub-account (AWS account,
Azure subscription, GCP project, OCI compartment), a billing account or one
resource, when the provider's rows carry no PI, project or fund/org tags.

:class:`CloudMappings` resolves one row (pure, no ORM; the importer asks it
per row), :func:`merge_owner` combines a mapping with what the tags say,
:func:`account_mappings_apply` re-applies the mappings to pending charges of
open periods through the fix-attribution service (audited per charge;
running it twice changes nothing the second time), and
:func:`unmapped_sub_accounts` lists what is still unmapped, by cost.

Precedence, most specific first: the charge's own tags, then a resource
mapping (exact ResourceId), then a sub-account mapping, then a
billing-account mapping. Only the most specific mapping in force applies.
Tags win field by field, but a mapping never completes tags that name
another owner: when the tags name a PI or a project other than the mapping's,
the mapping is not used at all (docs/integrations/cloud-accounts.md).
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Count, Max, Q, Sum

from billing.audit import Actor
from billing.errors import BillingError
from billing.models import BillingPeriod, Charge, Source
from billing.periods import month_start, parse_period
from billing.review import charges_fix_attribution_report
from billing.rules import UNMAPPED_ACCOUNT_TAG, map_tags
from billing.selectors import load_ruleset
from ingest.models import AccountMapping
from openchargeback.text import count

__all__ = [
    "ApplyResult",
    "CloudMappings",
    "CloudOwner",
    "UnmappedAccount",
    "account_mappings_apply",
    "cloud_mappings",
    "merge_owner",
    "unmapped_label",
    "unmapped_sub_accounts",
]

_BATCH = 2000


@dataclass(frozen=True)
class CloudOwner:
    """One active cloud mapping, as the resolver needs it."""

    mapping_id: int
    kind: str
    name: str
    pi_email: str
    project_id: str
    fund_org: str  # the mapping's, else the project's default ("" if neither)
    start: date | None = None
    end: date | None = None  # last day included

    def covers(self, day: date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)

    @property
    def undated(self) -> bool:
        return self.start is None and self.end is None

    @property
    def values(self) -> dict[str, str]:
        return {"pi_email": self.pi_email, "project_id": self.project_id, "fund_org": self.fund_org}


def _in_force(candidates: list[CloudOwner], day: Callable[[], date]) -> CloudOwner | None:
    if len(candidates) == 1 and candidates[0].undated:
        return candidates[0]  # the usual case: no date needed
    when = day()
    for owner in candidates:
        if owner.covers(when):
            return owner
    return None


class CloudMappings:
    """The active cloud mappings of one source, indexed for per-row lookups."""

    def __init__(self, owners: Iterable[CloudOwner]) -> None:
        self.resources: dict[str, list[CloudOwner]] = defaultdict(list)
        self.sub_accounts: dict[str, list[CloudOwner]] = defaultdict(list)
        self.billing_accounts: dict[str, list[CloudOwner]] = defaultdict(list)
        tables = {
            AccountMapping.Kind.RESOURCE: (self.resources, False),
            AccountMapping.Kind.SUB_ACCOUNT: (self.sub_accounts, True),
            AccountMapping.Kind.BILLING_ACCOUNT: (self.billing_accounts, True),
        }
        for owner in owners:
            table, fold = tables[owner.kind]  # type: ignore[index]
            table[owner.name.lower() if fold else owner.name].append(owner)
        # Plain dicts from here on: a lookup must never add a key.
        self.resources = dict(self.resources)
        self.sub_accounts = dict(self.sub_accounts)
        self.billing_accounts = dict(self.billing_accounts)

    def __bool__(self) -> bool:
        return bool(self.resources or self.sub_accounts or self.billing_accounts)

    def resolve(
        self,
        *,
        resource_id: str,
        sub_account_id: str,
        billing_account_id: str,
        day: Callable[[], date],
    ) -> CloudOwner | None:
        """The most specific mapping in force for a row (``day()`` is asked only
        when a dated mapping has to be chosen)."""
        if resource_id and self.resources:
            found = self.resources.get(resource_id)
            hit = _in_force(found, day) if found else None
            if hit is not None:
                return hit
        if sub_account_id and self.sub_accounts:
            found = self.sub_accounts.get(sub_account_id.lower())
            hit = _in_force(found, day) if found else None
            if hit is not None:
                return hit
        if billing_account_id and self.billing_accounts:
            found = self.billing_accounts.get(billing_account_id.lower())
            hit = _in_force(found, day) if found else None
            if hit is not None:
                return hit
        return None


def cloud_mappings(source: Source | int) -> CloudMappings:
    """The active cloud mappings of a source."""
    source_id = source if isinstance(source, int) else source.pk
    rows = AccountMapping.objects.filter(
        source_id=source_id, kind__in=AccountMapping.CLOUD_KINDS, active=True
    ).select_related("project__pi")
    return CloudMappings(_owner(m) for m in rows if m.project.pi is not None)


def _owner(mapping: AccountMapping) -> CloudOwner:
    project = mapping.project
    return CloudOwner(
        mapping_id=mapping.pk,
        kind=mapping.kind,
        name=mapping.name,
        pi_email=project.pi.email if project.pi else "",
        project_id=project.project_id,
        fund_org=mapping.effective_fund_org,
        start=mapping.effective_from,
        end=mapping.effective_to,
    )


def merge_owner(values: dict[str, str], owner: CloudOwner | None) -> dict[str, str]:
    """Tag values completed by a mapping: each of PI, project and fund/org the
    tags leave empty comes from the mapping. Tags that name a PI or a project
    other than the mapping's are kept as they are (the mapping is ignored)."""
    if owner is None:
        return values
    pi, project = values.get("pi_email", ""), values.get("project_id", "")
    if (pi and pi != owner.pi_email) or (project and project != owner.project_id):
        return values
    merged = dict(values)
    for name, value in owner.values.items():
        if value and not merged.get(name):
            merged[name] = value
    return merged


def charge_day(charge_period_start: Any, period: str) -> date:
    """The day a mapping is chosen by: the ChargePeriodStart date (UTC), else
    the first day of the billing month."""
    if isinstance(charge_period_start, datetime):
        if charge_period_start.tzinfo is not None:
            charge_period_start = charge_period_start.astimezone(UTC)
        return charge_period_start.date()
    if isinstance(charge_period_start, date):
        return charge_period_start
    if isinstance(charge_period_start, str) and len(charge_period_start) >= 10:
        return date.fromisoformat(charge_period_start[:10])
    return month_start(period)


def unmapped_label(sub_account_id: str, sub_account_name: str = "") -> str:
    """How an unmapped cloud account is named in the flag details."""
    if not sub_account_name or sub_account_name == sub_account_id:
        return f"sub-account {sub_account_id}"
    return f"sub-account {sub_account_id} ({sub_account_name})"


# --- re-applying the mappings to pending charges --------------------------------------


@dataclass
class ApplyResult:
    """What applying the mappings did (or, for a dry run, would do)."""

    dry_run: bool
    examined: int = 0
    changed: int = 0
    flags_cleared: int = 0
    approved: int = 0
    by_mapping: dict[int, int] = field(default_factory=dict)  # mapping id -> charges changed

    def summary(self) -> str:
        verb = "would change" if self.dry_run else "changed"
        text = (
            f"Account mappings {verb} {count(self.changed, 'pending charge')} of "
            f"{self.examined:,} examined: {count(self.flags_cleared, 'flag reason')} cleared, "
            f"{self.approved:,} now approved."
        )
        return ("Dry run, nothing written: " if self.dry_run else "") + text

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "dry_run" if self.dry_run else "applied",
            "examined": self.examined,
            "changed": self.changed,
            "flags_cleared": self.flags_cleared,
            "approved": self.approved,
            "by_mapping": {str(k): v for k, v in sorted(self.by_mapping.items())},
        }


class _Rollback(Exception):
    """Raised inside the transaction of a dry run to undo everything it did."""


def _open_periods(period: str | None) -> list[int]:
    periods = BillingPeriod.objects.all()
    if period:
        period = parse_period(period)
        obj = periods.filter(period=period).first()
        if obj is None:
            raise BillingError(f"period {period} does not exist")
        if obj.status != BillingPeriod.Status.OPEN:
            raise BillingError(
                f"period {period} is {obj.status}; mappings are applied to open periods only"
            )
        return [obj.pk]
    return list(periods.filter(status=BillingPeriod.Status.OPEN).values_list("pk", flat=True))


def account_mappings_apply(
    *,
    actor: Actor,
    period: str | None = None,
    source: Source | None = None,
    dry_run: bool = False,
) -> ApplyResult:
    """Attribute pending charges of open periods by the cloud mappings in force.

    Each pending charge of a source with cloud mappings is attributed as its
    import would be today (its tags first, then the most specific mapping);
    charges whose PI, project or fund/org that changes go through
    :func:`billing.review.charges_fix_attribution_report`, so every change
    is audited per charge, flags are re-evaluated, charges left without a
    flag are approved and the summaries stay right. Approved and rejected
    charges are never touched. A dry run does exactly the same inside a
    transaction that is rolled back.
    """
    result = ApplyResult(dry_run=dry_run)
    try:
        with transaction.atomic():
            _apply(result, actor=actor, period=period, source=source)
            if dry_run:
                raise _Rollback
    except _Rollback:
        pass
    return result


def _apply(result: ApplyResult, *, actor: Actor, period: str | None, source: Source | None) -> None:
    period_ids = _open_periods(period)
    sources = Source.objects.filter(
        pk__in=AccountMapping.objects.filter(
            kind__in=AccountMapping.CLOUD_KINDS, active=True
        ).values("source_id")
    )
    if source is not None:
        sources = sources.filter(pk=source.pk)
    resolvers = {s.pk: cloud_mappings(s.pk) for s in sources}
    if not resolvers or not period_ids:
        return
    ruleset = load_ruleset()
    tag_values: dict[str, dict[str, str]] = {}
    # (mapping id, pi, project, fund/org) -> charge ids to set to that
    wanted: dict[tuple[int, str, str, str], list[int]] = defaultdict(list)
    charges = (
        Charge.objects.filter(
            review_state=Charge.ReviewState.PENDING,
            period_id__in=period_ids,
            source_id__in=list(resolvers),
        )
        .order_by("pk")
        .values_list(
            "pk",
            "source_id",
            "resource_id",
            "sub_account_id",
            "billing_account_id",
            "charge_period_start",
            "period__period",
            "tags",
            "pi__email",
            "project__project_id",
            "fund_org",
        )
    )
    for (
        pk,
        source_id,
        resource_id,
        sub_account_id,
        billing_account_id,
        started,
        month,
        tags,
        pi_email,
        project_code,
        fund_org,
    ) in charges.iterator(chunk_size=_BATCH):
        result.examined += 1
        owner = resolvers[source_id].resolve(
            resource_id=resource_id,
            sub_account_id=sub_account_id,
            billing_account_id=billing_account_id,
            day=functools.partial(charge_day, started, month),
        )
        if owner is None:
            continue
        raw = json.dumps(tags, sort_keys=True) if tags else ""
        values = tag_values.get(raw)
        if values is None:
            values = tag_values[raw] = map_tags(raw, ruleset).values
        merged = merge_owner(values, owner)
        if merged == values:
            continue  # the tags decide (they name another owner, or say it all)
        target = (
            merged.get("pi_email", ""),
            merged.get("project_id", ""),
            merged.get("fund_org", ""),
        )
        if target == (pi_email or "", project_code or "", fund_org) or not target[1]:
            continue
        wanted[(owner.mapping_id, *target)].append(pk)
    names = dict(
        AccountMapping.objects.filter(pk__in={key[0] for key in wanted}).values_list("pk", "name")
    )
    for (mapping_id, pi_email, project_code, fund_org), ids in sorted(wanted.items()):
        for start in range(0, len(ids), _BATCH):
            report = charges_fix_attribution_report(
                charges=Charge.objects.filter(pk__in=ids[start : start + _BATCH]),
                actor=actor,
                pi_email=pi_email or None,
                project_id=project_code,
                fund_org=fund_org,
                note=f"account mapping #{mapping_id} {names.get(mapping_id, '')}".strip(),
            )
            result.changed += report.changed
            result.flags_cleared += report.flags_cleared
            result.approved += report.approved
            result.by_mapping[mapping_id] = result.by_mapping.get(mapping_id, 0) + report.changed


# --- what is still unmapped ---------------------------------------------------------------


@dataclass(frozen=True)
class UnmappedAccount:
    """A cloud sub-account whose pending charges (open periods) have no PI or project."""

    source_id: int
    source: str
    sub_account_id: str
    sub_account_name: str
    charges: int
    billed: Decimal
    periods: tuple[str, ...]
    mapped: bool  # a mapping exists now: applying it would attribute these charges


def unmapped_sub_accounts(*, source: Source | None = None) -> list[UnmappedAccount]:
    """Cloud sub-accounts with pending charges of open periods that lack a PI or
    a project, largest billed amount first. Slurm and storage usage (flagged by
    the converters) is left to the on-premises mappings."""
    charges = (
        Charge.objects.filter(
            review_state=Charge.ReviewState.PENDING,
            period__status=BillingPeriod.Status.OPEN,
        )
        .exclude(sub_account_id="")
        .filter(Q(pi__isnull=True) | Q(project__isnull=True))
        .exclude(tags__has_key=UNMAPPED_ACCOUNT_TAG)
    )
    if source is not None:
        charges = charges.filter(source=source)
    rows = list(
        charges.values("source_id", "source__slug", "sub_account_id")
        .annotate(
            n=Count("id"),
            billed=Sum("billed_cost"),
            name=Max("sub_account_name"),
        )
        .order_by("-billed", "source__slug", "sub_account_id")
    )
    months: dict[tuple[int, str], set[str]] = defaultdict(set)
    for source_id, sub, month in charges.values_list(
        "source_id", "sub_account_id", "period__period"
    ).distinct():
        months[(source_id, sub)].add(month)
    resolvers: dict[int, CloudMappings] = {}
    found = []
    for row in rows:
        source_id = row["source_id"]
        if source_id not in resolvers:
            resolvers[source_id] = cloud_mappings(source_id)
        found.append(
            UnmappedAccount(
                source_id=source_id,
                source=row["source__slug"],
                sub_account_id=row["sub_account_id"],
                sub_account_name=row["name"] or "",
                charges=row["n"],
                billed=row["billed"] if row["billed"] is not None else Decimal("0.00"),
                periods=tuple(sorted(months[(source_id, row["sub_account_id"])])),
                mapped=row["sub_account_id"].lower() in resolvers[source_id].sub_accounts,
            )
        )
    return found
