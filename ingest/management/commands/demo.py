"""Load generated sample data so a new user sees a full month. Safe to re-run:
files already imported are skipped and existing records are left alone."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from billing.models import PI, Project
from billing.services import Actor, BillingError, source_for_slug
from ingest.sampledata import SOURCES, build_population, generate_sample_files
from ingest.services import IngestError, import_file

DEFAULT_MONTHS = ["2026-08", "2026-09", "2026-10"]
_NAME = re.compile(r"^(?P<source>.+)_(?P<period>\d{4}-\d{2})\.csv$")


class Command(BaseCommand):
    help = "Generate sample FOCUS files, import them and create a demo admin user."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output", type=Path, help="Where the sample files go (default: sample_data/)."
        )
        parser.add_argument("--user", default="demo", help="Actor recorded in the audit trail.")
        parser.add_argument(
            "--no-admin-user",
            action="store_true",
            help="Do not create the admin/admin superuser (it is only created with DEBUG on).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        output = Path(options["output"] or Path(settings.BASE_DIR) / "sample_data")
        actor = Actor(name=options["user"], channel="cli")
        paths = generate_sample_files(output, months=DEFAULT_MONTHS)
        created = 0
        for path in sorted(paths, key=lambda p: (_NAME.match(p.name) or _fail(p)).group("period")):
            match = _NAME.match(path.name) or _fail(path)
            try:
                result = import_file(
                    path=path,
                    source=source_for_slug(match.group("source")),
                    actor=actor,
                    expected_period=match.group("period"),
                    display_name=path.name,
                )
            except (IngestError, BillingError) as exc:
                raise CommandError(str(exc)) from None
            created += result.charges_created
        self._name_people()
        self.stdout.write(
            f"Demo data: {len(paths)} files from {', '.join(SOURCES)} for "
            f"{', '.join(DEFAULT_MONTHS)}; {created:,} new charges."
        )
        if not options["no_admin_user"]:
            self._admin_user()

    @transaction.atomic
    def _name_people(self) -> None:
        """PI names and departments, as an administrator would fill them in."""
        population = build_population()
        for person in population.pis:
            PI.objects.filter(email=person.email, name="").update(
                name=person.name, department=person.department.name
            )
        for project in population.projects:
            Project.objects.filter(project_id=project.project_id, title="").update(
                title=project.project_id.replace("-", " ").title(),
                default_fund_org=project.fund_org,
            )

    def _admin_user(self) -> None:
        if not settings.DEBUG:
            self.stdout.write("DEBUG is off: no demo admin user created.")
            return
        users = get_user_model().objects
        if not users.filter(username="admin").exists():
            users.create_superuser("admin", "admin@example.edu", "admin")
        host = os.environ.get("HOST", "127.0.0.1:8000")
        self.stdout.write(f"Log in at http://{host}/admin/ as admin / admin (demo only).")


def _fail(path: Path) -> re.Match[str]:
    raise CommandError(f"{path.name}: unexpected sample file name")
