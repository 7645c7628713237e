"""User-typed patterns run in linear time (RE2), are refused with one line when
RE2 cannot run them, and saved ones that slipped through never hang an import."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
from django.core.management import call_command

from billing import patterns, selectors
from billing.audit import Actor
from billing.blockers import period_blockers
from billing.models import BillingPeriod, Charge, FundOrgPattern, PatternRule, Source
from billing.patterns import (
    MAX_LENGTH,
    MAX_PROGRAM,
    MemoSearch,
    PatternError,
    compile_user_pattern,
)
from billing.roles import BILLING_ADMIN, VIEWER, roles_sync
from billing.rules import PatternSpec, RuleSet, attribution_flags, line_flags
from billing.selectors import detect_source
from ingest.focus.services import file_import
from journals.builders import JournalConfig, split_fund_org
from journals.models import JournalSettings
from tests.browser import login, page, stray_connections_closed
from tests.conftest import focus_row, role_client, seed_with_accounting, write_focus

__all__ = ["page", "stray_connections_closed"]  # fixtures used by name
N = 50_000
BOUND = 2.0  # seconds: generous; each takes milliseconds on RE2
T = TypeVar("T")


def _timed(call: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


# --- The engine ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        (r"(.|.)*!", "a" * N, False),
        (r"(.|.)*!", "a" * N + "!", True),
        (r"(a+)+$", "a" * N + "!", False),
        (r"(a+)+$", "a" * N, True),
        (r"(a|aa)*b", "a" * N, False),
        (r"(a|aa)*b", "a" * N + "b", True),
    ],
)
def test_catastrophic_patterns_run_in_linear_time(pattern: str, text: str, matches: bool) -> None:
    compiled = compile_user_pattern(pattern)
    found, seconds = _timed(lambda: compiled.search(text))
    assert bool(found) is matches
    assert seconds < BOUND
    # Python's re takes exponential time on the non-matching ones: a 30-character
    # taste of (a|aa)*b already costs it ~1.3 million steps (not run here).


def test_a_fund_org_pattern_is_matched_whole_in_linear_time() -> None:
    compiled = compile_user_pattern(r"(a|aa)*")
    found, seconds = _timed(lambda: compiled.fullmatch("a" * N + "b"))
    assert found is None
    assert seconds < BOUND
    assert compile_user_pattern(r"(a|aa)*").fullmatch("a" * N) is not None


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a{4294967296}", "a repetition count above 1000 ({4294967296})"),
        ("x{2,5000}", "a repetition count above 1000 ({2,5000})"),
        (r"(a{100}){100}", "repetition counts multiply when nested ({100})"),
        (r"(?=foo)\w+", "lookahead (?=…) is not supported: patterns run in linear time"),
        (r"foo(?!bar)", "negative lookahead (?!…) is not supported: patterns run in linear time"),
        (r"(?<=x)y", "lookbehind (?<=…) is not supported: patterns run in linear time"),
        (r"(?<!x)y", "negative lookbehind (?<!…) is not supported: patterns run in linear time"),
        (r"(a)\1", r"a backreference \1 is not supported: patterns run in linear time"),
        (r"(?P<x>a)(?P=x)", "a backreference (?P=name) is not supported"),
        (r"(?>a+)b", "an atomic group (?>…) is not supported"),
        (r"a++b", "a possessive quantifier ++ is not supported"),
        (r"a{,5}", "{,5} would be read as text, not as a repetition: write {0,5}"),
        (r"NSF\Z", r"\Z is not supported: write \z for the end of the text"),
        (r"(?x) a b", "the inline flags (?x…) are not supported"),
        (r"caf\u00e9", r"\u escapes are not supported: write \x{e9}"),
        (r"\C", r"\C (one byte) is not supported"),
        ("(unclosed", "missing ): (unclosed"),
        ("a" * (MAX_LENGTH + 1), "1,001 characters long; at most 1,000"),
        (r".{1,1000}", f"too complex: it compiles to 9,003 steps, at most {MAX_PROGRAM:,}"),
    ],
)
def test_what_re2_cannot_run_is_refused_in_one_line(pattern: str, message: str) -> None:
    with pytest.raises(PatternError) as caught:
        compile_user_pattern(pattern)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "pattern",
    [
        r"\{,5}",  # escaped: the text
        r"[{,5}]",  # in a class: the characters
        r"[[:alpha:]{,5}]",
        r"^[a-z]{1000}\{9999\}$",
        r"(?i)marketplace",
        r"(?P<fund>[A-Z0-9]+)-(?P<orgn>[A-Z0-9-]+)",
    ],
)
def test_what_re2_runs_as_python_would_is_accepted(pattern: str) -> None:
    compile_user_pattern(pattern)


def test_an_imports_searches_remember_values_within_bounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(patterns, "MEMO_SIZE", 3)
    search = MemoSearch([compile_user_pattern(r"(?i)marketplace"), compile_user_pattern("S3$")])
    values = ["AWS Marketplace", "Amazon EC2", "AWS Marketplace", "marketplace fee", "Amazon S3"]
    assert [search(v) for v in values] == [True, False, True, True, True]
    assert search.seen == {"Amazon S3": True}  # full at three: forgotten, then kept again
    long = "x" * patterns.MEMO_TEXT + "marketplace"
    assert search(long) is True
    assert long not in search.seen


# --- Differences from Python's re, on the patterns our settings use ---------------------

# The shipped defaults (fixtures/defaults.json, journals) and the documented
# examples, against values such settings meet, with and without a match.
OUR_PATTERNS = [
    r"(?i)marketplace",
    r"(?i)(upfront|up-front|reservation purchase|savings plan)",
    r"[A-Z0-9]+(-[A-Z0-9]+)+",
    r"^(?P<fund>[A-Z0-9]+)-(?P<orgn>[A-Z0-9-]+)$",
    r"^(?P<fund>[^-]+)-(?P<orgn>.+)$",
    r"^\d{6}$",
    r"NSF-[A-Z]{3}-\d{4}",
    r"^gpu-",
    r"aws|amazon",
    r"it[_-]?storage",
]
VALUES = [
    "AWS Marketplace",
    "MARKETPLACE fee",
    "Savings Plan upfront fee",
    "NSF-BIO-2024",
    "nsf-bio-2024",
    "NIH-GEN-2023-X",
    "bogus",
    "740000",
    "74000",
    "gpu-1",
    "vm-gpu-1",
    "aws_2025-01.csv",
    "IT-Storage_2025-01.csv",
    "",
]


@pytest.mark.parametrize("pattern", OUR_PATTERNS)
def test_our_patterns_match_as_they_did_on_python_re(pattern: str) -> None:
    ours, theirs = compile_user_pattern(pattern), re.compile(pattern)
    for value in VALUES:
        assert bool(ours.search(value)) == bool(theirs.search(value)), value
        assert bool(ours.fullmatch(value)) == bool(theirs.fullmatch(value)), value
    case_free = compile_user_pattern(pattern, ignore_case=True)
    for value in VALUES:
        assert bool(case_free.search(value)) == bool(re.search(pattern, value, re.IGNORECASE))


def test_shorthand_classes_are_ascii_and_dollar_is_the_end_of_the_text() -> None:
    """The differences docs/decisions/0009-patterns.md lists, pinned."""
    digits = compile_user_pattern(r"^\d{6}$")
    assert digits.fullmatch("740000")
    assert not digits.fullmatch("٧٤٠٠٠٠")  # Arabic-Indic digits: Python's \d took them
    assert re.fullmatch(r"^\d{6}$", "٧٤٠٠٠٠")
    assert compile_user_pattern(r"^\p{Nd}{6}$").fullmatch("٧٤٠٠٠٠")  # asked for: any script
    assert not compile_user_pattern(r"\w").search("é")
    assert re.search(r"\w", "é")
    assert not compile_user_pattern(r"\s").search("\xa0")
    assert re.search(r"\s", "\xa0")
    # $ is the end of the text, not also before a final newline.
    assert not compile_user_pattern(r"gpu$").search("gpu\n")
    assert re.search(r"gpu$", "gpu\n")
    assert compile_user_pattern(r"(?m)gpu$").search("gpu\n")
    # Case-insensitive matching folds letters of any script, as Python's does.
    assert compile_user_pattern(r"(?i)δ").search("Δ")
    assert re.search(r"(?i)δ", "Δ")


def test_fund_org_parts_keep_the_patterns_order() -> None:
    """RE2 lists named groups alphabetically; the journal keeps the pattern's order."""
    config = JournalConfig(fund_org_pattern=r"^(?P<orgn>[A-Z]+)-(?P<fund>\d+)$")
    assert split_fund_org("BIO-2024", config) == (("orgn", "BIO"), ("fund", "2024"))
    assert split_fund_org("bio-2024", config) == ()
    assert split_fund_org("BIO-2024", JournalConfig(fund_org_pattern=r"(?=x)")) == ()


