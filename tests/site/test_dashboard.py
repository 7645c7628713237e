"""The dashboard (admin index), the cycle it shows, and the period, PI and project pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from decimal import Decimal
from pathlib import Path

import pytest
from django.db.models import Sum

from billing.audit import Actor
from billing.models import PI, BillingPeriod, Charge, Project, Source
from billing.review import charges_review
from billing.roles import BILLING_ADMIN, REVIEWER, VIEWER
from billing.services import period_close, period_finalize, period_reopen, source_set
from ingest.focus.services import file_import
from journals.services import journal_export
from openchargeback.cycle import period_cycle
from statements.models import Statement
from statements.services import statements_generate
from tests.browser import changing_buttons
from tests.conftest import focus_row, role_client


def next_step(period: str) -> str | None:
    step = period_cycle(BillingPeriod.objects.get(period=period)).next_step
    return step.slug if step else None


def test_the_cycle_walks_through_the_month(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    aws = Source.objects.get(slug="aws")
    source_set(slug="aws", actor=actor, credit_fund_org="RCI-AWS", account_code="740000")
    file_import(
        path=focus_file(
            [
                focus_row(resource="vm", billed="10.005", list_cost="12.00"),
                focus_row(resource="orphan", pi="", project="", billed="5.00"),
            ]
        ),
        source=aws,
        actor=actor,
    )
    assert next_step("2025-01") == "review"
    charges_review(
        charges=Charge.objects.filter(resource_id="orphan"), action="reject", actor=actor, note="x"
    )
    assert next_step("2025-01") == "close"
    period_close(period="2025-01", actor=actor)
    assert next_step("2025-01") == "generate"
    statements_generate(period="2025-01", actor=actor, sync=True)
    assert next_step("2025-01") == "send"
    statements_generate(period="2025-01", actor=actor, sync=True, send=True)
    assert next_step("2025-01") == "export"
    journal_export(period="2025-01", format="gl", actor=actor)
    assert next_step("2025-01") == "finalize"
    period_finalize(period="2025-01", actor=actor)
    cycle = period_cycle(BillingPeriod.objects.get(period="2025-01"))
    assert cycle.next_step is None
    assert all(step.done for step in cycle.steps)


def test_a_reopened_and_changed_period_needs_its_statements_again(month: str, actor: Actor) -> None:
    source_set(slug="aws", actor=actor, credit_fund_org="RCI-AWS", account_code="740000")
    statements_generate(period=month, actor=actor, sync=True, send=True)
    journal_export(period=month, format="gl", actor=actor)
    assert next_step(month) == "finalize"
    period_reopen(period=month, actor=actor, reason="late correction")
    charges_review(
        charges=Charge.objects.filter(resource_id="vm-2"), action="reject", actor=actor, note="dup"
    )
    period_close(period=month, actor=actor)
    cycle = period_cycle(BillingPeriod.objects.get(period=month))
    assert cycle.next_step is not None
    assert cycle.next_step.slug == "generate"
    assert not cycle.statements.up_to_date
    statements_generate(period=month, actor=actor, sync=True)
    assert next_step(month) == "send"  # the PI with a new version has not had it


def test_dashboard_totals_equal_the_charges(month: str) -> None:
    page = role_client(VIEWER).get("/admin/")
    assert page.status_code == 200
    html = page.content.decode()
    kept = Charge.objects.filter(period__period=month).exclude(review_state="rejected")
    sums = kept.aggregate(billed=Sum("billed_cost"), listed=Sum("list_cost"))
    assert sums["billed"] == Decimal("94.092")
    totals = page.context["dashboard"].cycle.totals
    assert (totals.billed_total, totals.list_total) == (sums["billed"], sums["listed"])
    assert totals.charges == kept.count() == 5
    assert totals.rejected == 1
    assert re.search(r'id="ocb-billed-total">\$94\.09<', html)
    assert re.search(r'id="ocb-list-total">\$496\.09<', html)
    # aws is a provider's export: its list minus billed is the provider's discount
    assert re.search(r'id="ocb-provider-discount">\$402\.00<', html)
    assert re.search(r'id="ocb-subsidy-total">\$0\.00<', html)
    # charts and tables name sources as people know them, never by slug
    charts = page.context["charts"]
    assert charts["subsidy"].rows == (("Amazon Web Services: provider discount", "$402.00"),)
    assert [row[1:] for row in charts["history"].rows] == [("$496.09", "$94.09")]
    assert "Amazon Web Services" in charts["history"].svg
    assert "Amazon Web Services: provider discount" in charts["subsidy"].svg
    assert "<td>Amazon Web Services</td>" in html  # recent imports
    assert not re.search(r">aws[:<]", html)
    # three charts, each an image with a title and a data table
    assert html.count('role="img"') == 3
    assert html.count("<summary>Data table</summary>") == 3
    assert "proj-b" in html
    assert "$80.75" in html
    assert "aws_2025-01.csv" in html  # recent imports


def test_next_step_is_a_button_only_for_who_may_take_it(month: str) -> None:
    viewer = role_client(VIEWER).get("/admin/").content.decode()
    assert "Next: <strong>Generate statements</strong>" in viewer
    assert 'class="button ocb-next"' not in viewer
    admin = role_client(BILLING_ADMIN).get("/admin/").content.decode()
    assert re.search(r'class="button ocb-next" href="[^"]*generate/\?period=2025-01"', admin)


def test_dashboard_of_an_empty_site(db: None) -> None:
    html = role_client(BILLING_ADMIN).get("/admin/").content.decode()
    assert "No billing period yet" in html
    assert 'href="/admin/ingest/import/upload/"' in html


def test_dashboard_queries_do_not_grow_with_data(
    month: str, django_assert_max_num_queries: Callable[..., AbstractContextManager[object]]
) -> None:
    client = role_client(VIEWER)
    client.get("/admin/")
    with django_assert_max_num_queries(30):
        client.get("/admin/")


def test_period_page_ties_the_month_together(month: str, actor: Actor) -> None:
    source_set(slug="aws", actor=actor, credit_fund_org="RCI-AWS", account_code="740000")
    statements_generate(period=month, actor=actor, sync=True)
    export = journal_export(period=month, format="gl", actor=actor)
    period = BillingPeriod.objects.get(period=month)
    page = role_client(REVIEWER).get(f"/admin/billing/billingperiod/{period.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "Imports (1)" in html
    assert "aws_2025-01.csv" in html
    assert f"/admin/journals/journalexport/{export.pk}/download/" in html
    assert "statement.generate" in html
    assert "period.close" in html
    assert "3 current statements (3 rendered) for 3 PI projects" in html
    by_source = page.context["by_source"]
    assert [(r["slug"], r["n"], r["billed"]) for r in by_source] == [("aws", 5, Decimal("94.092"))]
    # a reviewer sees the cycle but no close/finalize buttons
    assert "Finalize period" not in html
    assert "Reopen period" not in html


def test_project_and_pi_pages(month: str, actor: Actor) -> None:
    statements_generate(period=month, actor=actor, sync=True)
    project = Project.objects.get(project_id="proj-a")
    client = role_client(VIEWER)
    page = client.get(f"/admin/billing/project/{project.pk}/change/")
    assert page.status_code == 200
    history = page.context["history"]
    assert [(p.period, p.charges, p.billed_total) for p in history.periods] == [
        ("2025-01", 3, Decimal("10.009"))
    ]
    assert [u.fund_org for u in history.fund_orgs] == ["NSF-BIO-2024"]
    html = page.content.decode()
    assert page.context["trend"].rows == (("2025-01", "$412.01", "$10.01"),)
    assert 'role="img"' in html
    assert "?project=proj-a" in html
    number = Statement.objects.get(project=project).number
    assert number in html

    ada = PI.objects.get(email="ada@example.edu")
    page = client.get(f"/admin/billing/pi/{ada.pk}/change/")
    assert [p.billed_total for p in page.context["history"].periods] == [Decimal("90.759")]
    assert [p.project_id for p in page.context["projects"]] == ["proj-a", "proj-b"]
    assert "?pi=ada%40example.edu" in page.content.decode()


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/billing/billingperiod/{period}/change/",
        "/admin/billing/project/{project}/change/",
        "/admin/billing/pi/{pi}/change/",
    ],
)
def test_viewers_get_no_buttons_that_change_anything(month: str, path: str) -> None:
    url = path.format(
        period=BillingPeriod.objects.get(period=month).pk,
        project=Project.objects.get(project_id="proj-a").pk,
        pi=PI.objects.get(email="ada@example.edu").pk,
    )
    assert changing_buttons(role_client(VIEWER).get(url).content.decode()) == []
    # the check finds what a billing admin does get
    assert changing_buttons(role_client(BILLING_ADMIN).get(url).content.decode()) or (
        path == "/admin/"
    )


def _import(focus_file: Callable[..., Path], actor: Actor, slug: str, period: str, n: int) -> None:
    rows = [focus_row(period=period, resource=f"{slug}-{i}", billed="2.00") for i in range(n)]
    rows.append(focus_row(period=period, resource=f"{slug}-orphan", pi="", project=""))
    file_import(
        path=focus_file(rows, name=f"{slug}_{period}.csv"),
        source=Source.objects.get(slug=slug),
        actor=actor,
    )


@pytest.fixture
def three_months(defaults: None, focus_file: Callable[..., Path], actor: Actor) -> None:
    """2024-12 finalized; 2025-01 open (aws, gcp, hpc); 2025-02 open, aws only so far."""
    source_set(slug="aws", actor=actor, credit_fund_org="RCI-AWS", account_code="740000")
    _import(focus_file, actor, "aws", "2024-12", 1)
    charges_review(charges=Charge.objects.all(), action="reject", actor=actor, note="old")
    period_close(period="2024-12", actor=actor)
    period_finalize(period="2024-12", actor=actor)
    for slug in ("aws", "gcp", "hpc"):
        _import(focus_file, actor, slug, "2025-01", 2)
    _import(focus_file, actor, "aws", "2025-02", 3)


def test_dashboard_switches_between_every_month_not_finalized(three_months: None) -> None:
    client = role_client(REVIEWER)
    page = client.get("/admin/")
    board = page.context["dashboard"]
    # Every month not finalized, oldest first, with its pending count.
    assert [(m.period.period, m.pending, m.selected) for m in board.months] == [
        ("2025-01", 3, True),  # the default: the oldest open month
        ("2025-02", 1, False),
    ]
    html = page.content.decode()
    nav = html[html.index('class="ocb-months"') : html.index("</nav>")]
    assert '<a href="?period=2025-01" aria-current="page"' in nav
    assert '2025-02\n        <span class="ocb-month-state">Open, 1 to review</span>' in nav
    assert "2024-12" not in nav  # finalized
    assert 'id="ocb-period"' in html
    assert ">2025-01</a>" in html

    later = client.get("/admin/?period=2025-02")
    assert later.context["dashboard"].period.period == "2025-02"
    assert [m.selected for m in later.context["dashboard"].months] == [False, True]
    review = later.context["dashboard"].cycle.steps[1]
    assert review.slug == "review"
    assert review.detail.startswith("1 pending ($10.00)")

    # A finalized month can still be looked at by its address.
    old = client.get("/admin/?period=2024-12").context["dashboard"]
    assert old.period.period == "2024-12"
    assert old.period.status == "finalized"
    assert [m.period.period for m in old.months] == ["2024-12", "2025-01", "2025-02"]

    unknown = client.get("/admin/?period=2031-13")
    assert unknown.context["dashboard"].period.period == "2025-01"
    assert "There is no billing period 2031-13; showing 2025-01." in unknown.content.decode()


def test_default_month_is_the_oldest_open_then_the_oldest_closed(
    three_months: None, actor: Actor
) -> None:
    client = role_client(VIEWER)

    def close(month: str) -> None:
        pending = Charge.objects.filter(period__period=month, review_state="pending")
        charges_review(charges=pending, action="reject", actor=actor, note="test")
        period_close(period=month, actor=actor)

    close("2025-01")
    assert client.get("/admin/").context["dashboard"].period.period == "2025-02"
    close("2025-02")
    board = client.get("/admin/").context["dashboard"]
    assert board.period.period == "2025-01"  # no month open: the oldest closed
    assert [(m.period.period, m.pending) for m in board.months] == [("2025-01", 0), ("2025-02", 0)]


def test_import_step_names_the_sources_still_missing(
    three_months: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    client = role_client(VIEWER)
    page = client.get("/admin/?period=2025-02")
    sources = page.context["dashboard"].cycle.sources
    assert sources.previous == "2025-01"
    assert sources.expected == ["Amazon Web Services", "Google Cloud", "HPC cluster"]
    assert sources.delivered == ["Amazon Web Services"]
    assert sources.missing == ["Google Cloud", "HPC cluster"]
    step = page.context["dashboard"].cycle.steps[0]
    assert step.slug == "import"
    assert not step.done
    assert step.next
    assert step.detail.endswith("; 1 of 3 expected sources, missing: Google Cloud, HPC cluster")
    html = page.content.decode()
    assert "<strong>missing: Google Cloud, HPC cluster</strong>" in html
    assert "3 expected (delivered in 2025-01)" in html
    # The period's own page says the same.
    period = BillingPeriod.objects.get(period="2025-02")
    own = client.get(f"/admin/billing/billingperiod/{period.pk}/change/").content.decode()
    assert "<strong>missing: Google Cloud, HPC cluster</strong>" in own

    # A disabled source is not expected; the one still missing keeps the step open.
    source_set(slug="hpc", actor=actor, enabled=False)
    cycle = client.get("/admin/?period=2025-02").context["dashboard"].cycle
    assert cycle.sources.missing == ["Google Cloud"]
    assert not cycle.steps[0].done
    _import(focus_file, actor, "gcp", "2025-02", 1)
    cycle = client.get("/admin/?period=2025-02").context["dashboard"].cycle
    assert cycle.sources.missing == []
    assert cycle.steps[0].done
    assert cycle.next_step is not None
    assert cycle.next_step.slug == "review"
    assert "none missing" in client.get("/admin/?period=2025-02").content.decode()

    # The first month has nothing to compare with: nothing is expected.
    first = client.get("/admin/?period=2024-12").context["dashboard"].cycle.sources
    assert first.expected == []
    assert first.delivered == ["Amazon Web Services"]
