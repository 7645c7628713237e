"""Every kind of blocker is caught at approval or at close, in a real browser,
with a link that leads to its fix; after the fix the month closes, and
generating, exporting and finalizing are never refused for a data reason."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps

from billing.audit import Actor
from billing.models import BillingPeriod, Charge, Source
from billing.roles import BILLING_ADMIN, roles_sync
from billing.services import period_finalize, source_set
from ingest.focus.services import file_import
from journals.services import journal_export
from statements.services import statements_generate
from tests.browser import login, page, shots, stray_connections_closed
from tests.conftest import focus_row, seed_with_accounting, write_focus

pytestmark = pytest.mark.browser
__all__ = ["page", "shots", "stray_connections_closed"]  # fixtures used by name

PERIOD = "2025-01"
QUEUE = "/admin/billing/charge/?review_state__exact=pending"

# blocker -> the charge row that has it (None: a setting, not a charge)
ROWS: dict[str, dict[str, str] | None] = {
    "missing PI": {"pi": "", "resource": "no-pi"},
    "invalid email": {"pi": "yuki@", "project": "proj-y", "resource": "bad-email"},
    "bad fund/org": {"fund_org": "TBD", "resource": "bad-fund"},
    "foreign currency without a rate": {"currency": "EUR", "resource": "eur"},
    "source without a credit fund/org": None,
}


@pytest.fixture
def site(live_db: None) -> None:
    seed_with_accounting()
    roles_sync()
    import_module("journals.migrations.0002_layouts_locks_roles").seed(apps, None)


def _month(tmp_path: Path, kind: str) -> Charge | None:
    row = ROWS[kind]
    rows = [focus_row(resource="fine", billed="10.00")]
    if row is not None:
        rows.append(focus_row(billed="4.00", **row))  # type: ignore[arg-type]
    path = write_focus(tmp_path / f"aws_{PERIOD}.csv", rows)
    file_import(path=path, source=Source.objects.get(slug="aws"), actor=Actor("setup", "cli"))
    if row is None:
        source_set(slug="aws", actor=Actor("setup", "cli"), credit_fund_org="")
        return None
    return Charge.objects.get(resource_id=row["resource"])


def _approve_from_the_queue(page: Any, base: str, charge: Charge) -> str:
    page.goto(base + QUEUE)
    page.locator(f"input[name=_selected_action][value='{charge.pk}']").check()
    page.select_option("select[name=action]", "approve")
    page.get_by_role("button", name="Go").click()
    page.wait_for_load_state()
    return str(page.locator("ul.messagelist").inner_text())


def _fix(page: Any, charge: Charge, *, pi: str = "", fund_org: str = "") -> None:
    """From the list the message linked to: the charge's page, Fix attribution."""
    page.locator(f"#result_list a[href*='/billing/charge/{charge.pk}/']").first.click()
    page.wait_for_load_state()
    page.get_by_role("link", name="Fix attribution…").click()
    page.wait_for_load_state()
    if pi:
        page.locator("#id_pi + .select2 .select2-selection").click()
        page.locator(".select2-search__field").fill(pi.split("@")[0])
        page.locator(".select2-results__option", has_text=pi).first.click()
    if fund_org:
        page.fill("#id_fund_org", fund_org)
    page.fill("#id_note", "owner confirmed")
    page.get_by_role("button", name="Preview").click()
    page.wait_for_load_state()
    page.get_by_role("button", name="Apply").click()
    page.wait_for_load_state()


def _close(page: Any, base: str) -> str:
    period = BillingPeriod.objects.get(period=PERIOD)
    page.goto(f"{base}/admin/billing/billingperiod/{period.pk}/change/")
    page.get_by_role("button", name=f"Close period {PERIOD}").click()
    page.wait_for_load_state()
    return str(page.locator("ul.messagelist").inner_text())


@pytest.mark.parametrize("kind", list(ROWS))
def test_each_blocker_is_caught_early_with_a_link_to_its_fix(
    live_server: Any,
    page: Any,
    site: None,
    tmp_path: Path,
    kind: str,
    shots: Callable[[Any, str], Path],
) -> None:
    base = live_server.url
    charge = _month(tmp_path, kind)
    login(page, base, BILLING_ADMIN)

    if kind in ("missing PI", "invalid email", "bad fund/org"):
        message = _approve_from_the_queue(page, base, charge)  # type: ignore[arg-type]
        assert message.startswith("Nothing was approved: 1 charge needs its attribution fixed")
        page.locator("ul.messagelist").get_by_role("link", name="Show them").click()
        page.wait_for_url("**reason=blocking**")
        assert page.locator("#result_list tbody tr").count() == 1
        if kind == "invalid email":
            page.locator(f"#result_list a[href*='/billing/charge/{charge.pk}/']").first.click()  # type: ignore[union-attr]
            page.wait_for_load_state()
            assert "PI email “yuki@” is not an address." in page.locator("#content").inner_text()
            shots(page, "blocked-charge-page")
            page.go_back()
        if kind == "bad fund/org":
            _fix(page, charge, fund_org="NSF-BIO-2024")  # type: ignore[arg-type]
        else:
            _fix(page, charge, pi="ada@example.edu")  # type: ignore[arg-type]
        assert Charge.objects.get(pk=charge.pk).review_state == "approved"  # type: ignore[union-attr]
    elif kind == "foreign currency without a rate":
        message = _approve_from_the_queue(page, base, charge)  # type: ignore[arg-type]
        assert message == (
            "Nothing was approved: 1 charge in another currency cannot be approved without an "
            f"exchange rate (EUR {PERIOD}). Record the rate (USD per EUR)."
        )
        page.locator("ul.messagelist").get_by_role("link", name="Record the rate").click()
        page.wait_for_load_state()
        assert page.locator("#id_currency").input_value() == "EUR"
        assert page.locator("#id_month").input_value() == PERIOD
        page.fill("#id_rate", "1.10")
        page.get_by_role("button", name="Save", exact=True).click()
        page.wait_for_load_state()
        assert _approve_from_the_queue(page, base, charge).startswith("Approved 1 charge.")  # type: ignore[arg-type]
    else:
        message = _close(page, base)
        assert message.startswith(f"{PERIOD} cannot be closed yet: source aws has no credit")
        blockers = page.locator("#ocb-close-blockers")
        assert "source aws has no credit fund/org" in blockers.inner_text()
        blockers.evaluate("el => el.scrollIntoView({block: 'center'})")
        box = blockers.bounding_box()
        assert box is not None
        assert box["y"] >= 0
        assert box["y"] + box["height"] <= 900
        shots(page, "close-blockers")
        blockers.get_by_role("link", name="edit source Amazon Web Services").click()
        page.wait_for_load_state()
        page.fill("#id_credit_fund_org", "RCI-AWS")
        page.get_by_role("button", name="Save", exact=True).click()
        page.wait_for_load_state()

    assert _close(page, base) == f"Period {PERIOD} is closed."
    # Closed: the later steps have nothing left to refuse for a data reason.
    setup = Actor("setup", "cli")
    statements_generate(period=PERIOD, actor=setup, sync=True)
    journal_export(period=PERIOD, format="gl", actor=setup)
    period_finalize(period=PERIOD, actor=setup)
