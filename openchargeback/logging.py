"""Structured log lines: ``key=value`` pairs or one JSON object per record."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class StructuredFormatter(logging.Formatter):
    """Formats a record with its ``extra={...}`` fields, as key=value or JSON."""

    def __init__(self, fmt: str = "keyvalue") -> None:
        super().__init__()
        self.mode = fmt

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                fields[key] = value
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if self.mode == "json":
            return json.dumps(fields, default=str)
        return " ".join(f"{key}={_kv(value)}" for key, value in fields.items())


def _kv(value: object) -> str:
    text = str(value)
    if text == "" or any(ch in text for ch in ' ="\n'):
        return json.dumps(text)
    return text


# --- What the site logs: requests, commands, jobs, audit events -------------------

request_log = logging.getLogger("openchargeback.request")
command_log = logging.getLogger("openchargeback.command")
job_log = logging.getLogger("openchargeback.job")
audit_log = logging.getLogger("openchargeback.audit")

F = TypeVar("F", bound=Callable[..., Any])


def logged_job(func: F) -> F:
    """A django-q2 task that logs its end: task, arguments (ids), duration, outcome."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        name = f"{func.__module__}.{func.__qualname__}"
        try:
            result = func(*args, **kwargs)
        except Exception:
            job_log.exception(
                "job failed",
                extra={
                    "event": "job",
                    "task": name,
                    "task_args": list(args),
                    "outcome": "error",
                    "duration_ms": round((time.monotonic() - started) * 1000),
                },
            )
            raise
        job_log.info(
            "job done",
            extra={
                "event": "job",
                "task": name,
                "task_args": list(args),
                "outcome": "ok",
                "duration_ms": round((time.monotonic() - started) * 1000),
            },
        )
        return result

    return cast(F, run)


class RequestLogMiddleware:
    """One line per request: method, path, status, duration, user."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        started = time.monotonic()
        response = self.get_response(request)
        user = getattr(request, "user", None)
        request_log.info(
            "request",
            extra={
                "event": "request",
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.monotonic() - started) * 1000),
                "user": user.get_username() if user is not None and user.is_authenticated else "",
            },
        )
        return response
