"""Every admin page and action, for every role, by GET and POST (SPEC §8).

The expected access is written out here from the specification, not read
from billing.roles, so a drift in either shows up as a failure:

- viewer: reads everything of billing, imports and background jobs;
- reviewer: + approve, reject, reset, fix attribution, re-apply rules;
- billing admin: + periods, PIs, projects, every setting, generating and
  sending statements (reviewers may resend one);
- superuser: everything the admin allows anyone (users, groups, lockouts);
- nobody: charges, imports, periods and the audit trail are never edited
  through forms; the audit trail is read-only even for superusers; nor are
  background-job results (django-q2's success and failure records), which
  nobody deletes;
- background jobs: only billing admins and superusers run one again, and
  each time leaves an audit event.

Anonymous visitors are sent to the login page from every URL; a staff user
with no role ("norole") is refused every page but the index, which says so.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from django_q.models import Failure, OrmQ, Schedule, Success, Task

from billing.audit import Actor
from billing.exchange import exchange_rate_set
from billing.models import (
    AuditEvent,
    BillingPeriod,
    Charge,
    FundOrgPattern,
    PatternRule,
    Project,
    Source,
)
from billing.roles import BILLING_ADMIN, REVIEWER, VIEWER
from ingest.focus.services import file_import
from ingest.usage.mappings import account_mapping_create
from ingest.usage.rates import rate_create
from statements.models import EmailLog, Statement
from statements.services import statements_generate
from tests.conftest import focus_row, role_client

pytestmark = pytest.mark.django_db

ANONYMOUS, NOROLE, SUPERUSER, NOBODY = "anonymous", "norole", "superuser", "nobody"
ROLES = [ANONYMOUS, VIEWER, REVIEWER, BILLING_ADMIN, SUPERUSER]
# The page matrix also has a staff user without a role.
ALL_ROLES = [ANONYMOUS, NOROLE, VIEWER, REVIEWER, BILLING_ADMIN, SUPERUSER]
RANK = {role: rank for rank, role in enumerate([*ALL_ROLES, NOBODY])}

# model label: minimum role to (view, add, change, delete)
ACCESS: dict[str, tuple[str, str, str, str]] = {
    "billing.billingperiod": (VIEWER, NOBODY, NOBODY, NOBODY),
    "billing.charge": (VIEWER, NOBODY, NOBODY, NOBODY),
    "billing.auditevent": (VIEWER, NOBODY, NOBODY, NOBODY),
    "ingest.import": (VIEWER, NOBODY, NOBODY, NOBODY),
    "ingest.rate": (VIEWER, BILLING_ADMIN, BILLING_ADMIN, BILLING_ADMIN),
    "ingest.accountmapping": (VIEWER, BILLING_ADMIN, BILLING_ADMIN, BILLING_ADMIN),
    "billing.pi": (VIEWER, BILLING_ADMIN, BILLING_ADMIN, SUPERUSER),
    "billing.project": (VIEWER, BILLING_ADMIN, BILLING_ADMIN, SUPERUSER),
    "billing.source": (VIEWER, BILLING_ADMIN, BILLING_ADMIN, BILLING_ADMIN),
    "billing.institutionsettings": (VIEWER, NOBODY, BILLING_ADMIN, NOBODY),
    "billing.tagmapping": (VIEWER, BILLING_ADMIN, BILLING_ADMIN, BILLING_ADMIN),
    "billing.flagrule": (VIEWER, BILLING_ADMIN, BILLING_ADMIN, BILLING_ADMIN),
    "billing.patternrule": (VIEWER, BILLING_ADMIN, BILLING_ADMIN, BILLING_ADMIN),
    "billing.fundorgpattern": (VIEWER, BILLING_ADMIN, BILLING_ADMIN, BILLING_ADMIN),
    # recorded and changed through the service (charges converted), never deleted
    "billing.exchangerate": (VIEWER, BILLING_ADMIN, BILLING_ADMIN, NOBODY),
    "statements.statement": (VIEWER, NOBODY, NOBODY, NOBODY),
    "statements.emaillog": (VIEWER, NOBODY, NOBODY, NOBODY),
    "journals.journalexport": (VIEWER, NOBODY, NOBODY, NOBODY),
    "journals.journalsettings": (VIEWER, NOBODY, BILLING_ADMIN, NOBODY),
    "journals.journaltemplate": (VIEWER, BILLING_ADMIN, BILLING_ADMIN, BILLING_ADMIN),
    "auth.user": (SUPERUSER, SUPERUSER, SUPERUSER, SUPERUSER),
    "auth.group": (SUPERUSER, SUPERUSER, SUPERUSER, SUPERUSER),
    "django_q.schedule": (VIEWER, SUPERUSER, SUPERUSER, SUPERUSER),
    # job results are records: read-only, never deleted (superusers neither)
    "django_q.success": (VIEWER, NOBODY, NOBODY, NOBODY),
    "django_q.failure": (VIEWER, NOBODY, NOBODY, NOBODY),
    "django_q.ormq": (VIEWER, NOBODY, SUPERUSER, SUPERUSER),
    "axes.accessattempt": (SUPERUSER, NOBODY, SUPERUSER, SUPERUSER),
    "axes.accesslog": (SUPERUSER, NOBODY, SUPERUSER, SUPERUSER),
    "axes.accessfailurelog": (SUPERUSER, NOBODY, SUPERUSER, SUPERUSER),
}

# Actions on django-q2's pages: minimum role (NOBODY: never offered).
JOB_ACTIONS = {"resubmit": BILLING_ADMIN, "delete_selected": NOBODY}
QUEUE_ACTIONS = {"delete_selected": SUPERUSER}

# Statement and email actions: minimum role.
STATEMENT_ACTIONS = {"send_selected": BILLING_ADMIN, "resend_selected": REVIEWER}
EMAIL_ACTIONS = {"send_now": BILLING_ADMIN, "resolve": BILLING_ADMIN}

# Review actions on the queue: minimum role.
CHARGE_ACTIONS = {
    "approve": REVIEWER,
    "reject": REVIEWER,
    "reset": REVIEWER,
    "fix_attribution": REVIEWER,
    "reapply_rules": REVIEWER,
}


def _allowed(role: str, minimum: str) -> bool:
    return RANK[role] >= RANK[minimum]


@pytest.fixture
def world(defaults: None, focus_file: Callable[..., Path], actor: Actor) -> None:
    rows = [
        focus_row(resource="odd", pi=""),  # who pays is unknown: not approvable as is
        focus_row(resource="big", billed="12000.00"),  # large: a look, then approvable
        focus_row(resource="fine", billed="2.00"),
    ]
    file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)
    PatternRule.objects.get_or_create(name="test", defaults={"pattern": "^test-"})
    FundOrgPattern.objects.get_or_create(pattern=r"[A-Z]+-[A-Z]+-\d{4}")
    rate_create(
        actor=actor,
        resource="cpu",
        service="standard",
        effective_from=date(2025, 1, 1),
        list_rate=Decimal("0.01"),
    )
    account_mapping_create(
        actor=actor, kind="slurm", name="lab-a", project=Project.objects.get(project_id="proj-a")
    )
    exchange_rate_set(currency="EUR", period="2025-01", rate="1.0850", actor=actor)
    _jobs()
    _lockouts()


REMINDER = ("django.core.management.call_command", ("remind_reviewers",))


def _jobs() -> None:
    """A finished job, a failed one, a schedule and a queued job (django-q2)."""
    now = timezone.now()
    func, args = REMINDER
    for name, success in (("reminder-ok", True), ("reminder-failed", False)):
        Task.objects.create(
            id=name.replace("-", "") + "0" * 10,
            name=name,
            func=func,
            args=args,
            kwargs={},
            started=now,
            stopped=now,
            success=success,
            result=None if success else "SMTPServerDisconnected",
            group="reminders",
        )
    Schedule.objects.create(name="reminder", func=func, args="'remind_reviewers'")
    from django_q.tasks import async_task

    async_task("statements.tasks.render_statement", 1, q_options={"sync": False})


def _lockouts() -> None:
    """django-axes' records: a lockout, a failed login and a login (so each
    of their pages, change, history and delete too, is in the matrix)."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog

    seen = {
        "user_agent": "test",
        "ip_address": "203.0.113.1",
        "username": "ann",
        "http_accept": "*/*",
        "path_info": "/admin/login/",
    }
    AccessAttempt.objects.create(**seen, get_data="", post_data="", failures_since_start=5)
    AccessFailureLog.objects.create(**seen, locked_out=True)
    AccessLog.objects.create(**seen)


