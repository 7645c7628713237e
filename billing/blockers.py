"""What stops a month: charges that cannot be approved as they are, and every
data check that closing a period runs (reads only).

Closing runs the checks that generating statements, exporting the journal and
finalizing would run on the month's data, so that once a month is closed
those steps are never refused for a data reason. The checks of the
statements and journals apps are registered here by their AppConfig.ready()
(billing imports neither app).

Each problem is a :class:`Blocker`: one line saying what and how many, the
command that fixes it (for the CLI) and the admin page that fixes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count, F, Q, Sum
from django.urls import reverse

from billing import flags
from billing.models import BillingPeriod, Charge, InstitutionSettings
from openchargeback.text import count

PENDING = Charge.ReviewState.PENDING
APPROVED = Charge.ReviewState.APPROVED


@dataclass(frozen=True)
class Blocker:
    """One problem that stops a month, with where to fix it."""

    text: str  # what is wrong and how many, for both the CLI and the admin
    cli: str = ""  # the command that fixes it
    url: str = ""  # the admin page that fixes it
    link_text: str = ""  # what the link says ("the charges", "source Storage")

    def cli_line(self) -> str:
        return f"{self.text} ({self.cli})" if self.cli else self.text


DataCheck = Callable[[BillingPeriod], list[Blocker]]
DATA_CHECKS: dict[str, DataCheck] = {}


def register_data_check(name: str, check: DataCheck) -> None:
    """Add a check that closing runs (the statements and journals apps do)."""
    DATA_CHECKS[name] = check


def charges_url(period: BillingPeriod | None = None, /, **query: str) -> str:
    """The review queue, filtered (period, review state, flag reason, ...)."""
    params = dict(query)
    if period is not None:
        params["period__id__exact"] = str(period.pk)
    url = reverse("admin:billing_charge_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def rate_form_url(missing: list[Any]) -> str:
    """The form that records an exchange rate, filled in for the first of
    `missing` (billing.exchange.MissingRate: currency and month)."""
    first = missing[0]
    url = reverse("admin:billing_exchangerate_add")
    return f"{url}?{urlencode({'currency': first.currency, 'month': first.period})}"


def source_url(source_id: int) -> str:
    return reverse("admin:billing_source_change", args=[source_id])


def blocked(charges: Any) -> Any:
    """Among `charges`, those with an attribution reason (not approvable as-is)."""
    return charges.alias(_blocking=F("flags").bitand(flags.BLOCKING_MASK)).exclude(_blocking=0)


def approvable(charges: Any) -> Any:
    return charges.alias(_blocking=F("flags").bitand(flags.BLOCKING_MASK)).filter(_blocking=0)


def with_reason(charges: Any, reason: str) -> Any:
    """`charges` flagged `reason`, or any attribution reason for ``blocking``."""
    if reason == flags.NEEDS_ATTRIBUTION:
        return blocked(charges)
    bit = flags.BIT[reason]
    return charges.alias(_hit=F("flags").bitand(bit)).filter(_hit=bit)


def blocked_reasons(charges: Any) -> dict[str, int]:
    """How many of `charges` carry each attribution reason (declaration order)."""
    reasons = [r for r in flags.REASONS if r in flags.BLOCKING]
    aliases = {f"_r_{r}": F("flags").bitand(flags.BIT[r]) for r in reasons}
    totals = charges.alias(**aliases).aggregate(
        **{r: Count("id", filter=~Q(**{f"_r_{r}": 0})) for r in reasons}
    )
    return {r: totals[r] for r in reasons if totals[r]}


@dataclass(frozen=True)
class LeftBlocked:
    """Charges an approval left pending because their attribution is wrong."""

    charges: int
    billed: Decimal
    reasons: dict[str, int]

    def text(self) -> str:
        which = ", ".join(f"{n:,} {flags.LABEL[r]}" for r, n in self.reasons.items())
        verb, them = ("needs its", "it") if self.charges == 1 else ("need their", "them")
        return (
            f"{count(self.charges, 'charge')} {verb} attribution fixed ({which}): "
            f"fix or reject {them}"
        )


def left_blocked(charges: Any) -> LeftBlocked | None:
    """What approving `charges` would leave pending for an attribution reason."""
    stuck = blocked(charges.exclude(review_state=APPROVED))
    row = stuck.aggregate(n=Count("id"), billed=Sum("billed_cost"))
    if not row["n"]:
        return None
    return LeftBlocked(row["n"], row["billed"] or Decimal(0), blocked_reasons(stuck))


@dataclass(frozen=True)
class ApprovalPlan:
    """What approving a selection would do (as charges_review decides it):
    how many are approved and for how much, and what stays pending, why."""

    selected: int
    approved: int
    approved_billed: Decimal
    approved_listed: Decimal
    already: int
    stuck: LeftBlocked | None
    missing: list[Any]  # billing.exchange.MissingRate
    locked: bool  # some are in a period that is not open: the approval is refused


def approval_plan(charges: Any) -> ApprovalPlan:
    from billing.exchange import home_currency, missing_rates, needs_rate

    unapproved = charges.exclude(review_state=APPROVED)
    candidates = approvable(unapproved)
    will = candidates.exclude(needs_rate(home_currency())).aggregate(
        n=Count("id"), billed=Sum("billed_cost"), listed=Sum("list_cost")
    )
    return ApprovalPlan(
        selected=charges.count(),
        approved=will["n"],
        approved_billed=will["billed"] or Decimal(0),
        approved_listed=will["listed"] or Decimal(0),
        already=charges.filter(review_state=APPROVED).count(),
        stuck=left_blocked(unapproved),
        missing=missing_rates(candidates),
        locked=unapproved.exclude(period__status=BillingPeriod.Status.OPEN).exists(),
    )


# --- Closing a period: every data check at once --------------------------------------


def period_blockers(obj: BillingPeriod, *, allow_pending: bool = False) -> list[Blocker]:
    """Everything that stops `obj` from being closed, or that generate, the
    journal export or finalize would refuse later. Empty: it may be closed."""
    from billing.exchange import missing_rates, rate_hint, rates_which

    found: list[Blocker] = []
    month = obj.period
    charges = Charge.objects.filter(period=obj)
    pending = charges.filter(review_state=PENDING).aggregate(
        n=Count("id"), billed=Sum("billed_cost")
    )
    if pending["n"] and not allow_pending:
        billed = InstitutionSettings.cached().format_money(pending["billed"] or Decimal(0))
        found.append(
            Blocker(
                f"{count(pending['n'], 'charge')} pending review ({billed} billed)",
                cli=f"openchargeback review list --period {month}",
                url=charges_url(obj, review_state__exact=PENDING),
                link_text="review them",
            )
        )
    approved = charges.filter(review_state=APPROVED)
    stuck = blocked(approved) | approved.filter(pi=None)
    reasons = blocked_reasons(stuck)
    unattributed = stuck.count()
    if unattributed:
        which = ", ".join(f"{n:,} {flags.LABEL[r]}" for r, n in reasons.items())
        found.append(
            Blocker(
                f"{count(unattributed, 'approved charge')} without a valid attribution"
                + (f" ({which})" if which else " (no PI)"),
                cli=f"openchargeback review list --period {month} --state approved "
                f"--reason {flags.NEEDS_ATTRIBUTION}",
                url=charges_url(obj, review_state__exact=APPROVED, reason=flags.NEEDS_ATTRIBUTION),
                link_text="fix their attribution",
            )
        )
    missing = missing_rates(approved)
    if missing:
        found.append(
            Blocker(
                f"{count(sum(m.charges for m in missing), 'approved charge')} in another "
                f"currency without an exchange rate ({rates_which(missing)})",
                cli=rate_hint(missing),
                url=rate_form_url(missing),
                link_text="record an exchange rate",
            )
        )
    found.extend(pattern_blockers())
    for check in DATA_CHECKS.values():
        found.extend(check(obj))
    return found


def pattern_blockers() -> list[Blocker]:
    """Saved patterns RE2 cannot run: imports skip them, so the month's charges
    were not screened by them; fix (then re-apply the rules) or disable each."""
    from billing.selectors import broken_patterns

    return [
        Blocker(
            f"{broken.text()}; imports skip it: fix or disable it, then re-apply the rules "
            "to the month's charges",
            url=reverse(broken.admin_url_name, args=[broken.pk]),
            link_text="fix the pattern",
        )
        for broken in broken_patterns()
        if broken.screens_charges
    ]


def blockers_text(found: list[Blocker]) -> str:
    """All blockers on one line, for the CLI and for error messages."""
    return "; ".join(b.cli_line() for b in found)


# --- One fund/org rule: what review accepts, the journal can split ---------------------

# The journal's split pattern, registered by the journals app (billing imports it not).
SPLIT_PATTERN: dict[str, Callable[[], str]] = {}
_KNOWN_LIMIT = 50_000


def register_split_pattern(getter: Callable[[], str]) -> None:
    SPLIT_PATTERN["journal"] = getter


def known_fund_orgs() -> list[str]:
    """The fund/orgs in use: on charges of months not finalized, projects' defaults."""
    from billing.models import ChargeSummary, Project

    charged = (
        ChargeSummary.objects.exclude(period__status=BillingPeriod.Status.FINALIZED)
        .exclude(fund_org="")
        .values_list("fund_org", flat=True)
        .distinct()
        .order_by()[:_KNOWN_LIMIT]
    )
    defaults = (
        Project.objects.exclude(default_fund_org="")
        .values_list("default_fund_org", flat=True)
        .distinct()
        .order_by()[:_KNOWN_LIMIT]
    )
    return sorted(set(charged) | set(defaults))


