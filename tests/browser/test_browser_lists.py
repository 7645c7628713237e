"""List pages in a real browser (headless Chromium driven by Playwright): the
review queue shows its money and its action bar at 1400x900, and stays usable
at 800 px, its table scrolling inside its own box; the other busy lists fit
too; axe finds no serious or critical problem, light and dark.

Screenshots go to ``$OPENCHARGEBACK_SCREENSHOT_DIR`` (``make screenshots``
points it at ``docs/images``) or to the test's temporary directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from billing.audit import Actor
from billing.models import PI, AuditEvent, Charge, InstitutionSettings, Project, Source
from billing.review import charges_review
from billing.roles import BILLING_ADMIN, REVIEWER, roles_sync
from billing.seed import defaults_seed
from ingest.focus.services import file_import
from tests.browser import axe_problems, login, page, shots, stray_connections_closed
from tests.conftest import focus_row, write_focus

pytestmark = pytest.mark.browser
__all__ = ["page", "shots", "stray_connections_closed"]  # fixtures used by name

LONG_PI = "Professor Maximiliana Alexandra Featherstonehaugh-Worthington"
LONG_PROJECT = "coastal-sediment-flux-and-estuarine-carbon-budget-2026"
LONG_SERVICE = "Amazon Elastic Compute Cloud - Dedicated Hosts and Capacity Reservations"
QUEUE = "/admin/billing/charge/"
# The columns a reviewer needs, by the class Django gives their headers.
COLUMNS = [
    "column-id",
    "column-reasons",
    "column-pi_name",
    "column-project_name",
    "column-fund_org_text",
    "column-service",
    "column-billed_amount",
    "column-list_amount",
]


@pytest.fixture
def month(live_db: None, tmp_path: Path) -> None:
    """Demo-like charges: long names, and charges with several flag reasons."""
    defaults_seed()
    roles_sync()
    settings = InstitutionSettings.objects.get()
    settings.large_charge_threshold = 500
    settings.save()
    pi = PI.objects.create(email="max.fw@example.edu", name=LONG_PI, department="Geosciences")
    Project.objects.create(project_id=LONG_PROJECT, title="Estuarine carbon budget", pi=pi)
    rows = [
        focus_row(
            resource=f"vm-{i}",
            billed=f"{1200 + i}.45",
            list_cost=f"{2400 + i}.90",
            service=LONG_SERVICE,
            pi="max.fw@example.edu",
            project=LONG_PROJECT,
            fund_org="NSF-GEO-2026-ESTUARINE-CARBON",
        )
        for i in range(8)
    ]
    # Several reasons on one charge: missing project and fund/org, a bad PI
    # email, large.
    rows += [
        focus_row(
            resource=f"orphan-{i}",
            billed=f"{9000 + i}.99",
            pi="yuki@",
            project="",
            fund_org="",
            service=LONG_SERVICE,
        )
        for i in range(4)
    ]
    path = write_focus(tmp_path / "aws-2025-01.csv", rows)
    actor = Actor("setup", "cli")
    file_import(path=path, source=Source.objects.get(slug="aws"), actor=actor)
    charges_review(
        charges=Charge.objects.filter(resource_id="vm-0"),
        action="approve",
        actor=actor,
        note="Checked with the PI; the reservation was planned",
    )


def box(page: Any, selector: str) -> dict[str, float]:
    found = page.locator(selector).first.bounding_box()
    assert found is not None, f"{selector} is not displayed"
    return dict(found)


def inside(b: dict[str, float], width: float, height: float) -> bool:
    return (
        b["x"] >= 0
        and b["y"] >= 0
        and b["x"] + b["width"] <= width
        and b["y"] + b["height"] <= height
    )


def test_review_queue_shows_the_money_at_1400_px(
    live_server: Any, page: Any, month: None, shots: Callable[[Any, str], Path]
) -> None:
    base = live_server.url
    page.set_viewport_size({"width": 1400, "height": 900})
    login(page, base, REVIEWER)
    page.goto(base + QUEUE)
    for column in COLUMNS:
        assert inside(box(page, f"#result_list thead th.{column}"), 1400, 900), column
    assert inside(box(page, "select[name=action]"), 1400, 900)
    assert inside(box(page, "button[name=index]"), 1400, 900)  # Go
    # Nothing scrolls sideways: neither the page nor the table's box.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    results = "document.querySelector('#changelist-form .results')"
    assert page.evaluate(f"{results}.scrollWidth <= {results}.clientWidth")
    # The nav sidebar starts folded on lists.
    assert not page.locator("#nav-sidebar").is_visible()

    # Four flag reasons sit on at most two lines of chips, the full label on hover.
    row = page.locator("#result_list tbody tr", has_text="Bad PI email").first
    chips = row.locator("td.field-reasons .ocb-chip")
    assert chips.count() == 4
    tops = {round(chips.nth(i).bounding_box()["y"]) for i in range(chips.count())}
    assert len(tops) <= 2, tops
    assert row.locator(".ocb-chip[title='Invalid PI email']").count() == 1
    # Money is right-aligned, tabular, whole; the large amount is all there.
    billed = row.locator("td.field-billed_amount")
    assert billed.evaluate("e => getComputedStyle(e).textAlign") == "right"
    assert "tabular-nums" in billed.evaluate("e => getComputedStyle(e).fontVariantNumeric")
    assert billed.inner_text().strip().startswith("$9,00")
    # Long names are cut to the column, whole in the tooltip.
    long_row = page.locator("#result_list tbody tr", has_text="Featherstonehaugh").first
    pi_cell = long_row.locator("td.field-pi_name .ocb-clip")
    assert pi_cell.get_attribute("title") == f"{LONG_PI} <max.fw@example.edu>"
    assert pi_cell.evaluate("e => e.scrollWidth > e.clientWidth")
    project = long_row.locator("td.field-project_name .ocb-clip")
    assert project.get_attribute("title") == f"{LONG_PROJECT}: Estuarine carbon budget"
    shots(page, "review-queue")

    # The action bar works: approve two charges from it.
    page.locator("#result_list tbody tr", has_text="$1,201.45").locator(
        "input[name=_selected_action]"
    ).check()
    page.locator("#result_list tbody tr", has_text="$1,202.45").locator(
        "input[name=_selected_action]"
    ).check()
    page.select_option("select[name=action]", "approve")
    page.get_by_role("button", name="Go").click()
    page.wait_for_load_state()
    assert page.locator("#ocb-action-summary").inner_text() == (
        "Selected: 2 charges, billed total $2,403.90, list total $4,804.80."
    )
    page.get_by_role("button", name="Approve 2 charges").click()
    page.wait_for_load_state()
    assert "Approved 2 charges." in page.locator("ul.messagelist").inner_text()
    approved = Charge.objects.filter(review_state="approved").values_list("resource_id", flat=True)
    assert set(approved) == {"vm-0", "vm-1", "vm-2"}

    page.emulate_media(color_scheme="dark")
    page.reload()
    shots(page, "review-queue-1400-dark")


def test_review_queue_is_usable_at_800_px(
    live_server: Any, page: Any, month: None, shots: Callable[[Any, str], Path]
) -> None:
    base = live_server.url
    page.set_viewport_size({"width": 800, "height": 900})
    login(page, base, REVIEWER)
    page.goto(base + QUEUE)
    assert not page.locator("#nav-sidebar").is_visible()
    # The page itself does not scroll sideways; the table scrolls in its box.
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    results = page.locator("#changelist-form .results")
    assert results.evaluate("e => e.scrollWidth > e.clientWidth")
    # The action bar is on screen with the table's first rows.
    assert inside(box(page, "select[name=action]"), 800, 900)
    assert inside(box(page, "button[name=index]"), 800, 900)
    first_row = box(page, "#result_list tbody tr")
    assert first_row["y"] + first_row["height"] <= 900
    shots(page, "review-queue-800-light")

    # The billed column is reached by scrolling the table's own box.
    results.evaluate("e => { e.scrollLeft = e.scrollWidth; }")
    billed = box(page, "#result_list thead th.column-billed_amount")
    frame = box(page, "#changelist-form .results")
    assert frame["x"] <= billed["x"]
    assert billed["x"] + billed["width"] <= frame["x"] + frame["width"]
    assert inside(billed, 800, 900)
    assert page.evaluate("window.scrollX") == 0

    # Its header stays in view while the rows scroll under it.
    results.evaluate("e => { e.scrollTop = e.scrollHeight; }")
    assert abs(box(page, "#result_list thead th.column-billed_amount")["y"] - billed["y"]) < 2

    page.emulate_media(color_scheme="dark")
    page.reload()
    shots(page, "review-queue-800-dark")


def test_the_nav_sidebar_opens_on_lists_and_stays_as_chosen(
    live_server: Any, page: Any, month: None
) -> None:
    base = live_server.url
    page.set_viewport_size({"width": 1400, "height": 900})
    login(page, base, REVIEWER)
    page.goto(base + QUEUE)
    assert not page.locator("#nav-sidebar").is_visible()
    page.click("#toggle-nav-sidebar")
    assert page.locator("#nav-sidebar").is_visible()
    assert page.locator("#nav-sidebar").get_attribute("aria-expanded") == "true"
    page.goto(base + "/admin/billing/auditevent/")
    assert page.locator("#nav-sidebar").is_visible()
    # Other pages keep Django's own choice (open unless closed there).
    charge_page = f"/admin/billing/charge/{Charge.objects.get(resource_id='vm-0').pk}/change/"
    page.goto(base + charge_page)
    assert page.locator("#nav-sidebar").is_visible()
    page.goto(base + QUEUE)
    page.click("#toggle-nav-sidebar")
    assert not page.locator("#nav-sidebar").is_visible()
    page.goto(base + charge_page)
    assert page.locator("#nav-sidebar").is_visible()
    page.goto(base + QUEUE)
    assert not page.locator("#nav-sidebar").is_visible()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [1400, 800])
def test_lists_pass_axe(live_server: Any, page: Any, month: None, scheme: str, width: int) -> None:
    base = live_server.url
    page.set_viewport_size({"width": width, "height": 900})
    login(page, base, BILLING_ADMIN)
    page.emulate_media(color_scheme=scheme)
    problems = {}
    for url in [QUEUE, f"{QUEUE}?reason=invalid_pi_email", "/admin/billing/auditevent/"]:
        page.goto(base + url)
        if found := axe_problems(page):
            problems[url] = found
    assert problems == {}


def test_other_lists_fit_1400_px_and_the_audit_log_speaks_words(
    live_server: Any, page: Any, month: None
) -> None:
    base = live_server.url
    page.set_viewport_size({"width": 1400, "height": 900})
    login(page, base, BILLING_ADMIN)
    for url in [
        "/admin/statements/statement/",
        "/admin/ingest/import/",
        "/admin/statements/emaillog/",
        "/admin/billing/auditevent/",
        "/admin/billing/pi/",  # a list without filters
    ]:
        page.goto(base + url)
        assert page.evaluate("document.documentElement.scrollWidth") <= 1400, url
        # (a list without rows has no table)
        results = "document.querySelector('#changelist-form .results')"
        assert page.evaluate(f"!{results} || {results}.scrollWidth <= {results}.clientWidth"), url

    page.goto(base + "/admin/billing/auditevent/")
    listing = page.locator("#result_list tbody").inner_text()
    charge = Charge.objects.get(resource_id="vm-0")
    assert f"Approved charge #{charge.pk}" in listing
    assert "Checked with the PI; the reservation was planned" in listing
    assert "charge.approve" not in listing
    imported = AuditEvent.objects.get(action="import.create")
    assert f"Imported {imported.object_repr}" in listing
    # Each event links to its object's page.
    page.get_by_role("link", name=f"Approved charge #{charge.pk}").click()
    page.wait_for_url(f"**/admin/billing/charge/{charge.pk}/change/")
    page.go_back()
    # The filter offers actions in words, the query keeps the code.
    page.get_by_role("link", name="Charge: approve").click()
    page.wait_for_url("**action=charge.approve**")
    assert page.locator("#result_list tbody tr").count() == 1


def test_dashboard_month_switcher_in_the_browser(
    live_server: Any, page: Any, month: None, tmp_path: Path, shots: Callable[[Any, str], Path]
) -> None:
    """Two open months: the dashboard opens on the older one, the switcher
    (plain links) goes to the other, whose Import step names the missing source."""
    actor = Actor("setup", "cli")
    path = write_focus(tmp_path / "gcp-2025-01.csv", [focus_row(resource="gcp-1")])
    file_import(path=path, source=Source.objects.get(slug="gcp"), actor=actor)
    rows = [focus_row(period="2025-02", resource="feb-1"), focus_row(period="2025-02", pi="")]
    path = write_focus(tmp_path / "aws-2025-02.csv", rows)
    file_import(path=path, source=Source.objects.get(slug="aws"), actor=actor)

    base = live_server.url
    page.set_viewport_size({"width": 1400, "height": 900})
    login(page, base, BILLING_ADMIN)
    months = page.get_by_role("navigation", name="Months not finalized")
    assert months.locator("a[aria-current=page]").inner_text().startswith("2025-01")
    pending = Charge.objects.filter(period__period="2025-01", review_state="pending").count()
    assert pending == 11
    assert "2025-01 Open, 11 to review\n2025-02 Open, 1 to review" in months.inner_text()
    months.get_by_role("link", name="2025-02").click()
    page.wait_for_url("**/admin/?period=2025-02")
    assert page.locator("#ocb-period").inner_text().startswith("2025-02")
    check = page.locator("#ocb-source-check").inner_text()
    assert "missing: Google Cloud" in check
    assert "2 expected (delivered in 2025-01)" in check
    assert "missing: Google Cloud" in page.locator(".ocb-cycle li").first.inner_text()
    shots(page, "dashboard-months")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        assert axe_problems(page) == [], scheme


def test_statements_and_emails_lists_at_1400_and_800_px(
    live_server: Any, page: Any, month: None
) -> None:
    """With statements generated and emailed (long PI names and emails), the
    lists fit 1400 px; at 800 px the page keeps still and the table scrolls."""
    from billing.services import period_close, source_set
    from statements.services import statements_generate

    actor = Actor("setup", "cli")
    source_set(slug="aws", actor=actor, credit_fund_org="RCI-AWS", account_code="740000")
    pending = Charge.objects.filter(review_state="pending")
    charges_review(
        charges=pending.filter(resource_id__startswith="orphan"),
        action="reject",
        actor=actor,
        note="no owner",
    )
    charges_review(charges=pending, action="approve", actor=actor)
    period_close(period="2025-01", actor=actor)
    statements_generate(period="2025-01", actor=actor, sync=True, send=True)

    base = live_server.url
    login(page, base, BILLING_ADMIN)
    for width in (1400, 800):
        page.set_viewport_size({"width": width, "height": 900})
        for url in ["/admin/statements/statement/", "/admin/statements/emaillog/"]:
            page.goto(base + url)
            assert page.locator("#result_list tbody tr").count() == 1, url
            assert page.evaluate("document.documentElement.scrollWidth") <= width, (url, width)
            results = page.locator("#changelist-form .results")
            fits = results.evaluate("e => e.scrollWidth <= e.clientWidth")
            assert fits if width == 1400 else not fits, (url, width)
            assert inside(box(page, "select[name=action]"), width, 900), (url, width)
    page.goto(base + "/admin/statements/statement/")
    assert LONG_PI in (page.locator("td.field-pi").get_attribute("title") or "")
