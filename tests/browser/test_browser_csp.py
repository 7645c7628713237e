"""The Content-Security-Policy, in a real browser: the admin's pages, the
dashboard's charts and month switcher, the import page (drag and drop, the
batch page following work in the background), the review pages and the
statement's PDF preview work under it, and the browser reports no violation
of it and no error in the console on any of them."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from billing.audit import Actor
from billing.models import BillingPeriod, Charge, Source
from billing.roles import BILLING_ADMIN, REVIEWER
from ingest.focus.services import file_import
from ingest.models import Upload
from ingest.uploads.services import upload_stage
from statements.models import Statement
from tests.browser import login, page, stray_connections_closed
from tests.browser.test_browser_month import PERIOD, _drop, _files, finished_month, site
from tests.conftest import focus_row, write_focus

pytestmark = pytest.mark.browser
__all__ = ["finished_month", "page", "site", "stray_connections_closed"]

NEXT_MONTH = "2025-04"

# Every frame reports each violation to the test as it happens (the report
# outlives the page: navigations do not lose it).
_LISTEN = """
document.addEventListener("securitypolicyviolation", (event) => {
    window.ocbCspViolation(
        `${event.effectiveDirective} blocked ${event.blockedURI || "inline"}`
        + ` at ${event.sourceFile || document.location.pathname}:${event.lineNumber}`
        + (event.sample ? ` (${event.sample})` : "")
    );
});
"""


class Problems:
    """Policy violations and console errors seen since the last look."""

    def __init__(self, page: Any) -> None:
        self.found: list[str] = []
        page.expose_binding("ocbCspViolation", lambda _source, text: self.found.append(text))
        page.add_init_script(_LISTEN)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.found.append(f"page error: {error}"))

    def _console(self, message: Any) -> None:
        # The browser asks for /favicon.ico by itself; the site has none.
        if message.type not in ("error", "warning") or message.location.get("url", "").endswith(
            "/favicon.ico"
        ):
            return
        self.found.append(f"console {message.type}: {message.text} ({message.location})")

    def take(self, page: Any) -> list[str]:
        page.wait_for_timeout(100)  # reports of the last moment arrive
        found, self.found = self.found, []
        return found


@pytest.fixture
def shots(tmp_path: Path) -> Callable[[Any, str], Path]:
    """Screenshots to look at, in the test's temporary directory (keep them
    with pytest --basetemp=DIR); not the guide's images (make screenshots)."""

    def take(page: Any, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path))
        assert path.stat().st_size > 10_000  # a rendered page, not a blank one
        return path

    return take


@pytest.fixture
def watched(page: Any) -> tuple[Any, Problems]:
    return page, Problems(page)


@pytest.fixture
def two_months(finished_month: BillingPeriod, tmp_path: Path) -> BillingPeriod:
    """The finished month, and the next one with charges waiting for review."""
    rows = [
        focus_row(period=NEXT_MONTH, resource="vm-9", billed="5.00"),
        focus_row(period=NEXT_MONTH, resource="lost", pi="", project="", billed="2.00"),
    ]
    file_import(
        path=write_focus(tmp_path / "aws_2025-04.csv", rows),
        source=Source.objects.get(slug="aws"),
        actor=Actor("setup", "cli"),
    )
    return finished_month


