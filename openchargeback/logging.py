"""Structured log lines: ``key=value`` pairs or one JSON object per record."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

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
