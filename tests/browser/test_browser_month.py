"""A whole month in a real browser, as people do it, and accessibility scans.

A billing admin drops three FOCUS files on the import page, checks their
previews and imports them; a reviewer approves the flagged charges; the
billing admin closes the month, generates and sends the statements, exports
the GL journal as XLSX and finalizes. The dashboard's numbers then equal the
statements' and the journal's. A viewer finds no button that changes
anything, and axe-core finds no serious or critical problem on the main pages.
Screenshots (light and dark) go to ``docs/images`` with ``make screenshots``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.core import mail
from django.db.models import Sum

from billing.audit import Actor
from billing.models import PI, BillingPeriod, Charge, InstitutionSettings, Source
from billing.roles import BILLING_ADMIN, REVIEWER, VIEWER, roles_sync
from billing.services import source_set
from ingest.focus.services import file_import
from journals.models import JournalExport
from statements.models import Statement
from tests.browser import (
    axe_problems,
    changing_buttons,
    confirmation_shots,
    login,
    page,
    shots,
    stray_connections_closed,
)
from tests.conftest import focus_row, seed_with_accounting, write_focus

pytestmark = pytest.mark.browser
__all__ = ["page", "shots", "stray_connections_closed"]  # fixtures used by name

PERIOD = "2025-03"
NOTE = "Checked against the grant"


@pytest.fixture
def site(live_db: None) -> None:
    """A new site: default settings, roles, journal layouts, sources with GL accounts."""
    seed_with_accounting()
    roles_sync()  # the roles are data: a transactional test starts from an empty database
    import_module("journals.migrations.0002_layouts_locks_roles").seed(apps, None)
    setup = Actor("setup", "cli")
    for slug, account in (("aws", "740100"), ("azure", "740200"), ("gcp", "740300")):
        source_set(slug=slug, actor=setup, credit_fund_org="RCI-CLOUD", account_code=account)


def _choose_all_and_send(page: Any) -> None:
    page.locator("#action-toggle").check()
    page.select_option("select[name=action]", "send_selected")
    page.get_by_role("button", name="Go").click()
    page.wait_for_load_state()
    assert "Send statements" in page.title()


def _fix_by_lookup(
    page: Any, resource: str, picks: list[tuple[str, str, str]], typo: str = ""
) -> None:
    """Fix one charge's attribution from the queue: search, pick, preview, apply.

    With `typo`, the reviewer first types a PI email nobody has: the search
    finds nothing, and creating a PI from it without a name is refused."""
    charge = Charge.objects.get(resource_id=resource)
    page.locator(f"input[name=_selected_action][value='{charge.pk}']").check()
    page.select_option("select[name=action]", "fix_attribution")
    page.get_by_role("button", name="Go").click()
    page.wait_for_load_state()
    if typo:
        page.locator("#id_pi + .select2 .select2-selection").click()
        page.locator(".select2-search__field").fill(typo)
        page.locator(".select2-results__option", has_text="No results found").wait_for()
        page.keyboard.press("Escape")
        page.check("#id_create_pi")
        page.fill("#id_new_pi_email", typo)
        page.get_by_role("button", name="Preview").click()
        page.wait_for_load_state()
        assert "A new PI needs a name." in page.locator("#content").inner_text()
        assert not PI.objects.filter(email=typo).exists()
        page.uncheck("#id_create_pi")
        page.fill("#id_new_pi_email", "")
    for field, text, pick in picks:
        page.locator(f"#id_{field} + .select2 .select2-selection").click()
        page.locator(".select2-search__field").fill(text)
        page.locator(".select2-results__option", has_text=pick).first.click()
    page.fill("#id_note", NOTE)
    page.get_by_role("button", name="Preview").click()
    page.wait_for_load_state()
    assert "1 charge would change" in page.locator("#fix-preview").inner_text()
    page.get_by_role("button", name="Apply").click()
    page.wait_for_load_state()
    assert "Fixed 1 charge" in page.locator("ul.messagelist").inner_text()


def _files(folder: Path) -> list[Path]:
    """Three providers' files for the month, named the ways providers name them."""
    aws = [
        focus_row(period=PERIOD, resource=f"vm-{i}", billed="12.50", list_cost="20.00")
        for i in range(4)
    ]
    aws.append(focus_row(period=PERIOD, resource="orphan", pi="", project="", billed="7.25"))
    azure = [
        focus_row(
            period=PERIOD, resource="db", pi="bob@example.edu", project="proj-c", billed="30.10"
        ),
        focus_row(
            period=PERIOD, resource="big", project="proj-b", billed="40.00", list_cost="55.55"
        ),
    ]
    gcp = [
        focus_row(
            period=PERIOD, resource="bq", pi="cy@example.edu", project="proj-d", billed="3.33"
        ),
        focus_row(period=PERIOD, resource="gke", pi="cy@example.edu", project="", billed="1.01"),
    ]
    return [
        write_focus(folder / "aws_2025-03.csv", aws),
        write_focus(folder / "azure_2025_03.csv", azure),
        write_focus(folder / "gcp-202503.csv", gcp),
    ]