def test_review_patterns_and_fund_org_patterns_on_a_rule_set() -> None:
    hostile = compile_user_pattern(r"(.|.)*!")
    ruleset = RuleSet(
        mapping={},
        patterns=(PatternSpec(name="bang", regex=hostile, target="resource_id"),),
        fund_org_patterns=(compile_user_pattern(r"(a|aa)*"),),
    )
    (mask, details), seconds = _timed(
        lambda: line_flags(ruleset, service_name="EC2", resource_id="a" * N)
    )
    assert (mask, details, seconds < BOUND) == (0, None, True)
    mask, details = line_flags(ruleset, resource_id="a" * 100 + "!")
    assert details == {"pattern_match": ["bang"]}
    # A fund/org pattern that was skipped still means fund/orgs are checked.
    skipped = RuleSet(mapping={}, fund_org_skipped=True)
    mask, _ = attribution_flags(skipped, pi_email="a@b.edu", project_id="p", fund_org="NSF-1")
    assert mask & 16  # invalid_fund_org


# --- Saving, previewing --------------------------------------------------------------------


@pytest.fixture
def charges(defaults: None, focus_file: Callable[..., Path], actor: Actor) -> None:
    rows = [
        focus_row(resource="vm-1", fund_org="NSF-BIO-2024"),
        focus_row(resource="gpu-1", fund_org="NIH-GEN-2023"),
        focus_row(resource="bucket-x", service="Amazon S3", billed="4.50", fund_org="bogus"),
    ]
    file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a{4294967296}", "a repetition count above 1000 ({4294967296})"),
        ("(?=gpu)gpu-", "lookahead (?=…) is not supported: patterns run in linear time"),
    ],
)
def test_the_admin_form_refuses_what_cannot_run(defaults: None, pattern: str, message: str) -> None:
    admin = role_client(BILLING_ADMIN)
    response = admin.post(
        "/admin/billing/patternrule/add/",
        {"name": "hostile", "pattern": pattern, "target": "any", "enabled": "on"},
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["pattern"]
    assert errors == [f"Not a valid regular expression: {message}"]
    assert message.encode() in response.content.replace(b"&#x27;", b"'")
    assert not PatternRule.objects.filter(name="hostile").exists()
    response = admin.post(
        "/admin/billing/fundorgpattern/add/", {"pattern": pattern, "enabled": "on"}
    )
    assert response.status_code == 200
    assert not FundOrgPattern.objects.filter(pattern=pattern).exists()
    response = admin.post(
        "/admin/journals/journalsettings/1/change/",
        {
            "fund_org_pattern": pattern,
            "default_account": "740000",
            "account_pattern": "",
            "description_template": "{source} {period} {project_id}",
            "description_max_length": "35",
        },
    )
    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors["fund_org_pattern"])
    assert JournalSettings.load().fund_org_pattern != pattern


