"""Real django-q2 workers: statements rendered and emailed by `openchargeback
qcluster`, a cluster killed mid-batch and restarted, and no PI ever emailed twice.

Everything runs as a user would run it, in subprocesses against a database
of its own (a SQLite file, or a fresh database on the PostgreSQL server the
suite uses) and a real SMTP server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import focus_row, fresh_database_url, write_focus
from tests.test_statement_emails import Inbox, _free_port

pytestmark = pytest.mark.slow

PIS = 40
STATEMENTS = 100


class SlowInbox(Inbox):
    """A mail server that takes a moment per message, so a batch can be interrupted."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import asyncio

        await asyncio.sleep(0.1)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database_url(tmp_path, "workers") as url:
        yield url


@pytest.fixture
def site(tmp_path: Path, database_url: str) -> Iterator[tuple[Callable[..., str], SlowInbox]]:
    """run(*args) runs an openchargeback command for a fresh site; its SMTP inbox."""
    inbox = SlowInbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": database_url,
        "OPENCHARGEBACK_INSTANCE_DIR": str(tmp_path / "instance"),
        "EMAIL_URL": f"smtp://127.0.0.1:{port}",
        "EMAIL_TIMEOUT": "5",
        "Q_WORKERS": "2",
        "Q_TIMEOUT": "8",
        "Q_RETRY": "10",
        "LOG_LEVEL": "WARNING",
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
    yield run, inbox
    controller.stop()


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
    rows = [
        focus_row(
            resource=f"r-{k}",
            pi=f"pi{k % PIS:02d}@example.edu",
            project=f"proj-{k:03d}",
            billed=f"{k}.{k % 100:02d}",
        )
        for k in range(STATEMENTS)
    ]
    run("migrate", "--no-input", "-v", "0")
    run("ingest", str(write_focus(tmp_path / "aws_2025-01.csv", rows)), "--source", "aws")
    run("review", "approve", "--period", "2025-01")
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
            billed=f"{k % 97}.{k % 100:02d}",
        )
        for k in range(JOBS)
    ]
    run("migrate", "--no-input", "-v", "0")
    run("ingest", str(write_focus(tmp_path / "aws_2025-01.csv", rows)), "--source", "aws")
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
    assert len(both) == JOBS and set(both.values()) == {1}
    assert min(sum(r.values()) for r in runs) > 0, "one cluster did all the work"
    print(f"jobs per cluster: {[sum(r.values()) for r in runs]}")