def _drop(page: Any, selector: str, files: list[Path]) -> None:
    """Drop files on an element, as a drag from the file manager does."""
    payload = [{"name": f.name, "text": f.read_text()} for f in files]
    transfer = page.evaluate_handle(
        """files => {
            const transfer = new DataTransfer();
            for (const f of files) {
                transfer.items.add(new File([f.text], f.name, {type: "text/csv"}));
            }
            return transfer;
        }""",
        payload,
    )
    page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def _logout(page: Any) -> None:
    page.locator("#logout-form button").click()
    page.wait_for_load_state()


def _next_step(page: Any, base: str) -> str:
    page.goto(f"{base}/admin/")
    return str(page.locator("a.button.ocb-next").inner_text())


def _money(page: Any, element_id: str) -> Decimal:
    text = page.locator(f"#{element_id}").inner_text()
    return Decimal(re.sub(r"[^0-9.\-]", "", text))


def test_a_whole_month_in_the_browser(
    live_server: Any,
    page: Any,
    site: None,
    tmp_path: Path,
    shots: Callable[[Any, str], Path],
) -> None:
    base = live_server.url
    files = _files(tmp_path)

    # -- a billing admin imports three files ----------------------------------------
    login(page, base, BILLING_ADMIN)
    assert "No billing period yet" in page.locator("#content").inner_text()
    page.get_by_role("link", name="Import usage").click()
    page.wait_for_url("**/admin/ingest/import/upload/")
    _drop(page, "#ocb-dropzone", files)
    assert page.locator("#ocb-chosen li").count() == 3
    shots(page, "import-drop-light")
    page.get_by_role("button", name="Upload and preview").click()
    page.wait_for_url("**/upload/*/")
    cards = page.locator("section.ocb-upload")
    assert cards.count() == 3
    expected = {  # file -> (detected source, rows, billed, flagged)
        "aws_2025-03.csv": ("aws", "5", "$57.25", "1"),
        "azure_2025_03.csv": ("azure", "2", "$70.10", "0"),
        "gcp-202503.csv": ("gcp", "2", "$4.34", "1"),
    }
    for name, (source, rows, billed, flagged) in expected.items():
        card = cards.filter(has_text=name)
        assert card.locator("select").input_value() == source
        assert card.locator("input[name$=period]").input_value() == PERIOD
        preview = card.locator("table.ocb-preview").inner_text()
        assert re.search(rf"Rows read\s+{rows}\b", preview), preview
        assert re.search(rf"Billed total\s+{re.escape(billed)}", preview), preview
        assert re.search(rf"Flagged for review\s+{flagged}\b", preview), preview
    assert not Charge.objects.exists()  # previews write nothing
    assert axe_problems(page) == []
    shots(page, "import-preview-light")
    page.emulate_media(color_scheme="dark")
    assert axe_problems(page) == []
    shots(page, "import-preview-dark")
    page.emulate_media(color_scheme="light")
    page.get_by_role("button", name=re.compile(r"Import all previewed \(3\)")).click()
    page.wait_for_load_state()
    assert page.locator("p.ocb-result").count() == 3
    assert Charge.objects.count() == 9
    assert page.get_by_role("link", name="Its charges waiting for review").count() == 3
    assert _next_step(page, base) == "Next: Review flagged charges"
    _logout(page)

    # -- a reviewer attributes the orphan and approves the rest ---------------------------
    login(page, base, REVIEWER)
    page.locator("a.button.ocb-next").click()
    page.wait_for_url("**/admin/billing/charge/?**review_state__exact=pending**")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 2
    # Approving what has no project is refused, with a link to the charges.
    gke = Charge.objects.get(resource_id="gke")
    page.locator(f"input[name=_selected_action][value='{gke.pk}']").check()
    page.select_option("select[name=action]", "approve")
    page.fill("input[name=note]", NOTE)
    page.get_by_role("button", name="Go").click()
    page.wait_for_load_state()
    assert (
        page.locator("ul.messagelist")
        .inner_text()
        .startswith(
            "Nothing was approved: 1 charge needs its attribution fixed (1 Missing project)"
        )
    )
    assert rows.count() == 2
    # Each is fixed by looking up the PI and project in the registry.
    _fix_by_lookup(
        page,
        "orphan",
        [("pi", "ada@", "ada@example.edu"), ("project", "proj-a", "proj-a")],
        typo="ada@exmaple.edu",
    )
    assert rows.count() == 1  # the fixed charge had no flag left: approved
    _fix_by_lookup(page, "gke", [("project", "proj-d", "proj-d")])
    assert rows.count() == 0
    shots(page, "review-after-light")
    _logout(page)

    # -- the billing admin closes, generates, sends, exports, finalizes ------------------
    login(page, base, BILLING_ADMIN)
    assert _next_step(page, base) == "Next: Close the month"
    period = BillingPeriod.objects.get(period=PERIOD)
    page.goto(f"{base}/admin/billing/billingperiod/{period.pk}/change/")
    page.get_by_role("button", name=f"Close period {PERIOD}").click()
    page.wait_for_load_state()
    assert f"Period {PERIOD} is closed." in page.locator("ul.messagelist").inner_text()

    assert _next_step(page, base) == "Next: Generate statements"
    page.locator("a.button.ocb-next").click()
    page.wait_for_url("**/generate/**")
    page.get_by_role("button", name="Check what will happen").click()
    page.wait_for_load_state()
    page.get_by_role("button", name="Generate 4 statements").click()
    page.wait_for_load_state()
    assert "4 statements generated" in page.locator("ul.messagelist").inner_text()

    assert _next_step(page, base) == "Next: Send statements"
    page.locator("a.button.ocb-next").click()
    page.wait_for_url("**/admin/statements/statement/?**email=unsent**")
    unsent_list = page.url
    # Sending shows who gets what and the total first; Cancel keeps the list's filters.
    _choose_all_and_send(page)
    assert not mail.outbox
    assert page.locator("#ocb-send-summary").inner_text() == (
        "3 emails to 3 PIs, 4 statements, total due $131.69."
    )
    recipients = page.locator("#ocb-recipients tbody td.ocb-address")
    assert recipients.all_inner_texts() == ["ada@example.edu", "bob@example.edu", "cy@example.edu"]
    numbers = sorted(Statement.objects.filter(period=period).values_list("number", flat=True))
    listed = page.locator("#ocb-recipients tbody ul.ocb-statements li").all_inner_texts()
    assert sorted(item.split(" · ")[0] for item in listed) == numbers
    assert page.locator("#ocb-send-total").inner_text() == "$131.69"
    confirmation_shots(page, shots, "send-confirmation")
    page.get_by_role("link", name="Cancel").click()
    page.wait_for_load_state()
    assert page.url == unsent_list
    assert not mail.outbox
    _choose_all_and_send(page)
    page.get_by_role("button", name="Send 3 emails").click()
    page.wait_for_load_state()
    assert page.url == unsent_list
    assert "3 emails sent." in page.locator("ul.messagelist").inner_text()
    assert sorted(m.to[0] for m in mail.outbox) == [
        "ada@example.edu",
        "bob@example.edu",
        "cy@example.edu",
    ]

    # -- a late correction: reopen, reject one charge, close, a revised statement --------
    first = Statement.objects.get(period=period, project__project_id="proj-a")
    page.goto(f"{base}/admin/billing/billingperiod/{period.pk}/change/")
    page.fill("#id_note_reopen", "AWS credited vm-3 after the statements went out")
    page.get_by_role("button", name=f"Reopen period {PERIOD}").click()
    page.wait_for_load_state()
    assert f"Period {PERIOD} is open." in page.locator("ul.messagelist").inner_text()
    vm3 = Charge.objects.get(resource_id="vm-3")
    page.goto(f"{base}/admin/billing/charge/{vm3.pk}/change/")
    page.fill("#id_note", "credited by AWS")
    page.get_by_role("button", name="Reject").click()
    page.wait_for_load_state()
    assert Charge.objects.get(pk=vm3.pk).review_state == "rejected"
    page.goto(f"{base}/admin/billing/billingperiod/{period.pk}/change/")
    page.get_by_role("button", name=f"Close period {PERIOD}").click()
    page.wait_for_load_state()
    page.goto(f"{base}/admin/statements/statement/generate/?period={PERIOD}")
    page.get_by_role("button", name="Check what will happen").click()
    page.wait_for_load_state()
    page.get_by_role("button", name="Generate 1 statement", exact=True).click()
    page.wait_for_load_state()
    page.goto(unsent_list)
    _choose_all_and_send(page)
    page.get_by_role("button", name="Send 1 email").click()
    page.wait_for_load_state()
    revised = mail.outbox[-1]
    assert revised.to == ["ada@example.edu"]
    assert "(revised)" in revised.subject
    assert (
        f"This statement replaces statement {first.number} (version 1) of "
        f"{first.generated_at:%Y-%m-%d}." in revised.body
    )
    assert (
        f"Amount due was ${first.billed_total}, now ${first.billed_total - Decimal('12.50')} "
        "(down $12.50)." in revised.body
    )

    assert _next_step(page, base) == "Next: Export the journal"
    page.locator("a.button.ocb-next").click()
    page.wait_for_url("**/journalexport/export/**")
    page.select_option("#id_format", "gl")
    page.check("#id_xlsx")
    page.get_by_role("button", name="Preview").click()
    page.wait_for_load_state()
    page.get_by_role("button", name="Export gl").click()
    page.wait_for_url("**/journalexport/")
    with page.expect_download() as info:
        page.locator("ul.messagelist a").click()
    assert info.value.suggested_filename.endswith(".xlsx")

    assert _next_step(page, base) == "Next: Finalize"
    page.locator("a.button.ocb-next").click()
    page.fill("#id_confirm", PERIOD)
    page.get_by_role("button", name=f"Finalize period {PERIOD}").click()
    page.wait_for_load_state()
    assert f"Period {PERIOD} is finalized." in page.locator("ul.messagelist").inner_text()

    # -- the dashboard agrees with the statements and the journal ------------------------
    page.goto(f"{base}/admin/")
    statements = Statement.objects.filter(period=period, superseded_at=None)
    due = statements.aggregate(t=Sum("billed_total"))["t"]
    export = JournalExport.objects.get(period=period)
    assert due == Decimal("119.19")  # every amount is whole cents: nothing to round
    assert _money(page, "ocb-billed-total") == due
    assert _money(page, "ocb-statements-due") == due
    assert _money(page, "ocb-journal-debits") == export.debit_total == due
    assert _money(page, "ocb-journal-credits") == export.credit_total == due
    listed = Charge.objects.exclude(review_state="rejected").aggregate(t=Sum("list_cost"))["t"]
    assert _money(page, "ocb-list-total") == listed
    assert page.locator(".ocb-cycle li.ocb-done").count() == 7
    shots(page, "dashboard-light")
    page.emulate_media(color_scheme="dark")
    page.reload()
    shots(page, "dashboard-dark")
    page.goto(f"{base}/admin/billing/billingperiod/{period.pk}/change/")
    reconciliation = page.locator("#ocb-reconciliation")
    assert reconciliation.locator("h2").inner_text() == "Reconciliation reconciles"
    assert "Equal to the approved charges: no rounding difference." in reconciliation.inner_text()
    shots(page, "period-dark")
    page.emulate_media(color_scheme="light")
    page.reload()
    shots(page, "period-light")
    assert InstitutionSettings.load().currency == "USD"