@pytest.mark.django_db
def test_a_hostile_preview_answers_quickly_and_says_it_was_limited(charges: None) -> None:
    Charge.objects.filter(resource_id="gpu-1").update(resource_id="a" * N + "!")
    url = "/admin/billing/patternrule/preview/?target=resource_id&pattern=" + quote(r"(.|.)*!")
    viewer = role_client(VIEWER)
    response, seconds = _timed(lambda: viewer.get(url))
    assert response.status_code == 200
    assert seconds < BOUND
    result = response.context["result"]
    # The 50,001-character value is matched on its first 1,000: no "!" there.
    assert (result.scanned, result.matched, result.limits.cut) == (3, 0, 1)
    assert b"This preview was limited" in response.content
    assert b"1 charge had a value longer than 1,000 characters" in response.content
    for hostile in (r"(a+)+$", r"(a|aa)*b"):
        url = "/admin/billing/fundorgpattern/preview/?pattern=" + quote(hostile)
        response, seconds = _timed(lambda url=url: viewer.get(url))  # type: ignore[misc]
        assert response.status_code == 200
        assert seconds < BOUND
    refused = viewer.get("/admin/billing/patternrule/preview/?pattern=" + quote("(?<=a)b"))
    assert refused.status_code == 200
    assert "result" not in refused.context
    assert b"lookbehind (?&lt;=" in refused.content


