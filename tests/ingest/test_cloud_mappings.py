"""Cloud account mappings: precedence, effective dates, import, re-applying to
pending charges, the CSV, the unmapped accounts page, `review fix`, the oci source."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count, Q, Sum

from billing import flags
from billing.audit import Actor
from billing.errors import BillingError
from billing.models import PI, AuditEvent, BillingPeriod, Charge, ChargeSummary, Project, Source
from billing.roles import BILLING_ADMIN, REVIEWER, VIEWER
from billing.services import period_close
from ingest.focus.cloud_accounts import (
    CloudMappings,
    CloudOwner,
    account_mappings_apply,
    merge_owner,
    unmapped_sub_accounts,
)
from ingest.focus.services import file_import
from ingest.models import AccountMapping
from ingest.usage.mapping_files import account_mapping_export, account_mapping_import
from ingest.usage.mappings import account_mapping_create
from tests.conftest import FOCUS_COLUMNS, focus_row, role_client, tags

pytestmark = pytest.mark.django_db

ACTOR = Actor(name="tester", channel="cli")
COLUMNS = [*FOCUS_COLUMNS, "SubAccountId", "SubAccountName", "BillingAccountId"]
NO_TAGS = "{}"
ATTRIBUTION = {"missing_pi", "missing_project", "missing_fund_org"}


def cloud_row(
    sub: str = "111122223333",
    *,
    name: str = "chem-lab-prod",
    billing_account: str = "999988887777",
    tag_text: str = NO_TAGS,
    **fields: Any,
) -> dict[str, str]:
    row = focus_row(tag_text=tag_text, **fields)
    row.update(SubAccountId=sub, SubAccountName=name, BillingAccountId=billing_account)
    return row


def owned_project(code: str, email: str, fund_org: str = "") -> Project:
    pi, _ = PI.objects.get_or_create(email=email)
    project, _ = Project.objects.get_or_create(
        project_id=code, defaults={"pi": pi, "default_fund_org": fund_org}
    )
    return project


def aws() -> Source:
    return Source.objects.get(slug="aws")


def map_sub(
    name: str = "111122223333",
    project: Project | None = None,
    *,
    kind: str = "sub_account",
    fund_org: str = "",
    start: date | None = None,
    end: date | None = None,
    source: Source | None = None,
) -> AccountMapping:
    return account_mapping_create(
        actor=ACTOR,
        kind=kind,
        source=source or aws(),
        name=name,
        project=project or owned_project("chem-1", "curie@example.edu", "CHEM-CLOUD-2025"),
        fund_org=fund_org,
        effective_from=start,
        effective_to=end,
    )


def ingest(focus_file: Callable[..., Path], rows: list[dict[str, str]], **options: Any) -> Any:
    return file_import(path=focus_file(rows, columns=COLUMNS), source=aws(), actor=ACTOR, **options)


def reasons(charge: Charge) -> set[str]:
    return set(charge.flag_reasons)


def live_summaries() -> dict[tuple[Any, ...], tuple[Any, ...]]:
    key = ("period_id", "source_id", "pi_id", "project_id", "fund_org", "review_state")
    rows = Charge.objects.values(*key).annotate(
        n=Count("id"), f=Count("id", filter=~Q(flags=0)), b=Sum("billed_cost")
    )
    return {tuple(r[k] for k in key): (r["n"], r["f"], r["b"]) for r in rows}


def stored_summaries() -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {
        (s.period_id, s.source_id, s.pi_id, s.project_id, s.fund_org, s.review_state): (
            s.charges,
            s.flagged,
            s.billed_total,
        )
        for s in ChargeSummary.objects.all()
    }


# --- resolution and precedence (pure) ------------------------------------------------------


def owner(mapping_id: int, kind: str, name: str, project: str, **extra: Any) -> CloudOwner:
    return CloudOwner(
        mapping_id=mapping_id,
        kind=kind,
        name=name,
        pi_email=extra.pop("pi", "pi@example.edu"),
        project_id=project,
        fund_org=extra.pop("fund_org", "F-1"),
        **extra,
    )


def test_the_most_specific_mapping_in_force_wins() -> None:
    mappings = CloudMappings(
        [
            owner(1, "billing_account", "BA-1", "p-billing"),
            owner(2, "sub_account", "Sub-1", "p-sub"),
            owner(3, "resource", "i-abc", "p-resource"),
        ]
    )
    day = lambda: date(2025, 1, 1)  # noqa: E731
    found = mappings.resolve(
        resource_id="i-abc", sub_account_id="SUB-1", billing_account_id="ba-1", day=day
    )
    assert found is not None
    assert found.project_id == "p-resource"
    found = mappings.resolve(
        resource_id="I-ABC", sub_account_id="sub-1", billing_account_id="BA-1", day=day
    )
    assert found is not None
    assert found.project_id == "p-sub"
    found = mappings.resolve(resource_id="", sub_account_id="x", billing_account_id="ba-1", day=day)
    assert found is not None
    assert found.project_id == "p-billing"
    assert (
        mappings.resolve(resource_id="", sub_account_id="", billing_account_id="", day=day) is None
    )


def test_a_dated_mapping_applies_only_on_its_days_and_then_the_next_kind_does() -> None:
    mappings = CloudMappings(
        [
            owner(1, "sub_account", "s", "p-old", end=date(2025, 1, 15)),
            owner(2, "sub_account", "s", "p-new", start=date(2025, 1, 16)),
            owner(3, "resource", "r", "p-res", start=date(2025, 2, 1)),
        ]
    )

    def on(day: date) -> str:
        hit = mappings.resolve(
            resource_id="r", sub_account_id="s", billing_account_id="", day=lambda: day
        )
        return hit.project_id if hit else ""

    assert on(date(2025, 1, 15)) == "p-old"
    assert on(date(2025, 1, 16)) == "p-new"
    assert on(date(2025, 2, 1)) == "p-res"


def test_tags_win_field_by_field_and_a_mapping_never_completes_another_owner() -> None:
    mapped = owner(1, "sub_account", "s", "p-map", pi="map@example.edu", fund_org="F-MAP")
    assert merge_owner({}, mapped) == {
        "pi_email": "map@example.edu",
        "project_id": "p-map",
        "fund_org": "F-MAP",
    }
    assert merge_owner({"fund_org": "F-TAG"}, mapped)["fund_org"] == "F-TAG"
    same_pi = merge_owner({"pi_email": "map@example.edu"}, mapped)
    assert same_pi["project_id"] == "p-map"
    assert same_pi["fund_org"] == "F-MAP"
    other = {"pi_email": "other@example.edu"}
    assert merge_owner(other, mapped) == other
    assert merge_owner({"project_id": "p-other"}, mapped) == {"project_id": "p-other"}


# --- at import ------------------------------------------------------------------------------


def test_an_untagged_row_of_a_mapped_sub_account_is_attributed_and_approved(
    defaults: None, focus_file: Callable[..., Path]
) -> None:
    map_sub()
    result = ingest(focus_file, [cloud_row(resource="vm-1"), cloud_row(resource="vm-2")])
    assert result.flagged == 0
    for charge in Charge.objects.select_related("pi", "project"):
        assert charge.pi is not None
        assert charge.project is not None
        assert (charge.pi.email, charge.project.project_id, charge.fund_org) == (
            "curie@example.edu",
            "chem-1",
            "CHEM-CLOUD-2025",
        )
        assert charge.review_state == "approved"


def test_tags_take_precedence_over_the_mapping(
    defaults: None, focus_file: Callable[..., Path]
) -> None:
    map_sub(fund_org="F-MAPPED")
    owned_project("proj-a", "ada@example.edu")
    rows = [
        cloud_row(
            resource="tagged", tag_text=tags(pi_email="ada@example.edu", project_id="proj-a")
        ),
        cloud_row(resource="fund-only", tag_text=tags(fund_org="NSF-BIO-2024")),
    ]
    ingest(focus_file, rows)
    tagged = Charge.objects.select_related("pi", "project").get(resource_id="tagged")
    assert tagged.pi is not None
    assert tagged.project is not None
    assert (tagged.pi.email, tagged.project.project_id, tagged.fund_org) == (
        "ada@example.edu",
        "proj-a",
        "",
    )
    assert reasons(tagged) == {"missing_fund_org"}  # another owner: the mapping gives nothing
    fund_only = Charge.objects.select_related("pi", "project").get(resource_id="fund-only")
    assert fund_only.project is not None
    assert (fund_only.project.project_id, fund_only.fund_org) == ("chem-1", "NSF-BIO-2024")
    assert fund_only.review_state == "approved"


def test_a_resource_mapping_beats_the_sub_account_mapping(
    defaults: None, focus_file: Callable[..., Path]
) -> None:
    map_sub()
    map_sub("i-0special", owned_project("bio-9", "darwin@example.edu", "BIO-1"), kind="resource")
    ingest(focus_file, [cloud_row(resource="i-0special"), cloud_row(resource="i-0other")])
    projects = dict(Charge.objects.values_list("resource_id", "project__project_id"))
    assert projects == {"i-0special": "bio-9", "i-0other": "chem-1"}


def test_a_mapping_that_changes_mid_month_goes_by_charge_period_start(
    defaults: None, focus_file: Callable[..., Path]
) -> None:
    map_sub(end=date(2025, 1, 15))
    later = owned_project("chem-2", "curie@example.edu", "CHEM-TWO")
    map_sub(project=later, start=date(2025, 1, 16))
    rows = [
        cloud_row(resource="early", day=15),
        cloud_row(resource="late", day=16),
        cloud_row(resource="no-start"),
    ]
    rows[2]["ChargePeriodStart"] = ""
    ingest(focus_file, rows)
    projects = dict(Charge.objects.values_list("resource_id", "project__project_id"))
    # Without a ChargePeriodStart the first day of the billing month decides.
    assert projects == {"early": "chem-1", "late": "chem-2", "no-start": "chem-1"}


def test_unmapped_sub_accounts_are_flagged_once_a_source_has_cloud_mappings(
    defaults: None, focus_file: Callable[..., Path]
) -> None:
    ingest(focus_file, [cloud_row("444455556666", resource="before")])
    before = Charge.objects.get(resource_id="before")
    assert reasons(before) == ATTRIBUTION  # no cloud mappings: today's flags only
    map_sub()
    ingest(focus_file, [cloud_row("444455556666", resource="after", name="physics")])
    after = Charge.objects.get(resource_id="after")
    assert reasons(after) == ATTRIBUTION | {"unmapped_account"}
    assert after.flag_details["unmapped_account"] == "sub-account 444455556666 (physics)"


def test_a_billing_account_mapping_covers_sub_accounts_without_one(
    defaults: None, focus_file: Callable[..., Path]
) -> None:
    map_sub("999988887777", kind="billing_account")
    map_sub("111122223333", owned_project("bio-9", "darwin@example.edu", "BIO-1"))
    ingest(focus_file, [cloud_row("111122223333", resource="a"), cloud_row("5", resource="b")])
    projects = dict(Charge.objects.values_list("resource_id", "project__project_id"))
    assert projects == {"a": "bio-9", "b": "chem-1"}


# --- re-applied to pending charges ------------------------------------------------------------


@pytest.fixture
def flagged(defaults: None, focus_file: Callable[..., Path]) -> None:
    """2025-01: three untagged charges of 111122223333, one of 444455556666, one tagged."""
    rows = [
        cloud_row(resource="vm-1", billed="10.000000001"),
        cloud_row(resource="vm-2", billed="2.50"),
        cloud_row(resource="vm-3", billed="-0.75"),
        cloud_row("444455556666", resource="other", billed="7.00", name="physics"),
        cloud_row(resource="tagged", tag_text=tags(pi_email="ada@example.edu", project_id="x")),
    ]
    ingest(focus_file, rows)


def test_applying_a_new_mapping_attributes_pending_charges_audited(flagged: None) -> None:
    mapping = map_sub()
    events = AuditEvent.objects.count()
    preview = account_mappings_apply(actor=ACTOR, dry_run=True)
    assert AuditEvent.objects.count() == events
    assert Charge.objects.filter(review_state="pending").count() == 5
    result = account_mappings_apply(actor=ACTOR)
    assert (preview.changed, preview.flags_cleared, preview.approved) == (
        result.changed,
        result.flags_cleared,
        result.approved,
    )
    assert (result.examined, result.changed, result.flags_cleared, result.approved) == (5, 3, 9, 3)
    assert result.by_mapping == {mapping.pk: 3}
    fixed = AuditEvent.objects.filter(action="charge.fix_attribution")
    assert fixed.count() == 3
    assert {e.actor for e in fixed} == {"tester"}
    first_fix = fixed.first()
    assert first_fix is not None
    assert first_fix.reason == f"account mapping #{mapping.pk} 111122223333"
    assert set(
        Charge.objects.filter(review_state="approved").values_list("resource_id", flat=True)
    ) == {"vm-1", "vm-2", "vm-3"}
    assert stored_summaries() == live_summaries()
    again = account_mappings_apply(actor=ACTOR)
    assert again.changed == 0
    assert AuditEvent.objects.filter(action="charge.fix_attribution").count() == 3


def test_apply_leaves_closed_periods_and_refuses_to_name_one(flagged: None) -> None:
    map_sub()
    period_close(period="2025-01", actor=ACTOR, allow_pending=True)
    assert account_mappings_apply(actor=ACTOR).changed == 0
    with pytest.raises(BillingError, match="period 2025-01 is closed"):
        account_mappings_apply(actor=ACTOR, period="2025-01")


def test_the_apply_command_prints_one_line_and_fails_with_exit_1(
    flagged: None, capsys: Any
) -> None:
    map_sub()
    call_command("account_mappings", "apply", "--dry-run", "--period", "2025-01")
    assert capsys.readouterr().out.strip() == (
        "Dry run, nothing written: Account mappings would change 3 pending charges of 5 "
        "examined: 9 flag reasons cleared, 3 now approved."
    )
    call_command("account_mappings", "apply", "--json", "--user", "ops", "--source", "aws")
    report = json.loads(capsys.readouterr().out)
    assert (report["status"], report["changed"], report["approved"]) == ("applied", 3, 3)
    assert AuditEvent.objects.filter(action="charge.fix_attribution", actor="ops").count() == 3
    with pytest.raises(CommandError) as caught:
        call_command("account_mappings", "apply", "--period", "2031-02")
    assert caught.value.returncode == 1
    assert str(caught.value) == "period 2031-02 does not exist"


def test_the_unmapped_list_is_by_cost_and_says_what_is_mapped(flagged: None) -> None:
    listed = unmapped_sub_accounts()
    assert [(a.sub_account_id, a.charges, a.billed) for a in listed] == [
        ("111122223333", 3, Decimal("11.750000001")),
        ("444455556666", 1, Decimal("7.00")),
    ]
    assert listed[0].periods == ("2025-01",)
    assert listed[0].sub_account_name == "chem-lab-prod"
    assert not listed[0].mapped
    map_sub()
    assert unmapped_sub_accounts()[0].mapped
    account_mappings_apply(actor=ACTOR)
    assert [a.sub_account_id for a in unmapped_sub_accounts()] == ["444455556666"]


# --- rules for mappings ------------------------------------------------------------------------


def test_overlapping_dates_for_the_same_account_are_refused(defaults: None) -> None:
    map_sub(end=date(2025, 1, 31))
    with pytest.raises(BillingError) as refused:
        map_sub("111122223333", start=date(2025, 1, 31))
    assert str(refused.value).startswith(
        "sub-account '111122223333' of source aws is already mapped from the start to "
        "2025-01-31 (mapping #"
    )
    map_sub("111122223333", start=date(2025, 2, 1))  # the next day is fine
    map_sub("111122223333", source=Source.objects.get(slug="azure"))  # another source too
    with pytest.raises(BillingError, match="have no source"):
        account_mapping_create(
            actor=ACTOR,
            kind="slurm",
            name="lab",
            project=owned_project("p", "a@example.edu"),
            source=aws(),
        )


CLOUD_HEADER = "kind,name,pi_email,project_id,fund_org,source,effective_from,effective_to\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cloud.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_cloud_mappings_import_and_export_round_trip(defaults: None, tmp_path: Path) -> None:
    text = CLOUD_HEADER + (
        "slurm,lab-a,ada@example.edu,proj-a,,,,\n"
        "sub_account,111122223333,curie@example.edu,chem-1,CHEM-1,AWS,,2025-01-15\n"
        "sub_account,111122223333,curie@example.edu,chem-2,,aws,2025-01-16,\n"
        "resource,i-0ABC,darwin@example.edu,bio-9,,aws,,\n"
    )
    result = account_mapping_import(path=write(tmp_path, text), actor=ACTOR)
    assert (result.created, result.updated, result.unchanged) == (4, 0, 0)
    assert result.as_dict()["lines"][0] == {
        "line": 2,
        "kind": "slurm",
        "name": "lab-a",
        "pi_email": "ada@example.edu",
        "project_id": "proj-a",
        "fund_org": "",
        "outcome": "created",
    }
    exported = account_mapping_export()
    assert exported.splitlines()[0] == CLOUD_HEADER.strip()
    assert "sub_account,111122223333,curie@example.edu,chem-1,CHEM-1,aws,,2025-01-15" in exported
    again = account_mapping_import(path=write(tmp_path, exported), actor=ACTOR)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 4)
    changed = exported.replace("CHEM-1,aws,,2025-01-15", "CHEM-9,aws,,2025-01-14")
    third = account_mapping_import(path=write(tmp_path, changed), actor=ACTOR)
    assert (third.created, third.updated, third.unchanged) == (0, 1, 3)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            "sub_account,1,ada@example.edu,p,,gcpp,,\n",
            "cloud.csv line 2, column source: unknown source 'gcpp' (known: aws, azure, gcp, hpc, "
            "it_storage, oci, openai, storage)",
        ),
        (
            "subaccount,1,ada@example.edu,p,,aws,,\n",
            "cloud.csv line 2, column kind: 'subaccount' is not a kind; use slurm, storage, "
            "sub_account, billing_account or resource",
        ),
        (
            "sub_account,1,ada@example.edu,p,,aws,2025-13-01,\n",
            "cloud.csv line 2, column effective_from: '2025-13-01' is not a date (YYYY-MM-DD)",
        ),
        (
            "sub_account,1,ada@example.edu,p,,aws,2025-02-01,2025-01-31\n",
            "cloud.csv line 2, column effective_to: 2025-01-31 is before effective_from 2025-02-01",
        ),
        (
            "sub_account,1,ada@example.edu,p,,aws,,2025-01-31\n"
            "sub_account,1,ada@example.edu,p,,aws,2025-01-31,\n",
            "cloud.csv line 3, column effective_from: from 2025-01-31 to further notice overlaps "
            "line 2 (from the start to 2025-01-31) for the same sub-account",
        ),
        (
            "sub_account,1,ada@example.edu,p,,,,\n",
            "cloud.csv line 2, column source: empty; a sub_account mapping names its source",
        ),
        (
            "slurm,lab,ada@example.edu,p,,,2025-01-01,\n",
            "cloud.csv line 2, column effective_from: slurm mappings are not dated; leave the "
            "dates empty",
        ),
    ],
)
def test_a_bad_cloud_mapping_file_is_refused_whole(
    defaults: None, tmp_path: Path, rows: str, message: str
) -> None:
    with pytest.raises(BillingError) as refused_alone:
        account_mapping_import(path=write(tmp_path, CLOUD_HEADER + rows), actor=ACTOR)
    assert str(refused_alone.value) == message
    assert not AccountMapping.objects.exists()
    assert not PI.objects.filter(email="ada@example.edu")


def test_a_file_overlapping_a_stored_mapping_is_refused(defaults: None, tmp_path: Path) -> None:
    stored = map_sub("1", end=date(2025, 3, 31))
    text = CLOUD_HEADER + "sub_account,1,ada@example.edu,p,,aws,2025-03-01,\n"
    with pytest.raises(BillingError) as refused:
        account_mapping_import(path=write(tmp_path, text), actor=ACTOR)
    assert str(refused.value) == (
        "cloud.csv line 2, column effective_from: from 2025-03-01 to further notice overlaps "
        f"mapping #{stored.pk} of sub-account '1' (from the start to 2025-03-31); change or "
        "delete that mapping first"
    )
    assert AccountMapping.objects.count() == 1


# --- the admin ---------------------------------------------------------------------------------

MAPPINGS = "/admin/ingest/accountmapping/"


@pytest.mark.parametrize("role", [VIEWER, REVIEWER, BILLING_ADMIN])
def test_the_unmapped_page_lists_accounts_by_cost_for_every_role(flagged: None, role: str) -> None:
    page = role_client(role).get(MAPPINGS + "unmapped/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.index("111122223333") < html.index("444455556666")
    assert "$11.75" in html
    assert "chem-lab-prod" in html
    assert ("Map…" in html) is (role == BILLING_ADMIN)
    assert ("Apply to pending charges" in html) is (role == BILLING_ADMIN)


def test_map_opens_a_prefilled_form_and_saving_offers_to_apply(flagged: None) -> None:
    client = role_client(BILLING_ADMIN)
    html = client.get(MAPPINGS + "unmapped/").content.decode()
    start = html.index(MAPPINGS + "add/?")
    url = html[start : html.index('"', start)].replace("&amp;", "&")
    form = client.get(url).context["adminform"].form
    assert form.initial["kind"] == "sub_account"
    assert form.initial["name"] == "111122223333"
    assert form.initial["source"] == str(aws().pk)
    project = owned_project("chem-1", "curie@example.edu", "CHEM-CLOUD-2025")
    data = {
        "kind": "sub_account",
        "source": str(aws().pk),
        "name": "111122223333",
        "project": str(project.pk),
        "fund_org": "",
        "effective_from": "",
        "effective_to": "",
        "notes": "",
        "active": "on",
    }
    saved = client.post(MAPPINGS + "add/", data)
    assert saved.status_code == 302
    assert saved["Location"] == f"{MAPPINGS}apply/?source={aws().pk}"
    overlapping = client.post(MAPPINGS + "add/", {**data, "effective_from": "2025-01-01"})
    assert overlapping.status_code == 200
    assert "already mapped" in overlapping.content.decode()
    check = client.post(MAPPINGS + "apply/", {"source": str(aws().pk), "check": "Check"})
    assert "would change 3 pending charges" in check.content.decode()
    assert Charge.objects.filter(review_state="pending").count() == 5
    done = client.post(MAPPINGS + "apply/", {"source": str(aws().pk), "apply": "Apply"})
    assert done.status_code == 302
    assert Charge.objects.filter(review_state="pending").count() == 2
    assert AuditEvent.objects.filter(action="charge.fix_attribution", channel="admin").count() == 3


@pytest.mark.parametrize("role", [VIEWER, REVIEWER])
def test_readers_cannot_apply_mappings(flagged: None, role: str) -> None:
    map_sub()
    client = role_client(role)
    assert client.get(MAPPINGS + "apply/").status_code == 403
    assert client.post(MAPPINGS + "apply/", {"apply": "Apply"}).status_code == 403
    assert Charge.objects.filter(review_state="pending").count() == 5


def test_the_apply_action_on_selected_mappings(flagged: None) -> None:
    mapping = map_sub()
    client = role_client(BILLING_ADMIN)
    response = client.post(
        MAPPINGS, {"action": "apply_to_pending", "_selected_action": [mapping.pk]}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == [
        "aws: Account mappings changed 3 pending charges of 5 examined: 9 flag reasons "
        "cleared, 3 now approved."
    ]
    offered = role_client(REVIEWER).get(MAPPINGS).context["action_form"]
    assert offered is None or "apply_to_pending" not in dict(offered.fields["action"].choices)


# --- review fix ----------------------------------------------------------------------------------


def test_review_fix_by_period_reason_and_sub_account(flagged: None, capsys: Any) -> None:
    args = ["review", "fix", "--period", "2025-01", "--reason", "missing_pi"]
    args += ["--sub-account", "111122223333", "--pi", "Curie@Example.edu", "--project", "chem-1"]
    args += ["--create-pi", "--pi-name", "Marie Curie"]  # nobody has her email yet
    args += ["--create-project", "--project-title", "Chemistry 1"]
    args += ["--fund-org", "CHEM-1"]
    call_command(*args, "--dry-run")
    assert capsys.readouterr().out.strip() == (
        "Dry run, nothing written: Fix would change 3 charges: 9 flag reasons cleared, "
        "3 now approved."
    )
    assert not AuditEvent.objects.filter(action="charge.fix_attribution").exists()
    assert not Project.objects.filter(project_id="chem-1").exists()
    call_command(*args, "--user", "ops")
    assert capsys.readouterr().out.strip() == (
        "Fix changed 3 charges: 9 flag reasons cleared, 3 now approved."
    )
    fixed = AuditEvent.objects.filter(action="charge.fix_attribution")
    assert fixed.count() == 3
    assert {e.actor for e in fixed} == {"ops"}
    assert set(
        Charge.objects.filter(pi__email="curie@example.edu").values_list("fund_org", flat=True)
    ) == {"CHEM-1"}
    assert stored_summaries() == live_summaries()


def test_review_fix_by_id_with_json(flagged: None, capsys: Any) -> None:
    charge = Charge.objects.get(resource_id="other")
    call_command("review", "fix", "--id", str(charge.pk), "--fund-org", "PHYS-1", "--json")
    report = json.loads(capsys.readouterr().out)
    assert report == {
        "action": "fix",
        "status": "fixed",
        "changed": 1,
        "flags_cleared": 1,
        "approved": 0,
        "cleared": {"missing_fund_org": 1},
    }
    charge.refresh_from_db()
    assert charge.fund_org == "PHYS-1"
    assert reasons(charge) == {"missing_pi", "missing_project"}


def test_review_fix_errors_are_one_line_with_exit_1(flagged: None) -> None:
    cases = [
        (
            ["--period", "2025-01", "--sub-account", "nobody", "--pi", "a@example.edu"],
            "no charges match; nothing to fix",
        ),
        (["--period", "2025-01", "--pi", "not-an-email"], "'not-an-email' is not an email address"),
        (["--period", "2025-01"], "say what to fix: a PI email, a project id or a fund/org"),
    ]
    for args, message in cases:
        with pytest.raises(CommandError) as caught:
            call_command("review", "fix", *args)
        assert caught.value.returncode == 1
        assert str(caught.value) == message
    pk = Charge.objects.get(resource_id="other").pk
    period_close(period="2025-01", actor=ACTOR, allow_pending=True)
    with pytest.raises(CommandError, match="cannot change: the period is not open"):
        call_command("review", "fix", "--id", str(pk), "--fund-org", "F")
    assert not AuditEvent.objects.filter(action="charge.fix_attribution").exists()
    assert BillingPeriod.objects.get(period="2025-01").status == "closed"


# --- the oci source -------------------------------------------------------------------------------


def test_the_oci_source_exists_after_migrate() -> None:
    oci = Source.objects.get(slug="oci")
    assert oci.name == "Oracle Cloud Infrastructure"
    assert oci.provider_names == "Oracle, OCI, Oracle Cloud Infrastructure"
    assert oci.filename_pattern == "oci|oracle"


def test_the_oci_migration_leaves_an_edited_source_alone() -> None:
    from importlib import import_module

    from django.apps import apps

    migration = import_module("billing.migrations.0015_oci_source")
    Source.objects.filter(slug="oci").update(name="Our Oracle", provider_names="")
    migration.add_oci(apps, None)
    assert Source.objects.filter(slug="oci").values_list("name", "provider_names").get() == (
        "Our Oracle",
        "",
    )
    Source.objects.filter(slug="oci").delete()
    migration.add_oci(apps, None)
    assert Source.objects.get(slug="oci").provider_names.startswith("Oracle")


def test_the_flag_is_labelled_for_every_kind_of_account() -> None:
    assert flags.LABEL["unmapped_account"] == "Unmapped account"
    assert flags.BIT["unmapped_account"] == 1 << 11
