"""The review queue in a real browser (headless Chromium driven by Playwright).

A reviewer logs in through the login form, filters the queue by a flag
reason, approves two charges with a note from the action bar and finds the
audit entries. Screenshots of the queue in light and dark mode are written
to ``$OPENCHARGEBACK_SCREENSHOT_DIR`` (``make screenshots`` points it at
``docs/images``) or to the test's temporary directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from billing.audit import Actor
from billing.models import AuditEvent, BillingPeriod, Charge, Source
from billing.roles import BILLING_ADMIN, REVIEWER, roles_sync
from ingest.focus.services import file_import
from tests.browser import (
    background,
    confirmation_shots,
    login,
    page,
    shots,
    stray_connections_closed,
)
from tests.conftest import focus_row, seed_with_accounting, write_focus

pytestmark = pytest.mark.browser
NOTE = "Confirmed with the PI by email"
__all__ = ["page", "shots", "stray_connections_closed"]  # fixtures used by name


@pytest.fixture
def month(live_db: None, tmp_path: Path) -> None:
    seed_with_accounting()
    roles_sync()  # the roles are data: a transactional test starts from an empty database
    rows = [
        focus_row(resource=f"orphan-{i}", billed=f"{i}.25", pi="", project="") for i in range(1, 5)
    ]
    rows += [focus_row(resource=f"vm-{i}", billed="12.00") for i in range(6)]
    rows += [  # flagged for a look only: who pays is right
        focus_row(resource=f"mkt-{i}", billed="30.00", service="AWS Marketplace") for i in (1, 2)
    ]
    path = write_focus(tmp_path / "aws-2025-01.csv", rows)
    file_import(path=path, source=Source.objects.get(slug="aws"), actor=Actor("setup", "cli"))


def test_reviewer_filters_approves_with_a_note_and_sees_the_audit(
    live_server: Any, page: Any, month: None, shots: Callable[[Any, str], Path]
) -> None:
    base = live_server.url
    login(page, base, REVIEWER)

    page.get_by_role("link", name="Charges", exact=True).click()
    page.wait_for_url("**/admin/billing/charge/")
    page.get_by_role("link", name="Missing PI").click()
    page.wait_for_url("**reason=missing_pi**")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 4
    shots(page, "review-queue-light")

    # Who pays is unknown: approving is refused, and the message links to them.
    boxes = page.locator("input[name=_selected_action]")
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.select_option("select[name=action]", "approve")
    page.fill("input[name=note]", NOTE)
    page.get_by_role("button", name="Go").click()
    page.wait_for_load_state()
    message = page.locator("ul.messagelist").inner_text()
    assert message.startswith(
        "Nothing was approved: 2 charges need their attribution fixed (2 Missing PI, "
        "2 Missing project): fix or reject them"
    )
    page.locator("ul.messagelist").get_by_role("link", name="Show them").click()
    page.wait_for_url("**reason=blocking**")
    assert page.locator("#result_list tbody tr").count() == 4
    assert not Charge.objects.filter(review_state="approved", resource_id__startswith="orphan")

    # Everything pending at once: a confirmation with the count, the amounts
    # and what stays pending; Cancel goes back to the list as it was filtered.
    page.goto(f"{base}/admin/billing/charge/?review_state__exact=pending")
    pending_list = page.url
    page.locator("#action-toggle").check()
    page.select_option("select[name=action]", "approve")
    page.get_by_role("button", name="Go").click()
    page.wait_for_load_state()
    assert "Approve charges" in page.title()
    assert page.locator("#ocb-action-summary").inner_text() == (
        "Selected: 6 charges, billed total $71.00, list total $71.00."
    )
    assert page.locator("#ocb-action-details li").all_inner_texts() == [
        "Will be approved: 2 charges, billed $60.00, list $60.00.",
        "Stay pending: 4 charges need their attribution fixed (4 Missing PI, 4 Missing "
        "project): fix or reject them ($11.00 billed). Show them.",
    ]
    confirmation_shots(page, shots, "approve-confirmation")
    page.get_by_role("link", name="Cancel").click()
    page.wait_for_load_state()
    assert page.url == pending_list
    assert not Charge.objects.filter(review_state="approved", resource_id__startswith="mkt")

    # Flagged for a look, owner known: approved with a note, once confirmed.
    page.get_by_role("link", name="Matches a review pattern").click()
    page.wait_for_url("**reason=pattern_match**")
    pattern_list = page.url
    page.locator("#action-toggle").check()
    page.select_option("select[name=action]", "approve")
    page.fill("input[name=note]", NOTE)
    page.get_by_role("button", name="Go").click()
    page.wait_for_load_state()
    assert page.locator("#id_note").input_value() == NOTE
    page.get_by_role("button", name="Approve 2 charges").click()
    page.wait_for_load_state()
    assert page.url == pattern_list
    assert "Approved 2 charges." in page.locator("ul.messagelist").inner_text()

    approved = Charge.objects.filter(review_state="approved", resource_id__startswith="mkt")
    assert approved.count() == 2
    assert {c.review_note for c in approved} == {NOTE}

    page.goto(f"{base}/admin/billing/auditevent/?action__exact=charge.approve")
    listing = page.locator("#result_list tbody")
    assert listing.locator("tr").count() == 2
    assert listing.inner_text().count(NOTE) == 2
    assert listing.inner_text().count(REVIEWER) == 2

    # Dark mode follows the system preference (the admin's toggle defaults to "auto").
    page.goto(f"{base}/admin/billing/charge/?reason=missing_pi")
    light = background(page)
    page.emulate_media(color_scheme="dark")
    page.reload()
    dark = background(page)
    assert light != dark
    shots(page, "review-queue-dark")
    assert AuditEvent.objects.filter(action="charge.approve", actor=REVIEWER).count() == 2


def test_custom_pages_follow_the_dark_theme(
    live_server: Any, page: Any, month: None, shots: Callable[[Any, str], Path]
) -> None:
    """Pages this project adds or overrides use the admin's colours, never fixed ones."""
    base = live_server.url
    login(page, base, BILLING_ADMIN)
    period = BillingPeriod.objects.get()
    pages = {
        "period": f"/admin/billing/billingperiod/{period.pk}/change/",
        "pattern-preview": "/admin/billing/patternrule/preview/?pattern=orphan",
        "fund-org-preview": "/admin/billing/fundorgpattern/preview/?pattern=NSF.*",
        "queue-filtered": "/admin/billing/charge/?pi=ada",
        "help": "/admin/help/statements/",
    }
    page.emulate_media(color_scheme="dark")
    # The theme toggle is what people use: set it to dark explicitly too.
    page.goto(f"{base}/admin/")
    page.evaluate("localStorage.setItem('theme', 'dark')")
    reference = background(page)
    for name, url in pages.items():
        page.goto(base + url)
        assert background(page) == reference, name
        # Text stays readable: the main colour is light on the dark background.
        colour = page.evaluate("getComputedStyle(document.querySelector('#content')).color")
        red, green, blue = (int(v) for v in colour[colour.index("(") + 1 : -1].split(",")[:3])
        assert red + green + blue > 3 * 128, (name, colour)
        shots(page, f"{name}-dark")

    # The reject confirmation page, reached through the action bar.
    page.goto(f"{base}/admin/billing/charge/?reason=missing_pi")
    page.locator("input[name=_selected_action]").nth(0).check()
    page.select_option("select[name=action]", "reject")
    page.get_by_role("button", name="Go").click()
    page.wait_for_load_state()
    assert "Reject charges" in page.title()
    assert background(page) == reference