@pytest.mark.django_db
def test_a_preview_stops_at_its_limits_and_says_so(
    charges: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    viewer = role_client(VIEWER)
    monkeypatch.setattr(selectors, "PREVIEW_MAX_CHARGES", 2)
    response = viewer.get("/admin/billing/patternrule/preview/?pattern=gpu")
    result = response.context["result"]
    assert (result.scanned, result.limits.total, result.limits.timed_out) == (2, 3, False)
    assert b"It covers the first 2 of the period's 3 charges." in response.content
    monkeypatch.setattr(selectors, "PREVIEW_MAX_FUND_ORGS", 1)
    response = viewer.get("/admin/billing/fundorgpattern/preview/?pattern=NSF.*")
    preview = response.context["result"]
    assert (len(preview.values), preview.limits.total) == (1, 3)
    assert b"It covers the first 1 of the period's 3 fund/orgs." in response.content
    monkeypatch.setattr(selectors, "PREVIEW_SECONDS", 0.0)
    response = viewer.get("/admin/billing/patternrule/preview/?pattern=gpu")
    result = response.context["result"]
    assert result.limits.timed_out
    assert result.scanned == 0
    assert b"It stopped after 0 seconds." in response.content


@pytest.mark.django_db
def test_a_posted_preview_is_sent_on_as_a_get(charges: None) -> None:
    rule = PatternRule.objects.create(name="gpus", pattern="gpu")
    response = role_client(VIEWER).post(
        f"/admin/billing/fundorgpattern/preview/?exclude={rule.pk}",
        {"pattern": "NSF.*", "description": "x", "csrfmiddlewaretoken": "ignored"},
    )
    assert response.status_code == 303
    assert response["Location"] == (
        f"/admin/billing/fundorgpattern/preview/?pattern=NSF.%2A&exclude={rule.pk}"
    )


# --- Saved patterns that RE2 cannot run ------------------------------------------------------


@pytest.mark.django_db
def test_an_import_with_a_hostile_rule_saved_completes(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    """Saved past validation (queryset.update): catastrophic for Python's re,
    linear on RE2; a lookahead RE2 cannot run is skipped, and says so."""
    PatternRule.objects.update(enabled=False)
    PatternRule.objects.create(name="bang", pattern="x", target="resource_id")
    PatternRule.objects.filter(name="bang").update(pattern=r"(.|.)*!")
    PatternRule.objects.create(name="nested", pattern="x", target="resource_name")
    PatternRule.objects.filter(name="nested").update(pattern=r"(a+)+$")
    PatternRule.objects.create(name="ahead", pattern="x")
    PatternRule.objects.filter(name="ahead").update(pattern=r"(?=vm)vm")
    FundOrgPattern.objects.create(pattern="x")
    FundOrgPattern.objects.filter(pattern="x").update(pattern=r"(a|aa)*")
    rows = [
        focus_row(resource="a" * 5_000),
        focus_row(resource="a" * 5_000 + "!", day=2),
        focus_row(resource="vm-1", day=3),
    ]
    path = focus_file(rows)
    result, seconds = _timed(
        lambda: file_import(path=path, source=Source.objects.get(slug="aws"), actor=actor)
    )
    assert seconds < 30  # an import's own work; the patterns take milliseconds
    assert result.charges_created == 3
    assert result.flags == {"pattern_match": 2}
    flagged = Charge.objects.filter(flags__gt=0).order_by("pk")
    # (a+)+$ matched the first one's name, (.|.)*! the second one's id.
    assert [c.resource_id[-1] for c in flagged] == ["a", "!"]
    assert result.skipped_patterns == [
        "review pattern 'ahead' skipped: lookahead (?=…) is not supported: "
        "patterns run in linear time"
    ]
    # The month cannot close until it is fixed or disabled.
    period = BillingPeriod.objects.get(period="2025-01")
    texts = [b.text for b in period_blockers(period, allow_pending=True)]
    assert any(t.startswith("review pattern 'ahead' cannot run: lookahead") for t in texts)
    PatternRule.objects.filter(name="ahead").update(enabled=False)
    texts = [b.text for b in period_blockers(period, allow_pending=True)]
    assert not any("cannot run" in t for t in texts)


@pytest.mark.django_db
def test_the_check_command_names_saved_patterns_that_cannot_run(
    defaults: None,
) -> None:
    PatternRule.objects.create(name="ahead", pattern="x")
    PatternRule.objects.filter(name="ahead").update(pattern=r"(?=vm)vm")
    Source.objects.filter(slug="aws").update(filename_pattern=r"aws(?!x)")
    JournalSettings.objects.filter(pk=1).update(account_pattern=r"(\d)\1")
    out = io.StringIO()
    call_command("check", databases=["default"], stderr=out, stdout=out)
    err = out.getvalue()
    assert (
        "(billing.W001) review pattern 'ahead' cannot run: lookahead (?=…) is not supported" in err
    )
    assert "(billing.W001) source aws's file-name pattern cannot run: negative lookahead" in err
    assert r"(journals.W001) the journal's account pattern cannot run: a backreference \1" in err
    # Without the database, `check` reads nothing.
    out = io.StringIO()
    call_command("check", stderr=out, stdout=out)
    assert "W001" not in out.getvalue()
    # A source whose pattern cannot run is left out of detection, not an error.
    assert detect_source("aws_2025-01.csv") is None
    assert detect_source("AMAZON_2025-01.csv") is None
    Source.objects.filter(slug="aws").update(filename_pattern=r"aws|amazon")
    assert detect_source("AMAZON_2025-01.csv") == Source.objects.get(slug="aws")


# --- In a browser: the change form's button, posted and sent on to the GET -----------------


@pytest.mark.browser
def test_the_test_button_opens_a_bounded_get_preview_in_a_new_tab(
    live_server: Any, page: Any, live_db: None, tmp_path: Path
) -> None:
    seed_with_accounting()
    roles_sync()  # the roles are data: a transactional test starts from an empty database
    rows = [focus_row(resource="gpu-1"), focus_row(resource="vm-1", day=2)]
    path = write_focus(tmp_path / "aws-2025-01.csv", rows)
    file_import(path=path, source=Source.objects.get(slug="aws"), actor=Actor("setup", "cli"))
    login(page, live_server.url, BILLING_ADMIN)
    page.goto(f"{live_server.url}/admin/billing/patternrule/add/")
    page.fill("#id_name", "GPUs")
    page.fill("#id_pattern", "(.|.)*!|^gpu-")
    with page.context.expect_page() as opened:
        page.get_by_role("button", name="Test against the current period").click()
    preview = opened.value
    preview.wait_for_load_state()
    assert "/patternrule/preview/?pattern=" in preview.url  # a GET, repeatable
    assert "The pattern flags 1 of 2 charges" in preview.locator("#content").inner_text()
    assert not PatternRule.objects.filter(name="GPUs").exists()  # nothing saved
    page.fill("#id_pattern", "(?=gpu)gpu-")
    page.get_by_role("button", name="Save", exact=True).click()
    assert "lookahead (?=…) is not supported" in page.locator(".errorlist").inner_text()


def test_a_broken_fund_org_pattern_matches_nothing_in_the_one_fund_org_rule() -> None:
    from billing.blockers import fund_org_disagreements

    split = r"^(?P<fund>[A-Z]+)-(?P<orgn>[A-Z]+)$"
    known = ["NSF-BIO", "bad one"]

    def check(validation: list[str]) -> list[str]:
        return fund_org_disagreements(validation=validation, split=split, known=known)

    assert check([r"(?=x)", r".*"]) == ["bad one"]  # the broken one does not hide the other
    assert check([r"(?=x)"]) == []  # review accepts nothing: nothing to disagree on
    assert check([]) == ["bad one"]  # no fund/org pattern: review accepts every fund/org
    assert fund_org_disagreements(validation=[r".*"], split=r"(?=x)", known=known) == []
