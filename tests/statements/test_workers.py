"""Real django-q2 workers: statements rendered and emailed by `openchargeback
qcluster`, a cluster killed mid-batch and restarted, and no PI ever emailed twice;
a cluster killed while rendering and again while sending ends the month as a
clean run does.

Everything runs as a user would run it, in subprocesses against a database
of its own (a SQLite file, or a fresh database on the PostgreSQL server the
suite uses) and a real SMTP server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import focus_row, fresh_database_url, write_focus
from tests.statements.test_statement_emails import Inbox, _free_port

pytestmark = pytest.mark.slow

PIS = 40
STATEMENTS = 100


class SlowInbox(Inbox):
    """A mail server that takes a moment per message, so a batch can be interrupted."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import asyncio

        await asyncio.sleep(0.1)
        return await super().handle_DATA(server, session, envelope)


@contextmanager
def _running_site(
    root: Path, label: str, inbox: Inbox, **overrides: str
) -> Iterator[Callable[..., str]]:
    """run(*args) runs an openchargeback command for a fresh site of its own
    (database, instance folder and media) whose mail goes to `inbox`; `run.env`
    is its environment (`overrides` replace the defaults)."""
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with fresh_database_url(root, label) as database_url:
            instance = root / f"{label}-instance"
            env = {
                **os.environ,
                "DEBUG": "true",
                "DATABASE_URL": database_url,
                "OPENCHARGEBACK_INSTANCE_DIR": str(instance),
                "MEDIA_ROOT": str(instance / "files"),
                "EMAIL_URL": f"smtp://127.0.0.1:{port}",
                "EMAIL_TIMEOUT": "5",
                "Q_WORKERS": "2",
                "Q_TIMEOUT": "8",
                "Q_RETRY": "10",
                "LOG_LEVEL": "WARNING",
                **overrides,
            }

            def run(*args: str) -> str:
                done = subprocess.run(
                    [sys.executable, "manage.py", *args],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                )
                assert done.returncode == 0, f"{args}: {done.stderr}"
                return done.stdout

            run.env = env  # type: ignore[attr-defined]
            yield run
    finally:
        controller.stop()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Callable[..., str], SlowInbox]]:
    """run(*args) runs an openchargeback command for a fresh site; its SMTP inbox."""
    inbox = SlowInbox()
    with _running_site(tmp_path, "workers", inbox) as run:
        yield run, inbox


def _month_rows() -> list[dict[str, str]]:
    """A month of STATEMENTS projects of PIS PIs (two or three projects each)."""
    return [
        focus_row(
            resource=f"r-{k}",
            pi=f"pi{k % PIS:02d}@example.edu",
            project=f"proj-{k:03d}",
            # Never $0.00: a project with nothing to bill gets no statement.
            billed=f"{k + 1}.{k % 100:02d}",
        )
        for k in range(STATEMENTS)
    ]


