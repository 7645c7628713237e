"""Templates allow only their named placeholders: the email subject (checked on
save in the settings form, safe when sent) and the journal line description."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.forms.models import model_to_dict

from billing.audit import Actor
from billing.models import EMAIL_SUBJECT_FIELDS, InstitutionSettings
from billing.placeholders import TemplateError, fill, template_problem
from billing.roles import BILLING_ADMIN
from journals.builders import ChargeRow, JournalConfig, JournalError, SourceInfo, build
from statements.services import statements_generate
from tests.conftest import role_client

# (template, what the one-line message must say)
BAD = [
    ("{period:d}", "{period:d}: no format specs here; write {period}"),
    ("{total:>20}", "{total:>20}: no format specs here; write {total}"),
    ("{pi.__class__}", "{pi.__class__}: no attribute or index access here"),
    ("{period.__class__.__mro__}", "{period.__class__.__mro__}: no attribute or index access"),
    ("{period[0]}", "{period[0]}: no attribute or index access here"),
    ("{0}", "{0}: positional placeholders are not allowed"),
    ("{}", "{}: positional placeholders are not allowed"),
    ("{unknown}", "unknown placeholder {unknown}; use {period}, {pi_name}, {total}, {institution}"),
    ("{period!r}", "{period!r}: no conversions (!r, !s, !a) here; write {period}"),
    ("{period!s:>3}", "{period!s:>3}: no conversions"),
    ("Statement for {period", "unbalanced braces (expected '}' before end of string)"),
    ("{", "unbalanced braces (single '{' encountered in format string)"),
    ("}", "unbalanced braces (single '}' encountered in format string)"),
]
GOOD = [
    "{institution} statement for {period}: {total} due",
    "{pi_name}, your {period} statement",
    "{{literal braces}} {period}",
    "No placeholders at all",
]


@pytest.mark.parametrize(("template", "message"), BAD)
def test_a_bad_template_is_named_in_one_line(template: str, message: str) -> None:
    problem = template_problem(template, EMAIL_SUBJECT_FIELDS)
    assert problem is not None
    assert message in problem
    assert "\n" not in problem
    with pytest.raises(TemplateError):
        fill(template, EMAIL_SUBJECT_FIELDS, {})


@pytest.mark.parametrize("template", GOOD)
def test_plain_named_placeholders_are_allowed(template: str) -> None:
    assert template_problem(template, EMAIL_SUBJECT_FIELDS) is None


def test_fill_puts_values_in_as_text_never_as_templates() -> None:
    values = {"period": "2025-01", "pi_name": "{total.__class__} {0}", "total": "$1.00"}
    assert fill("{pi_name}: {total} for {period}{{!}}", EMAIL_SUBJECT_FIELDS, values) == (
        "{total.__class__} {0}: $1.00 for 2025-01{!}"
    )
    assert fill("{institution}|", EMAIL_SUBJECT_FIELDS, {}) == "|"  # a missing value: empty


# --- the settings form -------------------------------------------------------------------


def _form(settings: InstitutionSettings, **changes: str) -> dict[str, Any]:
    data = {k: v for k, v in model_to_dict(settings).items() if v is not None}
    return {**data, **changes}


@pytest.mark.django_db
@pytest.mark.parametrize(("template", "message"), BAD)
def test_the_settings_form_refuses_a_bad_subject(template: str, message: str) -> None:
    settings = InstitutionSettings.load()
    client = role_client(BILLING_ADMIN)
    url = f"/admin/billing/institutionsettings/{settings.pk}/change/"
    response = client.post(url, _form(settings, email_subject=template))
    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors["email_subject"]
    problem = template_problem(template, EMAIL_SUBJECT_FIELDS)
    assert errors == [f"Not a valid subject template: {problem}"]
    assert message in errors[0]
    assert InstitutionSettings.load().email_subject == settings.email_subject  # nothing saved
    with pytest.raises(ValidationError):
        InstitutionSettings(email_subject=template).full_clean()


@pytest.mark.django_db
def test_the_settings_form_saves_a_good_subject() -> None:
    settings = InstitutionSettings.load()
    client = role_client(BILLING_ADMIN)
    url = f"/admin/billing/institutionsettings/{settings.pk}/change/"
    response = client.post(url, _form(settings, email_subject="{pi_name}: {period} {{x}}"))
    assert response.status_code == 302
    assert InstitutionSettings.load().email_subject == "{pi_name}: {period} {{x}}"


# --- sending with a subject that was stored anyway ---------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("template", ["{period:d}", "{pi.__class__}", "{0}", "{period!r}", "{"])
def test_a_stored_bad_subject_sends_with_the_default_and_a_warning(
    month: str, actor: Actor, template: str, caplog: pytest.LogCaptureFixture
) -> None:
    InstitutionSettings.objects.filter(pk=1).update(email_subject=template)  # skips the form
    with caplog.at_level(logging.WARNING, logger="statements.emailing"):
        outcomes = statements_generate(period=month, actor=actor, sync=True, send=True).emails
    assert [o.status for o in outcomes] == ["sent", "sent"]
    name = InstitutionSettings.load().name
    assert {m.subject.split(":")[0] for m in mail.outbox} == {f"{name} statement for {month}"}
    warnings = [r for r in caplog.records if "email subject template" in r.getMessage()]
    assert len(warnings) == 2
    assert repr(template) in warnings[0].getMessage()


@pytest.mark.django_db
def test_a_good_subject_is_filled_in(month: str, actor: Actor) -> None:
    InstitutionSettings.objects.filter(pk=1).update(email_subject="{pi_name} {{{period}}}")
    statements_generate(period=month, actor=actor, sync=True, send=True)
    assert sorted(m.subject for m in mail.outbox)[0].endswith("{2025-01}")


# --- journal line descriptions -----------------------------------------------------------


def test_a_bad_description_template_blocks_the_journal_with_its_name() -> None:
    config = JournalConfig(default_account="740000", description_template="{period:%Y}")
    row = ChargeRow(
        charge_id=1,
        source="aws",
        service="EC2",
        pi_email="ada@example.edu",
        project_id="p",
        fund_org="NSF-BIO",
        billed=Decimal("1.00"),
    )
    sources = {"aws": SourceInfo(slug="aws", credit_fund_org="RCI-AWS", account_code="740100")}
    with pytest.raises(JournalError) as refused:
        build("summary", period="2025-01", rows=[row], sources=sources, config=config)
    assert "the description template cannot be used: {period:%Y}: no format specs here" in str(
        refused.value
    )
