"""Attribution from the registry: a typo never creates a PI; creating one is explicit."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.admin import helpers
from django.core.management import CommandError, call_command

from billing.audit import Actor
from billing.errors import BillingError
from billing.models import PI, AuditEvent, Charge, Source
from billing.review import charges_fix_attribution_report
from billing.roles import REVIEWER
from ingest.focus.services import file_import
from tests.conftest import focus_row, role_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def orphans(defaults: None, focus_file: Callable[..., Path], actor: Actor) -> list[int]:
    rows = [focus_row(resource=f"odd-{i}", billed="2.00", pi="") for i in range(2)]
    rows.append(focus_row(resource="fine"))
    file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)
    return list(Charge.objects.filter(resource_id__startswith="odd").values_list("pk", flat=True))


def test_typo_email_is_refused_unless_created_with_a_name(orphans: list[int], actor: Actor) -> None:
    charges = Charge.objects.filter(pk__in=orphans)
    with pytest.raises(BillingError, match=r"no PI with email 'ada@exmaple\.edu'"):
        charges_fix_attribution_report(charges=charges, actor=actor, pi_email="ada@exmaple.edu")
    with pytest.raises(BillingError, match="needs a name"):
        charges_fix_attribution_report(
            charges=charges, actor=actor, pi_email="new@example.edu", create_pi=True
        )
    assert not PI.objects.filter(email__in=["ada@exmaple.edu", "new@example.edu"]).exists()
    report = charges_fix_attribution_report(
        charges=charges, actor=actor, pi_email="new@example.edu", create_pi=True, pi_name="Nu"
    )
    assert report.changed == 2
    assert PI.objects.get(email="new@example.edu").name == "Nu"
    assert AuditEvent.objects.filter(action="pi.create", object_repr__contains="new@").exists()


def test_a_new_name_too_long_is_refused_never_cut(orphans: list[int], actor: Actor) -> None:
    charges = Charge.objects.filter(pk__in=orphans)
    with pytest.raises(BillingError, match="the new PI's name is 201 characters long; at most 200"):
        charges_fix_attribution_report(
            charges=charges,
            actor=actor,
            pi_email="long@example.edu",
            create_pi=True,
            pi_name="N" * 201,
        )
    with pytest.raises(BillingError, match="the project id is 201 characters long"):
        charges_fix_attribution_report(
            charges=charges, actor=actor, project_id="p" * 201, create_project=True
        )
    assert not PI.objects.filter(email="long@example.edu").exists()


def test_preview_counts_and_cleared_flags_write_nothing(orphans: list[int], actor: Actor) -> None:
    charges = Charge.objects.filter(pk__in=orphans)
    report = charges_fix_attribution_report(
        charges=charges, actor=actor, pi_email="ada@example.edu", dry_run=True
    )
    assert (report.changed, report.cleared, report.approved) == (2, {"missing_pi": 2}, 2)
    assert set(charges.values_list("review_state", flat=True)) == {"pending"}


def test_admin_preview_then_apply(orphans: list[int]) -> None:
    client = role_client(REVIEWER)
    ada = PI.objects.get(email="ada@example.edu")
    base = {"action": "fix_attribution", helpers.ACTION_CHECKBOX_NAME: orphans}
    preview = client.post("/admin/billing/charge/", {**base, "preview": "1", "pi": ada.pk})
    html = preview.content.decode()
    assert "2 charges would change." in html
    assert "Missing PI on 2 charges" in html
    assert Charge.objects.filter(pk__in=orphans, pi=None).count() == 2
    typo = client.post(
        "/admin/billing/charge/",
        {**base, "preview": "1", "create_pi": "on", "new_pi_email": "yuki@"},
    )
    assert "Enter a valid email address." in typo.content.decode()
    assert "A new PI needs a name." in typo.content.decode()
    done = client.post(f"/admin/billing/charge/{orphans[0]}/fix/", {"apply": "1", "pi": ada.pk})
    assert done.status_code == 302
    assert Charge.objects.get(pk=orphans[0]).pi == ada


def test_cli_refuses_an_unknown_pi(orphans: list[int], capsys: pytest.CaptureFixture[str]) -> None:
    ids = [str(pk) for pk in orphans]
    with pytest.raises(CommandError, match=r"no PI with email 'ada@exmaple\.edu'"):
        call_command("review", "fix", "--id", *ids, "--pi", "ada@exmaple.edu")
    with pytest.raises(CommandError, match="needs a name"):
        call_command("review", "fix", "--id", *ids, "--pi", "yu@example.edu", "--create-pi")
    call_command(
        "review", "fix", "--id", *ids, "--pi", "yu@example.edu", "--create-pi",
        "--pi-name", "Yu", "--json",
    )  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["changed"] == 2
    assert out["cleared"] == {"missing_pi": 2}
