"""Writes to charges under review: approve, reject, reset, attribution fixes
and re-applied rules. Open periods only; every changed charge is audited with
before/after, and the period summaries are kept right."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing import summaries
from billing.audit import Actor, audit, charge_event, log_audit
from billing.blockers import approvable, left_blocked
from billing.errors import BillingError
from billing.exchange import (
    home_currency,
    missing_rate_reason,
    missing_rates,
    needs_rate,
    rates_which,
)
from billing.models import AuditEvent, BillingPeriod
from openchargeback.money import to_nanos
from openchargeback.text import count


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
