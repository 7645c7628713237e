"""Load generated sample data so a new user sees a full month. Safe to re-run:
files already imported are skipped and existing records are left alone.

Cloud and central-IT sources come as FOCUS files; HPC and research storage come
as Slurm accounting and quota reports, priced by the converters with the demo's
rate card and account mappings, so the statements show all of them side by side."""

from __future__ import annotations

import os
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandParser
from django.db import transaction

from billing.audit import Actor, audit
from billing.blockers import blocked
from billing.commands import BillingCommand
from billing.exchange import exchange_rate_set
from billing.models import PI, BillingPeriod, Charge, Project, Source
from billing.patterns import compile_user_pattern
from billing.review import charges_fix_attribution, charges_review
from billing.services import period_close, source_for_slug, source_set
from ingest.focus.services import DeliveryFile, delivery_import
from ingest.models import Rate
from ingest.usage.converters import (
    Conversion,
    conversion_import,
    slurm_conversion,
    storage_conversion,
)
from ingest.usage.mapping_files import account_mapping_import
from ingest.usage.rates import rate_create
from ingest.usage.sacct import SacctOptions
from journals.models import JournalExport, JournalSettings
from journals.selectors import missing_journal_export
from journals.services import journal_export
from openchargeback.auth import DEMO_PASSWORD, DEMO_USERNAME
from openchargeback.demo.institution import build_population
from openchargeback.demo.onprem import DEMO_RATES
from openchargeback.demo.sampledata import (
    generate_sample_files,
    sample_file_name,
    sample_file_names,
)
from openchargeback.demo.sources import (
    AMORTISED_SOURCE,
    CLOUD_MAPPINGS_FILE,
    COMMITMENT_FUND_ORG,
    COMMITMENT_PI,
    COMMITMENT_PROJECT,
    CONVERTED_SOURCES,
    FOCUS_SOURCES,
    MAPPINGS_FILE,
)
from openchargeback.ledger import check_ledger
from openchargeback.money import format_money
from statements.services import statements_generate

DEFAULT_MONTHS = ["2026-08", "2026-09", "2026-10"]
DEMO_EUR_RATE, DEMO_EUR_NOTE = "1.0850", "demo: USD per EUR, month-end reference rate"