def test_the_header_is_sent(live_server: Any, watched: tuple[Any, Problems]) -> None:
    page, problems = watched
    response = page.goto(f"{live_server.url}/admin/login/")
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives == {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    assert problems.take(page) == []


def test_an_inline_script_or_style_would_be_caught(
    live_server: Any, watched: tuple[Any, Problems]
) -> None:
    """The listener works: what the policy forbids is reported, and not run."""
    page, problems = watched
    page.goto(f"{live_server.url}/admin/login/")
    page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.ran = true";
            document.body.append(script);
            const div = document.createElement("div");
            div.innerHTML = '<p id="styled" style="color: rgb(255, 0, 0)">x</p>';
            document.body.append(div);
        }"""
    )
    assert page.evaluate("window.ran") is None
    assert page.evaluate("getComputedStyle(styled).color") != "rgb(255, 0, 0)"
    found = " ".join(problems.take(page))
    assert "script-src-elem blocked inline" in found
    assert "style-src-attr blocked inline" in found


def _charts_drawn(page: Any) -> int:
    charts = page.locator("svg.ocb-chart-svg")
    assert charts.count() > 0
    for index in range(charts.count()):
        chart = charts.nth(index)
        box = chart.bounding_box()
        assert box is not None
        assert box["width"] > 100, box
        assert box["height"] > 0, box
        # Drawn at its viewBox's proportions, as wide as it says or as the column allows.
        _x, _y, width, height = map(float, str(chart.get_attribute("viewBox")).split())
        assert abs(box["height"] - box["width"] * height / width) < 1.5, (box, width, height)
        column = chart.evaluate("svg => svg.parentElement.getBoundingClientRect().width")
        assert abs(box["width"] - min(width, column)) < 1.5, (box, width, column)
        marks = charts.nth(index).locator("rect, path, line, polyline")
        assert marks.count() > 0
    return int(charts.count())


def test_the_dashboard_charts_and_month_switcher(
    live_server: Any,
    watched: tuple[Any, Problems],
    two_months: BillingPeriod,
    shots: Callable[[Any, str], Path],
) -> None:
    page, problems = watched
    base = live_server.url
    login(page, base, BILLING_ADMIN)
    assert problems.take(page) == []
    page.goto(f"{base}/admin/")
    assert _charts_drawn(page) >= 2
    months = page.locator("nav.ocb-months")
    assert months.get_by_role("link").count() == 2
    months.get_by_role("link", name=re.compile(NEXT_MONTH)).click()
    page.wait_for_url(f"**/admin/?period={NEXT_MONTH}")
    assert page.locator("a.ocb-month-current").inner_text().startswith(NEXT_MONTH)
    assert _charts_drawn(page) >= 2
    months.get_by_role("link", name=re.compile(PERIOD)).click()
    page.wait_for_url(f"**/admin/?period={PERIOD}")
    assert problems.take(page) == []
    for width, suffix in ((1400, ""), (800, "-800")):
        page.set_viewport_size({"width": width, "height": 900})
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            _charts_drawn(page)
            page.locator("svg.ocb-chart-svg").first.scroll_into_view_if_needed()
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= width, (width, scroll)
            shots(page, f"csp-dashboard{suffix}-{scheme}")
    assert problems.take(page) == []


def test_the_import_page_drops_uploads_and_follows_the_work(
    live_server: Any,
    watched: tuple[Any, Problems],
    site: None,
    tmp_path: Path,
    shots: Callable[[Any, str], Path],
) -> None:
    page, problems = watched
    base = live_server.url
    login(page, base, BILLING_ADMIN)
    page.goto(f"{base}/admin/ingest/import/upload/")
    files = _files(tmp_path)
    _drop(page, "#ocb-dropzone", files)  # the script lists what was dropped
    chosen = page.locator("#ocb-chosen li")
    assert chosen.count() == 3
    assert "aws_2025-03.csv" in chosen.first.inner_text()
    for width, suffix in ((1400, ""), (800, "-800")):
        page.set_viewport_size({"width": width, "height": 900})
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= width, (width, scroll)
            shots(page, f"csp-upload{suffix}-{scheme}")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1440, "height": 900})
    page.get_by_role("button", name="Upload and preview").click()
    page.wait_for_url("**/upload/*/")
    assert page.locator("section.ocb-upload").count() == 3
    page.get_by_role("button", name=re.compile(r"Import all previewed \(3\)")).click()
    page.wait_for_load_state()
    assert page.locator("p.ocb-result").count() == 3
    assert problems.take(page) == []

    # A batch with work in the background: the page asks for its progress
    # (fetch, under connect-src) and reloads once the work is done.
    batch = uuid.uuid4()
    upload = upload_stage(
        batch=batch,
        file_name="aws_2025-05.csv",
        stored_file="",
        size=100,
        source=Source.objects.get(slug="aws"),
        period="2025-05",
        actor=Actor("billing_admin", "admin"),
    )
    Upload.objects.filter(pk=upload.pk).update(
        status=Upload.Status.PREVIEWING, job_started_at=timezone.now()
    )
    with page.expect_response(re.compile(rf"/upload/{batch}/status/$")) as polled:
        page.goto(f"{base}/admin/ingest/import/upload/{batch}/")
    assert polled.value.status == 200
    assert polled.value.json()["busy"] is True
    Upload.objects.filter(pk=upload.pk).update(
        status=Upload.Status.FAILED, error="aws_2025-05.csv: stopped by the test"
    )
    with page.expect_navigation(timeout=10_000):  # the poll sees the change: a reload
        pass
    page.wait_for_load_state()
    assert "stopped by the test" in page.locator("#content").inner_text()
    assert problems.take(page) == []


def test_review_pages(
    live_server: Any, watched: tuple[Any, Problems], two_months: BillingPeriod
) -> None:
    page, problems = watched
    base = live_server.url
    login(page, base, REVIEWER)
    page.goto(f"{base}/admin/billing/charge/?review_state__exact=pending")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() >= 1
    # The list's own scripts: the select-all box and the action bar.
    page.locator("#action-toggle").check()
    assert page.locator("span.action-counter").inner_text().startswith(f"{rows.count()} of")
    page.locator("#toggle-nav-sidebar").click()  # the folded sidebar opens (changelist.js)
    assert page.locator("#nav-sidebar").get_attribute("aria-expanded") == "true"
    lost = Charge.objects.get(resource_id="lost")
    page.goto(f"{base}/admin/billing/charge/{lost.pk}/change/")
    assert (
        page.locator("#charge-page .charge-facts").evaluate(
            "element => getComputedStyle(element).display"
        )
        == "grid"
    )  # review.css, a file now
    assert problems.take(page) == []


def _admin_pages(period: BillingPeriod) -> dict[str, str]:
    from ingest.models import Rate

    statement = Statement.objects.filter(period=period).order_by("pk").first()
    assert statement is not None
    return {
        "index": "/admin/",
        "app": "/admin/billing/",
        "periods": "/admin/billing/billingperiod/",
        "period": f"/admin/billing/billingperiod/{period.pk}/change/",
        "statements": "/admin/statements/statement/",
        "statement with its PDF": f"/admin/statements/statement/{statement.pk}/change/",
        "generate": "/admin/statements/statement/generate/",
        "journal preview": f"/admin/journals/journalexport/export/?period={PERIOD}&format=gl"
        "&preview=1",
        "journals": "/admin/journals/journalexport/",
        "rate": f"/admin/ingest/rate/{Rate.objects.get().pk}/change/",
        "rate add": "/admin/ingest/rate/add/",
        "pattern preview": "/admin/billing/patternrule/preview/?pattern=vm",
        "users": "/admin/auth/user/",
        "user add": "/admin/auth/user/add/",
        "jobs": "/admin/django_q/success/",
        "lockouts": "/admin/axes/accessattempt/",
        "audit": "/admin/billing/auditevent/",
        "help": "/admin/help/review/",
    }


def test_admin_pages(
    live_server: Any,
    watched: tuple[Any, Problems],
    two_months: BillingPeriod,
    shots: Callable[[Any, str], Path],
) -> None:
    from django.contrib.auth import get_user_model

    page, problems = watched
    base = live_server.url
    get_user_model().objects.create_superuser("root", "root@example.edu", "a long test password")
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "a long test password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")
    seen = {}
    for name, url in _admin_pages(two_months).items():
        response = page.goto(base + url)
        assert response.status == 200, name
        seen[name] = problems.take(page)
    assert {name: found for name, found in seen.items() if found} == {}

    # The PDF is framed by its statement's page (frame-ancestors 'self' for it alone).
    statement_page = _admin_pages(two_months)["statement with its PDF"]
    page.goto(base + statement_page)
    frame = page.locator("iframe.ocb-pdf-preview")
    box = frame.bounding_box()
    assert box is not None
    assert box["height"] > 300
    pdf = page.request.get(base + str(frame.get_attribute("src")).split("#")[0])
    assert pdf.headers["content-type"] == "application/pdf"
    assert "frame-ancestors 'self'" in pdf.headers["content-security-policy"]
    frame.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    framed = frame.element_handle().content_frame()
    assert framed is not None
    assert "/pdf/" in framed.url
    shots(page, "csp-statement-pdf")
    assert problems.take(page) == []

    # What style attributes did, classes do (openchargeback/admin.css).
    styled = {
        "journal preview": ("#journal-preview td.ocb-right", "textAlign", "right"),
        "pattern preview": ("td.ocb-right", "textAlign", "right"),
        "period": ("section.ocb-clear", "clear", "both"),
    }
    for name, (selector, prop, value) in styled.items():
        page.goto(base + _admin_pages(two_months)[name])
        got = page.locator(selector).first.evaluate(f"e => getComputedStyle(e).{prop}")
        assert got == value, (name, selector, got)

    # The date widget's calendar and clock (Django's own scripts) open.
    page.goto(f"{base}/admin/ingest/rate/add/")
    page.locator("#calendarlink0").click()
    assert page.locator("#calendarbox0").is_visible()
    # The autocomplete (select2, jQuery) of a project's PI: it opens, asks the
    # site for choices (connect-src) and lists them.
    from billing.models import Project

    project = Project.objects.get(project_id="proj-a")
    page.goto(f"{base}/admin/billing/project/{project.pk}/change/")
    page.locator(".field-pi .select2-selection").click()
    page.locator(".select2-search__field").fill("ada")
    choice = page.locator(".select2-results__option", has_text="ada@example.edu")
    choice.first.wait_for()
    # The theme toggle (Django's theme.js).
    page.locator("button.theme-toggle").first.click()
    assert page.evaluate("document.documentElement.dataset.theme") in ("light", "dark")
    assert problems.take(page) == []