@pytest.fixture
def finished_month(site: None, tmp_path: Path) -> BillingPeriod:
    """A month taken through the whole cycle by the services, as cron would."""
    from billing.review import charges_fix_attribution, charges_review
    from billing.services import period_close
    from journals.services import journal_export
    from statements.services import statements_generate

    setup = Actor("setup", "cli")
    for path in _files(tmp_path):
        slug = path.name.split("_")[0].split("-")[0]
        file_import(path=path, source=Source.objects.get(slug=slug), actor=setup)
    charges_fix_attribution(
        charges=Charge.objects.filter(resource_id="orphan"),
        actor=setup,
        pi_email="ada@example.edu",
        project_id="proj-a",
    )
    charges_fix_attribution(
        charges=Charge.objects.filter(resource_id="gke"), actor=setup, project_id="proj-d"
    )
    charges_review(
        charges=Charge.objects.filter(review_state="pending"), action="approve", actor=setup
    )
    period_close(period=PERIOD, actor=setup)
    statements_generate(period=PERIOD, actor=setup, sync=True, send=True)
    journal_export(period=PERIOD, format="gl", xlsx=True, actor=setup)
    _rate_card(setup)
    return BillingPeriod.objects.get(period=PERIOD)


def _rate_card(actor: Actor) -> None:
    """A rate and an account mapping, so their pages are part of the tour."""
    from datetime import date
    from decimal import Decimal

    from billing.models import Project
    from ingest.usage.mappings import account_mapping_create
    from ingest.usage.rates import rate_create

    rate_create(
        actor=actor,
        resource="cpu",
        service="standard",
        qos="",
        effective_from=date(2025, 1, 1),
        list_rate=Decimal("0.01"),
        subsidy_percent=Decimal("25"),
    )
    account_mapping_create(
        actor=actor, kind="slurm", name="ada-lab", project=Project.objects.get(project_id="proj-a")
    )