class Command(BillingCommand):
    help = (
        "Generate sample data (FOCUS files, Slurm and storage usage), import and convert "
        "it, run the first month-end and create a demo admin user."
    )

    takes_user = True
    user_default = "demo"
    user_help = "Actor recorded in the audit trail."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output", type=Path, help="Where the sample files go (default: sample_data/)."
        )
        parser.add_argument(
            "--no-admin-user",
            action="store_true",
            help="Do not create the admin/admin superuser (it is only created with DEBUG on).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        output = Path(options["output"] or Path(settings.BASE_DIR) / "sample_data")
        actor = Actor(name=options["user"], channel="cli")
        paths = generate_sample_files(output, months=DEFAULT_MONTHS)
        created = converted_rows = 0
        listed = billed = Decimal(0)
        unmapped: set[str] = set()
        rates = self._rate_card(actor)
        self._commitments(actor)
        # Slurm accounts and quotas; then the untagged cloud projects' sub-accounts,
        # before the cloud imports, so their rows arrive attributed.
        mappings = sum(
            account_mapping_import(path=output / name, actor=actor, display_name=name).created
            for name in (MAPPINGS_FILE, CLOUD_MAPPINGS_FILE)
        )
        for month in DEFAULT_MONTHS:
            for slug in FOCUS_SOURCES:
                # A month in part files (AWS) is one delivery: one command, one
                # transaction, identical rows counted across the parts.
                delivery = delivery_import(
                    files=[
                        DeliveryFile(path=output / name, display_name=name)
                        for name in sample_file_names(slug, month)
                    ],
                    source=source_for_slug(slug),
                    actor=actor,
                    expected_period=month,
                )
                created += delivery.charges_created
            for slug in CONVERTED_SOURCES:
                conversion = self._convert(slug, output / sample_file_name(slug, month), month)
                converted_rows += len(conversion.rows)
                listed += conversion.list_cost
                billed += conversion.billed_cost
                unmapped.update(conversion.unmapped)
                closed = BillingPeriod.objects.filter(period=month).exclude(
                    status=BillingPeriod.Status.OPEN
                )
                if closed.exists():
                    continue  # imported before the month was closed; kept as it is
                result = conversion_import(
                    conversion=conversion, source=source_for_slug(slug), actor=actor
                )
                created += result.charges_created
        self._name_people()
        self.stdout.write(
            f"Demo data: {len(paths)} files for {', '.join(DEFAULT_MONTHS)} (FOCUS from "
            f"{', '.join(FOCUS_SOURCES)}; Slurm and quota reports converted for "
            f"{', '.join(CONVERTED_SOURCES)}: {converted_rows:,} rows, list "
            f"{format_money(listed)}, billed {format_money(billed)}, unmapped and flagged: "
            f"{', '.join(sorted(unmapped)) or 'none'}); {created:,} new charges; "
            f"{rates} rates and {mappings} account mappings added."
        )
        self._month_end(DEFAULT_MONTHS[0], actor)
        if not options["no_admin_user"]:
            self._admin_user()

    @transaction.atomic
    def _commitments(self, actor: Actor) -> None:
        """The amortised source's reservations are bought by central IT: their purchase
        and unused hours go to its commitment project, as a site sets it up once (before
        the source's first import: the basis applies to rows as they are imported)."""
        name, email = COMMITMENT_PI
        pi, created = PI.objects.get_or_create(
            email=email, defaults={"name": name, "department": "Central IT"}
        )
        if created:
            audit(actor=actor, action="pi.create", obj=pi, after={"email": email})
        project, created = Project.objects.get_or_create(
            project_id=COMMITMENT_PROJECT,
            defaults={
                "pi": pi,
                "title": "Cloud commitments (reservations, savings plans)",
                "default_fund_org": COMMITMENT_FUND_ORG,
            },
        )
        if created:
            audit(
                actor=actor,
                action="project.create",
                obj=project,
                after={"project_id": COMMITMENT_PROJECT},
            )
        source = Source.objects.filter(slug=AMORTISED_SOURCE).first()
        if source is None or source.cost_basis != "billed" or source.imports.exists():
            return  # set up already, or the site chose otherwise
        source_set(
            slug=AMORTISED_SOURCE,
            actor=actor,
            cost_basis="amortised",
            commitment_handling="central",
            commitment_project_id=project.pk,
        )

    def _rate_card(self, actor: Actor) -> int:
        """The demo's rate card, unless the site already has one."""
        if Rate.objects.exists():
            return 0
        with transaction.atomic():
            for spec in DEMO_RATES:
                rate_create(actor=actor, **asdict(spec))
        return len(DEMO_RATES)

    def _convert(self, slug: str, path: Path, month: str) -> Conversion:
        """Price a month of the HPC (sacct) or storage (quota report) sample."""
        if slug == "storage":
            return storage_conversion(
                path=path, name=path.name, period=month, tier=settings.OPENCHARGEBACK_STORAGE_TIER
            )
        options = SacctOptions(
            billable_states=frozenset(settings.OPENCHARGEBACK_SLURM_BILLABLE_STATES),
            failed_min_seconds=settings.OPENCHARGEBACK_SLURM_FAILED_MIN_MINUTES * 60,
        )
        with path.open(encoding="utf-8", newline="") as fh:
            return slurm_conversion(lines=fh, name=path.name, period=month, options=options)

    def _month_end(self, period: str, actor: Actor) -> None:
        """The first month's cycle as a team would run it: review, close, statements, email.

        The later months stay open with their flagged charges, for you to review.
        """
        self._accounting(actor)
        # The sample's EUR rows (Azure and GCP in Europe) are billed at each month's rate.
        for month in DEFAULT_MONTHS:
            exchange_rate_set(
                currency="EUR", period=month, rate=DEMO_EUR_RATE, note=DEMO_EUR_NOTE, actor=actor
            )
        if BillingPeriod.objects.filter(period=period, status=BillingPeriod.Status.OPEN).exists():
            pending = Charge.objects.filter(period__period=period, review_state="pending")
            # A fund/org the ledger cannot take: the project's own fund/org instead.
            pattern = compile_user_pattern(JournalSettings.load().fund_org_pattern)
            bad = {
                f
                for f in pending.values_list("fund_org", flat=True).distinct()
                if not pattern.fullmatch(f)
            }
            for project in Project.objects.exclude(default_fund_org=""):
                charges_fix_attribution(
                    charges=pending.filter(project=project, fund_org__in=bad),
                    actor=actor,
                    fund_org=project.default_fund_org,
                    note="fund/org corrected to the project's",
                )
            # A PI's name typed where the email belongs: the reviewer knows who it is.
            for pi in PI.objects.exclude(name=""):
                charges_fix_attribution(
                    charges=pending.filter(pi=None, tags__pi_email=pi.name),
                    actor=actor,
                    pi_email=pi.email,
                    note="PI named instead of emailed in the tags",
                )
            # The project is known and its PI pays (a missing PI tag, or a project
            # tagged with another PI): the reviewer confirms the project's PI.
            for project in Project.objects.filter(
                pk__in=blocked(pending).exclude(project__pi=None).values("project_id")
            ).select_related("pi"):
                assert project.pi is not None  # (the filter above)
                charges_fix_attribution(
                    charges=blocked(pending).filter(project=project),
                    actor=actor,
                    pi_email=project.pi.email,
                    note="billed to the project's PI",
                )
            # Who pays is still unknown or wrong: not approvable as is; rejected
            # here (a real team may instead fix them once the owner answers).
            charges_review(
                charges=blocked(pending),
                action="reject",
                actor=actor,
                note="no valid owner: raised with the account holder",
            )
            charges_review(
                charges=pending, action="approve", actor=actor, note="checked with the PIs"
            )
            period_close(period=period, actor=actor, note="demo month-end")
        obj = BillingPeriod.objects.get(period=period)
        if obj.status == BillingPeriod.Status.FINALIZED:
            self.stdout.write(f"Month-end {period}: finalized already.")
            return
        result = statements_generate(period=period, actor=actor, sync=True, send=True)
        journal = JournalExport.objects.filter(period=obj).first()
        if missing_journal_export(obj) or journal is None:
            journal = journal_export(period=period, format="gl", actor=actor)
        ledger = check_ledger(period=period)
        self.stdout.write(
            f"Month-end {period}: period closed, {len(result.created):,} statements generated "
            f"({len(result.unchanged):,} unchanged), {result.emails_sent:,} emails sent"
            + (f" to {settings.EMAIL_FILE_PATH}" if hasattr(settings, "EMAIL_FILE_PATH") else "")
            + f"; GL journal {journal.file.name} (debits {journal.debit_total:,.2f} = credits "
            f"{journal.credit_total:,.2f}; ledger "
            + ("balanced" if not ledger.problems else "; ".join(ledger.problems))
            + ")."
        )

    def _accounting(self, actor: Actor) -> None:
        """Where each source's recoveries are credited, as a site sets it up once."""
        accounts = {
            "aws": ("RCI-CLOUD", "740100"),
            "azure": ("RCI-CLOUD", "740100"),
            "gcp": ("RCI-CLOUD", "740100"),
            "openai": ("RCI-CLOUD", "740100"),
            "hpc": ("RCI-HPC", "740200"),
            "storage": ("RCI-STORAGE", "740300"),
            "it_storage": ("RCI-STORAGE", "740300"),
        }
        for source in Source.objects.filter(slug__in=accounts, credit_fund_org=""):
            credit, account = accounts[source.slug]
            source_set(
                slug=source.slug,
                actor=actor,
                credit_fund_org=credit,
                account_code=source.account_code or account,
            )

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
        # The login refuses this password whenever DEBUG is off
        # (openchargeback.auth), should the demo database be kept.
        users = get_user_model().objects
        if not users.filter(username=DEMO_USERNAME).exists():
            users.create_superuser(DEMO_USERNAME, "admin@example.edu", DEMO_PASSWORD)
        host = os.environ.get("HOST", "127.0.0.1:8000")
        self.stdout.write(
            f"Log in at http://{host}/admin/ as {DEMO_USERNAME} / {DEMO_PASSWORD} "
            "(demo only: refused with DEBUG off)."
        )