def _client(role: str) -> Client:
    client = Client()
    if role == ANONYMOUS:
        return client
    if role == NOROLE:
        staff = get_user_model().objects.create_user("staff", password="x", is_staff=True)
        client.force_login(staff)
        return client
    if role != SUPERUSER:
        return role_client(role)
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.edu", "x"))
    return client


def _sample(model: Any) -> Any:
    return model._default_manager.order_by("pk").first()


Page = tuple[str, str, dict[str, Any], str, set[int]]  # method, url, data, minimum role, ok


def _visit(client: Client, role: str, pages: list[Page]) -> None:
    """Request every page; report all unexpected statuses at once."""
    failures = []
    for method, url, data, minimum, ok in pages:
        response = client.get(url) if method == "GET" else client.post(url, data)
        got = response.status_code
        if role == ANONYMOUS:
            if got != 302 or "/admin/login/" not in response["Location"]:
                failures.append(f"{method} {url}: {got}, expected login")
            continue
        expected = ok if _allowed(role, minimum) else {403}
        if got not in expected:
            failures.append(f"{method} {url}: {got}, expected {sorted(expected)}")
    assert not failures, "\n".join(failures)


MODELS = sorted(ACCESS)


def test_the_matrix_covers_every_registered_model() -> None:
    registered = {model._meta.label_lower for model in admin.site._registry}
    assert registered == set(ACCESS)


