"""Period lifecycle and review: the same guards and audit trail for every caller."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing import flags
from billing.audit import Actor
from billing.errors import BillingError
from billing.models import AuditEvent, BillingPeriod, Charge, Source
from billing.review import charges_review
from billing.services import (
    finalize_blockers,
    period_close,
    period_finalize,
    period_open,
    period_reopen,
)
from ingest.focus.services import IngestError, file_import
from tests.conftest import focus_row
from tests.factories import make_charge, make_import, make_pi, make_project, make_source

pytestmark = pytest.mark.django_db


@pytest.fixture
def month(defaults: None, actor: Actor) -> str:
    """2025-01 with two clean charges and two flagged ones (no PI), as the first
    import of one aws file leaves them."""
    period_open(period="2025-01", actor=actor, note="first import")
    ada = make_pi("ada@example.edu")
    project = make_project("proj-a", pi=ada)
    imported = make_import(source=make_source("aws"))
    for resource, billed, pi in [
        ("ok-1", "100.00", ada),
        ("ok-2", "50.00", ada),
        ("odd-1", "7.00", None),
        ("odd-2", "3.00", None),
    ]:
        make_charge(
            import_record=imported,
            resource=resource,
            billed=billed,
            pi=pi,
            project=project,
            fund_org="NSF-BIO-2024",
            tags={
                "pi_email": pi.email if pi else "",
                "project_id": "proj-a",
                "fund_org": "NSF-BIO-2024",
            },
            # no PI: flagged, waiting for review
            flags=0 if pi else flags.to_mask(["missing_pi"]),
            review_state="approved" if pi else "pending",
        )
    return "2025-01"


def test_pending_charges_block_closing_with_a_clear_message(month: str, actor: Actor) -> None:
    with pytest.raises(BillingError) as caught:
        period_close(period="2025-01", actor=actor)
    message = str(caught.value)
    assert "2 charges pending review" in message
    assert "$10.00" in message
    assert "review list --period 2025-01" in message
    assert BillingPeriod.objects.get(period="2025-01").status == "open"


def test_review_approve_by_period_then_close(
    month: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The two without a PI cannot be approved as they are: fixed, they are.
    with pytest.raises(CommandError, match=r"^2 charges need their attribution fixed"):
        call_command("review", "approve", "--period", "2025-01", "--user", "rita", "--json")
    call_command("review", "fix", "--period", "2025-01", "--pi", "ada@example.edu", "--json")
    assert json.loads(capsys.readouterr().out)["approved"] == 2
    call_command("review", "reset", "--period", "2025-01", "--id", *_odd_ids())
    capsys.readouterr()
    call_command("review", "approve", "--period", "2025-01", "--user", "rita", "--json")
    assert json.loads(capsys.readouterr().out) == {"action": "approve", "changed": 2}
    events = AuditEvent.objects.filter(action="charge.approve")
    assert events.count() == 2
    assert {e.actor for e in events} == {"rita"}
    assert all(e.before == {"review_state": "pending"} for e in events)

    call_command("periods", "close", "2025-01", "--user", "carl", "--note", "month end")
    period = BillingPeriod.objects.get(period="2025-01")
    assert period.status == "closed"
    assert period.closed_by == "carl"
    assert "carl closed: month end" in period.notes
    assert AuditEvent.objects.get(action="period.close").actor == "carl"


def _odd_ids() -> list[str]:
    return [
        str(pk)
        for pk in Charge.objects.filter(resource_id__startswith="odd").values_list("pk", flat=True)
    ]


def test_ingest_into_a_closed_period_is_refused(
    month: str, actor: Actor, focus_file: Callable[..., Path]
) -> None:
    period_close(period="2025-01", actor=actor, allow_pending=True)
    with pytest.raises(IngestError, match="closed"):
        file_import(
            path=focus_file([focus_row(resource="late")], name="late.csv"),
            source=Source.objects.get(slug="aws"),
            actor=actor,
        )


def test_reopen_needs_a_reason_and_appends_notes(month: str, actor: Actor) -> None:
    period_close(period="2025-01", actor=actor, allow_pending=True)
    with pytest.raises(CommandError, match="needs a reason"):
        call_command("periods", "reopen", "2025-01")
    call_command("periods", "reopen", "2025-01", "--reason", "late AWS credit", "--user", "ann")
    period = BillingPeriod.objects.get(period="2025-01")
    assert period.status == "open"
    assert period.reopened_by == "ann"
    lines = period.notes.splitlines()
    assert lines[0].endswith("tester opened: first import")
    assert "closed with 2 charges pending review" in lines[1]
    assert lines[2].endswith("ann reopened: late AWS credit")
    assert len(lines) == 3
    assert AuditEvent.objects.get(action="period.reopen").reason == "late AWS credit"


def test_close_with_pending_override_is_recorded(month: str, actor: Actor) -> None:
    period_close(period="2025-01", actor=actor, allow_pending=True)
    event = AuditEvent.objects.get(action="period.close")
    assert event.after == {"status": "closed", "pending_override": 2}


def test_finalize_guards(month: str, actor: Actor) -> None:
    with pytest.raises(BillingError, match="open; close it first"):
        period_finalize(period="2025-01", actor=actor)
    period_close(period="2025-01", actor=actor, allow_pending=True)
    problems = finalize_blockers(BillingPeriod.objects.get(period="2025-01"))
    assert "2 charges pending review" in problems
    assert any("1 PI projects have no current statement" in p for p in problems)
    assert any("no journal export" in p for p in problems)
    with pytest.raises(BillingError, match="cannot be finalized"):
        period_finalize(period="2025-01", actor=actor)
    assert BillingPeriod.objects.get(period="2025-01").status == "closed"


def test_a_period_with_nothing_billable_finalizes_for_good(month: str, actor: Actor) -> None:
    period_reason = "duplicate test data"
    charges_review(charges=Charge.objects.all(), action="reject", actor=actor, note=period_reason)
    period_close(period="2025-01", actor=actor)
    period_finalize(period="2025-01", actor=actor, note="nothing to bill")

    period = BillingPeriod.objects.get(period="2025-01")
    assert period.status == "finalized"
    with pytest.raises(BillingError, match="permanent"):
        period_reopen(period="2025-01", actor=actor, reason="oops")
    with pytest.raises(BillingError, match="not open"):
        charges_review(charges=Charge.objects.all(), action="reset", actor=actor)


def test_reject_needs_a_note_and_reset_returns_to_pending(
    month: str, actor: Actor, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = Charge.objects.get(resource_id="odd-1")
    with pytest.raises(CommandError, match="needs a note"):
        call_command("review", "reject", "--id", str(odd.pk))
    call_command("review", "reject", "--id", str(odd.pk), "--note", "not ours")
    odd.refresh_from_db()
    assert (odd.review_state, odd.review_note) == ("rejected", "not ours")

    call_command("review", "reset", "--id", str(odd.pk), "--user", "rita")
    odd.refresh_from_db()
    assert odd.review_state == "pending"
    assert AuditEvent.objects.filter(object_id=str(odd.pk)).count() == 2


def test_review_again_changes_nothing(month: str, actor: Actor) -> None:
    ok = Charge.objects.filter(resource_id__startswith="ok")
    assert charges_review(charges=ok, action="reset", actor=actor) == 2
    assert charges_review(charges=Charge.objects.all(), action="approve", actor=actor) == 2
    assert charges_review(charges=ok, action="approve", actor=actor) == 0
    assert AuditEvent.objects.filter(action="charge.approve").count() == 2


def test_review_list_by_reason(month: str, capsys: pytest.CaptureFixture[str]) -> None:
    call_command("review", "list", "--period", "2025-01", "--reason", "missing_pi", "--json")
    listed = json.loads(capsys.readouterr().out)
    assert {row["billed_cost"] for row in listed} == {"7.00", "3.00"}
    assert all("missing_pi" in row["reasons"] for row in listed)
    call_command("review", "list", "--period", "2025-01")
    assert "2 charges pending" in capsys.readouterr().out


def test_review_needs_a_selection_and_known_ids(month: str) -> None:
    with pytest.raises(CommandError, match="say which charges"):
        call_command("review", "approve")
    with pytest.raises(CommandError, match="no charge with id 999999"):
        call_command("review", "approve", "--id", "999999")


def test_show_a_pi_in_a_period(month: str, capsys: pytest.CaptureFixture[str]) -> None:
    odd = Charge.objects.get(resource_id="ok-2")
    charges_review(
        charges=Charge.objects.filter(pk=odd.pk),
        action="reject",
        actor=Actor(name="t"),
        note="duplicate",
    )
    call_command("show", "ADA@example.edu", "--period", "2025-01", "--json")
    shown = json.loads(capsys.readouterr().out)
    assert shown["billed_total"] == "100.00"
    assert shown["lines"] == [
        {
            "project": "proj-a",
            "source": "aws",
            "service": "Amazon EC2",
            "charges": 1,
            "pending": 0,
            "list_total": "100.00",
            "discount": "0.00",
            "billed_total": "100.00",
        }
    ]
    with pytest.raises(CommandError, match="no PI with email"):
        call_command("show", "nobody@example.edu", "--period", "2025-01")


def test_fix_attribution_clears_flags_and_approves(month: str, actor: Actor) -> None:
    from billing.review import charges_fix_attribution

    odd = Charge.objects.filter(resource_id__startswith="odd")
    changed = charges_fix_attribution(
        charges=odd,
        actor=Actor(name="rita"),
        pi_email="Grace@Example.edu",
        note="owner confirmed",
        create_pi=True,
        pi_name="Grace Hopper",
    )
    assert changed == 2
    for charge in Charge.objects.filter(resource_id__startswith="odd"):
        assert charge.pi is not None
        assert charge.pi.email == "grace@example.edu"
        # proj-a belongs to ada: the fix itself is flagged for a second look.
        assert charge.flag_reasons == ["project_pi_mismatch"]
        assert charge.review_state == "pending"
    event = AuditEvent.objects.filter(action="charge.fix_attribution").first()
    assert event is not None
    assert event.actor == "rita"
    assert event.before is not None
    assert event.after is not None
    assert event.before["flags"] == ["missing_pi"]
    assert event.after["pi"] == "grace@example.edu"

    charges_fix_attribution(charges=odd, actor=actor, pi_email="ada@example.edu")
    assert set(Charge.objects.values_list("review_state", flat=True)) == {"approved"}


def test_reapply_rules_after_a_rule_change(month: str, actor: Actor) -> None:
    from billing.models import FlagRule
    from billing.review import charges_reapply_rules

    FlagRule.objects.filter(reason="missing_pi").update(enabled=False)
    assert charges_reapply_rules(charges=Charge.objects.all(), actor=actor) == 2
    assert not Charge.objects.filter(review_state="pending").exists()
    assert charges_reapply_rules(charges=Charge.objects.all(), actor=actor) == 0


def test_fix_attribution_refuses_bad_input_and_locked_periods(month: str, actor: Actor) -> None:
    from billing.review import charges_fix_attribution

    with pytest.raises(BillingError, match="not an email"):
        charges_fix_attribution(charges=Charge.objects.all(), actor=actor, pi_email="bob")
    with pytest.raises(BillingError, match="say what to fix"):
        charges_fix_attribution(charges=Charge.objects.all(), actor=actor)
    period_close(period="2025-01", actor=actor, allow_pending=True)
    with pytest.raises(BillingError, match="not open"):
        charges_fix_attribution(charges=Charge.objects.all(), actor=actor, fund_org="NSF-X-1")


class _Answer(io.StringIO):
    """What a user types at a terminal (or, with tty=False, what a pipe holds)."""

    def __init__(self, text: str, *, tty: bool = True) -> None:
        super().__init__(text)
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture
def finalizable(month: str, actor: Actor) -> str:
    charges_review(charges=Charge.objects.all(), action="reject", actor=actor, note="test data")
    period_close(period="2025-01", actor=actor)
    assert finalize_blockers(BillingPeriod.objects.get(period="2025-01")) == []
    return "2025-01"


def _finalize(*args: str, stdin: io.StringIO | None = None) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("periods", "finalize", *args, stdin=stdin, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _status() -> str:
    return BillingPeriod.objects.get(period="2025-01").status


def test_finalize_asks_for_the_period_again(finalizable: str) -> None:
    out, err = _finalize(finalizable, "--user", "ann", stdin=_Answer("2025-01\n"))
    assert (
        "Finalizing 2025-01 is permanent: its 0 charges (billed $0.00; 4 rejected charges)" in err
    )
    assert err.rstrip().endswith("Type the period (2025-01) to finalize it:")
    assert out.strip() == "Period 2025-01 is finalized."
    assert _status() == "finalized"
    assert AuditEvent.objects.get(action="period.finalize").actor == "ann"


@pytest.mark.parametrize(("typed", "said"), [("2025-02\n", "'2025-02'"), ("", "nothing")])
def test_finalize_refuses_a_wrong_answer(finalizable: str, typed: str, said: str) -> None:
    with pytest.raises(CommandError) as caught:
        _finalize(finalizable, stdin=_Answer(typed))
    assert str(caught.value) == f"2025-01 not finalized: you typed {said}, not 2025-01"
    assert _status() == "closed"
    assert not AuditEvent.objects.filter(action="period.finalize").exists()


def test_finalize_without_a_terminal_needs_yes(finalizable: str) -> None:
    with pytest.raises(CommandError, match=r"not a terminal.*pass --yes") as caught:
        _finalize(finalizable, stdin=_Answer("2025-01\n", tty=False))
    assert "\n" not in str(caught.value)
    assert _status() == "closed"
    assert not AuditEvent.objects.filter(action="period.finalize").exists()


def test_finalize_yes_asks_nothing(finalizable: str) -> None:
    out, err = _finalize(finalizable, "--yes", "--json", stdin=_Answer("", tty=False))
    assert json.loads(out) == {"period": "2025-01", "status": "finalized"}
    assert err == ""
    assert _status() == "finalized"


def test_finalize_that_would_be_refused_asks_nothing(month: str) -> None:
    """An open period (or one with blockers) is refused with its reasons, no prompt."""
    with pytest.raises(CommandError, match="open; close it first"):
        _finalize("2025-01", stdin=_Answer("", tty=False))
    with pytest.raises(CommandError, match="not a month"):
        _finalize("2025-13", stdin=_Answer("", tty=False))
    assert _status() == "open"
