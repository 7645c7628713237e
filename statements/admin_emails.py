"""The emails in the admin: the confirmation page every send shows first (who
gets what), the report after it, and the email log with its operator actions
(send failed emails now, resolve stuck claims). The statement pages use the
confirmation and the report; ``statements.admin`` imports this module, so its
registration runs with the app's admin."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from billing.adminkit import ReadOnlyAdmin, action_context, action_page, action_summary, actor_for
from billing.errors import BillingError, web_text
from billing.models import InstitutionSettings
from openchargeback.text import count as _count
from statements import emailing, selectors
from statements.models import EmailLog

# --- Confirmations: who gets what, before anything is sent ---------------------------

SHOWN_EMAILS = 200  # rows on a confirmation page; the counts and total cover every one


def email_confirmation(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    *,
    action: str,
    title: str,
    intro: str,
    emails: list[selectors.PlannedEmail],
    skipped: list[tuple[str, str]] | None = None,
    problems: list[str] | None = None,
    form: forms.Form | None = None,
    fingerprint: str = "",
    verb: str = "Send",
) -> TemplateResponse:
    """The page before emails go out: how many, to whom, which statements
    with their amounts, the total; what is left out and why (``skipped``:
    (what, why) pairs); ``problems`` stop it (no submit button). Posts the
    selection back with ``apply``; Cancel keeps the list's filters."""
    money = InstitutionSettings.cached().format_money
    rows = [
        {
            "name": e.pi.name or "—",
            "to": e.address,
            "period": e.period.period,
            "statements": [
                {
                    "number": st.number,
                    "project": st.project.project_id if st.project else "(no project)",
                    "due": money(st.billed_total),
                }
                for st in e.statements
            ],
            "total": money(e.total),
        }
        for e in emails[:SHOWN_EMAILS]
    ]
    total = sum((e.total for e in emails), Decimal(0))
    statements = sum(len(e.statements) for e in emails)
    pis = len({e.pi.pk for e in emails})
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "intro": intro,
        "opts": model_admin.model._meta,
        "rows": rows,
        "more": max(len(emails) - SHOWN_EMAILS, 0),
        "email_count": len(emails),
        "summary": f"{_count(len(emails), 'email')} to {_count(pis, 'PI')}, "
        f"{_count(statements, 'statement')}, total due {money(total)}.",
        "total": money(total),
        "periods": len({e.period.pk for e in emails}) > 1,
        "skipped": skipped or [],
        "problems": problems or [],
        "form": form,
        "fingerprint": fingerprint,
        "submit_label": f"{verb} {_count(len(emails), 'email')}",
        **action_context(model_admin, request, action=action),
    }
    return TemplateResponse(request, "admin/statements/email_confirmation.html", context)


def skipped_text(skipped: list[tuple[str, str]]) -> str:
    """'2 already emailed, 1 no PDF yet' (by reason, most first)."""
    reasons: dict[str, int] = {}
    for _, why in skipped:
        reasons[why] = reasons.get(why, 0) + 1
    ranked = sorted(reasons.items(), key=lambda item: -item[1])
    return ", ".join(f"{n:,} {why}" for why, n in ranked)


def report_sending(request: HttpRequest, dispatch: emailing.Dispatch, group: str) -> None:
    outcomes, queued = dispatch.outcomes, dispatch.queued
    sent = sum(1 for o in outcomes if o.status == "sent")
    failed = [o for o in outcomes if o.status == "failed"]
    if queued:
        messages.info(
            request,
            f"{_count(queued, 'email')} queued as job group {group}; the workers send them.",
        )
    if sent:
        messages.success(request, f"{_count(sent, 'email')} sent.")
    if failed:
        messages.error(
            request,
            f"{_count(len(failed), 'email')} failed and will be retried: {failed[0].error}",
        )
    if not (queued or sent or failed):
        messages.info(request, "Nothing to send: every selected statement was already emailed.")


# --- Emails -------------------------------------------------------------------------


class StuckFilter(admin.SimpleListFilter):
    title = "needs an operator"
    parameter_name = "stuck"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("stuck", "Stuck claims"), ("gave_up", "Failed, no more retries")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() == "stuck":
            return selectors.stuck(queryset)
        if self.value() == "gave_up":
            return queryset.filter(status=EmailLog.Status.FAILED, next_attempt_at=None)
        return None


class ResolveForm(forms.Form):
    outcome = forms.ChoiceField(
        choices=[
            ("sent", "The PI has it: record the email as sent"),
            ("retry", "The PI does not have it: send it again"),
        ],
        widget=forms.RadioSelect,
    )
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="How you know (mail server log, the PI's answer); kept in the audit trail.",
    )