def _pages(period: BillingPeriod) -> dict[str, str]:
    from billing.models import PI, Project
    from ingest.models import Rate

    statement = Statement.objects.filter(period=period).order_by("pk").first()
    assert statement is not None
    return {
        "dashboard": "/admin/",
        "import": "/admin/ingest/import/",
        "import-upload": "/admin/ingest/import/upload/",
        "review-queue": "/admin/billing/charge/?review_state__exact=pending",
        "period": f"/admin/billing/billingperiod/{period.pk}/change/",
        "statements": "/admin/statements/statement/",
        "statement": f"/admin/statements/statement/{statement.pk}/change/",
        "journals": "/admin/journals/journalexport/",
        "journal-export": f"/admin/journals/journalexport/export/?period={PERIOD}",
        "pi": f"/admin/billing/pi/{PI.objects.get(email='ada@example.edu').pk}/change/",
        "project": f"/admin/billing/project/{Project.objects.get(project_id='proj-a').pk}/change/",
        "help": "/admin/help/review/",
        "rates": "/admin/ingest/rate/",
        "rate": f"/admin/ingest/rate/{Rate.objects.get().pk}/change/",
        "account-mappings": "/admin/ingest/accountmapping/",
        "account-mapping-import": "/admin/ingest/accountmapping/import/",
    }


def test_a_viewer_finds_no_button_that_changes_anything(
    live_server: Any, page: Any, finished_month: BillingPeriod
) -> None:
    base = live_server.url
    login(page, base, VIEWER)
    seen = []
    for name, url in _pages(finished_month).items():
        response = page.goto(base + url)
        if name in ("import-upload", "account-mapping-import"):
            assert response.status == 403, name  # importing is not a viewer's job
            continue
        assert response.status == 200, name
        assert changing_buttons(page.content()) == [], name
        assert page.locator("select[name=action]").count() == 0, name
        seen.append(name)
    assert len(seen) == 14


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_main_pages_pass_axe(
    live_server: Any, page: Any, finished_month: BillingPeriod, scheme: str
) -> None:
    """axe-core finds no serious or critical accessibility problem (the import
    page with its previews is scanned in the whole-month test)."""
    base = live_server.url
    login(page, base, BILLING_ADMIN)
    page.emulate_media(color_scheme=scheme)
    problems = {}
    for name, url in _pages(finished_month).items():
        page.goto(base + url)
        if found := axe_problems(page):
            problems[name] = found
    assert problems == {}
