"""The command base (billing.commands.BillingCommand): the shared options each
command opts in to, user errors as one line, and dry runs that write nothing."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command, load_command_class
from django.core.management.base import CommandParser
from django.db import transaction
from django.utils import timezone

from billing.audit import Actor
from billing.commands import DRY_RUN_NOTICE, BillingCommand
from billing.errors import BillingError
from billing.models import AuditEvent, BillingPeriod, Charge, ExchangeRate, Source
from billing.review import charges_review
from billing.services import period_close, period_open, source_set
from ingest.focus.services import file_import
from tests.conftest import focus_row

pytestmark = pytest.mark.django_db


def run(*args: Any, **options: Any) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


class Sample(BillingCommand):
    """A command changing a period: --user, --json and a rolled-back --dry-run."""

    takes_user = True
    takes_json = True
    takes_dry_run = True
    dry_run_rolls_back = True
    user_default = "sampler"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("period")

    def handle(self, *args: Any, **options: Any) -> None:
        period = period_open(period=options["period"], actor=self.actor(options))
        transaction.on_commit(lambda: self.stdout.write("committed"))
        if options["json"]:
            self.stdout.write(json.dumps({"period": period.period}))
        else:
            self.stdout.write(f"Opened {period.period} as {options['user']}.")


class Actions(BillingCommand):
    """Options offered to some actions only."""

    takes_user = ("change",)
    takes_json = ("list", "change")
    json_help = {"list": "Print a JSON array.", "change": "Print one JSON object."}
    takes_dry_run = ("change",)

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list")
        sub.add_parser("change")

    def handle(self, *args: Any, **options: Any) -> None:
        raise ValueError("a bug")


def test_a_command_gets_only_the_options_it_takes() -> None:
    parser = Sample().create_parser("openchargeback", "sample")
    options = vars(parser.parse_args(["2030-01"]))
    assert options["user"] == "sampler"  # the command's default actor
    assert options["json"] is False
    assert options["dry_run"] is False
    plain = type("Plain", (BillingCommand,), {})().create_parser("openchargeback", "plain")
    assert not {"user", "json", "dry_run"} & set(vars(plain.parse_args([])))


def test_actions_get_the_options_named_for_them() -> None:
    parser = Actions().create_parser("openchargeback", "actions")
    listing = vars(parser.parse_args(["list", "--json"]))
    assert listing["json"] is True
    assert "user" not in listing
    assert "dry_run" not in listing
    change = vars(parser.parse_args(["change", "--user", "ann", "--dry-run"]))
    assert change["user"] == "ann"
    assert change["dry_run"] is True
    with pytest.raises(CommandError):
        parser.parse_args(["list", "--dry-run"])


def test_a_user_error_is_one_line_and_a_bug_keeps_its_traceback() -> None:
    one_line = r"^period '2030-1' is not a month in the form YYYY-MM$"
    with pytest.raises(CommandError, match=one_line) as raised:
        call_command(Sample(), "2030-1", stdout=io.StringIO())
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__
    with pytest.raises(ValueError, match="a bug"):
        call_command(Actions(), "change", stdout=io.StringIO())


def test_user_errors_can_name_more_types() -> None:
    class Fails(BillingCommand):
        user_errors = (BillingError, KeyError)

        def handle(self, *args: Any, **options: Any) -> None:
            raise KeyError("missing")

    with pytest.raises(CommandError, match="missing"):
        call_command(Fails(), stdout=io.StringIO())


def test_the_default_actor_is_recorded() -> None:
    out = run(Sample(), "2030-01")
    assert "Opened 2030-01 as sampler." in out
    assert AuditEvent.objects.get(action="period.create").actor == "sampler"


def test_a_rolled_back_dry_run_writes_nothing_and_says_so() -> None:
    out = run(Sample(), "2030-01", "--dry-run", "--user", "ann")
    assert out.splitlines() == ["Opened 2030-01 as ann.", DRY_RUN_NOTICE]
    assert not BillingPeriod.objects.exists()
    assert not AuditEvent.objects.exists()
    # nothing queued on commit survives either (the callback would print "committed")
    assert "committed" not in out


def test_a_rolled_back_dry_run_keeps_its_json_clean() -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command(Sample(), "2030-01", "--dry-run", "--json", stdout=out, stderr=err)
    assert json.loads(out.getvalue()) == {"period": "2030-01"}
    assert DRY_RUN_NOTICE in err.getvalue()
    assert not BillingPeriod.objects.exists()


def test_the_dry_run_options_are_in_the_help() -> None:
    command = load_command_class("billing", "periods")
    parser = command.create_parser("openchargeback", "periods")
    text = io.StringIO()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    sub.choices["close"].print_help(text)
    assert "--dry-run" in text.getvalue()
    assert "--user" in text.getvalue()


@pytest.mark.parametrize(
    ("action", "before", "extra", "after"),
    [
        ("open", None, [], None),
        ("close", "open", [], "open"),
        ("reopen", "closed", ["--reason", "late credit"], "closed"),
        ("finalize", "closed", [], "closed"),
    ],
)
def test_periods_dry_run_changes_nothing(
    action: str, before: str | None, extra: list[str], after: str | None, actor: Actor
) -> None:
    if before:
        period_open(period="2030-01", actor=actor)
        if before == "closed":
            period_close(period="2030-01", actor=actor)
    events = AuditEvent.objects.count()
    # finalize asks nobody under --dry-run (standard input is no terminal here)
    out = run("periods", action, "2030-01", "--dry-run", *extra)
    assert out.splitlines()[-1] == DRY_RUN_NOTICE
    assert "Period 2030-01 is " in out
    period = BillingPeriod.objects.filter(period="2030-01").first()
    assert (period.status if period else None) == after
    assert AuditEvent.objects.count() == events


def test_periods_dry_run_still_refuses_what_would_be_refused(actor: Actor) -> None:
    period_open(period="2030-01", actor=actor)
    period_close(period="2030-01", actor=actor)
    with pytest.raises(CommandError, match="reason"):
        run("periods", "reopen", "2030-01", "--dry-run")
    assert BillingPeriod.objects.get(period="2030-01").status == "closed"


@pytest.fixture
def pending(defaults: None, focus_file: Callable[..., Path], actor: Actor) -> str:
    """An open 2025-01 with two charges pending review."""
    rows = [focus_row(resource="vm-1", billed="10.00"), focus_row(resource="vm-2", billed="2.50")]
    file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)
    charges_review(
        charges=Charge.objects.exclude(review_state="pending"), action="reset", actor=actor
    )
    assert Charge.objects.filter(review_state="pending").count() == 2
    return "2025-01"


def _state() -> tuple[list[tuple[int, str, str]], int]:
    charges = list(Charge.objects.order_by("pk").values_list("pk", "review_state", "review_note"))
    return charges, AuditEvent.objects.count()


@pytest.mark.parametrize(
    ("action", "extra", "said"),
    [
        ("approve", [], "Approve: 2 charges changed."),
        ("reject", ["--note", "not ours"], "Reject: 2 charges changed."),
    ],
)
def test_review_dry_run_changes_nothing(
    pending: str, action: str, extra: list[str], said: str
) -> None:
    before = _state()
    out = run("review", action, "--period", pending, "--dry-run", *extra)
    assert out.splitlines() == [said, DRY_RUN_NOTICE]
    assert _state() == before


def test_review_reset_dry_run_changes_nothing(pending: str, actor: Actor) -> None:
    charges_review(charges=Charge.objects.all(), action="approve", actor=actor)
    before = _state()
    out = run("review", "reset", "--period", pending, "--dry-run")
    assert out.splitlines() == ["Reset: 2 charges changed.", DRY_RUN_NOTICE]
    assert _state() == before


def test_sources_add_and_set_dry_run_change_nothing(defaults: None) -> None:
    sources = list(Source.objects.order_by("pk").values())
    events = AuditEvent.objects.count()
    out = run("sources", "add", "lab", "--name", "Lab", "--dry-run")
    assert out.splitlines() == ["Added source lab (Lab).", DRY_RUN_NOTICE]
    out = run("sources", "set", "aws", "--credit-fund-org", "RCI-CLOUD", "--dry-run")
    assert out.startswith("Source aws: credit fund/org RCI-CLOUD,")
    assert out.splitlines()[-1] == DRY_RUN_NOTICE
    assert list(Source.objects.order_by("pk").values()) == sources
    assert AuditEvent.objects.count() == events


def test_exchange_rate_set_dry_run_records_nothing(pending: str) -> None:
    out = run("exchange_rates", "set", "EUR", "--period", pending, "--rate", "1.0850", "--dry-run")
    assert out.startswith(f"EUR {pending}: 1.0850 USD per EUR (recorded);")
    assert out.splitlines()[-1] == DRY_RUN_NOTICE
    assert not ExchangeRate.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="exchange").exists()


def test_send_ready_dry_run_generates_and_sends_nothing(
    month: str, settings: Any, mailoutbox: list[Any]
) -> None:
    from django_q.models import OrmQ

    from statements.models import EmailLog, Statement

    events = AuditEvent.objects.count()
    out = run("send_ready", "--sync", "--dry-run")
    assert out.splitlines() == [
        f"{month}: would generate 3 statements and email every PI not emailed yet.",
        "Dry run: nothing generated, written or sent.",
    ]
    assert not Statement.objects.exists()
    assert not EmailLog.objects.exists()
    assert not mailoutbox
    assert not OrmQ.objects.exists()
    assert AuditEvent.objects.count() == events
    assert not list(Path(settings.MEDIA_ROOT).rglob("*.pdf"))
    report = json.loads(run("send_ready", "--dry-run", "--json"))
    assert report == [{"period": month, "would_generate": 3}]


def test_setup_schedules_dry_run_writes_no_schedule() -> None:
    from django_q.models import Schedule

    out = run("setup_schedules", "--dry-run")
    assert out.splitlines()[-1] == DRY_RUN_NOTICE
    assert any(line.startswith("created: ") for line in out.splitlines())
    assert not Schedule.objects.exists()


def test_purge_uploads_dry_run_discards_and_removes_nothing(defaults: None, settings: Any) -> None:
    import os
    import time
    import uuid
    from datetime import timedelta

    from django.utils import timezone

    from ingest.models import Upload
    from ingest.uploads.selectors import staged_path
    from ingest.uploads.services import upload_stage

    media = Path(settings.MEDIA_ROOT)
    stored = Path("uploads") / f"{uuid.uuid4().hex}.csv"
    (media / stored).parent.mkdir(parents=True, exist_ok=True)
    (media / stored).write_text("x")
    upload = upload_stage(
        batch=uuid.uuid4(),
        file_name="old.csv",
        stored_file=str(stored),
        size=1,
        source=None,
        period="",
        actor=Actor("ops", "cli"),
    )
    Upload.objects.filter(pk=upload.pk).update(updated_at=timezone.now() - timedelta(days=31))
    stale = media / "journals/2025-01/.journal-2025-01-gl.csv.k2j4h1.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 90_000,) * 2)
    events = AuditEvent.objects.count()

    out = run("purge_uploads", "--dry-run")

    assert out.strip() == (
        "Dry run, nothing changed: would discard 1 upload older than 30 days; "
        "would remove 1 temporary file left by interrupted writes."
    )
    upload.refresh_from_db()
    assert upload.status != "discarded"
    path = staged_path(upload)
    assert path is not None
    assert path.exists()
    assert stale.exists()
    assert AuditEvent.objects.count() == events
    # and without --dry-run the same run does it
    assert "Discarded 1 upload" in run("purge_uploads")
    assert not stale.exists()


def test_emails_dry_runs_record_and_send_nothing(
    month: str, actor: Actor, mailoutbox: list[Any]
) -> None:
    from django_q.models import OrmQ

    from statements.models import EmailLog
    from statements.services import statements_generate

    statements_generate(period=month, actor=actor, sync=True)
    events = AuditEvent.objects.count()

    out = run("emails", "send", "--period", month, "--dry-run")
    assert out.splitlines() == [
        "Dry run, nothing recorded or sent: would send 2 emails",
        "  to ada@example.edu",
        "  to bob@example.edu",
    ]
    report = json.loads(run("emails", "send", "--period", month, "--dry-run", "--json"))
    assert report["would_send"] == ["ada@example.edu", "bob@example.edu"]
    assert not EmailLog.objects.exists()
    assert not mailoutbox
    assert not OrmQ.objects.exists()
    assert AuditEvent.objects.count() == events

    run("emails", "send", "--period", month)  # now for real
    assert len(mailoutbox) == 2
    sent = EmailLog.objects.count()
    events = AuditEvent.objects.count()
    out = run(
        "emails", "resend", "--period", month, "--pi", "ada@example.edu",
        "--reason", "lost it", "--dry-run",
    )  # fmt: skip
    assert out.splitlines() == [
        "Dry run, nothing recorded or sent: would send 1 emails",
        "  to ada@example.edu",
    ]
    assert "would send 0 emails" in run("emails", "retry", "--dry-run")
    email = EmailLog.objects.order_by("pk").first()
    assert email is not None
    # a worker died while sending it: stuck, for somebody to resolve
    long_ago = timezone.now() - timedelta(days=1)
    EmailLog.objects.filter(pk=email.pk).update(status="sending", claimed_at=long_ago)
    events = AuditEvent.objects.count()
    out = run("emails", "resolve", str(email.pk), "--as", "retry", "--note", "x", "--dry-run")
    assert out.startswith(f"Dry run, nothing recorded or sent: email {email.pk} to ")
    assert EmailLog.objects.count() == sent
    assert EmailLog.objects.get(pk=email.pk).status == "sending"
    assert len(mailoutbox) == 2
    assert AuditEvent.objects.count() == events


def test_export_journal_dry_run_writes_and_records_nothing(
    month: str, actor: Actor, settings: Any, tmp_path: Path
) -> None:
    from journals.models import JournalExport, JournalSettings
    from statements.services import statements_generate

    for slug in ("aws", "azure", "gcp", "hpc"):
        source_set(slug=slug, actor=actor, credit_fund_org=f"RCI-{slug.upper()}")
    journal = JournalSettings.load()
    journal.default_account = "740000"
    journal.save()
    statements_generate(period=month, actor=actor, sync=True)
    events = AuditEvent.objects.count()
    target = tmp_path / "out" / "gl.csv"

    out = run("export_journal", "--period", month, "-o", str(target), "--dry-run")

    assert out.strip().startswith(f"Dry run, nothing written: {month} gl: 2 lines, debits ")
    assert out.strip().endswith(f"would be exported and copied to {target}")
    data = json.loads(run("export_journal", "--period", month, "--dry-run", "--json"))
    assert data["dry_run"] is True
    assert data["debit_total"] == data["credit_total"]
    assert not JournalExport.objects.exists()
    assert AuditEvent.objects.count() == events
    assert not target.exists()
    assert not list(Path(settings.MEDIA_ROOT).rglob("journal-*"))
    # the same export for real has the totals the dry run reported
    real = json.loads(run("export_journal", "--period", month, "--json"))
    assert (real["lines"], real["debit_total"]) == (data["lines"], data["debit_total"])


def test_inbox_dry_run_imports_and_moves_nothing(
    defaults: None, settings: Any, tmp_path: Path
) -> None:
    from ingest.models import Import
    from tests.conftest import write_focus

    inbox = tmp_path / "inbox"
    settings.OPENCHARGEBACK_INBOX_DIR = inbox
    settings.OPENCHARGEBACK_INBOX_SETTLE_SECONDS = 0
    (inbox / "aws").mkdir(parents=True)
    (inbox / "nosuch").mkdir()
    good = write_focus(inbox / "aws" / "aws_2025-01.csv", [focus_row(billed="3.00")])
    bad = write_focus(inbox / "nosuch" / "x_2025-01.csv", [focus_row()])
    before = sorted(p.relative_to(inbox) for p in inbox.rglob("*"))
    out = io.StringIO()

    with pytest.raises(CommandError, match=r"^1 inbox file would fail \(nosuch/x_2025-01.csv\)"):
        call_command("inbox", "--dry-run", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0].startswith(
        "aws/aws_2025-01.csv: would be imported. 1 charges into 2025-01, billed 3.00;"
    )
    assert lines[1].startswith("nosuch/x_2025-01.csv: would fail. no source named 'nosuch'")
    assert lines[2] == "Dry run: nothing imported, moved or written."
    assert sorted(p.relative_to(inbox) for p in inbox.rglob("*")) == before
    assert good.exists()
    assert bad.exists()
    assert not Import.objects.exists()
    assert not Charge.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="import").exists()