@pytest.mark.parametrize("label", MODELS)
@pytest.mark.parametrize("role", ALL_ROLES)
def test_model_pages(world: None, role: str, label: str) -> None:
    model = next(m for m in admin.site._registry if m._meta.label_lower == label)
    client = _client(role)
    view, add, change, delete = ACCESS[label]
    base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    obj = _sample(model)
    pages: list[Page] = [
        ("GET", base, {}, view, {200}),
        ("GET", base + "add/", {}, add, {200}),
        ("POST", base + "add/", {}, add, {200}),
    ]
    if obj is not None:
        pages += [
            ("GET", f"{base}{obj.pk}/change/", {}, view, {200}),
            ("POST", f"{base}{obj.pk}/change/", {}, change, {200, 302}),
            ("GET", f"{base}{obj.pk}/history/", {}, view, {200}),
            ("GET", f"{base}{obj.pk}/delete/", {}, delete, {200}),
            ("POST", f"{base}{obj.pk}/delete/", {"post": "yes"}, delete, {200, 302}),
        ]
    _visit(client, role, pages)


def _post_action(client: Client, url: str, action: str, ids: list[Any]) -> Any:
    data = {"action": action, helpers.ACTION_CHECKBOX_NAME: ids, "index": 0, "post": "yes"}
    return client.post(url, data)


def _status_ok(role: str, response: Any) -> bool:
    """Anonymous: to the login page; no role: refused; a role: back to the list
    (302), or the list again (200) when the page offers no action at all."""
    if role == ANONYMOUS:
        return response.status_code == 302 and "/admin/login/" in response["Location"]
    if role == NOROLE:
        return bool(response.status_code == 403)
    if response.status_code == 302:
        return "/login/" not in response["Location"]
    return bool(response.status_code == 200)


