"""Test data built directly in the database (model-bakery), for tests whose
point is what happens after an import: review, statements, journals.

Tests of the importer itself keep building FOCUS files (tests/conftest.py
``focus_row``/``write_focus``). Money is exact: amounts are Decimals or
decimal strings (never floats), stored as the model stores them (integer
nano-units, see billing.fields.MoneyField).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.db.models import Max
from django.utils import timezone
from model_bakery import baker

from billing import flags, summaries
from billing.audit import Actor
from billing.models import PI, BillingPeriod, Charge, Project, Source
from billing.periods import month_instants
from billing.review import charges_review
from billing.services import period_close, period_open
from ingest.focus.fingerprints import FINGERPRINT_VERSION
from ingest.models import Import
from statements.models import Statement, StatementCharge

Money = Decimal | str

# Who pays for a tests/conftest.py focus_row left to its defaults.
FOCUS_ROW_OWNER: dict[str, str] = {
    "pi": "ada@example.edu",
    "project": "proj-a",
    "fund_org": "NSF-BIO-2024",
}


def money(value: Money) -> Decimal:
    """An exact amount from a Decimal or a decimal string."""
    if isinstance(value, float):  # a float is a mistake here, as in the product
        raise TypeError("money must never be a float")
    return value if isinstance(value, Decimal) else Decimal(value)


def make_period(period: str = "2025-01", **fields: Any) -> BillingPeriod:
    """The BillingPeriod of a month, created open unless `fields` say otherwise
    (an existing one is returned unchanged, as are the ones below)."""
    found = BillingPeriod.objects.filter(period=period).first()
    return found or baker.make(BillingPeriod, period=period, **fields)


def make_source(slug: str = "aws", **fields: Any) -> Source:
    """The source `slug` (the seeded one when it exists)."""
    found = Source.objects.filter(slug=slug).first()
    return found or baker.make(Source, slug=slug, name=fields.pop("name", slug.upper()), **fields)


def make_pi(email: str = "ada@example.edu", **fields: Any) -> PI:
    """The PI with this (lowercase) email."""
    email = email.lower()
    found = PI.objects.filter(email=email).first()
    return found or baker.make(PI, email=email, name=fields.pop("name", ""), **fields)


def make_project(project_id: str = "proj-a", *, pi: PI | None = None, **fields: Any) -> Project:
    """The project `project_id`, owned by `pi` when it is created."""
    found = Project.objects.filter(project_id=project_id).first()
    return found or baker.make(
        Project,
        project_id=project_id,
        pi=pi,
        title=fields.pop("title", ""),
        default_fund_org=fields.pop("default_fund_org", ""),
        account_code=fields.pop("account_code", ""),
        **fields,
    )


def make_import(*, source: Source, period: str = "2025-01", **fields: Any) -> Import:
    """The Import record charges point to (a file that was never read).

    Its fingerprints are of the current version: an older one would make a
    later real import of the source treat the month as legacy data."""
    return baker.make(
        Import,
        source=source,
        file_name=fields.pop("file_name", f"{source.slug}_{period}.csv"),
        sha256=fields.pop("sha256", uuid.uuid4().hex * 2),
        stored_file="",
        file_size=0,
        expected_period=fields.pop("expected_period", ""),  # as an import not told the month
        periods=[period],
        actor=fields.pop("actor", "tester"),
        fingerprint_version=fields.pop("fingerprint_version", FINGERPRINT_VERSION),
        finished_at=fields.pop("finished_at", timezone.now()),
        **fields,
    )


def make_charge(
    *,
    period: BillingPeriod | str = "2025-01",
    source: Source | str = "aws",
    pi: PI | str | None = None,
    project: Project | str | None = None,
    billed: Money = "10.00",
    list_cost: Money | None = None,
    fund_org: str = "",
    service: str = "Amazon EC2",
    resource: str = "r-1",
    import_record: Import | None = None,
    **fields: Any,
) -> Charge:
    """One charge as an import leaves it (by default approved, no flags), with
    the period's summaries brought up to date as every charge writer does.

    `pi` and `project` may be given as an email and a project id (created if
    new; a new project belongs to the charge's PI). List, contracted and
    effective cost default to the billed cost, as for a FOCUS row without them,
    and the resource name to its id.
    """
    charge = _prepared_charge(
        period=period,
        source=source,
        pi=pi,
        project=project,
        billed=billed,
        list_cost=list_cost,
        fund_org=fund_org,
        service=service,
        resource=resource,
        import_record=import_record,
        **fields,
    )
    charge.save()
    summaries.rebuild([charge.period_id])
    return charge


def _prepared_charge(
    *,
    period: BillingPeriod | str,
    source: Source | str,
    pi: PI | str | None,
    project: Project | str | None,
    billed: Money,
    list_cost: Money | None,
    fund_org: str,
    service: str,
    resource: str,
    import_record: Import | None,
    **fields: Any,
) -> Charge:
    """make_charge's charge, not yet saved (its owners, period and import are)."""
    billed_cost = money(billed)  # refused before anything is written
    period_obj = period if isinstance(period, BillingPeriod) else make_period(period)
    source_obj = source if isinstance(source, Source) else make_source(source)
    pi_obj = make_pi(pi) if isinstance(pi, str) else pi
    project_obj = make_project(project, pi=pi_obj) if isinstance(project, str) else project
    start, _ = month_instants(period_obj.period)
    values: dict[str, Any] = {
        "list_cost": money(list_cost) if list_cost is not None else billed_cost,
        "contracted_cost": billed_cost,
        "effective_cost": billed_cost,
        "billing_currency": "USD",
        "charge_period_start": start,
        "charge_period_end": start.replace(hour=23, minute=59, second=59),
        "resource_name": resource,
        "review_state": Charge.ReviewState.APPROVED,
        "flags": 0,
        "flag_details": {},
        "tags": {},
        **fields,
    }
    for name in ("list_cost", "contracted_cost", "effective_cost"):
        values[name] = money(values[name])
    imported = import_record or make_import(source=source_obj, period=period_obj.period)
    if "line_number" not in values:  # the next line of its file (line 1 is the header)
        last = Charge.objects.filter(import_record=imported).aggregate(n=Max("line_number"))["n"]
        values["line_number"] = (last or 1) + 1
    return Charge(  # not baker: a month of many charges would spend its time here
        period=period_obj,
        source=source_obj,
        import_record=imported,
        fingerprint=uuid.uuid4().hex,
        occurrence=0,
        pi=pi_obj,
        project=project_obj,
        fund_org=fund_org,
        service_name=service,
        resource_id=resource,
        billed_cost=billed_cost,
        **values,
    )


def make_charges(
    *rows: dict[str, Any],
    source: Source | str = "aws",
    period: BillingPeriod | str = "2025-01",
    **common: Any,
) -> list[Charge]:
    """The charges of one import of one file, in its order: each row is
    make_charge's keywords over `common` (the same for every row).

    A charge's Tags are the PI, project and fund/org it was attributed to, as
    the FOCUS row said them, unless the row gives its own. The charges are
    inserted together and the summaries rebuilt once, as an import does, so
    a month of many charges costs a few queries, not a few per charge.
    """
    source_obj = source if isinstance(source, Source) else make_source(source)
    period_obj = period if isinstance(period, BillingPeriod) else make_period(period)
    imported = make_import(source=source_obj, period=period_obj.period)
    table = [
        {
            "pi": None,
            "project": None,
            "billed": "10.00",
            "list_cost": None,
            "fund_org": "",
            "service": "Amazon EC2",
            "resource": "r-1",
            "line_number": line,
            **common,
            **row,
        }
        for line, row in enumerate(rows, start=2)  # line 1 of the file is its header
    ]
    pis, projects = _owners(table)
    prepared = []
    for fields in table:
        pi, project = fields["pi"], fields["project"]
        fields.setdefault(
            "tags",
            {
                "pi_email": pi if isinstance(pi, str) else (pi.email if pi else ""),
                "project_id": project
                if isinstance(project, str)
                else (project.project_id if project else ""),
                "fund_org": fields["fund_org"],
            },
        )
        if isinstance(pi, str):
            fields["pi"] = pis[pi.lower()]
        if isinstance(project, str):
            fields["project"] = projects[project]
        prepared.append(
            _prepared_charge(source=source_obj, period=period_obj, import_record=imported, **fields)
        )
    made = Charge.objects.bulk_create(prepared)
    summaries.rebuild([period_obj.pk])
    return made


def _owners(table: list[dict[str, Any]]) -> tuple[dict[str, PI], dict[str, Project]]:
    """The PIs (by lowercase email) and projects the rows name, the new ones
    created in one insert per kind, in the order the rows first name them; a
    new project belongs to the PI of the first row naming it, as make_charge's."""
    emails = list(dict.fromkeys(r["pi"].lower() for r in table if isinstance(r["pi"], str)))
    pis = {p.email: p for p in PI.objects.filter(email__in=emails)}
    for pi in PI.objects.bulk_create([PI(email=e, name="") for e in emails if e not in pis]):
        pis[pi.email] = pi
    firsts: dict[str, PI | None] = {}
    for r in table:
        if isinstance(r["project"], str) and r["project"] not in firsts:
            owner = r["pi"]
            firsts[r["project"]] = pis[owner.lower()] if isinstance(owner, str) else owner
    projects = {p.project_id: p for p in Project.objects.filter(project_id__in=list(firsts))}
    new = [Project(project_id=k, pi=v) for k, v in firsts.items() if k not in projects]
    for project in Project.objects.bulk_create(new):
        projects[project.project_id] = project
    return pis, projects


def make_statement(
    *,
    pi: PI | str = "ada@example.edu",
    project: Project | str | None = None,
    period: BillingPeriod | str = "2025-01",
    billed_total: Money = "0.00",
    list_total: Money | None = None,
    exact_billed: Money | None = None,
    charges: list[Charge] | None = None,
    **fields: Any,
) -> Statement:
    """A current statement version (ready, no PDF) covering `charges`.

    The totals are what the caller says (list defaults to billed, the exact
    billed amount to the billed total; the discount is list minus billed):
    a test of how statements are computed generates them instead.
    """
    period_obj = period if isinstance(period, BillingPeriod) else make_period(period)
    pi_obj = make_pi(pi) if isinstance(pi, str) else pi
    project_obj = make_project(project, pi=pi_obj) if isinstance(project, str) else project
    billed = money(billed_total)
    listed = money(list_total) if list_total is not None else billed
    covered = charges or []
    version = fields.pop("version", 1)
    sequence = fields.pop("sequence", None)
    if sequence is None:
        last = Statement.objects.filter(period=period_obj).aggregate(n=Max("sequence"))["n"]
        sequence = (last or 0) + 1
    statement = baker.make(
        Statement,
        period=period_obj,
        pi=pi_obj,
        project=project_obj,
        sequence=sequence,
        version=version,
        number=f"{period_obj.period}-{sequence:04d}-v{version}",
        list_total=listed,
        discount_total=listed - billed,
        billed_total=billed,
        exact_billed=money(exact_billed) if exact_billed is not None else billed,
        charge_count=len(covered),
        content_hash=fields.pop("content_hash", uuid.uuid4().hex * 2),
        status=fields.pop("status", Statement.Status.READY),
        generated_at=fields.pop("generated_at", timezone.now()),
        generated_by=fields.pop("generated_by", "tester"),
        pdf="",
        line_items="",
        **fields,
    )
    StatementCharge.objects.bulk_create(
        [StatementCharge(statement=statement, charge=charge) for charge in covered]
    )
    return statement


def make_closed_month(*, actor: Actor, period: str = "2025-01") -> str:
    """The month of tests/conftest.py's ``month`` fixture, without the importer:
    opened by its first import of one aws file, ada's proj-a (three charges)
    and proj-b, bob's proj-c, one charge with no owner rejected, then closed."""
    period_open(period=period, actor=actor, note="first import")
    ada, bob = {"pi": "ada@example.edu"}, {"pi": "bob@example.edu", "project": "proj-c"}
    charges = make_charges(
        {"resource": "vm-1", "billed": "10.005", "list_cost": "12.004"},
        {"resource": "vm-2", "billed": "0.004"},
        {"resource": "gpu", "service": "HPC GPU", "billed": "0", "list_cost": "400"},
        {"resource": "db", "service": "Amazon RDS", "billed": "80.75", **ada, "project": "proj-b"},
        {"resource": "bob-vm", "billed": "3.333", **bob},
        {
            "resource": "orphan",
            "billed": "5.00",
            "pi": None,
            "project": None,
            "flags": flags.to_mask(["missing_pi", "missing_project"]),
            "review_state": Charge.ReviewState.PENDING,
        },
        period=period,
        **FOCUS_ROW_OWNER,
    )
    imported = charges[0].import_record
    assert imported is not None
    imported.rows_read = imported.charges_created = len(charges)  # as the importer reports
    imported.billed_total = sum((c.billed_cost for c in charges), Decimal(0))
    imported.flagged_count, imported.flag_counts = 1, {"missing_pi": 1, "missing_project": 1}
    imported.save()
    charges_review(
        charges=Charge.objects.filter(resource_id="orphan"), action="reject", actor=actor, note="x"
    )
    period_close(period=period, actor=actor)
    return period
