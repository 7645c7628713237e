"""The rate card and account mappings (ingest.usage.rates, .mappings and
.mapping_files): locks from finalized months, superseding, audit, the mapping
CSV import/export in services, the admin and the `account_mappings` command."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from billing.audit import Actor
from billing.errors import BillingError
from billing.models import PI, AuditEvent, BillingPeriod, Project
from billing.roles import BILLING_ADMIN, REVIEWER, VIEWER
from ingest.models import AccountMapping, Rate
from ingest.usage.mapping_files import account_mapping_export, account_mapping_import
from ingest.usage.mappings import account_mapping_create, account_mapping_update, owners
from ingest.usage.pricing import Owner
from ingest.usage.rates import rate_book, rate_create, rate_delete, rate_lock, rate_update
from tests.conftest import role_client, user_in

pytestmark = pytest.mark.django_db

ACTOR = Actor(name="tester", channel="cli")
HEADER = "kind,name,pi_email,project_id,fund_org\n"


def new_rate(**fields: Any) -> Rate:
    values: dict[str, Any] = {
        "resource": "cpu",
        "service": "standard",
        "qos": "",
        "effective_from": date(2025, 1, 1),
        "list_rate": Decimal("0.01"),
        "subsidy_percent": Decimal("25"),
        **fields,
    }
    return rate_create(actor=ACTOR, **values)


def finalize(period: str) -> BillingPeriod:
    """A finalized month (the lifecycle itself is tested in billing)."""
    return BillingPeriod.objects.create(period=period, status=BillingPeriod.Status.FINALIZED)


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def project(code: str = "proj-a", email: str = "ada@example.edu", fund_org: str = "") -> Project:
    pi, _ = PI.objects.get_or_create(email=email)
    return Project.objects.create(project_id=code, pi=pi, default_fund_org=fund_org)


def csv_file(tmp_path: Path, text: str, name: str = "mappings.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- rates: create, change, delete, audit ------------------------------------------------


def test_a_new_rate_is_audited_with_its_terms_as_strings() -> None:
    rate = new_rate(monthly_cap=Decimal("500"), free_allowance=Decimal("1000"))
    assert rate.created_by == "tester"
    (event,) = events("rate.create")
    assert event.object_id == str(rate.pk)
    assert event.after == {
        "resource": "cpu",
        "service": "standard",
        "qos": "",
        "effective_from": "2025-01-01",
        "list_rate": "0.01",
        "subsidy_percent": "25.00",
        "free_allowance": "1000.00",
        "monthly_credit": "0.00",
        "monthly_cap": "500.00",
        "description": "",
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"list_rate": Decimal("-1")}, "list_rate"),
        ({"subsidy_percent": Decimal("100.01")}, "subsidy_percent"),
        ({"free_allowance": Decimal("-1")}, "free_allowance"),
        ({"monthly_cap": Decimal("-5")}, "monthly_cap"),
        ({"resource": "storage", "qos": "normal"}, "Storage rates have no QOS"),
        ({"resource": "tape"}, "resource"),
        ({"service": "  "}, "service"),
    ],
)
def test_a_rate_with_a_bad_value_is_refused_in_one_line(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(BillingError, match=message) as refused:
        new_rate(**fields)
    assert "\n" not in str(refused.value)
    assert not Rate.objects.exists()


def test_two_rates_for_the_same_key_cannot_start_on_the_same_day() -> None:
    new_rate()
    with pytest.raises(BillingError, match="already starts on that day"):
        new_rate(list_rate=Decimal("0.02"))


def test_an_unlocked_rate_changes_with_before_and_after_audited() -> None:
    rate = new_rate()
    rate_update(rate=rate, actor=ACTOR, list_rate=Decimal("0.015"), description="new kit")
    rate.refresh_from_db()
    assert rate.list_rate == Decimal("0.015")
    (event,) = events("rate.change")
    assert event.before == {"list_rate": "0.01", "description": ""}
    assert event.after == {"list_rate": "0.015", "description": "new kit"}
    # changing nothing records nothing
    rate_update(rate=rate, actor=ACTOR, list_rate=Decimal("0.015"))
    assert len(events("rate.change")) == 1


def test_an_unlocked_rate_is_deleted_with_an_audit_event() -> None:
    rate = new_rate()
    rate_delete(rate=rate, actor=ACTOR)
    assert not Rate.objects.exists()
    (event,) = events("rate.delete")
    assert event.before is not None
    assert event.before["list_rate"] == "0.01"


# --- rates: locks from finalized months ------------------------------------------------------


def test_a_rate_in_force_during_a_finalized_month_cannot_change_or_go() -> None:
    rate = new_rate()
    finalize("2025-01")
    assert rate_lock(rate) == "it is in force during finalized period 2025-01"
    with pytest.raises(BillingError) as changed:
        rate_update(rate=rate, actor=ACTOR, list_rate=Decimal("0.02"))
    assert str(changed.value) == (
        "CPU-hour standard from 2025-01-01 cannot be changed: it is in force during finalized "
        "period 2025-01; supersede it by adding a rate with a later effective date"
    )
    with pytest.raises(BillingError, match="cannot be deleted: it is in force during finalized"):
        rate_delete(rate=rate, actor=ACTOR)
    rate.refresh_from_db()
    assert rate.list_rate == Decimal("0.01")
    assert not events("rate.change")
    assert not events("rate.delete")


def test_a_new_rate_may_not_reach_back_into_a_finalized_month() -> None:
    new_rate()
    finalize("2025-01")
    with pytest.raises(BillingError) as refused:
        new_rate(effective_from=date(2025, 1, 15), list_rate=Decimal("0.02"))
    assert str(refused.value) == (
        "a CPU-hour rate 'standard' from 2025-01-15 would change prices of finalized period "
        "2025-01; give it an effective date after 2025-01-31"
    )
    # a partition or QOS first priced back then would change that month as well
    with pytest.raises(BillingError, match="finalized period 2025-01"):
        new_rate(service="bigmem", effective_from=date(2024, 6, 1))
    with pytest.raises(BillingError, match="finalized period 2025-01"):
        new_rate(qos="high", effective_from=date(2025, 1, 10))
    assert Rate.objects.count() == 1


def test_superseding_a_locked_rate_from_the_next_month_ends_it_the_day_before() -> None:
    old = new_rate()
    finalize("2025-01")
    newer = new_rate(effective_from=date(2025, 2, 1), list_rate=Decimal("0.02"))
    assert rate_lock(old)
    assert not rate_lock(newer)
    book = rate_book()
    jan = book.in_force("cpu", "standard", "normal", date(2025, 1, 31))
    feb = book.in_force("cpu", "standard", "normal", date(2025, 2, 1))
    assert jan is not None
    assert jan.rate_id == old.pk
    assert jan.list_rate == Decimal("0.01")
    assert feb is not None
    assert feb.rate_id == newer.pk
    assert feb.subsidy_percent == Decimal("25")
    # the newer rate is still free to change, but not to move into January
    rate_update(rate=newer, actor=ACTOR, effective_from=date(2025, 2, 10))
    with pytest.raises(BillingError, match="finalized period 2025-01"):
        rate_update(rate=newer, actor=ACTOR, effective_from=date(2025, 1, 20))
    rate_delete(rate=newer, actor=ACTOR)


def test_a_rate_ending_before_a_later_finalized_month_fits_between_two() -> None:
    new_rate(service="bigmem", effective_from=date(2025, 3, 1))
    finalize("2025-01")
    finalize("2025-03")
    between = new_rate(service="bigmem", effective_from=date(2025, 2, 1))
    assert rate_lock(between) == ""
    with pytest.raises(BillingError) as before_both:
        new_rate(service="bigmem", effective_from=date(2024, 12, 1))
    # the partition's next rate ends it on 2025-01-31: only January would change
    assert str(before_both.value).endswith(
        "finalized period 2025-01; give it an effective date after 2025-01-31"
    )
    with pytest.raises(BillingError) as open_ended:
        new_rate(service="fat", effective_from=date(2024, 12, 1))
    assert str(open_ended.value).endswith(
        "finalized period 2025-01 and later; give it an effective date after 2025-03-31"
    )


# --- pricing inputs -------------------------------------------------------------------------


def test_owners_are_the_active_mappings_keyed_by_lower_case_name() -> None:
    proj = project(fund_org="NSF-BIO-2024")
    account_mapping_create(actor=ACTOR, kind="slurm", name="Lab-A", project=proj)
    account_mapping_create(
        actor=ACTOR, kind="slurm", name="lab-a-gpu", project=proj, fund_org="NIH-GPU-1"
    )
    account_mapping_create(actor=ACTOR, kind="slurm", name="old", project=proj, active=False)
    account_mapping_create(actor=ACTOR, kind="storage", name="lab-a", project=proj)
    assert owners("slurm") == {
        "lab-a": Owner("ada@example.edu", "proj-a", "NSF-BIO-2024"),
        "lab-a-gpu": Owner("ada@example.edu", "proj-a", "NIH-GPU-1"),
    }
    assert set(owners("storage")) == {"lab-a"}


def test_a_mapping_needs_a_project_with_a_pi_and_a_name_unused_in_any_case() -> None:
    orphan = Project.objects.create(project_id="no-pi")
    with pytest.raises(BillingError, match="has no PI yet"):
        account_mapping_create(actor=ACTOR, kind="slurm", name="x", project=orphan)
    proj = project()
    account_mapping_create(actor=ACTOR, kind="slurm", name="lab-a", project=proj)
    with pytest.raises(BillingError, match="already mapped"):
        account_mapping_create(actor=ACTOR, kind="slurm", name="LAB-A", project=proj)
    # a storage quota of the same name is another thing
    account_mapping_create(actor=ACTOR, kind="storage", name="LAB-A", project=proj)


def test_mapping_changes_are_audited_before_and_after() -> None:
    mapping = account_mapping_create(actor=ACTOR, kind="slurm", name="lab-a", project=project())
    other = project("proj-b", "bob@example.edu")
    account_mapping_update(mapping=mapping, actor=ACTOR, project=other, fund_org="F-1")
    (created,) = events("accountmapping.create")
    assert created.after is not None
    assert created.after["pi"] == "ada@example.edu"
    (changed,) = events("accountmapping.change")
    assert changed.before == {"project": "proj-a", "pi": "ada@example.edu", "fund_org": ""}
    assert changed.after == {"project": "proj-b", "pi": "bob@example.edu", "fund_org": "F-1"}


# --- mapping CSV import -----------------------------------------------------------------------

GOOD = (
    "Kind, NAME ,Pi_Email,project_id,fund_org\n"
    "slurm,lab-a,Ada@Example.edu,proj-a,NSF-BIO-2024\n"
    "slurm,lab-a-gpu,ada@example.edu,proj-a,\n"
    "storage,lab-a,ada@example.edu,proj-a,\n"
    "\n"
    "STORAGE,bob-scratch,bob@example.edu,proj-b,NIH-GEN-2025\n"
)


def test_a_mapping_file_creates_mappings_pis_and_projects_audited(tmp_path: Path) -> None:
    result = account_mapping_import(path=csv_file(tmp_path, GOOD), actor=ACTOR)
    assert (result.created, result.updated, result.unchanged) == (4, 0, 0)
    assert (result.pis_created, result.projects_created) == (2, 2)
    assert result.summary() == (
        "mappings.csv: 4 mappings created, 0 updated, 0 unchanged (2 new PIs, 2 new projects)."
    )
    assert [line.line for line in result.lines] == [2, 3, 4, 6]
    proj_a = Project.objects.select_related("pi").get(project_id="proj-a")
    assert proj_a.pi is not None
    assert proj_a.pi.email == "ada@example.edu"
    assert owners("slurm")["lab-a"] == Owner("ada@example.edu", "proj-a", "NSF-BIO-2024")
    assert owners("storage")["bob-scratch"].fund_org == "NIH-GEN-2025"
    assert len(events("pi.create")) == 2
    assert len(events("project.create")) == 2
    created = events("accountmapping.create")
    assert len(created) == 4
    assert created[0].reason == "account mapping import mappings.csv line 2"


def test_reimporting_the_same_file_changes_nothing(tmp_path: Path) -> None:
    path = csv_file(tmp_path, GOOD)
    account_mapping_import(path=path, actor=ACTOR)
    audited = AuditEvent.objects.count()
    again = account_mapping_import(path=path, actor=ACTOR)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 4)
    assert (again.pis_created, again.projects_created) == (0, 0)
    assert AuditEvent.objects.count() == audited


def test_a_changed_line_updates_its_mapping(tmp_path: Path) -> None:
    account_mapping_import(path=csv_file(tmp_path, GOOD), actor=ACTOR)
    changed = GOOD.replace(
        "slurm,lab-a-gpu,ada@example.edu,proj-a,", "slurm,LAB-A-GPU,ada@example.edu,proj-c,GPU-1"
    )
    result = account_mapping_import(path=csv_file(tmp_path, changed), actor=ACTOR)
    assert (result.created, result.updated, result.unchanged) == (0, 1, 3)
    assert result.projects_created == 1
    (event,) = events("accountmapping.change")
    assert event.before == {"name": "lab-a-gpu", "project": "proj-a", "fund_org": ""}
    assert event.after == {"name": "LAB-A-GPU", "project": "proj-c", "fund_org": "GPU-1"}
    assert owners("slurm")["lab-a-gpu"] == Owner("ada@example.edu", "proj-c", "GPU-1")


def test_a_dry_run_reports_and_writes_nothing(tmp_path: Path) -> None:
    result = account_mapping_import(path=csv_file(tmp_path, GOOD), actor=ACTOR, dry_run=True)
    assert (result.created, result.pis_created, result.projects_created) == (4, 2, 2)
    assert result.summary().startswith("Dry run, nothing written: mappings.csv: 4 mappings would")
    assert not AccountMapping.objects.exists()
    assert not PI.objects.exists()
    assert not Project.objects.exists()
    assert not AuditEvent.objects.exists()


def test_a_project_without_a_pi_gets_the_files_pi(tmp_path: Path) -> None:
    Project.objects.create(project_id="proj-a")
    account_mapping_import(
        path=csv_file(tmp_path, HEADER + "slurm,lab-a,ada@example.edu,proj-a,\n"), actor=ACTOR
    )
    (event,) = events("project.assign_pi")
    assert event.after == {"pi": "ada@example.edu"}
    assert owners("slurm")["lab-a"].pi_email == "ada@example.edu"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            "slurm,lab-a,ada@example.edu,proj-a,\nlustre,x,ada@example.edu,proj-a,\n",
            "mappings.csv line 3, column kind: 'lustre' is not a kind; use slurm, storage, "
            "sub_account, billing_account or resource",
        ),
        (
            "slurm,lab-a,ada-at-example.edu,proj-a,\n",
            "mappings.csv line 2, column pi_email: 'ada-at-example.edu' is not an email address",
        ),
        (
            "slurm,lab-b,bob@example.edu,proj-old,\n",
            "mappings.csv line 2, column project_id: project 'proj-old' belongs to "
            "carol@example.edu, not bob@example.edu",
        ),
        (
            "slurm,lab-a,ada@example.edu,proj-a,\nslurm,lab-b,bob@example.edu,proj-a,\n",
            "mappings.csv line 3, column project_id: project 'proj-a' belongs to "
            "ada@example.edu on line 2, not bob@example.edu",
        ),
        (
            "slurm,lab-a,ada@example.edu,proj-a,\nstorage,lab-a,ada@example.edu,proj-a,\n"
            "slurm,LAB-A,ada@example.edu,proj-a,\n",
            "mappings.csv line 4, column name: 'LAB-A' is already on line 2",
        ),
        (
            "slurm,,ada@example.edu,proj-a,\n",
            "mappings.csv line 2, column name: empty; give the Slurm account or quota name",
        ),
        (
            "slurm,lab-a,ada@example.edu\n",
            "mappings.csv line 2: 3 fields, expected 5",
        ),
        (
            "bogus,lab-a,nobody,,\n",
            "mappings.csv line 2, column kind: 'bogus' is not a kind; use slurm, storage, "
            "sub_account, billing_account or resource "
            "(and 2 more errors)",
        ),
    ],
)
def test_a_bad_line_refuses_the_whole_file_naming_file_line_and_column(
    tmp_path: Path, rows: str, message: str
) -> None:
    project("proj-old", "carol@example.edu")
    before = (PI.objects.count(), Project.objects.count(), AuditEvent.objects.count())
    with pytest.raises(BillingError) as refused:
        account_mapping_import(path=csv_file(tmp_path, HEADER + rows), actor=ACTOR)
    assert str(refused.value) == message
    assert not AccountMapping.objects.exists()
    assert (PI.objects.count(), Project.objects.count(), AuditEvent.objects.count()) == before


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "mappings.csv: no header line; the first line must be kind,name,pi_email,"),
        ("slurm,lab-a,ada@example.edu,proj-a,\n", "mappings.csv line 1: missing column(s) kind"),
        (
            "kind,name,pi_email,project,fund_org\n",
            "mappings.csv line 1: missing column(s) project_id; unknown column(s) 'project'",
        ),
    ],
)
def test_a_file_without_the_header_is_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(BillingError) as refused:
        account_mapping_import(path=csv_file(tmp_path, text), actor=ACTOR)
    assert str(refused.value).startswith(message)


def test_export_then_import_is_unchanged_even_for_formula_like_text(tmp_path: Path) -> None:
    proj = project(fund_org="DEFAULT-1")
    account_mapping_create(actor=ACTOR, kind="slurm", name="=cmd", project=proj, fund_org="-F")
    account_mapping_create(actor=ACTOR, kind="storage", name="lab-a", project=proj)
    text = account_mapping_export()
    assert text == (
        HEADER + "slurm,'=cmd,ada@example.edu,proj-a,'-F\nstorage,lab-a,ada@example.edu,proj-a,\n"
    ).replace("\n", "\r\n")  # RFC 4180 line ends, like every CSV the product writes
    result = account_mapping_import(path=csv_file(tmp_path, text), actor=ACTOR)
    assert (result.created, result.updated, result.unchanged) == (0, 0, 2)


# --- the command ------------------------------------------------------------------------------


def test_command_imports_with_a_summary_line(tmp_path: Path, capsys: Any) -> None:
    call_command("account_mappings", "import", str(csv_file(tmp_path, GOOD)), "--user", "ops")
    out = capsys.readouterr().out
    assert out.strip() == (
        "mappings.csv: 4 mappings created, 0 updated, 0 unchanged (2 new PIs, 2 new projects)."
    )
    assert {e.actor for e in events("accountmapping.create")} == {"ops"}


def test_command_dry_run_json_writes_nothing(tmp_path: Path, capsys: Any) -> None:
    path = csv_file(tmp_path, GOOD)
    call_command("account_mappings", "import", str(path), "--dry-run", "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "dry_run"
    assert (report["created"], report["updated"], report["unchanged"]) == (4, 0, 0)
    assert report["lines"][0] == {
        "line": 2,
        "kind": "slurm",
        "name": "lab-a",
        "pi_email": "ada@example.edu",
        "project_id": "proj-a",
        "fund_org": "NSF-BIO-2024",
        "outcome": "created",
    }
    assert not AccountMapping.objects.exists()
    assert not AuditEvent.objects.exists()


def test_command_refuses_a_bad_file_with_exit_status_1(tmp_path: Path, capsys: Any) -> None:
    path = csv_file(tmp_path, HEADER + "slurm,lab-a,nobody,proj-a,\n")
    with pytest.raises(CommandError) as caught:
        call_command("account_mappings", "import", str(path))
    # Django prints "CommandError: <message>" and exits with returncode.
    assert caught.value.returncode == 1
    assert str(caught.value) == (
        "mappings.csv line 2, column pi_email: 'nobody' is not an email address"
    )
    with pytest.raises(CommandError, match="cannot read the file"):
        call_command("account_mappings", "import", str(tmp_path / "missing.csv"))


def test_command_exports_to_a_file_or_standard_output(tmp_path: Path, capsys: Any) -> None:
    account_mapping_import(path=csv_file(tmp_path, GOOD), actor=ACTOR)
    target = tmp_path / "out.csv"
    call_command("account_mappings", "export", "--output", str(target))
    assert capsys.readouterr().out.strip() == f"Wrote 4 mappings to {target}."
    call_command("account_mappings", "export")
    printed = capsys.readouterr().out
    assert printed == target.read_bytes().decode("utf-8")
    assert printed.splitlines()[1] == "slurm,lab-a,ada@example.edu,proj-a,NSF-BIO-2024"


# --- the admin: rates ------------------------------------------------------------------------

RATES = "/admin/ingest/rate/"


def form_data(rate: Rate | None = None, **changes: str) -> dict[str, str]:
    data = {
        "resource": "cpu",
        "service": "standard",
        "qos": "",
        "effective_from": "2025-01-01",
        "list_rate": "0.01",
        "subsidy_percent": "25",
        "free_allowance": "0",
        "monthly_credit": "0",
        "monthly_cap": "",
        "description": "",
    }
    if rate is not None:
        data.update(
            resource=rate.resource,
            service=rate.service,
            effective_from=rate.effective_from.isoformat(),
            list_rate=str(rate.list_rate),
            subsidy_percent=str(rate.subsidy_percent),
        )
    data.update(changes)
    return data


def test_rate_list_shows_window_terms_and_lock() -> None:
    old = new_rate(free_allowance=Decimal("1000"), monthly_cap=Decimal("250"))
    finalize("2025-01")
    new_rate(effective_from=date(2025, 2, 1), list_rate=Decimal("0.0025"))
    client = role_client(VIEWER)
    page = client.get(RATES)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Jan. 31, 2025" in text
    assert "until superseded" in text
    assert "$0.0025 / CPU-hour" in text
    assert "1000 CPU-hours" in text
    assert "$250.00" in text
    locked = client.get(RATES + "?locked=yes")
    assert list(locked.context["cl"].result_list) == [old]
    assert client.get(RATES + "?in_force=past").context["cl"].result_count == 1
    assert client.get(RATES + "?in_force=now").context["cl"].result_count == 1


def test_a_locked_rate_is_read_only_in_the_admin_and_offers_superseding() -> None:
    rate = new_rate()
    finalize("2025-01")
    client = role_client(BILLING_ADMIN)
    url = f"{RATES}{rate.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert not page.context["has_delete_permission"]
    assert "This rate is locked" in page.content.decode()
    assert client.post(url, form_data(rate, list_rate="0.5")).status_code == 403
    assert client.get(f"{RATES}{rate.pk}/delete/").status_code == 403
    assert client.post(f"{RATES}{rate.pk}/delete/", {"post": "yes"}).status_code == 403
    rate.refresh_from_db()
    assert rate.list_rate == Decimal("0.01")

    # "Supersede" opens the add page with the same terms; the date is the admin's to pick.
    supersede = page.context["supersede_url"]
    add = client.get(supersede)
    assert add.context["adminform"].form.initial["list_rate"] == "0.01"
    refused = client.post(RATES + "add/", form_data(rate, effective_from="2025-01-20"))
    assert refused.status_code == 200
    assert "would change prices of finalized period 2025-01" in refused.content.decode()
    done = client.post(
        RATES + "add/", form_data(rate, effective_from="2025-02-01", list_rate="0.02")
    )
    assert done.status_code == 302
    newer = Rate.objects.get(effective_from=date(2025, 2, 1))
    assert newer.list_rate == Decimal("0.02")
    assert newer.created_by == "billing_admin"
    (event,) = events("rate.create")[1:]
    assert event.actor == "billing_admin"
    assert event.channel == "admin"


def test_save_as_new_supersedes_an_editable_rate_and_keeps_the_old_one() -> None:
    rate = new_rate()
    client = role_client(BILLING_ADMIN)
    data = form_data(rate, effective_from="2025-03-01", list_rate="0.03", _saveasnew="Save as new")
    response = client.post(f"{RATES}{rate.pk}/change/", data)
    assert response.status_code == 302
    rate.refresh_from_db()
    assert rate.list_rate == Decimal("0.01")
    assert Rate.objects.get(effective_from=date(2025, 3, 1)).list_rate == Decimal("0.03")
    assert len(events("rate.create")) == 2
    assert not events("rate.change")


def test_an_editable_rate_changes_and_deletes_through_the_audited_services() -> None:
    rate = new_rate()
    client = role_client(BILLING_ADMIN)
    response = client.post(f"{RATES}{rate.pk}/change/", form_data(rate, list_rate="0.02"))
    assert response.status_code == 302
    (event,) = events("rate.change")
    assert (event.before, event.after) == ({"list_rate": "0.01"}, {"list_rate": "0.02"})
    assert client.post(f"{RATES}{rate.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Rate.objects.exists()
    assert len(events("rate.delete")) == 1


@pytest.mark.parametrize("role", [VIEWER, REVIEWER])
def test_viewers_and_reviewers_read_rates_but_change_nothing(role: str) -> None:
    rate = new_rate()
    client = role_client(role)
    assert client.get(RATES).status_code == 200
    assert client.get(f"{RATES}{rate.pk}/change/").status_code == 200
    assert (
        client.post(f"{RATES}{rate.pk}/change/", form_data(rate, list_rate="9")).status_code == 403
    )
    assert client.post(RATES + "add/", form_data(effective_from="2025-05-01")).status_code == 403
    assert Rate.objects.count() == 1


# --- the admin: account mappings ------------------------------------------------------------

MAPPINGS = "/admin/ingest/accountmapping/"
IMPORT = MAPPINGS + "import/"


def upload(text: str = GOOD, name: str = "cluster.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


@pytest.mark.parametrize(
    ("role", "allowed"), [(VIEWER, False), (REVIEWER, False), (BILLING_ADMIN, True)]
)
def test_only_billing_admins_import_mappings(role: str, allowed: bool) -> None:
    client = role_client(role)
    assert client.get(IMPORT).status_code == (200 if allowed else 403)
    response = client.post(IMPORT, {"file": upload(), "import": "Import"})
    assert response.status_code == (302 if allowed else 403)
    assert AccountMapping.objects.count() == (4 if allowed else 0)
    listing = client.get(MAPPINGS)
    assert listing.status_code == 200
    assert ("Import CSV" in listing.content.decode()) is allowed


def test_the_import_page_checks_first_then_imports() -> None:
    client = role_client(BILLING_ADMIN)
    checked = client.post(IMPORT, {"file": upload(), "check": "Check (dry run)"})
    assert checked.status_code == 200
    assert checked.context["result"].dry_run
    assert "cluster.csv: 4 mappings would be created" in checked.content.decode()
    assert not AccountMapping.objects.exists()
    done = client.post(IMPORT, {"file": upload(), "import": "Import"})
    assert done.status_code == 302
    notes = [str(m) for m in get_messages(done.wsgi_request)]
    assert notes == [
        "cluster.csv: 4 mappings created, 0 updated, 0 unchanged (2 new PIs, 2 new projects)."
    ]
    assert {e.channel for e in events("accountmapping.create")} == {"admin"}
    listing = client.get(MAPPINGS).content.decode()
    assert "bob@example.edu" in listing
    assert "NIH-GEN-2025" in listing


def test_the_import_page_shows_a_bad_file_and_imports_nothing() -> None:
    client = role_client(BILLING_ADMIN)
    response = client.post(
        IMPORT, {"file": upload(HEADER + "tape,x,ada@example.edu,p,\n"), "import": "Import"}
    )
    assert response.status_code == 200
    assert "cluster.csv line 2, column kind: &#x27;tape&#x27; is not a kind" in (
        response.content.decode()
    )
    assert not AccountMapping.objects.exists()


def test_the_import_page_needs_its_csrf_token() -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_in(BILLING_ADMIN))
    response = client.post(IMPORT, {"file": upload(), "import": "Import"})
    assert response.status_code == 403
    assert not AccountMapping.objects.exists()


def test_mapping_export_downloads_for_viewers() -> None:
    account_mapping_create(actor=ACTOR, kind="slurm", name="lab-a", project=project())
    response = role_client(VIEWER).get(MAPPINGS + "export/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response.content.decode() == (HEADER + "slurm,lab-a,ada@example.edu,proj-a,\n").replace(
        "\n", "\r\n"
    )


def test_mapping_edits_in_the_admin_are_audited() -> None:
    proj = project()
    client = role_client(BILLING_ADMIN)
    data = {
        "kind": "slurm",
        "name": " lab-a ",
        "project": str(proj.pk),
        "fund_org": "",
        "notes": "",
        "active": "on",
    }
    assert client.post(MAPPINGS + "add/", data).status_code == 302
    mapping = AccountMapping.objects.get()
    assert mapping.name == "lab-a"
    assert mapping.created_by == "billing_admin"
    data.update(name="lab-a", fund_org="F-9")
    assert client.post(f"{MAPPINGS}{mapping.pk}/change/", data).status_code == 302
    (event,) = events("accountmapping.change")
    assert (event.before, event.after) == ({"fund_org": ""}, {"fund_org": "F-9"})
    orphan = Project.objects.create(project_id="no-pi")
    refused = client.post(MAPPINGS + "add/", {**data, "name": "x", "project": str(orphan.pk)})
    assert refused.status_code == 200
    assert "has no PI yet" in refused.content.decode()
    assert client.post(f"{MAPPINGS}{mapping.pk}/delete/", {"post": "yes"}).status_code == 302
    assert len(events("accountmapping.delete")) == 1
