"""System checks on saved settings, run by `openchargeback check --database default`
and before `openchargeback migrate` (they read the database, so plain `check` skips them)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Warning as CheckWarning
from django.db import DEFAULT_DB_ALIAS, DatabaseError


@register(Tags.database)
def saved_patterns(
    app_configs: Any,  # noqa: ARG001 - Django passes app_configs by name
    databases: Any = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """Enabled patterns saved before patterns ran on RE2 (or written to the
    database directly) that RE2 refuses: imports skip them until fixed."""
    if not databases or DEFAULT_DB_ALIAS not in databases:
        return []
    from billing.selectors import broken_patterns

    try:
        found = broken_patterns()
    except DatabaseError:  # not migrated yet: migrate runs this first
        return []
    return [
        CheckWarning(
            broken.text(),
            hint="Fix or disable it in the admin; until then imports skip it"
            if broken.screens_charges
            else "Fix or clear it in the admin; until then files are not detected by it",
            id="billing.W001",
        )
        for broken in found
    ]
