"""Roles are Django groups created by a migration, each with its permissions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from billing.roles import BILLING_ADMIN, REVIEWER, VIEWER, roles_sync
from tests.conftest import user_in

pytestmark = pytest.mark.django_db


def test_the_three_roles_exist() -> None:
    assert {VIEWER, REVIEWER, BILLING_ADMIN} <= set(Group.objects.values_list("name", flat=True))


def test_viewer_reads_but_changes_nothing() -> None:
    viewer = user_in(VIEWER)
    assert viewer.has_perm("billing.view_charge")
    assert viewer.has_perm("ingest.view_import")
    assert viewer.has_perm("billing.view_auditevent")
    for perm in (
        "billing.review_charge",
        "billing.fix_attribution_charge",
        "billing.close_billingperiod",
        "ingest.import_focus",
        "billing.change_source",
    ):
        assert not viewer.has_perm(perm), perm


def test_reviewer_reviews_but_does_not_run_the_month() -> None:
    reviewer = user_in(REVIEWER)
    assert reviewer.has_perm("billing.review_charge")
    assert reviewer.has_perm("billing.fix_attribution_charge")
    for perm in ("billing.close_billingperiod", "ingest.import_focus", "billing.change_tagmapping"):
        assert not reviewer.has_perm(perm), perm


def test_billing_admin_runs_the_month_and_the_settings() -> None:
    admin = user_in(BILLING_ADMIN)
    for perm in (
        "billing.review_charge",
        "ingest.import_focus",
        "billing.close_billingperiod",
        "billing.finalize_billingperiod",
        "billing.change_source",
        "billing.change_tagmapping",
        "billing.add_patternrule",
        "billing.change_institutionsettings",
    ):
        assert admin.has_perm(perm), perm
    # The audit trail is read-only for everyone.
    assert not admin.has_perm("billing.change_auditevent")
    assert not admin.has_perm("billing.delete_auditevent")


def test_sync_roles_is_idempotent_and_repairs_drift() -> None:
    viewer = Group.objects.get(name=VIEWER)
    before = set(viewer.permissions.values_list("codename", flat=True))
    viewer.permissions.clear()
    roles_sync()
    roles_sync()
    assert set(viewer.permissions.values_list("codename", flat=True)) == before
    assert Group.objects.filter(name=VIEWER).count() == 1