def _start_cluster(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill(cluster: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal the cluster and its workers; SIGKILL whatever is left after 15 s."""
    for signum, grace in ((sig, 15), (signal.SIGKILL, 30)):
        try:
            os.killpg(cluster.pid, signum)
        except ProcessLookupError:
            return
        try:
            cluster.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.25)


STATE = (
    "import json; from django_q.models import OrmQ; from statements.models import "
    "EmailLog, Statement; print(json.dumps({"
    "'queued': OrmQ.objects.count(), "
    "'ready': Statement.objects.filter(status='ready').count(), "
    "'emails': sorted(EmailLog.objects.values_list('to', 'status'))}))"
)


def test_a_killed_cluster_restarted_sends_each_pi_at_most_one_email(
    site: tuple[Callable[..., str], SlowInbox], tmp_path: Path
) -> None:
    run, inbox = site
    env: dict[str, str] = run.env  # type: ignore[attr-defined]
    run("migrate", "--no-input", "-v", "0")
    run("ingest", str(write_focus(tmp_path / "aws_2025-01.csv", _month_rows())), "--source", "aws")
    run("review", "approve", "--period", "2025-01")
    run("sources", "set", "aws", "--credit-fund-org", "RCI-AWS", "--account-code", "740000")
    run("periods", "close", "2025-01")
    out = run("generate", "--period", "2025-01", "--send", "--json")
    assert json.loads(out)["job_group"].startswith("statements-2025-01-")

    def state() -> dict[str, Any]:
        return json.loads(run("shell", "-c", STATE).strip().splitlines()[-1])

    cluster = _start_cluster(env)
    try:
        _wait(lambda: len(inbox.messages) >= 8, 120, "the first emails")
    finally:
        _kill(cluster)
    interrupted_at = len(inbox.messages)
    assert interrupted_at < PIS, "the batch finished before the cluster was killed"

    cluster = _start_cluster(env)
    try:

        def settled() -> bool:
            s = state()
            statuses = Counter(status for _, status in s["emails"])
            return (
                s["queued"] == 0
                and len(s["emails"]) == PIS
                and set(statuses) <= {"sent", "sending"}
            )

        _wait(settled, 180, "every PI's email to be sent or claimed")
    finally:
        _kill(cluster, signal.SIGTERM)

    final = state()
    assert final["ready"] == STATEMENTS
    received = Counter(str(m["To"]) for m in inbox.messages)
    assert max(received.values()) == 1, f"duplicates: {received.most_common(3)}"
    statuses = dict(final["emails"])
    sent = {to for to, status in statuses.items() if status == "sent"}
    stuck = {to for to, status in statuses.items() if status == "sending"}
    assert len(sent) + len(stuck) == PIS
    assert sent <= set(received)  # every email recorded as sent arrived
    # a claim interrupted by the kill is left for an operator, never resent
    assert len(stuck) <= 2  # at most one in flight per worker
    print(f"killed after {interrupted_at} emails; sent {len(sent)}, stuck {len(stuck)}")
    listed = json.loads(run("emails", "list", "--period", "2025-01", "--json"))
    assert len(listed) == PIS


JOBS = 1_000

DONE_JOBS = (
    "import json; from collections import Counter; from django_q.models import OrmQ, Task; "
    "from statements.models import Statement; "
    "tasks = Task.objects.filter(func='statements.tasks.render_statement'); "
    "print(json.dumps({'queued': OrmQ.objects.count(), "
    "'ready': Statement.objects.filter(status='ready').count(), "
    "'succeeded': tasks.filter(success=True).count(), "
    "'failed': tasks.filter(success=False).count(), "
    "'attempts': sorted(Counter(tasks.values_list('attempt_count', flat=True)).items()), "
    "'statements': len(set(t.args[0] for t in tasks))}))"
)


def test_two_clusters_share_one_queue_and_run_each_job_once(
    site: tuple[Callable[..., str], SlowInbox], tmp_path: Path
) -> None:
    """Two `qcluster` processes (as on two hosts) on one database: 1,000 statement
    jobs, each run exactly once, by both clusters."""
    run, _inbox = site
    env: dict[str, str] = {
        **run.env,  # type: ignore[attr-defined]
        "Q_TIMEOUT": "60",
        "Q_RETRY": "90",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "Q_SAVE_LIMIT": "0",  # keep every result, to count them
    }
    rows = [
        focus_row(
            resource=f"r-{k}",
            pi=f"pi{k % 200:03d}@example.edu",
            project=f"proj-{k:04d}",
            billed=f"{k % 97 + 1}.{k % 100:02d}",  # never $0.00 (no statement)
        )
        for k in range(JOBS)
    ]
    run("migrate", "--no-input", "-v", "0")
    run("ingest", str(write_focus(tmp_path / "aws_2025-01.csv", rows)), "--source", "aws")
    run("sources", "set", "aws", "--credit-fund-org", "RCI-AWS", "--account-code", "740000")
    run("periods", "close", "2025-01")
    out = json.loads(run("generate", "--period", "2025-01", "--json"))
    assert len(out["statements"]) == JOBS

    logs = [tmp_path / f"cluster-{n}.log" for n in (1, 2)]
    clusters = []
    for log in logs:
        with open(log, "wb") as fh:
            clusters.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "qcluster"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=fh,
                    start_new_session=True,
                )
            )

    def state() -> dict[str, Any]:
        return json.loads(run("shell", "-v", "0", "-c", DONE_JOBS).strip().splitlines()[-1])

    try:
        _wait(lambda: state()["queued"] == 0, 600, "the queue to empty")
        _wait(lambda: state()["succeeded"] == JOBS, 120, "every job's result")
    finally:
        for cluster in clusters:
            _kill(cluster, signal.SIGTERM)

    final = state()
    assert final == {
        "queued": 0,
        "ready": JOBS,
        "succeeded": JOBS,
        "failed": 0,
        "attempts": [[1, JOBS]],  # no job was ever run a second time
        "statements": JOBS,
    }
    # Each cluster's log has a line per job it ran: together, each statement once.
    runs: list[Counter[int]] = []
    for log in logs:
        events = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
        runs.append(
            Counter(
                e["task_args"][0]
                for e in events
                if e.get("task") == "statements.tasks.render_statement"
            )
        )
    both = runs[0] + runs[1]
    assert len(both) == JOBS
    assert set(both.values()) == {1}
    assert min(sum(r.values()) for r in runs) > 0, "one cluster did all the work"
    print(f"jobs per cluster: {[sum(r.values()) for r in runs]}")


# --- A cluster killed during generation, and again during sending ----------------

PERIOD = "2025-01"

PROGRESS = (
    "import json; from collections import Counter; from django_q.models import OrmQ; "
    "from statements.models import EmailLog, Statement; print(json.dumps({"
    "'queued': OrmQ.objects.count(), "
    "'statements': Counter(Statement.objects.values_list('status', flat=True)), "
    "'emails': Counter(EmailLog.objects.values_list('status', flat=True)), "
    "'claimed': list(EmailLog.objects.filter(status='sending').values_list('pk', 'to'))"
    "}), flush=True)"
)

# What a site holds about the month's statements and emails, as JSON.
FINAL = """
import json
from django_q.models import OrmQ, Task
from statements.models import EmailLog, Statement

statements = [
    {
        "number": s.number,
        "pi": s.pi.email,
        "project": s.project.project_id if s.project else "",
        "version": s.version,
        "current": s.superseded_at is None,
        "status": s.status,
        "list_total": str(s.list_total),
        "billed_total": str(s.billed_total),
        "exact_billed": str(s.exact_billed),
        "charge_count": s.charge_count,
        "content_hash": s.content_hash,
        "charges": sorted(item.charge.resource_id for item in s.items.all()),
        "pdf": s.pdf.name,
        "line_items": s.line_items.name,
        "pdf_sha256": s.pdf_sha256,
    }
    for s in Statement.objects.select_related("pi", "project")
    .prefetch_related("items__charge")
    .order_by("number")
]
emails = [
    {
        "to": e.to,
        "status": e.status,
        "resend": e.resend,
        "statements": sorted(item.statement.number for item in e.items.all()),
    }
    for e in EmailLog.objects.prefetch_related("items__statement").order_by("to", "id")
]
print(json.dumps({
    "queued": OrmQ.objects.count(),
    "failed_jobs": Task.objects.filter(success=False).count(),
    "statements": statements,
    "emails": emails,
}))
"""


@contextmanager
def _probe(env: dict[str, str], script: str) -> Iterator[Callable[[], Any]]:
    """ask() runs the one-line `script` (which prints JSON) in a `shell` kept open
    for the purpose, and returns what it printed: a poll costs a query, not a
    Django start-up."""
    shell = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-v",
            "0",
            "-c",
            f"import sys\nfor _ in sys.stdin: {script}",
        ],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert shell.stdin is not None
    assert shell.stdout is not None
    stdin, stdout = shell.stdin, shell.stdout

    def ask() -> Any:
        stdin.write("\n")
        stdin.flush()
        while not (line := stdout.readline()).startswith("{"):
            assert line, "the probe's shell exited"
        return json.loads(line)

    try:
        yield ask
    finally:
        stdin.close()
        shell.wait(timeout=30)


def _last_json(output: str) -> Any:
    return json.loads(output.strip().splitlines()[-1])


def _names(folder: Path) -> list[str]:
    try:
        return [entry.name for entry in os.scandir(folder)]
    except FileNotFoundError:
        return []


def _files(media: Path) -> dict[str, str]:
    """Every file under MEDIA_ROOT/statements, hidden ones too: name -> SHA-256."""
    return {
        path.relative_to(media).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in (media / "statements").rglob("*")
        if path.is_file()
    }


def _kill_when(
    cluster: subprocess.Popen[bytes], condition: Callable[[], bool], pause: float, what: str
) -> None:
    """SIGKILL the cluster `pause` seconds after `condition` first holds."""
    deadline = time.monotonic() + 120
    while not condition():
        assert cluster.poll() is None, "the cluster exited by itself"
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)
    time.sleep(pause)
    _kill(cluster)


def _received(inbox: Inbox) -> dict[str, dict[str, Any]]:
    """What each recipient got: subject, text, and the SHA-256 of each attachment."""
    got: dict[str, dict[str, Any]] = {}
    for message in inbox.messages:
        to = str(message["To"])
        assert to not in got, f"{to} received two emails"
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        got[to] = {
            "subject": str(message["Subject"]),
            "text": body.get_content(),
            "attachments": {
                str(part.get_filename()): hashlib.sha256(part.get_content()).hexdigest()
                for part in message.iter_attachments()
            },
        }
    return got


def test_a_cluster_killed_while_generating_and_while_sending_ends_as_a_clean_run(
    tmp_path: Path,
) -> None:
    """A month's statements rendered by a cluster SIGKILLed while a PDF is half
    written (after a random number of them), then emailed by a restarted cluster
    SIGKILLed after a random number of emails, and restarted again: the month
    ends as the same month generated and sent in one clean run on a second site.
    The kill points come from a seeded random; FAULT_SEED=n replays a run."""
    seed = int(os.environ.get("FAULT_SEED") or random.SystemRandom().randrange(2**32))
    print(f"FAULT_SEED={seed}")
    rng = random.Random(seed)
    focus = write_focus(tmp_path / f"aws_{PERIOD}.csv", _month_rows())
    inbox, clean_inbox = SlowInbox(), Inbox()
    # A job is handed out again Q_RETRY seconds after it was taken: shorter
    # than the defaults here, with room for the jobs a worker holds in advance.
    quick = {"Q_TIMEOUT": "4", "Q_RETRY": "8"}

    def month(run: Callable[..., str]) -> None:
        run("migrate", "--no-input", "-v", "0")
        run("ingest", str(focus), "--source", "aws")  # nothing to review
        run("sources", "set", "aws", "--credit-fund-org", "RCI-AWS", "--account-code", "740000")
        run("periods", "close", PERIOD)

    with (
        _running_site(tmp_path, "faulty", inbox, **quick) as run,
        _running_site(tmp_path, "clean", clean_inbox) as clean,
        ThreadPoolExecutor(max_workers=1) as background,
        ExitStack() as stack,
    ):

        def clean_run() -> dict[str, Any]:
            month(clean)
            done = json.loads(clean("generate", "--period", PERIOD, "--sync", "--send", "--json"))
            assert (len(done["statements"]), done["emails_sent"]) == (STATEMENTS, PIS)
            return _last_json(clean("shell", "-v", "0", "-c", FINAL))

        reference_run = background.submit(clean_run)
        month(run)
        env: dict[str, str] = run.env  # type: ignore[attr-defined]
        clean_env: dict[str, str] = clean.env  # type: ignore[attr-defined]
        media, clean_media = Path(env["MEDIA_ROOT"]), Path(clean_env["MEDIA_ROOT"])
        folder = media / "statements" / PERIOD
        last: dict[str, Any] = {}
        ask = stack.enter_context(_probe(env, PROGRESS))

        def progress() -> dict[str, Any]:
            last.update(ask())
            return last

        # Generating: one render job per statement; the cluster is killed after
        # k PDFs, the moment another is half written (its temporary file exists;
        # should no write be caught half way, ten PDFs later).
        queued = json.loads(run("generate", "--period", PERIOD, "--json"))
        assert len(queued["statements"]) == STATEMENTS
        assert queued["job_group"]
        k = rng.randint(1, STATEMENTS * 3 // 4)

        def writing() -> bool:
            names = _names(folder)
            pdfs = sum(1 for name in names if name.endswith(".pdf"))
            return pdfs >= k + 10 or (pdfs >= k and any(n.endswith(".tmp") for n in names))

        cluster = _start_cluster(env)
        try:
            _kill_when(cluster, writing, 0, f"{k} PDFs and one being written")
        finally:
            _kill(cluster)
        at_kill = _names(folder)
        stored_at_kill = sum(1 for name in at_kill if name.endswith(".pdf"))
        half_written = sum(1 for name in at_kill if name.endswith(".tmp"))
        assert stored_at_kill < STATEMENTS, "generation ended before the kill"

        cluster = _start_cluster(env)
        try:
            _wait(lambda: progress()["queued"] == 0, 120, "every render job")
            assert last["statements"] == {"ready": STATEMENTS}

            # Sending, queued while the restarted cluster runs; killed after j emails.
            sending = json.loads(run("generate", "--period", PERIOD, "--send", "--json"))
            assert sending["statements"] == []
            assert sending["job_group"]
            j = rng.randint(1, PIS * 3 // 4)
            _kill_when(
                cluster, lambda: len(inbox.messages) >= j, rng.uniform(0, 0.15), f"{j} emails"
            )
        finally:
            _kill(cluster)
        emailed_at_kill = len(inbox.messages)
        assert emailed_at_kill < PIS, "sending ended before the kill"

        cluster = _start_cluster(env)
        try:
            _wait(
                lambda: progress()["queued"] == 0 and sum(last["emails"].values()) == PIS,
                120,
                "every email job",
            )
        finally:
            _kill(cluster)  # idle now

        # A claim the kill interrupted is never resent by itself: the operator
        # looks the address up in the mail server's log and resolves it.
        claimed = last["claimed"]
        assert len(claimed) <= 2  # at most one in flight per worker
        arrived = {str(m["To"]) for m in inbox.messages}
        outcomes = {email_id: "sent" if to in arrived else "retry" for email_id, to in claimed}
        for email_id, outcome in outcomes.items():
            run("emails", "resolve", str(email_id), "--as", outcome, "--note", "mail server log")
        print(
            f"generation killed with {stored_at_kill} PDFs stored, {half_written} half "
            f"written; sending killed after {emailed_at_kill} emails; claims resolved: "
            f"{sorted(outcomes.values())}"
        )

        final = _last_json(run("shell", "-v", "0", "-c", FINAL))
        reference = reference_run.result()

    for state, site_media, site_inbox in (
        (final, media, inbox),
        (reference, clean_media, clean_inbox),
    ):
        assert (state["queued"], state["failed_jobs"]) == (0, 0)
        statements = state["statements"]
        assert len(statements) == STATEMENTS  # one version each
        assert {(s["status"], s["current"]) for s in statements} == {("ready", True)}
        assert {(e["status"], e["resend"]) for e in state["emails"]} == {("sent", False)}
        # Every file is a statement's, whole; every statement's file is there.
        assert _files(site_media) == {s["pdf"]: s["pdf_sha256"] for s in statements}
        # Each PI received one email, carrying the stored PDFs of their statements.
        received = _received(site_inbox)
        assert set(received) == {f"pi{n:02d}@example.edu" for n in range(PIS)}
        stored = {f"{s['number']}.pdf": s["pdf_sha256"] for s in statements}
        for got in received.values():
            assert got["attachments"].items() <= stored.items()

    # The same statements (numbers, totals, charges, content hashes: the PDFs
    # differ only by the generation time printed on them) and the same emails.
    def comparable(state: dict[str, Any]) -> dict[str, Any]:
        return {
            "statements": [
                {key: value for key, value in s.items() if key != "pdf_sha256"}
                for s in state["statements"]
            ],
            "emails": state["emails"],
        }

    assert comparable(final) == comparable(reference)

    def readable(box: Inbox) -> dict[str, Any]:
        return {
            to: (got["subject"], got["text"], sorted(got["attachments"]))
            for to, got in _received(box).items()
        }

    assert readable(inbox) == readable(clean_inbox)
