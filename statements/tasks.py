"""django-q2 task entry points: small, id-based, safe to run twice."""

from __future__ import annotations

from statements import services


def render_statement(statement_id: int) -> None:
    services.render_statement(statement_id)
