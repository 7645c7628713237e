"""Words for the admin's lists: short flag-reason chips for the review queue and
audit events told as sentences ("Approved charge #123") instead of codes."""

from __future__ import annotations

from typing import Any

from django.urls import NoReverseMatch, reverse

from billing import flags

# The review queue's chips: a few words each, the full label in the tooltip.
SHORT_REASON: dict[str, str] = {
    "missing_pi": "No PI",
    "invalid_pi_email": "Bad PI email",
    "missing_project": "No project",
    "missing_fund_org": "No fund/org",
    "invalid_fund_org": "Bad fund/org",
    "pattern_match": "Pattern",
    "period_mismatch": "Other period",
    "currency_mismatch": "Currency",
    "large_charge": "Large",
    "project_pi_mismatch": "PI mismatch",
    "invalid_tags": "Bad tags",
    "unmapped_account": "Unmapped",
}


def short_reason(reason: str) -> str:
    return SHORT_REASON.get(reason) or flags.LABEL.get(reason, reason)


# What the object of an audit event is called, by its model label.
NOUNS: dict[str, str] = {
    "billing.charge": "charge",
    "billing.billingperiod": "period",
    "billing.pi": "PI",
    "billing.project": "project",
    "billing.source": "source",
    "billing.exchangerate": "exchange rate",
    "billing.institutionsettings": "settings",
    "ingest.import": "import",
    "ingest.rate": "rate",
    "ingest.accountmapping": "account mapping",
    "statements.statement": "statement",
    "statements.emaillog": "email",
    "journals.journalexport": "journal export",
}

# action -> sentence; {obj} is the object in words, {repr} its own name.
ACTIONS: dict[str, str] = {
    "charge.approve": "Approved {obj}",
    "charge.reject": "Rejected {obj}",
    "charge.reset": "Reset {obj} to pending",
    "charge.fix_attribution": "Fixed the attribution of {obj}",
    "charge.reapply_rules": "Re-applied the review rules to {obj}",
    "charge.convert": "Converted {obj} to the home currency",
    "charge.exclude_commitment": "Left out {obj} (a commitment purchase)",
    "period.create": "Opened {obj}",
    "period.close": "Closed {obj}",
    "period.reopen": "Reopened {obj}",
    "period.finalize": "Finalized {obj}",
    "pi.create": "Added {obj}",
    "project.create": "Added {obj}",
    "project.assign_pi": "Assigned a PI to {obj}",
    "source.create": "Added {obj}",
    "source.change": "Changed {obj}",
    "rate.create": "Added {obj}",
    "rate.change": "Changed {obj}",
    "rate.delete": "Deleted {obj}",
    "accountmapping.create": "Added {obj}",
    "accountmapping.change": "Changed {obj}",
    "accountmapping.delete": "Deleted {obj}",
    "exchange_rate.create": "Set {obj}",
    "exchange_rate.change": "Changed {obj}",
    "import.create": "Imported {repr}",
    "import.supersede": "Superseded {obj}",
    "journal.export": "Exported the journal {repr}",
    "statement.generate": "Generated {obj}",
    "statement.withdraw": "Withdrew {obj}",
    "statement.email.queue": "Queued {obj}",
    "statement.email.resend": "Queued a resend: {obj}",
    "statement.email.retry": "Asked to retry {obj}",
    "statement.email.sent": "Marked {obj} as sent",
}


def audit_object(event: Any) -> str:
    """'charge #123', 'period 2026-10', 'PI Ada <ada@example.edu>'."""
    noun = NOUNS.get(event.object_type) or event.object_type.rpartition(".")[2] or "record"
    repr_ = event.object_repr
    if event.object_type == "billing.charge" and event.object_id:
        return f"charge #{event.object_id}"
    if not repr_:
        return f"{noun} #{event.object_id}" if event.object_id else noun
    if repr_.lower().startswith(noun.lower()) or not event.object_id:
        return repr_  # already says what it is ("Charge 12 (aws, line 3)", "3 emails for …")
    return f"{noun} {repr_}"


def audit_object_url(event: Any) -> str:
    """The admin page of the event's object, or "" (no page, or no single object)."""
    app, _, model = event.object_type.partition(".")
    if not (event.object_id and model):
        return ""
    try:
        return reverse(f"admin:{app}_{model}_change", args=[event.object_id])
    except NoReverseMatch:
        return ""


def audit_sentence(event: Any) -> str:
    """The event in words; an action without a sentence of its own is spelled
    out from its code ('rate.change' -> 'Rate change: …')."""
    template = ACTIONS.get(event.action)
    obj = audit_object(event)
    if template is None:
        words = event.action.replace("_", " ").replace(".", " ").strip()
        return f"{words[:1].upper()}{words[1:]}: {obj}" if words else obj
    return template.format(obj=obj, repr=event.object_repr or obj)


def action_words(action: str) -> str:
    """An action code as a filter choice: 'charge.approve' -> 'Charge: approve'."""
    noun, _, verb = action.partition(".")
    by_name = {label.rpartition(".")[2]: words for label, words in NOUNS.items()}
    noun = by_name.get(noun.replace("_", "")) or noun.replace("_", " ")
    verb = verb.replace(".", " ").replace("_", " ")
    return f"{noun[:1].upper()}{noun[1:]}: {verb}" if verb else action


def object_type_words(object_type: str) -> str:
    noun = NOUNS.get(object_type) or object_type.rpartition(".")[2]
    return f"{noun[:1].upper()}{noun[1:]}"
