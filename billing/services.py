"""Writes to billing records: sources and the period lifecycle (open ->
closed -> finalized, with the checks the apps register). Safe to re-run where
noted; every change is recorded as an AuditEvent with its actor."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from billing.audit import Actor, audit, audit_change
from billing.blockers import Blocker, blockers_text, charges_url, period_blockers
from billing.errors import BillingError
from billing.models import BillingPeriod, Source
from billing.periods import parse_period
from openchargeback.text import count


def normalise_slug(slug: str) -> str:
    return slug.strip().lower()


_SOURCE_FIELDS = (
    "name",
    "filename_pattern",
    "credit_fund_org",
    "account_code",
    "enabled",
    "provider_names",
    # Cost basis (billing.basis, docs/decisions/0006-cost-basis.md)
    "cost_basis",
    "commitment_handling",
    "commitment_project_id",
    "commitment_fund_org",
)


@transaction.atomic
def source_add(
    *,
    slug: str,
    name: str = "",
    filename_pattern: str = "",
    credit_fund_org: str = "",
    account_code: str = "",
    enabled: bool = True,
    actor: Actor,
) -> Source:
    """Create a source. Refuses a slug that exists (in any letter case)."""
    slug = normalise_slug(slug)
    if Source.objects.filter(slug=slug).exists():
        raise BillingError(f"source {slug!r} already exists")
    source = Source(
        slug=slug,
        name=name or slug.upper(),
        filename_pattern=filename_pattern,
        credit_fund_org=credit_fund_org,
        account_code=account_code,
        enabled=enabled,
    )
    _validate_and_save(source)
    audit(
        actor=actor,
        action="source.create",
        obj=source,
        after={"slug": source.slug, **{f: getattr(source, f) for f in _SOURCE_FIELDS}},
    )
    return source


def _validate_and_save(source: Source) -> None:
    try:
        source.full_clean()
    except ValidationError as exc:
        problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
        raise BillingError(f"source {source.slug!r}: {problems}") from None
    source.save()


def source_set(*, slug: str, actor: Actor, **changes: Any) -> Source:
    """Change a source's name, filename pattern, accounting (credit fund/org,
    account code), enabled flag or cost basis (cost_basis, commitment_handling,
    commitment_project_id, commitment_fund_org); fields given as None are left alone.
    Audited before/after; the admin and `sources set` both come here."""
    unknown = set(changes) - set(_SOURCE_FIELDS)
    if unknown:
        raise BillingError(f"cannot set {', '.join(sorted(unknown))} on a source")
    with transaction.atomic():
        source = Source.objects.select_for_update().filter(slug=normalise_slug(slug)).first()
        if source is None:
            raise BillingError(f"unknown source {slug!r} (openchargeback sources list)")
        before = {f: getattr(source, f) for f in _SOURCE_FIELDS}
        if changes.get("provider_names") is not None:
            changes["provider_names"] = _provider_names(source, changes["provider_names"])
        for name, value in changes.items():
            if value is not None:
                setattr(source, name, value)
        after = {f: getattr(source, f) for f in _SOURCE_FIELDS}
        if after == before:
            return source
        _validate_and_save(source)
        audit_change(actor=actor, action="source.change", obj=source, before=before, after=after)
    return source


def _provider_names(source: Source, text: str) -> str:
    """'aws ,Amazon Web Services' -> 'aws, Amazon Web Services'; a name another
    source claims already is refused (a routed row must have one source)."""
    names = list(dict.fromkeys(n.strip() for n in str(text).split(",") if n.strip()))
    mine = {n.casefold() for n in names}
    for other in Source.objects.exclude(pk=source.pk).exclude(provider_names=""):
        for claimed in other.provider_names.split(","):
            if claimed.strip().casefold() in mine:
                raise BillingError(
                    f"source {source.slug!r}: provider {claimed.strip()!r} is already "
                    f"claimed by source {other.slug}; remove it there first"
                )
    return ", ".join(names)


def source_for_slug(slug: str) -> Source:
    """The source for a slug, ignoring case; BillingError names the known ones."""
    source = Source.objects.filter(slug=normalise_slug(slug)).first()
    if source is None:
        known = ", ".join(Source.objects.values_list("slug", flat=True)) or "none"
        raise BillingError(
            f"unknown source {slug!r} (known: {known}); add it with "
            f"`openchargeback sources add {normalise_slug(slug)}`"
        )
    if not source.enabled:
        raise BillingError(f"source {source.slug!r} is disabled; enable it in the admin first")
    return source


# --- Billing periods: open -> closed -> finalized ------------------------------

# Checks that must pass before a period can be finalized, registered by the
# apps that own the records (statements, journals) in their AppConfig.ready().
# Each takes the period and returns a list of problems (empty: fine).
FinalizeCheck = Callable[[BillingPeriod], list[Blocker]]
FINALIZE_CHECKS: dict[str, FinalizeCheck] = {}


def register_finalize_check(name: str, check: FinalizeCheck) -> None:
    FINALIZE_CHECKS[name] = check


def period_locked(period: str) -> BillingPeriod:
    """The period row, locked until the transaction ends, so the services that
    change a month or what it holds run one at a time (PostgreSQL row lock;
    SQLite has one writer at a time anyway)."""
    period = parse_period(period)
    obj = BillingPeriod.objects.select_for_update().filter(period=period).first()
    if obj is None:
        raise BillingError(f"period {period} does not exist (it is created by its first import)")
    return obj


def _append_note(obj: BillingPeriod, *, actor: Actor, action: str, text: str) -> None:
    stamp = timezone.now().strftime("%Y-%m-%d %H:%M UTC")
    line = f"{stamp} {actor.name} {action}" + (f": {text}" if text else "")
    obj.notes = f"{obj.notes}\n{line}" if obj.notes else line


def _transition(
    obj: BillingPeriod,
    *,
    to: str,
    actor: Actor,
    action: str,
    verb: str,
    text: str,
    after: dict[str, Any] | None = None,
) -> BillingPeriod:
    """Move a period to ``to``: who/when fields, an appended note, one audit event."""
    before = {"status": obj.status}
    obj.status = to
    stamp_field = {"open": "reopened", "closed": "closed", "finalized": "finalized"}[to]
    setattr(obj, f"{stamp_field}_at", timezone.now())
    setattr(obj, f"{stamp_field}_by", actor.name)
    _append_note(obj, actor=actor, action=verb, text=text)
    obj.save()
    audit(
        actor=actor,
        action=action,
        obj=obj,
        period=obj,
        before=before,
        after={"status": to, **(after or {})},
        reason=text,
    )
    return obj


def _pending_summary(obj: BillingPeriod) -> tuple[int, Decimal]:
    from billing.models import Charge

    row = obj.charges.filter(review_state=Charge.ReviewState.PENDING).aggregate(
        n=Count("id"), billed=Sum("billed_cost")
    )
    return row["n"], row["billed"] or Decimal("0.00")


@transaction.atomic
def period_open(*, period: str, actor: Actor, note: str = "") -> BillingPeriod:
    """The BillingPeriod for a month, created open (noted and audited) on first
    sight: by its first import, or ahead of it. Safe to re-run."""
    period = parse_period(period)
    obj, created = BillingPeriod.objects.get_or_create(period=period)
    if created:
        _append_note(obj, actor=actor, action="opened", text=note)
        obj.save(update_fields=["notes"])
        audit(actor=actor, action="period.create", obj=obj, period=obj, after={"status": "open"})
    return obj


@transaction.atomic
def period_close(
    *, period: str, actor: Actor, note: str = "", allow_pending: bool = False
) -> BillingPeriod:
    """Close an open period. Pending charges block it unless the override is recorded."""
    obj = period_locked(period)
    if obj.status != BillingPeriod.Status.OPEN:
        raise BillingError(
            f"period {obj.period} is {obj.status}; only an open period can be closed"
        )
    pending, _amount = _pending_summary(obj)
    found = period_blockers(obj, allow_pending=allow_pending)
    if found:
        only_pending = pending and not allow_pending and len(found) == 1
        raise BillingError(
            f"period {obj.period} cannot be closed: {blockers_text(found)}"
            + (
                "; or close with --allow-pending to leave them out and record the override"
                if pending and not allow_pending
                else ""
            ),
            web=f"{obj.period} cannot be closed yet: "
            + "; ".join(b.text for b in found)
            + (
                ": review them, or tick “Close although charges are pending review” to "
                "leave them out and record the override"
                if only_pending
                else " (each is listed on the period's page with a link to its fix)"
            ),
            blockers=found,
        )
    text = note
    if pending:
        text = f"{note + '; ' if note else ''}closed with {count(pending, 'charge')} pending review"
    return _transition(
        obj,
        to=BillingPeriod.Status.CLOSED,
        actor=actor,
        action="period.close",
        verb="closed",
        text=text,
        after={"pending_override": pending},
    )


@transaction.atomic
def period_reopen(*, period: str, actor: Actor, reason: str) -> BillingPeriod:
    """Reopen a closed period; a reason is required. Finalized periods stay final."""
    if not reason.strip():
        raise BillingError('reopening a period needs a reason (--reason "...")')
    obj = period_locked(period)
    if obj.status == BillingPeriod.Status.FINALIZED:
        raise BillingError(f"period {obj.period} is finalized; that is permanent")
    if obj.status != BillingPeriod.Status.CLOSED:
        raise BillingError(f"period {obj.period} is already open")
    return _transition(
        obj,
        to=BillingPeriod.Status.OPEN,
        actor=actor,
        action="period.reopen",
        verb="reopened",
        text=reason.strip(),
    )


def finalize_blocker_list(obj: BillingPeriod) -> list[Blocker]:
    """Everything that stops a period from being finalized, each with where to
    fix it (empty: it may be)."""
    found: list[Blocker] = []
    if obj.status != BillingPeriod.Status.CLOSED:
        found.append(Blocker(f"the period is {obj.status}; close it first"))
    pending, _amount = _pending_summary(obj)
    if pending:
        found.append(
            Blocker(
                f"{count(pending, 'charge')} pending review",
                url=charges_url(obj, review_state__exact="pending"),
                link_text="review them",
            )
        )
    # Closing checked the data; a setting changed since is caught here, not by an export.
    found.extend(period_blockers(obj, allow_pending=True))
    for check in FINALIZE_CHECKS.values():
        found.extend(check(obj))
    return found


def finalize_blockers(obj: BillingPeriod) -> list[str]:
    """The same, one line each for the command line (with the command that fixes it)."""
    return [b.cli_line() for b in finalize_blocker_list(obj)]


@transaction.atomic
def period_finalize(*, period: str, actor: Actor, note: str = "") -> BillingPeriod:
    """Finalize a closed period: permanent. Refused while anything is unfinished."""
    obj = period_locked(period)
    if obj.status == BillingPeriod.Status.FINALIZED:
        raise BillingError(f"period {obj.period} is already finalized")
    problems = finalize_blockers(obj)
    if problems:
        raise BillingError(f"period {obj.period} cannot be finalized: {'; '.join(problems)}")
    return _transition(
        obj,
        to=BillingPeriod.Status.FINALIZED,
        actor=actor,
        action="period.finalize",
        verb="finalized",
        text=note,
    )
