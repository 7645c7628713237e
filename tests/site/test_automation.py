"""Month-end automation: the inbox, the reviewer reminder, sending closed months,
and the django-q2 schedules that run them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django_q.models import Schedule

from billing.audit import Actor
from billing.models import Charge, Source
from billing.roles import REVIEWER, VIEWER
from ingest.models import Import
from ingest.uploads.inbox import inbox_process
from openchargeback import schedules
from statements.models import EmailLog, Statement
from tests.conftest import focus_row, user_in, write_focus


@pytest.fixture
def inbox(settings: Any, tmp_path: Path, defaults: None) -> Path:
    settings.OPENCHARGEBACK_INBOX_DIR = tmp_path / "inbox"
    settings.OPENCHARGEBACK_INBOX_SETTLE_SECONDS = 0
    return tmp_path / "inbox"


def _drop(folder: Path, name: str, rows: list[dict[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_focus(folder / name, rows)


def _run(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_inbox_imports_and_files_each_file(inbox: Path) -> None:
    _drop(inbox / "aws", "aws_2025-01.csv", [focus_row(resource="vm", billed="3.00")])
    _drop(inbox / "azure", "azure-202501.csv", [focus_row(resource="db", billed="4.00")])
    bad = focus_row(resource="bad")
    bad["BilledCost"] = "lots"
    _drop(inbox / "gcp", "gcp.csv", [bad])
    _drop(inbox / "nosuch", "x_2025-01.csv", [focus_row()])
    (inbox / "aws" / "notes.txt").write_text("not a FOCUS file")

    with pytest.raises(CommandError, match=r"2 inbox files failed \(gcp/gcp.csv, nosuch/"):
        _run("inbox")
    assert sorted(Import.objects.values_list("source__slug", "expected_period")) == [
        ("aws", "2025-01"),
        ("azure", "2025-01"),
    ]
    assert (inbox / "aws" / "done" / "aws_2025-01.csv").is_file()
    result = json.loads((inbox / "aws" / "done" / "aws_2025-01.csv.result.json").read_text())
    assert result["status"] == "imported"
    assert result["charges_created"] == 1
    reason = (inbox / "gcp" / "failed" / "gcp.csv.reason.txt").read_text()
    assert "line 2" in reason
    assert "BilledCost" in reason
    assert (
        "no source named 'nosuch'"
        in (inbox / "nosuch" / "failed" / "x_2025-01.csv.reason.txt").read_text()
    )
    assert (inbox / "aws" / "notes.txt").exists()  # not ours: left alone
    assert not list(inbox.glob("*/.processing/*"))

    # The same file again: nothing new, filed under done/ with a new name.
    _drop(inbox / "aws", "aws_2025-01.csv", [focus_row(resource="vm", billed="3.00")])
    outcomes = inbox_process(actor=Actor("cron", "cli"))
    assert [(o.status, Path(o.moved_to).parent.name) for o in outcomes] == [
        ("already_imported", "done")
    ]
    assert Charge.objects.count() == 2
    assert len(list((inbox / "aws" / "done").glob("*aws_2025-01.csv"))) == 2


def test_inbox_leaves_files_still_being_written(inbox: Path, settings: Any) -> None:
    settings.OPENCHARGEBACK_INBOX_SETTLE_SECONDS = 3600
    _drop(inbox / "aws", "aws_2025-01.csv", [focus_row()])
    assert inbox_process(actor=Actor("cron", "cli")) == []
    assert (inbox / "aws" / "aws_2025-01.csv").exists()


def test_a_stale_claim_is_taken_up_again(inbox: Path) -> None:
    """A run that died left its file in .processing/: the next run imports it."""
    claimed = _drop(inbox / "aws" / ".processing", "aws_2025-01.csv", [focus_row()])
    old = time.time() - 7200
    os.utime(claimed, (old, old))
    [outcome] = inbox_process(actor=Actor("cron", "cli"))
    assert outcome.status == "imported"
    assert (inbox / "aws" / "done" / "aws_2025-01.csv").is_file()


def test_reviewers_are_reminded_only_when_charges_wait(
    inbox: Path, settings: Any, focus_file: Any, actor: Actor
) -> None:
    from ingest.focus.services import file_import

    settings.OPENCHARGEBACK_SITE_URL = "https://billing.example.edu/"
    reviewer = user_in(REVIEWER)
    reviewer.email = "rita@example.edu"
    reviewer.save()
    viewer = user_in(VIEWER)
    viewer.email = "vic@example.edu"
    viewer.save()
    assert "Nothing is pending review" in _run("remind_reviewers")
    assert mail.outbox == []

    rows = [focus_row(resource="orphan", pi="", project="", billed="5.00"), focus_row()]
    file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)
    assert "Reminder sent to 1 reviewer" in _run("remind_reviewers")
    [message] = mail.outbox
    assert message.to == ["rita@example.edu"]
    assert message.subject == "Research Computing: 1 charge waiting for review"
    assert "- 2025-01: 1 charge, $5.00" in message.body
    assert "https://billing.example.edu/admin/billing/charge/?period__id__exact=" in message.body


def test_send_ready_sends_closed_months_once(month: str) -> None:
    first = json.loads(_run("send_ready", "--sync", "--json"))
    assert first == [
        {
            "period": month,
            "generated": 3,
            "emails_sent": 2,
            "emails_failed": 0,
            "job_group": "",
        }
    ]
    again = json.loads(_run("send_ready", "--sync", "--json"))
    assert again[0]["generated"] == 0
    assert again[0]["emails_sent"] == 0
    assert EmailLog.objects.count() == 2
    assert Statement.objects.count() == 3


def test_setup_schedules_is_idempotent(db: None, settings: Any) -> None:
    settings.OPENCHARGEBACK_AUTO_SEND = False
    first = json.loads(_run("setup_schedules", "--json"))
    assert len(first["created"]) == 4
    again = json.loads(_run("setup_schedules", "--json"))
    assert again == {"created": [], "updated": [], "unchanged": first["created"], "removed": []}
    assert Schedule.objects.count() == 4
    reminder = Schedule.objects.get(name="openchargeback: remind reviewers")
    assert reminder.schedule_type == Schedule.DAILY
    assert reminder.next_run.hour == 8
    assert reminder.args == "('remind_reviewers',)"

    settings.OPENCHARGEBACK_AUTO_SEND = True
    settings.OPENCHARGEBACK_INBOX_MINUTES = 5
    changed = json.loads(_run("setup_schedules", "--json"))
    assert changed["created"] == ["openchargeback: send statements"]
    assert changed["updated"] == ["openchargeback: import the inbox"]
    assert Schedule.objects.get(name="openchargeback: import the inbox").minutes == 5

    settings.OPENCHARGEBACK_AUTO_SEND = False
    assert json.loads(_run("setup_schedules", "--json"))["removed"] == [
        "openchargeback: send statements"
    ]
    Schedule.objects.create(name="nightly backup", func="x.y")  # a site's own: kept
    _run("setup_schedules")
    assert Schedule.objects.count() == 5


def test_a_schedule_runs_its_command(inbox: Path) -> None:
    _drop(inbox / "aws", "aws_2025-01.csv", [focus_row()])
    output = schedules.run_command("inbox")
    assert "aws/aws_2025-01.csv: imported." in output
    _drop(inbox / "nosuch", "x.csv", [focus_row()])
    with pytest.raises(CommandError):  # a failure fails the task (listed in the admin)
        schedules.run_command("inbox")


def test_old_uploads_never_imported_are_purged(defaults: None, settings: Any) -> None:
    import uuid
    from datetime import timedelta

    from django.utils import timezone

    from ingest.models import Upload
    from ingest.uploads.selectors import staged_path
    from ingest.uploads.services import upload_stage

    media = Path(settings.MEDIA_ROOT)
    uploads = []
    for name in ("old.csv", "recent.csv"):
        stored = Path("uploads") / f"{uuid.uuid4().hex}.csv"
        (media / stored).parent.mkdir(parents=True, exist_ok=True)
        (media / stored).write_text("x")
        uploads.append(
            upload_stage(
                batch=uuid.uuid4(),
                file_name=name,
                stored_file=str(stored),
                size=1,
                source=None,
                period="",
                actor=Actor("ops", "cli"),
            )
        )
    old, recent = uploads
    old_path = staged_path(old)
    Upload.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=31))
    assert "Discarded 1 upload older than 30 days;" in _run("purge_uploads")
    old.refresh_from_db()
    recent.refresh_from_db()
    assert old.status == "discarded"
    assert old_path is not None
    assert not old_path.exists()
    assert recent.status != "discarded"
    recent_path = staged_path(recent)
    assert recent_path is not None
    assert recent_path.exists()


@pytest.mark.django_db
def test_purge_uploads_removes_temporaries_killed_writers_left(
    settings: Any, tmp_path: Path
) -> None:
    """A process killed outright (SIGKILL, power cut) never removes its temporary
    files; the daily purge removes those untouched for a day, and nothing else."""
    import os
    import time

    settings.MEDIA_ROOT = str(tmp_path)
    stale = [
        tmp_path / "journals/2025-01/.journal-2025-01-gl.csv.k2j4h1.tmp",
        tmp_path / "statements/2025-01/.2025-01-0001-v1.pdf.a8d7f2.tmp",
        tmp_path / "imports/.incoming-x81ka.tmp",
        tmp_path / "imports/.incoming-x81ka.tmp.part",
        tmp_path / "uploads/.incoming-q9w.csv",
        tmp_path / "converted/.focus-3kd.csv",
    ]
    kept = [
        tmp_path / "statements/2025-01/.2025-01-0002-v1.pdf.f00b4r.tmp",  # being written now
        tmp_path / "statements/2025-01/2025-01-0001-v1.pdf",
        tmp_path / "imports/aws/abc.csv.zst",
        tmp_path / "journals/2025-01/.keep",
    ]
    day_and_a_bit = time.time() - 90_000
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
        if path != kept[0]:
            os.utime(path, (day_and_a_bit, day_and_a_bit))

    output = _run("purge_uploads")

    assert "removed 6 temporary files left by interrupted writes" in output
    assert [p for p in stale if p.exists()] == []
    assert [p for p in kept if not p.exists()] == []