def _reviewed_and_closed() -> Actor:
    """The month after review: the orphans rejected, the rest approved, closed."""
    from billing.review import charges_review
    from billing.services import period_close

    setup = Actor("setup", "cli")
    charges_review(
        charges=Charge.objects.filter(pi=None), action="reject", actor=setup, note="no owner"
    )
    charges_review(
        charges=Charge.objects.filter(review_state="pending"), action="approve", actor=setup
    )
    period_close(period="2025-01", actor=setup)
    return setup


def test_billing_admin_generates_and_sends_statements(
    live_server: Any, page: Any, month: None, shots: Callable[[Any, str], Path]
) -> None:
    from django.core import mail

    from statements.models import Statement

    _reviewed_and_closed()
    base = live_server.url
    login(page, base, BILLING_ADMIN)

    page.goto(f"{base}/admin/statements/statement/")
    page.get_by_role("link", name="Generate statements…").click()
    page.wait_for_url("**/generate/**")
    page.check("#id_send")
    page.get_by_role("button", name="Check what will happen").click()
    page.wait_for_load_state()
    assert "1 new statement" in page.locator("#content").inner_text()
    assert not Statement.objects.exists()  # a preview writes nothing
    shots(page, "statements-generate-light")
    page.get_by_role("button", name="Generate 1 statement and send").click()
    page.wait_for_url("**/statement/?period__id__exact=**")
    messages = page.locator("ul.messagelist").inner_text()
    assert "1 statement generated" in messages
    assert "1 email sent" in messages
    assert [m.to for m in mail.outbox] == [["ada@example.edu"]]
    shots(page, "statements-light")

    statement = Statement.objects.get()
    page.get_by_role("link", name=statement.number).click()
    page.wait_for_url(f"**/statement/{statement.pk}/change/**")
    frame = page.locator("iframe.ocb-pdf-preview")
    assert frame.count() == 1
    response = page.request.get(base + frame.get_attribute("src").split("#")[0])
    assert response.headers["content-type"] == "application/pdf"
    assert response.body() == statement.pdf.read()
    assert "Sent" in page.locator("#content").inner_text()

    page.emulate_media(color_scheme="dark")
    page.goto(f"{base}/admin/statements/statement/")
    shots(page, "statements-dark")