def fund_org_disagreements(
    *,
    validation: list[str] | None = None,
    split: str | None = None,
    known: list[str] | None = None,
) -> list[str]:
    """Fund/orgs in use that the review's patterns accept but the journal's
    split pattern cannot split: what a disagreement between the two settings
    would let through review and then refuse at the journal export.

    Either side may be given as it would be saved; the other is read; so
    may the fund/orgs in use (`known_fund_orgs`), to compare two settings.
    """
    from billing.models import FundOrgPattern
    from billing.patterns import PatternError, compile_user_pattern

    if split is None:
        getter = SPLIT_PATTERN.get("journal")
        if getter is None:
            return []
        split = getter()
    if validation is None:
        validation = list(
            FundOrgPattern.objects.filter(enabled=True).values_list("pattern", flat=True)
        )
    try:
        splitter = compile_user_pattern(split)
    except PatternError:
        return []  # the field's own validator says what is wrong with it
    accepted = []
    for pattern in validation:
        try:
            accepted.append(compile_user_pattern(pattern))
        except PatternError:
            continue  # matches nothing, as on import (billing.selectors.load_ruleset)
    return [
        f
        for f in (known_fund_orgs() if known is None else known)
        if (not validation or any(p.fullmatch(f) for p in accepted)) and not splitter.fullmatch(f)
    ]


def disagreement_text(found: list[str], *, saving: str) -> str:
    shown = ", ".join(repr(f) for f in found[:5]) + (
        f" and {len(found) - 5:,} more" if len(found) > 5 else ""
    )
    other = "journal fund/org pattern" if saving == "fund/org pattern" else "fund/org patterns"
    return (
        f"this {saving} disagrees with the {other}: review would accept fund/orgs in use "
        f"that the journal cannot split ({shown}); change one so that they agree"
    )
