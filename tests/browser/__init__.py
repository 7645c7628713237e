"""Browser test fixtures: headless Chromium driven by Playwright, logged in
through the login form of a live server.

Chromium comes from the system (Debian's ``chromium`` package). Without it
the tests are skipped, unless ``OPENCHARGEBACK_REQUIRE_BROWSER=1`` (CI),
which makes a missing browser a failure. Screenshots go to
``$OPENCHARGEBACK_SCREENSHOT_DIR`` (``make screenshots`` points it at
``docs/images``) or to the test's temporary directory.

Test modules import the fixtures they use from here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.conftest import user_in

CHROMIUM = os.environ.get("OPENCHARGEBACK_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def stray_connections_closed(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """End, before the test database is dropped, sessions nothing else closes.

    Playwright's sync API runs the test in a greenlet context of its own, so
    Django's connection for that context is never closed; on PostgreSQL the
    open session would stop the test database from being dropped.
    """
    yield
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture
def page(
    stray_connections_closed: None, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium)"
        if os.environ.get("OPENCHARGEBACK_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    # Playwright's sync API runs an event loop in this thread; the test's own
    # database calls are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    # The live server answers each request in a new thread: a persistent
    # connection per thread would outlive the test and block the test
    # database's teardown on PostgreSQL.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        context.set_default_timeout(15_000)
        yield context.new_page()
        browser.close()


@pytest.fixture
def shots(tmp_path: Path) -> Callable[[Any, str], Path]:
    folder = Path(os.environ.get("OPENCHARGEBACK_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=False)
        assert path.stat().st_size > 10_000  # a rendered page, not a blank one
        return path

    return take


def confirmation_shots(page: Any, shots: Callable[[Any, str], Path], name: str) -> None:
    """A confirmation page at 1400x900 and 800 px wide, light and dark: Cancel
    in reach and nothing scrolling sideways at both widths, and axe finds no
    serious or critical problem in either theme."""
    for width, suffix in ((1400, ""), (800, "-800")):
        page.set_viewport_size({"width": width, "height": 900})
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            cancel = page.get_by_role("link", name="Cancel").bounding_box()
            assert cancel is not None
            assert cancel["x"] + cancel["width"] <= width
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= width, (width, scroll)
            shots(page, f"{name}{suffix}{'' if scheme == 'light' else '-dark'}")
            if width == 1400:
                assert axe_problems(page) == [], (name, scheme)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1440, "height": 900})


def login(page: Any, base: str, role: str) -> None:
    """Log in through the login form as the user of `role` (created on first use)."""
    from django.contrib.auth import get_user_model

    name = role.replace(" ", "_")
    if not get_user_model().objects.filter(username=name).exists():
        user_in(role, password="a long test password")
    page.goto(f"{base}/admin/")
    page.fill("#id_username", name)
    page.fill("#id_password", "a long test password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def background(page: Any) -> str:
    return str(page.evaluate("getComputedStyle(document.body).backgroundColor"))


class _Buttons(HTMLParser):
    """Submit buttons of POST forms, the header's log-out form aside."""

    def __init__(self) -> None:
        super().__init__()
        self.form: str | None = None
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            post = (a.get("method") or "").lower() == "post"
            self.form = a.get("id") or "form" if post and a.get("id") != "logout-form" else None
        elif self.form and (
            (tag == "input" and a.get("type") == "submit")
            or (tag == "button" and a.get("type") in (None, "submit"))
        ):
            self.found.append(f"{self.form}: {a.get('value') or a.get('name') or tag}")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.form = None


def changing_buttons(html: str) -> list[str]:
    parser = _Buttons()
    parser.feed(html)
    return parser.found


def axe_problems(page: Any) -> list[str]:
    """Serious and critical accessibility violations axe-core finds on the page."""
    from axe_playwright_python.sync_playwright import Axe

    # Colours mid-transition (just after a theme switch) are neither theme's.
    # A constructed style sheet: the site's Content-Security-Policy refuses
    # <style> elements, a test's own too.
    page.evaluate(
        """() => {
            const sheet = new CSSStyleSheet();
            sheet.replaceSync("*, *::before, *::after { transition: none !important; }");
            document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
        }"""
    )
    page.wait_for_timeout(50)
    return [
        f"{v['id']} ({v['impact']}): {v['nodes'][0]['target']}"
        for v in Axe().run(page).response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
