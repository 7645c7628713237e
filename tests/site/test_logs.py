"""Structured logs: one line per request, command, job and audit event, as
key=value or JSON, at the configured level."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from openchargeback import schedules

ROOT = Path(__file__).resolve().parents[2]


def _cli(tmp_path: Path, *args: str, fmt: str = "json") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "LOG_FILE"}}
    env.update(
        DEBUG="true",
        DATABASE_URL=f"sqlite:///{tmp_path / 'logs.sqlite3'}",
        OPENCHARGEBACK_INSTANCE_DIR=str(tmp_path),
        LOG_LEVEL="INFO",
        LOG_FORMAT=fmt,
    )
    return subprocess.run(
        [sys.executable, "-m", "openchargeback.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _events(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_commands_and_audit_events_log_json_lines(tmp_path: Path) -> None:
    assert _cli(tmp_path, "migrate", "--no-input", "-v", "0").returncode == 0
    done = _cli(tmp_path, "periods", "open", "2025-05", "--user", "ops")
    assert done.returncode == 0, done.stderr
    events = _events(done.stderr)
    audit = [e for e in events if e.get("event") == "audit"]
    assert [(e["action"], e["actor"], e["channel"]) for e in audit] == [
        ("period.create", "ops", "cli")
    ]
    [command] = [e for e in events if e.get("event") == "command"]
    assert command["command"] == "periods"
    assert command["status"] == 0
    assert command["level"] == "info"
    assert "duration_ms" in command
    assert "time" in command

    refused = _cli(tmp_path, "periods", "finalize", "2025-05", "--yes", fmt="keyvalue")
    assert refused.returncode == 1
    line = next(x for x in refused.stderr.splitlines() if "event=command" in x)
    assert "command=periods" in line
    assert "status=1" in line


def test_requests_are_logged(db: None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="openchargeback.request"):
        Client().get("/admin/", HTTP_HOST="127.0.0.1")
    [record] = [r for r in caplog.records if r.name == "openchargeback.request"]
    assert (record.method, record.path, record.status, record.user) == (  # type: ignore[attr-defined]
        "GET",
        "/admin/",
        302,
        "",
    )


def test_jobs_are_logged(db: None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="openchargeback.job"):
        schedules.run_command("env_reference")
        with pytest.raises(Exception, match="Unknown command"):
            schedules.run_command("no_such_command")
    outcomes = [
        (r.task, r.outcome)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "openchargeback.job"
    ]
    assert outcomes == [
        ("openchargeback.schedules.run_command", "ok"),
        ("openchargeback.schedules.run_command", "error"),
    ]