def test_billing_admin_previews_and_exports_the_journal(
    live_server: Any, page: Any, month: None, shots: Callable[[Any, str], Path]
) -> None:
    from importlib import import_module

    from django.apps import apps

    from billing.services import source_set
    from journals.models import JournalExport
    from statements.services import statements_generate

    # the layouts are data from a migration: a transactional test starts without them
    import_module("journals.migrations.0002_layouts_locks_roles").seed(apps, None)
    setup = _reviewed_and_closed()
    source_set(slug="aws", actor=setup, credit_fund_org="RCI-CLOUD", account_code="740100")
    statements_generate(period="2025-01", actor=setup, sync=True)
    base = live_server.url
    login(page, base, BILLING_ADMIN)

    page.goto(f"{base}/admin/journals/journalexport/")
    page.get_by_role("link", name="Export a journal…").click()
    page.select_option("#id_format", "workday")
    page.check("#id_xlsx")
    page.get_by_role("button", name="Preview").click()
    page.wait_for_load_state()
    content = page.locator("#content").inner_text()
    assert "$132.00" in content
    assert page.locator("#journal-preview caption").text_content() == "The first 2 of 2 lines"
    assert page.locator("#journal-preview thead th").first.text_content() == "Journal Key"
    assert not JournalExport.objects.exists()
    shots(page, "journal-export-light")
    page.get_by_role("button", name="Export workday").click()
    page.wait_for_url("**/journalexport/")
    with page.expect_download() as info:
        page.locator("ul.messagelist a").click()
    download = info.value
    export = JournalExport.objects.get()
    assert download.suggested_filename.endswith(".xlsx")
    assert Path(download.path()).read_bytes() == export.file.read()
    page.emulate_media(color_scheme="dark")
    page.goto(f"{base}/admin/journals/journalexport/export/?period=2025-01&format=gl")
    shots(page, "journal-export-dark")
