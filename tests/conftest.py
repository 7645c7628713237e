"""Shared fixtures: temporary media root, default settings, FOCUS file builders."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from billing.audit import Actor
from billing.models import Charge, InstitutionSettings, Source
from billing.review import charges_review
from billing.seed import defaults_seed
from billing.services import period_close
from ingest.focus.services import file_import
from tests.factories import make_closed_month

FOCUS_COLUMNS = [
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ListCost",
    "ContractedCost",
    "BilledCost",
    "EffectiveCost",
    "BillingCurrency",
    "ResourceId",
    "ResourceName",
    "ServiceName",
    "Tags",
]


@pytest.fixture(autouse=True)
def _media_root(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _fresh_institution_settings() -> Iterator[None]:
    """The display cache of institution settings never outlives a test."""
    InstitutionSettings._cache = None
    yield
    InstitutionSettings._cache = None


def user_in(role: str, password: str = "x") -> Any:  # noqa: S107 - test users
    """A staff user in the group `role` (user name: the role, ``_`` for spaces)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user(
        role.replace(" ", "_"), password=password, is_staff=True
    )
    user.groups.add(Group.objects.get(name=role))
    return get_user_model().objects.get(pk=user.pk)  # a fresh permission cache


def role_client(role: str) -> Client:
    """A test client logged in as a new user in the group `role`."""
    client = Client()
    client.force_login(user_in(role))
    return client


@pytest.fixture
def live_db(transactional_db: None) -> Iterator[None]:
    """A committed database (for a live server), emptied safely afterwards.

    The flush after a transactional test deletes every row, which the
    append-only and finalized-period triggers refuse on SQLite (PostgreSQL
    flushes with TRUNCATE, which row triggers do not see). The protected
    tables are emptied here with their triggers lifted for that moment only.
    """
    yield
    if connection.vendor != "sqlite":
        return
    # children before parents (foreign keys are enforced)
    tables = (
        "journals_journalexport",
        "statements_emailstatement",
        "statements_emaillog",
        "statements_statementcharge",
        "statements_statement",
        "billing_auditevent",
        "billing_chargesummary",
        "billing_charge",
        "billing_exchangerate",
        "billing_billingperiod",
    )
    marks = ", ".join(["%s"] * len(tables))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN ({marks})",  # noqa: S608
            tables,
        )
        triggers = cursor.fetchall()
        for name, _sql in triggers:
            cursor.execute(f'DROP TRIGGER "{name}"')
        for table in tables:
            cursor.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
        for _name, sql in triggers:
            cursor.execute(sql)


def seed_with_accounting() -> None:
    """Default sources, tag mapping and rules, with the accounting a site sets
    up before its first close: every default source credits its own fund/org,
    and charges with no account code book to 740000."""
    from journals.models import JournalSettings

    defaults_seed()
    for source in Source.objects.filter(credit_fund_org=""):
        source.credit_fund_org = "RCI-" + source.slug.upper().replace("_", "-")
        source.save(update_fields=["credit_fund_org"])
    JournalSettings.objects.update_or_create(pk=1, defaults={"default_account": "740000"})


@pytest.fixture
def defaults(db: None) -> None:
    """The defaults and their accounting (re-seeded after a flush)."""
    seed_with_accounting()


@pytest.fixture
def actor() -> Actor:
    return Actor(name="tester", channel="cli")


def tags(**values: Any) -> str:
    return json.dumps(values)


def focus_row(
    *,
    period: str = "2025-01",
    billed: str = "10.00",
    list_cost: str | None = None,
    resource: str = "r-1",
    service: str = "Amazon EC2",
    currency: str = "USD",
    tag_text: str | None = None,
    pi: str = "ada@example.edu",
    project: str = "proj-a",
    fund_org: str = "NSF-BIO-2024",
    day: int = 1,
) -> dict[str, str]:
    start = f"{period}-01T00:00:00Z"
    return {
        "BillingPeriodStart": start,
        "BillingPeriodEnd": start,
        "ChargePeriodStart": f"{period}-{day:02d}T00:00:00Z",
        "ChargePeriodEnd": f"{period}-{day:02d}T23:59:59Z",
        "ListCost": list_cost if list_cost is not None else billed,
        "ContractedCost": billed,
        "BilledCost": billed,
        "EffectiveCost": billed,
        "BillingCurrency": currency,
        "ResourceId": resource,
        "ResourceName": resource,
        "ServiceName": service,
        "Tags": tag_text
        if tag_text is not None
        else tags(pi_email=pi, project_id=project, fund_org=fund_org),
    }


def write_focus(
    path: Path, rows: Sequence[dict[str, str]], columns: Sequence[str] = FOCUS_COLUMNS
) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


@pytest.fixture
def focus_file(tmp_path: Path) -> Callable[..., Path]:
    """focus_file(rows, name=...) writes a FOCUS CSV in a temporary directory."""

    def make(
        rows: Sequence[dict[str, str]],
        name: str = "aws_2025-01.csv",
        columns: Sequence[str] = FOCUS_COLUMNS,
    ) -> Path:
        return write_focus(tmp_path / name, rows, columns)

    return make


def pytest_report_header(config: pytest.Config) -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    return f"database: {db['ENGINE'].rsplit('.', 1)[-1]} {db.get('HOST') or ''}".rstrip()


@pytest.fixture
def month(defaults: None, actor: Actor) -> str:
    """A closed 2025-01: ada has proj-a (3 charges) and proj-b, bob proj-c; one rejected.

    Built without the importer (tests/factories.py): the tests using it are
    about what follows an import. A test about the import itself imports."""
    return make_closed_month(actor=actor)


@pytest.fixture
def imported_month(defaults: None, focus_file: Callable[..., Path], actor: Actor) -> str:
    """The closed 2025-01 of ``month``, imported from a FOCUS file: for the tests
    that need what only the importer leaves (the kept copy of the file)."""
    rows = [
        focus_row(resource="vm-1", billed="10.005", list_cost="12.004", project="proj-a"),
        focus_row(resource="vm-2", billed="0.004", list_cost="0.004", project="proj-a"),
        focus_row(resource="gpu", service="HPC GPU", billed="0", list_cost="400", project="proj-a"),
        focus_row(resource="db", service="Amazon RDS", billed="80.75", project="proj-b"),
        focus_row(resource="bob-vm", pi="bob@example.edu", billed="3.333", project="proj-c"),
        focus_row(resource="orphan", pi="", project="", billed="5.00"),
    ]
    file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)
    charges_review(
        charges=Charge.objects.filter(resource_id="orphan"), action="reject", actor=actor, note="x"
    )
    charges_review(
        charges=Charge.objects.filter(review_state="pending"), action="approve", actor=actor
    )
    period_close(period="2025-01", actor=actor)
    return "2025-01"


@contextmanager
def fresh_database_url(tmp_path: Path, label: str) -> Iterator[str]:
    """A new, empty database for a site run in subprocesses, on the backend the
    tests use (a SQLite file, or a PostgreSQL database dropped afterwards)."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        yield f"sqlite:///{tmp_path / f'{label}.sqlite3'}"
        return
    import psycopg

    name = f"ocb_{label}_{uuid.uuid4().hex[:10]}"
    dsn = {
        "host": db["HOST"],
        "port": db["PORT"] or 5432,
        "user": db["USER"],
        "password": db["PASSWORD"],
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **dsn) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    try:
        yield f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{name}"
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **dsn) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                [name],
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