@pytest.mark.parametrize("role", ALL_ROLES)
def test_job_actions(world: None, role: str) -> None:
    """django-q2's pages: who may run a job again (audited), and that no one
    deletes a job's result; the queue's own delete is for superusers."""
    client = _client(role)
    failure, success = Failure.objects.get(), Success.objects.get()
    queued = OrmQ.objects.count()
    results = {"failure": failure.pk, "success": success.pk}
    if role not in (ANONYMOUS, NOROLE):
        for model in results:
            expected = {a for a, minimum in JOB_ACTIONS.items() if _allowed(role, minimum)}
            assert _offered(client, f"/admin/django_q/{model}/") == expected, model
        expected = {a for a, minimum in QUEUE_ACTIONS.items() if _allowed(role, minimum)}
        assert _offered(client, "/admin/django_q/ormq/") == expected

    # Deleting a result, through the list's action or its delete page: never.
    for model, pk in results.items():
        url = f"/admin/django_q/{model}/"
        assert _status_ok(role, _post_action(client, url, "delete_selected", [pk]))
        response = client.post(f"{url}{pk}/delete/", {"post": "yes"})
        assert response.status_code == (302 if role == ANONYMOUS else 403)
    assert set(Task.objects.values_list("pk", flat=True)) == set(results.values())

    # Running them again: billing admins and superusers; queued, audited.
    # django-q2's own action (resubmit_task) is gone, even posted by hand.
    for action in ("resubmit_task", "resubmit"):
        for model, pk in results.items():
            url = f"/admin/django_q/{model}/"
            assert _status_ok(role, _post_action(client, url, action, [pk]))
        if action == "resubmit_task":
            assert OrmQ.objects.count() == queued
    events = AuditEvent.objects.filter(action="job.resubmit").order_by("pk")
    may = role != ANONYMOUS and _allowed(role, BILLING_ADMIN)
    assert OrmQ.objects.count() == queued + (2 if may else 0)
    assert Failure.objects.filter(pk=failure.pk).exists()  # the record of the failure stays
    if may:
        actor = "root" if role == SUPERUSER else role.replace(" ", "_")
        assert [(e.object_type, e.object_id, e.actor, e.channel) for e in events] == [
            ("django_q.failure", failure.pk, actor, "admin"),
            ("django_q.success", success.pk, actor, "admin"),
        ]
        copies = {job.task_id(): job for job in OrmQ.objects.all()}
        for event in events:
            after = event.after or {}
            copy = copies[after["queued"]]
            assert (copy.func(), copy.args(), copy.group()) == (*REMINDER, "reminders")
            assert after["func"] == REMINDER[0]
    else:
        assert not events.exists()

    # A queued job: superusers may delete it (audited); the rest may not.
    job = OrmQ.objects.order_by("pk").first()
    assert job is not None
    response = _post_action(client, "/admin/django_q/ormq/", "delete_selected", [job.pk])
    assert _status_ok(role, response)
    deleted = not OrmQ.objects.filter(pk=job.pk).exists()
    assert deleted == (role == SUPERUSER)
    cancelled = AuditEvent.objects.filter(action="queued_job.delete", object_id=str(job.pk))
    assert cancelled.exists() == deleted
    if deleted:
        assert (cancelled.get().before or {})["func"] == "statements.tasks.render_statement"


@pytest.mark.parametrize("role", ALL_ROLES)
def test_the_index_for_each_role(world: None, role: str) -> None:
    """A staff user without a role gets a page saying so: no totals, no records."""
    response = _client(role).get("/admin/")
    if role == ANONYMOUS:
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]
        return
    assert response.status_code == 200
    text = response.content.decode()
    if role == NOROLE:
        assert "You have no role yet" in text
        assert response.context["app_list"] == []
        assert "Totals for" not in text
        assert "Recent imports" not in text
        assert "proj-a" not in text
    else:
        assert "You have no role yet" not in text
        assert "Totals for 2025-01" in text
        assert response.context["app_list"]


@pytest.mark.parametrize("role", ROLES)
def test_review_actions(world: None, role: str) -> None:
    client = _client(role)
    pending = list(Charge.objects.filter(review_state="pending").values_list("pk", flat=True))
    assert pending
    if role == ANONYMOUS:
        response = client.post("/admin/billing/charge/", {"action": "approve", "index": 0})
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]
        return
    page = client.get("/admin/billing/charge/")
    form = page.context["action_form"]
    offered = {name for name, _ in form.fields["action"].choices if name} if form else set()
    expected = {name for name, minimum in CHARGE_ACTIONS.items() if _allowed(role, minimum)}
    assert offered == expected
    for action in CHARGE_ACTIONS:
        client.post(
            "/admin/billing/charge/",
            {"action": action, helpers.ACTION_CHECKBOX_NAME: pending, "index": 0},
        )
        if action == "approve":  # several charges: confirmed on a page of its own
            assert not AuditEvent.objects.filter(action="charge.approve").exists()
            client.post(
                "/admin/billing/charge/",
                {"action": action, helpers.ACTION_CHECKBOX_NAME: pending, "apply": "1"},
            )
    approved = Charge.objects.filter(pk__in=pending, review_state="approved").exists()
    # An action not offered does nothing, even when posted by hand; "reset"
    # runs after "approve", so a reviewer's charges end pending again.
    assert not approved
    approvals = AuditEvent.objects.filter(action="charge.approve").count()
    if _allowed(role, REVIEWER):
        approvable = Charge.objects.filter(pk__in=pending, resource_id="big")
        assert approvals == approvable.count() == 1
        assert AuditEvent.objects.filter(action="charge.reset").count() == 1
        assert not AuditEvent.objects.filter(
            action="charge.approve", object_id=str(Charge.objects.get(resource_id="odd").pk)
        ).exists()
    else:
        assert approvals == 0
        assert Charge.objects.filter(pk__in=pending, reviewed_by="").count() == len(pending)


