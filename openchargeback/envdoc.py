"""The environment reference (docs/environment.md), generated from .env.example
so the two never disagree: ``openchargeback env_reference`` prints it."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

_VARIABLE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")
HEADER = """# Environment reference

Generated from [.env.example](../.env.example) by `openchargeback
env_reference > docs/environment.md` (`make env-docs`); a test keeps the two
the same. Settings are read from the environment, from `.env` next to
`manage.py`, or from the file named by `OPENCHARGEBACK_ENV_FILE` (handy for
cron and systemd: `OPENCHARGEBACK_ENV_FILE=/etc/openchargeback/env`).

| Variable | Example or default | What it does |
|---|---|---|
"""


def env_example() -> Path:
    return Path(settings.BASE_DIR) / ".env.example"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").strip()


def render(text: str) -> str:
    """Markdown: one row per variable with the comment lines above it (a
    variable right after another shares its description)."""
    rows = []
    comment: list[str] = []
    last = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            comment, last = [], ""
            continue
        if line.startswith("#"):
            comment.append(line.lstrip("#").strip())
            continue
        match = _VARIABLE.match(line)
        if not match:
            continue
        name, value = match.groups()
        if comment:
            last = " ".join(comment)
            comment = []
        value_cell = f"`{_cell(value)}`" if value else "(empty)"
        rows.append(f"| `{name}` | {value_cell} | {_cell(last)} |")
    return HEADER + "\n".join(rows) + "\n"
