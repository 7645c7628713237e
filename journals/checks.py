"""System check on the journal settings' patterns (see billing.checks)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Warning as CheckWarning
from django.db import DEFAULT_DB_ALIAS, DatabaseError


@register(Tags.database)
def journal_patterns(
    app_configs: Any,  # noqa: ARG001 - Django passes app_configs by name
    databases: Any = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """The journal's fund/org and account patterns, if RE2 refuses them:
    exports (and closing a month) are refused until they are fixed."""
    if not databases or DEFAULT_DB_ALIAS not in databases:
        return []
    from billing.patterns import PatternError, compile_user_pattern
    from journals.models import JournalSettings

    try:
        saved = JournalSettings.objects.filter(pk=1).first()
    except DatabaseError:  # not migrated yet: migrate runs this first
        return []
    if saved is None:
        return []
    found: list[CheckMessage] = []
    for what, text in (
        ("fund/org pattern", saved.fund_org_pattern),
        ("account pattern", saved.account_pattern),
    ):
        if not text:
            continue
        try:
            compile_user_pattern(text)
        except PatternError as exc:
            found.append(
                CheckWarning(
                    f"the journal's {what} cannot run: {exc}",
                    hint="Fix it in the admin (Journal settings); until then exports and "
                    "closing a month are refused",
                    obj="journal settings",
                    id="journals.W001",
                )
            )
    return found