@pytest.mark.parametrize("role", ROLES)
def test_period_lifecycle_and_previews(world: None, role: str) -> None:
    client = _client(role)
    period = BillingPeriod.objects.get()
    close = f"/admin/billing/billingperiod/{period.pk}/transition/close/"
    urls: list[Page] = [
        ("GET", close, {}, VIEWER, {405}),
        ("POST", close, {"allow_pending": "on"}, BILLING_ADMIN, {302}),
        ("GET", "/admin/billing/patternrule/preview/?pattern=x", {}, VIEWER, {200}),
        ("POST", "/admin/billing/fundorgpattern/preview/", {"pattern": "x"}, VIEWER, {303}),
        ("GET", "/admin/", {}, VIEWER, {200}),
        ("GET", "/admin/billing/", {}, VIEWER, {200}),
    ]
    _visit(client, role, urls)
    period.refresh_from_db()
    expected = "closed" if _allowed(role, BILLING_ADMIN) and role != ANONYMOUS else "open"
    assert period.status == expected


def _offered(client: Client, url: str) -> set[str]:
    form = client.get(url).context["action_form"]
    return {name for name, _ in form.fields["action"].choices if name} if form else set()


@pytest.mark.parametrize("role", ROLES)
def test_statement_pages_and_actions(month: str, actor: Actor, role: str) -> None:
    statements_generate(period=month, actor=actor, sync=True, send=True)
    statement = Statement.objects.order_by("pk").first()
    assert statement is not None
    client = _client(role)
    base = "/admin/statements/statement/"
    pages: list[Page] = [
        ("GET", f"{base}{statement.pk}/pdf/", {}, VIEWER, {200}),
        ("GET", f"{base}{statement.pk}/pdf/?download=1", {}, VIEWER, {200}),
        ("GET", f"{base}{statement.pk}/line-items/", {}, VIEWER, {404}),
        ("GET", f"{base}generate/", {}, BILLING_ADMIN, {200}),
        ("POST", f"{base}generate/", {"period": month, "preview": "1"}, BILLING_ADMIN, {200}),
        ("GET", "/admin/statements/emaillog/", {}, VIEWER, {200}),
    ]
    _visit(client, role, pages)
    if role == ANONYMOUS:
        return
    expected = {name for name, minimum in STATEMENT_ACTIONS.items() if _allowed(role, minimum)}
    assert _offered(client, base) == expected
    expected = {name for name, minimum in EMAIL_ACTIONS.items() if _allowed(role, minimum)}
    assert _offered(client, "/admin/statements/emaillog/") == expected
    # posting an action not offered does nothing
    ids = list(Statement.objects.values_list("pk", flat=True))
    before = EmailLog.objects.count()
    client.post(
        base,
        {
            "action": "resend_selected",
            helpers.ACTION_CHECKBOX_NAME: ids,
            "apply": "1",
            "reason": "asked",
            "index": 0,
        },
    )
    resent = EmailLog.objects.filter(resend=True).count()
    assert resent == (EmailLog.objects.count() - before)
    assert bool(resent) == _allowed(role, REVIEWER)


@pytest.mark.parametrize("role", ROLES)
def test_journal_pages(month: str, actor: Actor, role: str) -> None:
    from billing.services import source_set
    from journals.models import JournalExport, JournalSettings
    from journals.services import journal_export

    source_set(slug="aws", actor=actor, credit_fund_org="RCI-AWS", account_code="740000")
    statements_generate(period=month, actor=actor, sync=True)
    first = journal_export(period=month, format="gl", actor=actor)
    base = "/admin/journals/journalexport/"
    form = {"period": month, "format": "gl"}
    pages: list[Page] = [
        ("GET", f"{base}export/", {}, VIEWER, {200}),
        ("POST", f"{base}export/", {**form, "preview": "1"}, VIEWER, {200}),
        ("GET", f"{base}{first.pk}/download/", {}, VIEWER, {200}),
        ("POST", f"{base}export/", {**form, "export": "1"}, BILLING_ADMIN, {302}),
    ]
    _visit(_client(role), role, pages)
    exported = JournalExport.objects.count() - 1
    assert exported == (1 if _allowed(role, BILLING_ADMIN) and role != ANONYMOUS else 0)
    assert JournalSettings.objects.count() == 1