@admin.register(EmailLog)
class EmailLogAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "period",
        "to",
        "state",
        "resend",
        "attempts",
        "statement_numbers",
        "created_at",
        "sent_at",
        "next_attempt_at",
        "short_error",
    ]
    list_filter = ["period", "status", StuckFilter, "resend"]
    search_fields = ["to", "pi__name", "subject"]
    list_select_related = ["period"]
    show_facets = admin.ShowFacets.NEVER
    actions = ["send_now", "resolve"]
    readonly_fields = [
        "period",
        "pi",
        "to",
        "subject",
        "resend",
        "status",
        "attempts",
        "error",
        "created_at",
        "created_by",
        "claimed_at",
        "next_attempt_at",
        "sent_at",
        "message_id",
        "statement_numbers",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[EmailLog]:
        return super().get_queryset(request).prefetch_related("items__statement")

    def has_send_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("statements.send_statement")

    @admin.display(description="status", ordering="status")
    def state(self, obj: EmailLog) -> str:
        if (
            obj.status == EmailLog.Status.SENDING
            and obj.claimed_at
            and obj.claimed_at < selectors.stuck_before()
        ):
            return "Stuck: an operator must resolve it"
        if obj.status == EmailLog.Status.FAILED and obj.next_attempt_at is None:
            return "Failed: no more retries"
        return obj.get_status_display()

    @admin.display(description="statements")
    def statement_numbers(self, obj: EmailLog) -> str:
        items = sorted(obj.items.all(), key=lambda i: i.statement.number)
        return format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            (
                (reverse("admin:statements_statement_change", args=[i.statement_id]), i.statement)
                for i in items
            ),
        )

    @admin.display(description="error")
    def short_error(self, obj: EmailLog) -> str:
        text = obj.error
        return (
            format_html('<span title="{}">{}</span>', text, text[:80] + "…")
            if len(text) > 80
            else text
        )

    @admin.action(description="Send selected failed emails now…", permissions=["send"])
    def send_now(
        self, request: HttpRequest, queryset: QuerySet[EmailLog]
    ) -> TemplateResponse | None:
        failed = list(
            queryset.filter(status=EmailLog.Status.FAILED)
            .select_related("period", "pi")
            .prefetch_related("items__statement__project", "items__statement__pi")
            .order_by("to", "pk")
        )
        if not failed:
            messages.info(request, "None of the selected emails had failed.")
            return None
        if "apply" not in request.POST:
            others = queryset.exclude(status=EmailLog.Status.FAILED).order_by("pk")
            return email_confirmation(
                self,
                request,
                action="send_now",
                title="Send failed emails now",
                intro="These emails failed before; they are tried again now instead of at "
                "their next retry.",
                emails=[
                    selectors.PlannedEmail(
                        e.period,
                        sorted((i.statement for i in e.items.all()), key=lambda s: s.number),
                        to=e.to,
                    )
                    for e in failed
                ],
                skipped=[
                    (f"Email {e.pk} to {e.to}", e.get_status_display().lower()) for e in others
                ],
            )
        ids = emailing.emails_retry_now(emails=queryset, actor=actor_for(request))
        group = f"emails-{request.user.get_username()}"
        dispatch = emailing.emails_dispatch(email_ids=ids, group=group)
        report_sending(request, dispatch, group)
        return None

    @admin.action(description="Resolve selected stuck emails…", permissions=["send"])
    def resolve(
        self, request: HttpRequest, queryset: QuerySet[EmailLog]
    ) -> TemplateResponse | None:
        form = ResolveForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            actor, data = actor_for(request), form.cleaned_data
            done, ids = 0, []
            try:
                for email_log in queryset.filter(status=EmailLog.Status.SENDING):
                    emailing.emails_resolve(
                        email=email_log, actor=actor, outcome=data["outcome"], note=data["note"]
                    )
                    done += 1
                    ids.append(email_log.pk)
            except BillingError as exc:
                messages.error(request, web_text(exc))
            if data["outcome"] == "retry" and ids:
                group = f"emails-{request.user.get_username()}"
                dispatch = emailing.emails_dispatch(email_ids=ids, group=group)
                report_sending(request, dispatch, group)
            elif done:
                messages.success(request, f"{done:,} emails recorded as sent.")
            else:
                messages.info(request, "None of the selected emails is being sent.")
            return None
        return action_page(
            self,
            request,
            action="resolve",
            form=form,
            title="Resolve stuck emails",
            intro="A stuck email was handed to a worker that stopped before it recorded the "
            "outcome: the mail server may or may not have delivered it, so it is never resent "
            "automatically. Check the mail server's log or ask the PI, then decide.",
            summary=action_summary(
                queryset.filter(status=EmailLog.Status.SENDING).count(), "stuck email"
            ),
        )
