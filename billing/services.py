"""Writes to billing records: audit events, periods, sources. Safe to re-run
where noted; every change is recorded as an AuditEvent with its actor."""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from billing import summaries
from billing.blockers import (
    Blocker,
    approvable,
    blockers_text,
    charges_url,
    left_blocked,
    period_blockers,
)
from billing.errors import BillingError
from billing.models import AuditEvent, BillingPeriod, Source
from billing.patterns import PatternError, compile_user_pattern
from billing.periods import parse_period
from openchargeback.logging import audit_log
from openchargeback.money import to_nanos
from openchargeback.spreadsheet import restore
from openchargeback.text import count


@dataclass(frozen=True)
class Actor:
    """Who acts: a user name (``--user``, the web user, or ``system``) and how."""

    name: str
    channel: str = "cli"
    user_id: int | None = None

    @classmethod
    def for_user(cls, user: AbstractBaseUser, channel: str = "admin") -> Actor:
        return cls(name=user.get_username(), channel=channel, user_id=user.pk)

    @classmethod
    def from_cli(cls, name: str | None) -> Actor:
        """``--user`` if given, else the operating-system user; linked to a
        Django user of the same name when one exists."""
        username = name or getpass.getuser()
        user = get_user_model().objects.filter(username=username).only("pk").first()
        return cls(name=username, channel="cli", user_id=user.pk if user else None)

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls(name=name, channel="system")


def web_text(exc: Exception) -> str:
    """An error's wording for a browser user (see BillingError.web)."""
    return str(getattr(exc, "web", "") or exc)


