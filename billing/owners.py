"""Creating PIs and projects met for the first time (an import's tags, an
account mapping file): one insert per kind however many there are, and one
audit event per new row. Callers decide what is new (they hold the lookups);
creating an existing email or project id again fails on the unique key."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from billing.audit import Actor, audit_created
from billing.models import PI, Project


def pis_create(*, emails: Iterable[str], actor: Actor, reason: str = "") -> list[PI]:
    """New PIs by email, in the order given; each audited as ``pi.create``."""
    created = PI.objects.bulk_create([PI(email=email) for email in emails])
    audit_created(
        actor=actor,
        action="pi.create",
        records=[(pi, {"email": pi.email}) for pi in created],
        reason=reason,
    )
    return created


def projects_create(
    *, owners: Mapping[str, tuple[int | None, str]], actor: Actor, reason: str = ""
) -> list[Project]:
    """New projects, project id -> (its PI's id and email, or ``None`` and
    ``""``), in the order given; each audited as ``project.create``."""
    created = Project.objects.bulk_create(
        [Project(project_id=code, pi_id=pi_id) for code, (pi_id, _email) in owners.items()]
    )
    audit_created(
        actor=actor,
        action="project.create",
        records=[
            (project, {"project_id": project.project_id, "pi": owners[project.project_id][1]})
            for project in created
        ],
        reason=reason,
    )
    return created
