"""Writes and reads of the account mappings: who pays for a Slurm account or
a storage quota (priced by the rate card) and for a cloud sub-account, billing
account or resource (FOCUS rows without tags; resolved by
ingest.focus.cloud_accounts). Every change is audited; mapping files are read
and written by ingest.usage.mapping_files."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from billing.audit import Actor, audit, audit_change
from billing.errors import BillingError
from billing.models import Project, Source
from ingest.models import AccountMapping
from ingest.usage.pricing import Owner
from ingest.usage.rates import one_line

__all__ = [
    "CLOUD_COLUMNS",
    "MAPPING_COLUMNS",
    "account_mapping_check",
    "account_mapping_create",
    "account_mapping_delete",
    "account_mapping_update",
    "owners",
]


MAPPING_COLUMNS = ("kind", "name", "pi_email", "project_id", "fund_org")
# Optional columns, for cloud mappings (a file without them is all Slurm and storage).
CLOUD_COLUMNS = ("source", "effective_from", "effective_to")
MAPPING_FIELDS = (  # the fields a mapping's services and its admin form edit
    "kind",
    "source",
    "name",
    "project",
    "fund_org",
    "effective_from",
    "effective_to",
    "notes",
    "active",
)
KIND_WORDS = {
    "slurm": "Slurm account",
    "storage": "storage quota",
    "sub_account": "sub-account",
    "billing_account": "billing account",
    "resource": "resource",
}


def owners(kind: str) -> dict[str, Owner]:
    """Active mappings of one kind (slurm, storage), keyed by the lower-cased name."""
    found: dict[str, Owner] = {}
    mappings = AccountMapping.objects.filter(kind=kind, active=True).select_related("project__pi")
    for mapping in mappings:
        project = mapping.project
        found[mapping.name.lower()] = Owner(
            pi_email=project.pi.email if project.pi else "",
            project_id=project.project_id,
            fund_org=mapping.effective_fund_org,
        )
    return found


def mapping_values(mapping: AccountMapping) -> dict[str, str]:
    project = mapping.project
    values = {
        "kind": mapping.kind,
        "name": mapping.name,
        "project": project.project_id,
        "pi": project.pi.email if project.pi else "",
        "fund_org": mapping.fund_org,
        "notes": mapping.notes,
        "active": str(mapping.active),
    }
    if mapping.is_cloud:
        values["source"] = mapping.source.slug if mapping.source else ""
        values["effective_from"] = day_text(mapping.effective_from)
        values["effective_to"] = day_text(mapping.effective_to)
    return values


def day_text(value: date | None) -> str:
    return value.isoformat() if value else ""


def window_text(start: date | None, end: date | None) -> str:
    if start is None and end is None:
        return "with no dates"
    return f"from {day_text(start) or 'the start'} to {day_text(end) or 'further notice'}"


def overlaps(a: tuple[date | None, date | None], b: tuple[date | None, date | None]) -> bool:
    """Do two day ranges (last day included; None: open) share a day?"""
    return (a[0] is None or b[1] is None or a[0] <= b[1]) and (
        b[0] is None or a[1] is None or b[0] <= a[1]
    )


def _same_name(kind: str, name: str) -> Q:
    """Mappings of the same account: resource ids match exactly, other names ignoring case."""
    return Q(name=name) if kind == AccountMapping.Kind.RESOURCE else Q(name__iexact=name)


def account_mapping_check(mapping: AccountMapping) -> None:
    """Refuse an active cloud mapping whose dates overlap another active mapping
    of the same source, kind and name (one mapping applies to a day, never two)."""
    source = mapping.source if mapping.source_id is not None else None
    if not mapping.is_cloud or not mapping.active or source is None:
        return
    others = AccountMapping.objects.filter(
        _same_name(mapping.kind, mapping.name),
        source=source,
        kind=mapping.kind,
        active=True,
    )
    if mapping.pk is not None:
        others = others.exclude(pk=mapping.pk)
    mine = (mapping.effective_from, mapping.effective_to)
    for other in others.order_by("effective_from", "pk"):
        theirs = (other.effective_from, other.effective_to)
        if overlaps(mine, theirs):
            raise BillingError(
                f"{KIND_WORDS[mapping.kind]} {mapping.name!r} of source {source.slug} is "
                f"already mapped {window_text(*theirs)} (mapping #{other.pk}); the dates "
                f"{window_text(*mine)} overlap it: end one mapping before the other starts"
            )


def account_mapping_clean(mapping: AccountMapping) -> None:
    mapping.name = (mapping.name or "").strip()
    mapping.fund_org = (mapping.fund_org or "").strip()
    try:
        mapping.full_clean(exclude=["created_at", "created_by"])
    except ValidationError as exc:
        raise one_line(exc, f"mapping {mapping.name!r}") from None
    if mapping.is_cloud and mapping.source_id is not None:
        # One writer per source at a time, so two overlapping mappings cannot
        # both pass the check (the importer takes the same lock).
        Source.objects.select_for_update().filter(pk=mapping.source_id).first()
    account_mapping_check(mapping)


@transaction.atomic
def account_mapping_create(
    *,
    actor: Actor,
    kind: str,
    name: str,
    project: Project,
    fund_org: str = "",
    notes: str = "",
    active: bool = True,
    source: Source | None = None,
    effective_from: date | None = None,
    effective_to: date | None = None,
) -> AccountMapping:
    """Map an account to a project (which must have a PI): a Slurm account or
    storage quota, or a cloud sub-account, billing account or resource of a
    source, optionally for a range of days that overlaps no other mapping of
    the same account. Applying it to charges already imported is
    :func:`ingest.focus.cloud_accounts.account_mappings_apply`."""
    mapping = AccountMapping(
        kind=kind,
        source=source,
        name=name,
        project=project,
        fund_org=fund_org,
        effective_from=effective_from,
        effective_to=effective_to,
        notes=notes,
        active=active,
        created_by=actor.name,
    )
    account_mapping_clean(mapping)
    mapping.save()
    audit(actor=actor, action="accountmapping.create", obj=mapping, after=mapping_values(mapping))
    return mapping


@transaction.atomic
def account_mapping_update(
    *, mapping: AccountMapping, actor: Actor, **changes: Any
) -> AccountMapping:
    """Change a mapping's kind, source, name, project, fund/org, dates, notes or
    active flag."""
    unknown = set(changes) - set(MAPPING_FIELDS)
    if unknown:
        raise BillingError(f"unknown mapping field(s): {', '.join(sorted(unknown))}")
    fresh = (
        AccountMapping.objects.select_for_update(of=("self",))
        .select_related("project__pi", "source")
        .filter(pk=mapping.pk)
        .first()
    )
    if fresh is None:
        raise BillingError(f"mapping {mapping.pk} does not exist any more")
    before = mapping_values(fresh)
    for name, value in changes.items():
        setattr(fresh, name, value)
    account_mapping_clean(fresh)
    after = mapping_values(fresh)
    if after == before:
        return fresh
    fresh.save()
    before.update({k: "" for k in after if k not in before})
    after.update({k: "" for k in before if k not in after})
    audit_change(actor=actor, action="accountmapping.change", obj=fresh, before=before, after=after)
    return fresh


@transaction.atomic
def account_mapping_delete(*, mapping: AccountMapping, actor: Actor) -> None:
    """Delete a mapping: the account is unmapped from then on (charges already
    imported keep their PI and project)."""
    fresh = (
        AccountMapping.objects.select_related("project__pi", "source").filter(pk=mapping.pk).first()
    )
    if fresh is None:
        return
    audit(actor=actor, action="accountmapping.delete", obj=fresh, before=mapping_values(fresh))
    fresh.delete()