def audit(
    *,
    actor: Actor,
    action: str,
    obj: Any = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    period: BillingPeriod | None = None,
    before: Any = None,
    after: Any = None,
    reason: str = "",
) -> AuditEvent:
    """Record one state change. Call inside the transaction that makes it."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)[:300]
    log_audit(actor, action, object_type=object_type, object_id=object_id, count=1)
    event = audit_event(
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr,
        period=period,
        before=before,
        after=after,
        reason=reason,
    )
    event.save(force_insert=True)
    return event


def audit_event(
    *,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str,
    object_repr: str,
    period: BillingPeriod | None = None,
    period_id: int | None = None,
    before: Any = None,
    after: Any = None,
    reason: str = "",
    created_at: datetime | None = None,
) -> AuditEvent:
    """One audit row, not saved: what :func:`audit` saves, and what writers
    that record many changes at once pass to ``AuditEvent.objects.bulk_create``
    (with one :func:`log_audit` line for the lot)."""
    event = AuditEvent(
        actor=actor.name,
        channel=actor.channel,
        user_id=actor.user_id,
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr[:300],
        period=period,
        before=before,
        after=after,
        reason=reason,
    )
    if period_id is not None:
        event.period_id = period_id
    if created_at is not None:
        event.created_at = created_at
    return event


def charge_event(
    *,
    actor: Actor,
    action: str,
    charge_id: int,
    period_id: int | None,
    created_at: datetime,
    before: Any = None,
    after: Any = None,
    reason: str = "",
) -> AuditEvent:
    """:func:`audit_event` for a change to one charge, named by its id (the
    bulk writers do not load the charge)."""
    return audit_event(
        actor=actor,
        action=action,
        object_type="billing.charge",
        object_id=str(charge_id),
        object_repr=f"Charge {charge_id}",
        period_id=period_id,
        before=before,
        after=after,
        reason=reason,
        created_at=created_at,
    )


def audit_change(
    *,
    actor: Actor,
    action: str,
    obj: Any,
    before: dict[str, Any],
    after: dict[str, Any],
    reason: str = "",
) -> None:
    """Record a change of `obj` with only the fields whose value changed."""
    audit(
        actor=actor,
        action=action,
        obj=obj,
        before={k: v for k, v in before.items() if after[k] != v},
        after={k: v for k, v in after.items() if before[k] != v},
        reason=reason,
    )


def audit_created(
    *, actor: Actor, action: str, records: list[tuple[Any, Any]], reason: str = ""
) -> None:
    """Record one creation event per ``(object, after)`` pair, in one insert.

    The same rows :func:`audit` writes one at a time, for writers that create
    many records at once (an import's new PIs and projects).
    """
    if not records:
        return
    log_audit(actor, action, object_type=records[0][0]._meta.label_lower, count=len(records))
    AuditEvent.objects.bulk_create(
        [
            audit_event(
                actor=actor,
                action=action,
                object_type=obj._meta.label_lower,
                object_id=str(obj.pk),
                object_repr=str(obj),
                after=after,
                reason=reason,
            )
            for obj, after in records
        ]
    )


def log_audit(actor: Actor, action: str, *, count: int, **fields: Any) -> None:
    """The structured log line of audit events (the AuditEvent rows are the record)."""
    audit_log.info(
        "audit",
        extra={
            "event": "audit",
            "action": action,
            "actor": actor.name,
            "channel": actor.channel,
            "count": count,
            **fields,
        },
    )


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


def detect_source(filename: str) -> Source | None:
    """The enabled source whose filename pattern matches, the longest pattern winning."""
    best: tuple[int, Source] | None = None
    for source in Source.objects.filter(enabled=True).exclude(filename_pattern=""):
        try:
            pattern = compile_user_pattern(source.filename_pattern, ignore_case=True)
        except PatternError:
            continue  # `openchargeback check --database default` names it
        hit = pattern.search(filename)
        if hit and (best is None or len(source.filename_pattern) > best[0]):
            best = (len(source.filename_pattern), source)
    return best[1] if best else None


# --- Billing periods: open -> closed -> finalized ------------------------------

# Checks that must pass before a period can be finalized, registered by the
# apps that own the records (statements, journals) in their AppConfig.ready().
# Each takes the period and returns a list of problems (empty: fine).
FinalizeCheck = Callable[[BillingPeriod], list[Blocker]]
FINALIZE_CHECKS: dict[str, FinalizeCheck] = {}


def register_finalize_check(name: str, check: FinalizeCheck) -> None:
    FINALIZE_CHECKS[name] = check


def _locked_period(period: str) -> BillingPeriod:
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
    obj = _locked_period(period)
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
    obj = _locked_period(period)
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
    obj = _locked_period(period)
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


# --- Review: approve, reject, reset ------------------------------------------


def _refuse_locked(charges: Any) -> None:
    """Charges may change only while their period is open."""
    locked = (
        charges.exclude(period__status=BillingPeriod.Status.OPEN)
        .values_list("period__period", flat=True)
        .distinct()
    )
    if locked:
        raise BillingError(
            f"charges in period(s) {', '.join(sorted(locked))} cannot change: the period is "
            "not open (reopen a closed period first; finalized periods are permanent)"
        )


_REVIEW_TARGET = {
    "approve": "approved",
    "reject": "rejected",
    "reset": "pending",
}
_REVIEW_BATCH = 5000


@transaction.atomic
def charges_review(*, charges: Any, action: str, actor: Actor, note: str = "") -> int:
    """Approve, reject or reset the given charges (a queryset, any size).

    Every changed charge gets its own AuditEvent (before/after state, note).
    Charges already in the target state are left alone, so re-running is
    safe. Charges of a period that is not open are refused: reopen it first.
    Returns how many charges changed.
    """
    from billing.models import Charge

    if action not in _REVIEW_TARGET:
        raise BillingError(f"unknown review action {action!r}")
    note = note.strip()
    if action == "reject" and not note:
        raise BillingError('rejecting charges needs a note saying why (--note "...")')
    target = _REVIEW_TARGET[action]
    selected = charges.exclude(review_state=target)
    _refuse_locked(selected)
    if action == "approve":
        # A charge whose attribution is wrong is fixed or rejected, never approved
        # as it is; those are left pending (the caller reports them, left_blocked).
        stuck = left_blocked(selected)
        if stuck:
            selected = approvable(selected)
            if not selected.exists():
                raise BillingError(f"{stuck.text()}; nothing was approved")
        # A charge in another currency is billable only once a rate converted it:
        # those are left pending (the caller reports them, see missing_rates).
        missing = missing_rates(selected)
        if missing:
            selected = selected.exclude(needs_rate(home_currency()))
            if not selected.exists():
                raise BillingError(
                    f"{missing_rate_reason(missing)}; nothing was approved",
                    web=f"{count(sum(m.charges for m in missing), 'charge')} in another "
                    f"currency cannot be approved without an exchange rate "
                    f"({rates_which(missing)}): record the rate (Exchange rates, Add); "
                    "nothing was approved",
                )
    pairs = list(selected.values_list("pk", "period_id"))
    ids = [pk for pk, _ in pairs]
    now = timezone.now()
    changed = 0
    with summaries.tracking(ids, {period_id for _, period_id in pairs}):
        for start in range(0, len(ids), _REVIEW_BATCH):
            batch = ids[start : start + _REVIEW_BATCH]
            rows = list(
                Charge.objects.filter(pk__in=batch).values_list(
                    "pk", "review_state", "period_id", "billed_cost"
                )
            )
            Charge.objects.filter(pk__in=batch).update(
                review_state=target,
                reviewed_by=actor.name,
                reviewed_at=now,
                review_note=note,
            )
            AuditEvent.objects.bulk_create(
                charge_event(
                    created_at=now,
                    actor=actor,
                    action=f"charge.{action}",
                    charge_id=pk,
                    period_id=period_id,
                    before={"review_state": state},
                    after={"review_state": target, "billed_cost": str(billed)},
                    reason=note,
                )
                for pk, state, period_id, billed in rows
            )
            changed += len(rows)
    log_audit(actor, f"charge.{action}", count=changed)
    return changed


# --- Attribution fixes and re-applied rules ------------------------------------


def _reevaluate(charge: Any, ruleset: Any, *, tags_invalid: bool) -> tuple[int, dict[str, Any]]:
    """Flags of a stored charge under the current rules."""
    from billing import flags as flag_bits
    from billing.rules import evaluate, unmapped_account

    project = charge.project
    unmapped = unmapped_account(charge.tags)
    if not unmapped and charge.flags & flag_bits.BIT["unmapped_account"]:
        # A cloud sub-account with no mapping, named at import (ingest.focus.cloud_accounts).
        unmapped = str(charge.flag_details.get("unmapped_account", ""))
    mask, details = evaluate(
        ruleset,
        pi_email=charge.pi.email if charge.pi else "",
        project_id=project.project_id if project else "",
        fund_org=charge.fund_org,
        service_name=charge.service_name,
        resource_id=charge.resource_id,
        resource_name=charge.resource_name,
        period=charge.period.period,
        expected_period=charge.import_record.expected_period or None,
        currency=charge.billing_currency,
        billed_nanos=to_nanos(charge.billed_cost),
        tags_invalid=tags_invalid,
        project_owner_email=project.pi.email if project and project.pi else None,
        unmapped=unmapped,
    )
    if tags_invalid and "invalid_tags" in charge.flag_details:
        details["invalid_tags"] = charge.flag_details["invalid_tags"]
    return mask, details


@dataclass(frozen=True)
class FixReport:
    """What an attribution fix or a re-evaluation changed."""

    changed: int  # charges whose attribution, flags or review state changed
    flags_cleared: int  # flag reasons removed, summed over the charges
    approved: int  # pending charges approved because no flag was left
    # reason -> how many charges lose it (the preview lists them)
    cleared: dict[str, int] = field(default_factory=dict)
    # reason -> how many charges gain it
    added: dict[str, int] = field(default_factory=dict)


def _refuse_too_long(what: str, value: str, limit: int | None) -> None:
    """Names are kept as given or refused: never cut silently."""
    if limit is not None and len(value) > limit:
        raise BillingError(f"{what} is {len(value)} characters long; at most {limit} fit")


def _fix_pi(fix: dict[str, Any], *, actor: Actor) -> Any:
    """The PI a fix names (None when it names none): from the registry, or
    created (and audited) only when the fix says so, with a name."""
    from billing.models import PI
    from billing.rules import EMAIL_RE

    if "pi_email" not in fix:
        return None
    email = fix["pi_email"].strip().lower()
    if not EMAIL_RE.match(email):
        raise BillingError(f"{email!r} is not an email address")
    pi = PI.objects.filter(email=email).first()
    if pi is not None:
        return pi
    if not fix.get("create_pi"):
        raise BillingError(
            f"no PI with email {email!r}; pick an existing PI, or create a new one "
            "(with a name) on purpose"
        )
    name = fix.get("pi_name", "").strip()
    if not name:
        raise BillingError(f"a new PI ({email}) needs a name")
    _refuse_too_long("the new PI's name", name, PI._meta.get_field("name").max_length)
    pi = PI.objects.create(email=email, name=name)
    audit(actor=actor, action="pi.create", obj=pi, after={"email": email, "name": name})
    return pi


def _fix_project(fix: dict[str, Any], *, pi: Any, actor: Actor) -> Any:
    """The project a fix names (None when it names none): from the registry, or
    created (owned by the fix's PI, and audited) only when the fix says so."""
    from billing.models import Project

    if "project_id" not in fix:
        return None
    code = fix["project_id"].strip()
    if not code:
        raise BillingError("the project id is empty")
    project = Project.objects.filter(project_id=code).first()
    if project is not None:
        return project
    if not fix.get("create_project"):
        raise BillingError(
            f"no project {code!r}; pick an existing project, or create a new one on purpose"
        )
    title = fix.get("project_title", "").strip()
    _refuse_too_long("the project id", code, Project._meta.get_field("project_id").max_length)
    _refuse_too_long("the new project's title", title, Project._meta.get_field("title").max_length)
    project = Project.objects.create(project_id=code, title=title, pi=pi)
    audit(
        actor=actor,
        action="project.create",
        obj=project,
        after={"project_id": code, "title": title, "pi": pi.email if pi else ""},
    )
    return project


def _audited_state(charge: Any) -> dict[str, Any]:
    """The fields of a charge a fix or a re-evaluation audits, before and after."""
    from billing import flags as flag_bits

    return {
        "pi": charge.pi.email if charge.pi else "",
        "project": charge.project.project_id if charge.project else "",
        "fund_org": charge.fund_org,
        "flags": flag_bits.from_mask(charge.flags),
        "review_state": charge.review_state,
    }


def _review_after(
    charge: Any, mask: int, *, ruleset: Any, actor: Actor, note: str, now: Any
) -> bool:
    """Move a charge's review state after its flags became ``mask``.

    A pending charge with no flag left (and no missing exchange rate) is
    approved; an approved one whose attribution is now wrong goes back to the
    queue. True when the charge was approved here.
    """
    from billing import flags as flag_bits
    from billing.models import Charge

    state = charge.review_state
    if (
        state == Charge.ReviewState.PENDING
        and mask == 0
        and not _needs_rate(charge, ruleset.currency)
    ):
        charge.review_state = Charge.ReviewState.APPROVED
        charge.reviewed_by, charge.reviewed_at = actor.name, now
        charge.review_note = note or "no flag left after re-evaluation"
        return True
    if state == Charge.ReviewState.APPROVED and mask & flag_bits.BLOCKING_MASK:
        # Approved, but who pays is wrong now: back to the queue.
        charge.review_state = Charge.ReviewState.PENDING
        charge.reviewed_by, charge.reviewed_at = actor.name, now
        charge.review_note = note or "attribution problem found on re-evaluation"
    return False


_FIX_FIELDS = [
    "pi",
    "project",
    "fund_org",
    "flags",
    "flag_details",
    "review_state",
    "reviewed_by",
    "reviewed_at",
    "review_note",
]


@dataclass
class _FixTally:
    """What the charges of one fix or re-evaluation changed, counted as they go."""

    changed: int = 0
    cleared: int = 0
    approved: int = 0
    cleared_by: dict[str, int] = field(default_factory=dict)
    added_by: dict[str, int] = field(default_factory=dict)

    def count(self, gone: list[str], new: list[str], *, approved: bool) -> None:
        self.changed += 1
        self.cleared += len(gone)
        for reason in gone:
            self.cleared_by[reason] = self.cleared_by.get(reason, 0) + 1
        for reason in new:
            self.added_by[reason] = self.added_by.get(reason, 0) + 1
        self.approved += approved

    def report(self) -> FixReport:
        return FixReport(
            changed=self.changed,
            flags_cleared=self.cleared,
            approved=self.approved,
            cleared=self.cleared_by,
            added=self.added_by,
        )


def _apply_flags(
    charges: Any, *, actor: Actor, action: str, note: str, fix: dict[str, Any]
) -> FixReport:
    """Apply ``fix`` (PI, project, fund/org; may be empty) to charges, re-evaluate
    their flags and review state, save and audit each charge that changed."""
    from billing import flags as flag_bits
    from billing.selectors import load_ruleset

    ruleset = load_ruleset()
    _refuse_locked(charges)
    pi = _fix_pi(fix, actor=actor)
    project = _fix_project(fix, pi=pi, actor=actor)
    attribution = {key for key in fix if key in ("pi_email", "project_id", "fund_org")}
    now = timezone.now()
    tally = _FixTally()
    events = []
    pairs = list(charges.values_list("pk", "period_id"))
    with summaries.tracking([pk for pk, _ in pairs], {period for _, period in pairs}):
        qs = charges.select_related("pi", "project__pi", "period", "import_record")
        for charge in qs.iterator(chunk_size=2000):
            before = _audited_state(charge)
            if pi is not None:
                charge.pi = pi
            if project is not None:
                charge.project = project
            if "fund_org" in fix:
                charge.fund_org = fix["fund_org"].strip()[:100]
            # A reviewer's fix supersedes unreadable tags.
            tags_invalid = bool(charge.flags & flag_bits.BIT["invalid_tags"]) and not attribution
            mask, details = _reevaluate(charge, ruleset, tags_invalid=tags_invalid)
            gone = flag_bits.from_mask(charge.flags & ~mask)
            new = flag_bits.from_mask(mask & ~charge.flags)
            charge.flags, charge.flag_details = mask, details
            approved = _review_after(charge, mask, ruleset=ruleset, actor=actor, note=note, now=now)
            after = _audited_state(charge)
            if after == before:
                continue
            charge.save(update_fields=_FIX_FIELDS)
            events.append(
                AuditEvent(
                    created_at=now,
                    actor=actor.name,
                    channel=actor.channel,
                    user_id=actor.user_id,
                    action=f"charge.{action}",
                    object_type="billing.charge",
                    object_id=str(charge.pk),
                    object_repr=f"Charge {charge.pk}",
                    period_id=charge.period_id,
                    before=before,
                    after=after,
                    reason=note,
                )
            )
            tally.count(gone, new, approved=approved)
            if len(events) >= 2000:
                AuditEvent.objects.bulk_create(events)
                events = []
        AuditEvent.objects.bulk_create(events)
    log_audit(actor, f"charge.{action}", count=tally.changed)
    return tally.report()


class _DryRun(Exception):
    """Raised inside a dry run's transaction to roll back what it did."""


def _needs_rate(charge: Any, home: str) -> bool:
    """A charge in another currency that no exchange rate has converted."""
    return charge.billing_currency not in ("", home.upper()) and not charge.exchange_rate


@transaction.atomic
def charges_fix_attribution(
    *,
    charges: Any,
    actor: Actor,
    pi_email: str | None = None,
    project_id: str | None = None,
    fund_org: str | None = None,
    note: str = "",
    create_pi: bool = False,
    pi_name: str = "",
    create_project: bool = False,
    project_title: str = "",
) -> int:
    """Set PI, project and/or fund/org on charges and re-evaluate their flags.

    The PI and the project come from the registry: an email or project id
    nobody has is refused unless ``create_pi`` (with ``pi_name``) or
    ``create_project`` says to create it, so a typo never makes a new PI.
    Pending charges left with no flag are approved (by the acting user).
    Every changed charge is audited with before/after. Open periods only.
    Returns how many charges changed.
    """
    return charges_fix_attribution_report(
        charges=charges,
        actor=actor,
        pi_email=pi_email,
        project_id=project_id,
        fund_org=fund_org,
        note=note,
        create_pi=create_pi,
        pi_name=pi_name,
        create_project=create_project,
        project_title=project_title,
    ).changed


def charges_fix_attribution_report(
    *,
    charges: Any,
    actor: Actor,
    pi_email: str | None = None,
    project_id: str | None = None,
    fund_org: str | None = None,
    note: str = "",
    dry_run: bool = False,
    create_pi: bool = False,
    pi_name: str = "",
    create_project: bool = False,
    project_title: str = "",
) -> FixReport:
    """:func:`charges_fix_attribution`, saying what changed: charges changed,
    flag reasons cleared, charges now approved. A dry run does exactly the
    same in a transaction that is rolled back, so its report is exact and
    nothing is written."""
    fix = {
        key: value
        for key, value in (
            ("pi_email", pi_email),
            ("project_id", project_id),
            ("fund_org", fund_org),
        )
        if value is not None and (value.strip() or key == "fund_org")
    }
    if not fix:
        raise BillingError("say what to fix: a PI email, a project id or a fund/org")
    if create_pi and "pi_email" not in fix:
        raise BillingError("creating a PI needs the new PI's email")
    if create_project and "project_id" not in fix:
        raise BillingError("creating a project needs the new project's id")
    intent = {
        "create_pi": create_pi,
        "pi_name": pi_name,
        "create_project": create_project,
        "project_title": project_title,
    }
    report = FixReport(changed=0, flags_cleared=0, approved=0)
    try:
        with transaction.atomic():
            report = _apply_flags(
                charges, actor=actor, action="fix_attribution", note=note, fix={**fix, **intent}
            )
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return report


@transaction.atomic
def charges_reapply_rules(*, charges: Any, actor: Actor, note: str = "") -> int:
    """Re-evaluate flags of charges under the current rules (open periods only)."""
    return _apply_flags(charges, actor=actor, action="reapply_rules", note=note, fix={}).changed


# --- Exchange rates and currency conversion ------------------------------------


def home_currency() -> str:
    """The installation's one billing currency (InstitutionSettings.currency)."""
    from billing.models import InstitutionSettings

    return InstitutionSettings.load().currency.upper()


def needs_rate(home: str) -> Q:
    """Charges in another BillingCurrency that no exchange rate has converted."""
    return ~Q(billing_currency__in=["", home]) & Q(exchange_rate="")


@dataclass(frozen=True)
class MissingRate:
    currency: str
    period: str
    charges: int


def missing_rates(charges: Any) -> list[MissingRate]:
    """Among `charges`, those in another currency without a rate, per currency and month."""
    rows = (
        charges.filter(needs_rate(home_currency()))
        .values_list("billing_currency", "period__period")
        .annotate(n=Count("id"))
        .order_by("period__period", "billing_currency")
    )
    return [MissingRate(currency, period, n) for currency, period, n in rows]


def rates_which(missing: list[MissingRate]) -> str:
    which = ", ".join(f"{m.currency} {m.period}" for m in missing[:3])
    if len(missing) > 3:
        which += f" and {len(missing) - 3} more"
    return which


def rate_hint(missing: list[MissingRate]) -> str:
    first = missing[0]
    return (
        f"`openchargeback exchange_rates set {first.currency} --period {first.period} "
        f"--rate R` (R = {home_currency()} per {first.currency})"
    )


def missing_rate_reason(missing: list[MissingRate]) -> str:
    """One line: how many charges lack a rate, which, and how to record one."""
    total = sum(m.charges for m in missing)
    return (
        f"{count(total, 'charge')} in another currency cannot be approved without an exchange "
        f"rate ({rates_which(missing)}): record one with {rate_hint(missing)}"
    )


_CONVERT_BATCH = 2000


def charges_convert(*, charges: Any, actor: Actor, note: str = "") -> int:
    """Convert `charges` in another currency with the exchange rate of their
    currency and month, in open periods (others are left alone).

    The file's amounts stay in original_list_cost / original_billed_cost
    (and the file's BilledCost in invoiced_cost); list_cost and billed_cost
    become those amounts times the rate (billing.currencies.convert), and
    exchange_rate the rate. Re-converting starts from the originals, so a
    changed rate never compounds. A charge with no rate is left unconverted
    and, if it was approved, put back to pending review: it cannot be billed.
    Each changed charge is audited; summaries are kept right. Safe to re-run.
    Returns how many charges changed.
    """
    from billing.currencies import convert
    from billing.models import Charge, ExchangeRate
    from openchargeback.money import MoneyError

    home = home_currency()
    foreign = charges.exclude(billing_currency__in=["", home]).filter(
        period__status=BillingPeriod.Status.OPEN
    )
    pairs = list(foreign.values_list("pk", "period_id"))
    if not pairs:
        return 0
    period_ids = {period_id for _, period_id in pairs}
    rates = {
        (period_id, currency): rate
        for period_id, currency, rate in ExchangeRate.objects.filter(
            period_id__in=period_ids
        ).values_list("period_id", "currency", "rate")
    }
    ids = [pk for pk, _ in pairs]
    fields = ["list_cost", "billed_cost", "original_list_cost", "original_billed_cost"]
    fields += ["invoiced_cost", "exchange_rate", "review_state", "reviewed_by", "reviewed_at"]
    fields += ["review_note"]
    now = timezone.now()
    changed = 0
    with summaries.tracking(ids, period_ids):
        for start in range(0, len(ids), _CONVERT_BATCH):
            batch = Charge.objects.filter(pk__in=ids[start : start + _CONVERT_BATCH]).only(
                "pk", "period_id", "billing_currency", "review_state", *fields
            )
            updated, events = [], []
            for charge in batch:
                before = {
                    "billed_cost": str(charge.billed_cost),
                    "list_cost": str(charge.list_cost),
                    "exchange_rate": charge.exchange_rate,
                    "review_state": charge.review_state,
                }
                rate = rates.get((charge.period_id, charge.billing_currency))
                if rate is None:
                    if charge.exchange_rate or charge.review_state != Charge.ReviewState.APPROVED:
                        continue
                    charge.review_state = Charge.ReviewState.PENDING
                    charge.reviewed_by, charge.reviewed_at = actor.name, now
                    charge.review_note = (
                        f"no {charge.billing_currency} exchange rate for this month"
                    )
                else:
                    if not charge.exchange_rate:  # amounts as in the file
                        charge.original_list_cost = charge.list_cost
                        charge.original_billed_cost = charge.billed_cost
                    original_list = charge.original_list_cost
                    original_billed = charge.original_billed_cost
                    assert original_list is not None
                    assert original_billed is not None
                    try:
                        charge.list_cost = convert(original_list, rate)
                        charge.billed_cost = convert(original_billed, rate)
                    except MoneyError as exc:
                        raise BillingError(f"charge {charge.pk}: {exc}") from None
                    if charge.invoiced_cost is None:
                        charge.invoiced_cost = original_billed
                    charge.exchange_rate = rate
                after = {
                    "billed_cost": str(charge.billed_cost),
                    "list_cost": str(charge.list_cost),
                    "exchange_rate": charge.exchange_rate,
                    "review_state": charge.review_state,
                }
                if after == before:
                    continue
                updated.append(charge)
                events.append(
                    charge_event(
                        created_at=now,
                        actor=actor,
                        action="charge.convert",
                        charge_id=charge.pk,
                        period_id=charge.period_id,
                        before=before,
                        after=after,
                        reason=note,
                    )
                )
            Charge.objects.bulk_update(updated, fields, batch_size=500)
            AuditEvent.objects.bulk_create(events)
            changed += len(updated)
    if changed:
        log_audit(actor, "charge.convert", count=changed)
    return changed


@dataclass(frozen=True)
class RateChange:
    """What exchange_rate_set did: the rate, whether it is new or changed, and
    how many charges it (re)converted."""

    rate: Any  # billing.models.ExchangeRate
    created: bool
    changed: bool
    converted: int


def _rate_fields(rate: Any) -> dict[str, str]:
    return {"rate": rate.rate, "note": rate.note}


def exchange_rate_check(
    *, currency: str, period: str, rate: str, note: str | None = None
) -> tuple[str, str, str, str | None]:
    """(code, rate text, month, note) of a rate that may be recorded as given;
    BillingError (one line) if not. Writes nothing (the admin form asks first)."""
    from billing.currencies import CurrencyError, parse_currency, parse_rate

    try:
        code = parse_currency(currency, home=home_currency())
        text = parse_rate(rate)
    except CurrencyError as exc:
        raise BillingError(str(exc)) from None
    note = None if note is None else note.strip()
    if note is not None and len(note) > 300:
        raise BillingError("the note is longer than 300 characters")
    month = parse_period(period)
    obj = BillingPeriod.objects.filter(period=month).first()
    if obj is not None and not _same_as_recorded(obj, code, text, note):
        _refuse_rate_lock(obj, code)
    return code, text, month, note


def _same_as_recorded(obj: BillingPeriod, code: str, text: str, note: str | None) -> bool:
    """The month already has this rate (by value) and note: recording it changes nothing."""
    from billing.currencies import same_rate
    from billing.models import ExchangeRate

    existing = ExchangeRate.objects.filter(period=obj, currency=code).first()
    return (
        existing is not None
        and same_rate(existing.rate, text)
        and (note is None or note == existing.note)
    )


def _refuse_rate_lock(obj: BillingPeriod, code: str) -> None:
    """Finalized: rates are permanent. Closed: only for a currency none of its charges use."""
    from billing.models import Charge

    if obj.status == BillingPeriod.Status.FINALIZED:
        raise BillingError(
            f"period {obj.period} is finalized: its exchange rates are permanent; "
            "nothing was changed"
        )
    used = Charge.objects.filter(period=obj, billing_currency=code)
    if obj.status == BillingPeriod.Status.CLOSED and used.exists():
        raise BillingError(
            f"period {obj.period} is closed and has {count(used.count(), 'charge')} in {code} "
            f"(its statements may exist): reopen it first with `openchargeback periods reopen "
            f'{obj.period} --reason "..."`; nothing was changed',
            web=f"period {obj.period} is closed and has {count(used.count(), 'charge')} in "
            f"{code} (its statements may exist): reopen it first (Reopen, on the period's "
            "page, with a reason); nothing was changed",
        )


@transaction.atomic
def exchange_rate_set(
    *, currency: str, period: str, rate: str, actor: Actor, note: str | None = None
) -> RateChange:
    """Record (or change) the exchange rate of a currency for a month and
    convert that month's charges in the currency with it.

    Refused for the home currency, an unknown or malformed code, a rate that
    is not a positive number, a finalized month (permanent), and a closed
    month that has charges in the currency (its statements may exist: reopen
    it first). Re-running with the same rate (by value: 1.085 = 1.0850) and
    note changes nothing; a note of None keeps the recorded one.
    """
    from billing.currencies import same_rate
    from billing.models import Charge, ExchangeRate

    code, text, month, note = exchange_rate_check(
        currency=currency, period=period, rate=rate, note=note
    )
    period_open(period=month, actor=actor, note=f"exchange rate {code} recorded")
    obj = _locked_period(month)
    used = Charge.objects.filter(period=obj, billing_currency=code)
    existing = ExchangeRate.objects.select_for_update().filter(period=obj, currency=code).first()
    if existing is not None:
        text = existing.rate if same_rate(existing.rate, text) else text
        note = existing.note if note is None else note
        if existing.rate == text and existing.note == note:  # even in a locked month
            return RateChange(existing, created=False, changed=False, converted=0)
    _refuse_rate_lock(obj, code)
    note = note or ""
    now = timezone.now()
    if existing is None:
        saved = ExchangeRate.objects.create(
            period=obj,
            currency=code,
            rate=text,
            note=note,
            created_at=now,
            created_by=actor.name,
            updated_at=now,
            updated_by=actor.name,
        )
        audit(
            actor=actor,
            action="exchange_rate.create",
            obj=saved,
            period=obj,
            after={"currency": code, "period": month, **_rate_fields(saved)},
        )
    else:
        before = _rate_fields(existing)
        existing.rate, existing.note = text, note
        existing.updated_at, existing.updated_by = now, actor.name
        existing.save(update_fields=["rate", "note", "updated_at", "updated_by"])
        saved = existing
        audit(
            actor=actor,
            action="exchange_rate.change",
            obj=saved,
            period=obj,
            before={k: v for k, v in before.items() if _rate_fields(saved)[k] != v},
            after={k: v for k, v in _rate_fields(saved).items() if before[k] != v},
        )
    converted = 0
    if obj.status == BillingPeriod.Status.OPEN:
        converted = charges_convert(
            charges=used, actor=actor, note=f"exchange rate {code} {month}: {text}"
        )
    return RateChange(saved, created=existing is None, changed=True, converted=converted)


RATE_CSV_COLUMNS = ("currency", "period", "rate", "note")


@dataclass
class RatesImport:
    rows: int = 0
    created: int = 0
    changed: int = 0
    unchanged: int = 0
    converted: int = 0


def exchange_rates_import(  # noqa: C901 - one check per column and line, each naming file, line and column
    *, text: str, file_name: str, actor: Actor, dry_run: bool = False
) -> RatesImport:
    """Record the rates of a CSV (currency, period, rate[, note]; other columns
    such as those of `exchange_rates export` are ignored), all or nothing.

    Every problem names the file, line and column: a malformed or unknown
    code, the home currency, a rate that is not a positive number, a month
    that is not YYYY-MM, two different rates for one currency and month, a
    locked month. Nothing is written unless every row can be recorded.
    """
    import csv
    import io

    from billing.currencies import CurrencyError, parse_currency, parse_rate, same_rate

    home = home_currency()
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))

    def records() -> Iterator[list[str]]:
        """The reader's rows, a malformed CSV (an unterminated quote, a field
        over the csv module's size limit) as one line naming where."""
        try:
            yield from reader
        except csv.Error as exc:
            raise BillingError(
                f"{file_name}, line {reader.line_num}: not valid CSV ({exc})"
            ) from None

    rows = records()
    header = next(rows, None)
    if header is None:
        raise BillingError(f"{file_name}: the file is empty")
    names = [h.strip().lower() for h in header]
    missing = [c for c in RATE_CSV_COLUMNS[:3] if c not in names]
    if missing:
        raise BillingError(
            f"{file_name}, line 1: missing column(s) {', '.join(missing)} "
            f"(expected {', '.join(RATE_CSV_COLUMNS)})"
        )
    index = {name: names.index(name) for name in RATE_CSV_COLUMNS if name in names}
    seen: dict[tuple[str, str], tuple[str, int]] = {}
    wanted: list[tuple[int, str, str, str, str | None]] = []
    next_line = reader.line_num + 1
    for row in rows:  # a line is where its row starts (a quoted note may hold line breaks)
        line, next_line = next_line, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue

        def cell(name: str, row: list[str] = row) -> str:
            """The text as exported: spaces around it dropped, and the apostrophe
            the export puts before formula-like text removed."""
            i = index.get(name)
            return restore(row[i].strip()) if i is not None and i < len(row) else ""

        def where(column: str, line: int = line) -> str:
            return f"{file_name}, line {line}, column {column}"

        try:
            code = parse_currency(cell("currency"), home=home)
        except CurrencyError as exc:
            raise BillingError(f"{where('currency')}: {exc}") from None
        try:
            month = parse_period(cell("period"))
        except BillingError as exc:
            raise BillingError(f"{where('period')}: {exc}") from None
        try:
            rate = parse_rate(cell("rate"))
        except CurrencyError as exc:
            raise BillingError(f"{where('rate')}: {exc}") from None
        note = cell("note") if "note" in index else None
        if note is not None and len(note) > 300:
            raise BillingError(f"{where('note')}: longer than 300 characters")
        prior = seen.get((code, month))
        if prior is not None:
            if not same_rate(prior[0], rate):
                raise BillingError(
                    f"{where('rate')}: conflicting exchange rates for {code} {month}: "
                    f"{rate} here, {prior[0]} on line {prior[1]}; nothing was recorded"
                )
            continue
        seen[(code, month)] = (rate, line)
        wanted.append((line, code, month, rate, note))
    result = RatesImport(rows=len(wanted))
    with transaction.atomic():
        for line, code, month, rate, note in wanted:
            try:
                change = exchange_rate_set(
                    currency=code, period=month, rate=rate, note=note, actor=actor
                )
            except BillingError as exc:
                raise BillingError(f"{file_name}, line {line}: {exc}") from None
            if change.created:
                result.created += 1
            elif change.changed:
                result.changed += 1
            else:
                result.unchanged += 1
            result.converted += change.converted
        if dry_run:
            transaction.set_rollback(True)
    return result
