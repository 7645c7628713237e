"""Statements and their emails in the admin: read-only records, with the
generate / send / resend actions, PDF preview and download, and the state of
the background jobs."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from csp.constants import SELF
from csp.decorators import csp_replace
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.clickjacking import xframe_options_sameorigin

from billing.adminkit import (
    ReadOnlyAdmin,
    action_context,
    action_page,
    action_summary,
    actor_for,
    money_column,
)
from billing.errors import BillingError, web_text
from billing.models import BillingPeriod, InstitutionSettings
from openchargeback.text import count as _count
from statements import emailing
from statements.models import EmailLog, EmailStatement, Statement
from statements.services import statements_generate

# The Content-Security-Policy's frame-ancestors, for the PDF alone (typed
# for views with arguments; django-csp's types allow the request only).
_framed_by_self: Callable[[Callable[..., Any]], Callable[..., Any]] = csp_replace(
    {"frame-ancestors": [SELF]}
)


# --- Confirmations: who gets what, before anything is sent ---------------------------

SHOWN_EMAILS = 200  # rows on a confirmation page; the counts and total cover every one


def email_confirmation(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    *,
    action: str,
    title: str,
    intro: str,
    emails: list[emailing.PlannedEmail],
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


def generate_recipients(preview: Any, period: BillingPeriod) -> dict[str, Any]:
    """Who a "generate and send" would email, from its dry run: every PI with a
    statement not emailed yet once it is generated — the new versions and the
    current statements left unchanged that were never emailed (as
    emails_queue picks them after rendering). Rows as email_confirmation's."""
    money = InstitutionSettings.cached().format_money
    current = {
        (s.pi.email, s.project.project_id if s.project else ""): s
        for s in Statement.objects.filter(period=period, superseded_at=None).select_related(
            "pi", "project"
        )
    }
    emailed = set(
        EmailStatement.objects.filter(statement__period=period, resend=False).values_list(
            "statement_id", flat=True
        )
    )
    by_pi: dict[str, dict[str, Any]] = {}

    def add(email: str, name: str, number: str, project: str, due: Decimal) -> None:
        row = by_pi.setdefault(
            email, {"name": name or "—", "to": email, "statements": [], "due": Decimal(0)}
        )
        row["statements"].append(
            {"number": number, "project": project or "(no project)", "due": money(due)}
        )
        row["due"] += due

    for data in preview.would_create:
        old = current.get((data.pi_email, data.project_id))
        number = f"new version of {old.number}" if old else "new statement"
        add(data.pi_email, data.pi_name, number, data.project_id, data.billed_total)
    unsent = [s.pk for s in preview.unchanged if s.pk not in emailed]
    for statement in (
        Statement.objects.filter(pk__in=unsent).select_related("pi", "project").order_by("number")
    ):
        project = statement.project.project_id if statement.project else ""
        add(
            statement.pi.email, statement.pi.name, statement.number, project, statement.billed_total
        )
    rows = [by_pi[email] for email in sorted(by_pi)]
    total = sum((row["due"] for row in rows), Decimal(0))
    for row in rows:
        row["total"] = money(row.pop("due"))
    statements = sum(len(row["statements"]) for row in rows)
    return {
        "rows": rows[:SHOWN_EMAILS],
        "more": max(len(rows) - SHOWN_EMAILS, 0),
        "total": money(total),
        "email_count": len(rows),
        "summary": f"Then {_count(len(rows), 'email')} to {_count(len(rows), 'PI')}, "
        f"{_count(statements, 'statement')}, total due {money(total)}.",
    }


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


# --- Filters ---------------------------------------------------------------------


class DeliveryFilter(admin.SimpleListFilter):
    title = "email"
    parameter_name = "email"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("sent", "Sent"),
            ("unsent", "Not sent"),
            ("failed", "Sending failed"),
            ("stuck", "Stuck (needs an operator)"),
            ("resent", "Resent"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        deliveries = EmailStatement.objects.filter(statement=OuterRef("pk"))
        sent = Exists(deliveries.filter(email__status=EmailLog.Status.SENT))
        value = self.value()
        if value == "sent":
            return queryset.filter(sent)
        if value == "unsent":
            return queryset.filter(~sent)
        if value == "failed":
            return queryset.filter(~sent).filter(
                Exists(deliveries.filter(email__status=EmailLog.Status.FAILED))
            )
        if value == "stuck":
            return queryset.filter(
                Exists(
                    deliveries.filter(
                        email__status=EmailLog.Status.SENDING,
                        email__claimed_at__lt=emailing.stuck_before(),
                    )
                )
            )
        if value == "resent":
            return queryset.filter(Exists(deliveries.filter(resend=True)))
        return None


class VersionFilter(admin.SimpleListFilter):
    title = "version"
    parameter_name = "version"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("current", "Current"), ("superseded", "Superseded")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() == "current":
            return queryset.filter(superseded_at=None)
        if self.value() == "superseded":
            return queryset.exclude(superseded_at=None)
        return None


class StuckFilter(admin.SimpleListFilter):
    title = "needs an operator"
    parameter_name = "stuck"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("stuck", "Stuck claims"), ("gave_up", "Failed, no more retries")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() == "stuck":
            return emailing.stuck(queryset)
        if self.value() == "gave_up":
            return queryset.filter(status=EmailLog.Status.FAILED, next_attempt_at=None)
        return None


# --- Forms ---------------------------------------------------------------------


class GenerateForm(forms.Form):
    period = forms.ModelChoiceField(
        queryset=BillingPeriod.objects.filter(status=BillingPeriod.Status.CLOSED),
        to_field_name="period",
        empty_label=None,
        help_text="Statements are generated for closed periods.",
    )
    allow_pending = forms.BooleanField(
        required=False,
        label="Leave charges pending review out",
        help_text="Otherwise a period with charges pending review is refused.",
    )
    send = forms.BooleanField(
        required=False, label="Then email each PI", help_text="One email per PI, PDFs attached."
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why a second copy is sent; kept in the audit trail.",
    )


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


# --- Statements -------------------------------------------------------------------


@admin.register(Statement)
class StatementAdmin(ReadOnlyAdmin):
    list_display = [
        "number",
        "period",
        "pi",
        "project",
        "list_amount",
        "discount_amount",
        "billed_amount",
        "status",
        "email_state",
        "is_current",
    ]
    list_filter = ["period", DeliveryFilter, VersionFilter, "status"]
    search_fields = ["number", "pi__email", "pi__name", "project__project_id", "fund_org"]
    list_select_related = ["period", "pi", "project"]
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 100
    actions = ["send_selected", "resend_selected"]
    change_list_template = "admin/statements/statement/change_list.html"
    change_form_template = "admin/statements/statement/change_form.html"
    fieldsets = [
        (None, {"fields": ["number", "period", "pi", "project", "fund_org", "version"]}),
        (
            "Totals",
            {
                "fields": [
                    "list_amount",
                    "discount_amount",
                    "billed_amount",
                    "exact_billed",
                    "charge_count",
                ]
            },
        ),
        (
            "Record",
            {
                "fields": [
                    "status",
                    "error",
                    "generated_at",
                    "generated_by",
                    "pdf_sha256",
                    "content_hash",
                    "superseded_at",
                    "superseded_by",
                ]
            },
        ),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Statement]:
        last_email = EmailStatement.objects.filter(statement=OuterRef("pk")).order_by("-email_id")
        return (
            super()
            .get_queryset(request)
            .annotate(email_status=Subquery(last_email.values("email__status")[:1]))
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [str(f) for block in self.fieldsets for f in block[1]["fields"]]

    def has_generate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("statements.generate_statement")

    def has_send_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("statements.send_statement")

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("statements.resend_statement")

    # columns

    list_amount = money_column("list_total", "list price")
    discount_amount = money_column("discount_total", "subsidy")
    billed_amount = money_column("billed_total", "amount due")

    @admin.display(description="email")
    def email_state(self, obj: Statement) -> str:
        status = getattr(obj, "email_status", None)
        return EmailLog.Status(status).label if status else "Not sent"

    @admin.display(description="current", boolean=True)
    def is_current(self, obj: Statement) -> bool:
        return obj.superseded_at is None

    # pages

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("generate/", view(self.generate_view), name="statements_statement_generate"),
            path(
                "<int:object_id>/pdf/",
                # The statement's page previews it in a frame: the PDF, and
                # only it, may be framed by the site's own pages.
                view(xframe_options_sameorigin(_framed_by_self(self.pdf_view))),
                name="statements_statement_pdf",
            ),
            path(
                "<int:object_id>/line-items/",
                view(self.line_items_view),
                name="statements_statement_line_items",
            ),
            *super().get_urls(),
        ]

    def _viewable(self, request: HttpRequest, object_id: int) -> Statement:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(Statement, pk=object_id)

    def pdf_view(self, request: HttpRequest, object_id: int) -> FileResponse:
        statement = self._viewable(request, object_id)
        if not statement.pdf:
            raise Http404("This statement has no PDF (yet).")
        return FileResponse(
            statement.pdf.open("rb"),
            content_type="application/pdf",
            as_attachment="download" in request.GET,
            filename=f"{statement.number}.pdf",
        )

    def line_items_view(self, request: HttpRequest, object_id: int) -> FileResponse:
        statement = self._viewable(request, object_id)
        if not statement.line_items:
            raise Http404("This statement lists every charge in its PDF.")
        return FileResponse(
            statement.line_items.open("rb"),
            content_type="text/csv",
            as_attachment=True,
            filename=f"{statement.number}-line-items.csv",
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        statement = Statement.objects.filter(pk=object_id).first()
        extra = dict(extra_context or {})
        if statement is not None:
            extra["statement"] = statement
            extra["deliveries"] = (
                EmailStatement.objects.filter(statement=statement)
                .select_related("email")
                .order_by("email_id")
            )
            extra["versions"] = Statement.objects.filter(
                period=statement.period_id, sequence=statement.sequence
            ).order_by("-version")
        return super().change_view(request, object_id, form_url, extra)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = dict(extra_context or {})
        extra["can_generate"] = self.has_generate_permission(request)
        extra["jobs"] = job_status(request.GET.get("period__id__exact"))
        return super().changelist_view(request, extra)

    def generate_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_generate_permission(request):
            raise PermissionDenied
        form = GenerateForm(request.POST or request.GET or None)
        preview = None
        if request.method == "POST" and form.is_valid():
            options = {
                "period": form.cleaned_data["period"].period,
                "actor": actor_for(request),
                "allow_pending": form.cleaned_data["allow_pending"],
                "send": form.cleaned_data["send"],
            }
            try:
                preview = statements_generate(dry_run=True, **options)
                if "confirm" in request.POST:
                    small = len(preview.would_create) <= emailing.inline_limit()
                    result = statements_generate(sync=small, **options)
                    self._report_generate(request, result)
                    changelist = reverse("admin:statements_statement_changelist")
                    return HttpResponseRedirect(
                        f"{changelist}?period__id__exact={form.cleaned_data['period'].pk}"
                        "&version=current"
                    )
            except BillingError as exc:
                form.add_error(None, web_text(exc))
                preview = None
        context = {
            **self.admin_site.each_context(request),
            "title": "Generate statements",
            "opts": self.model._meta,
            "form": form,
            "preview": preview,
            "sending": generate_recipients(preview, form.cleaned_data["period"])
            if preview is not None and preview.send
            else None,
        }
        return TemplateResponse(request, "admin/statements/statement/generate.html", context)

    def _report_generate(self, request: HttpRequest, result: Any) -> None:
        messages.success(
            request,
            f"{result.period}: {_count(len(result.created), 'statement')} generated, "
            f"{len(result.unchanged):,} unchanged, {len(result.withdrawn):,} withdrawn.",
        )
        if result.pending_excluded:
            messages.warning(
                request, f"{result.pending_excluded:,} charges pending review were left out."
            )
        if result.job_group:
            messages.info(
                request,
                f"Rendering{' and emailing' if result.send else ''} queued as job group "
                f"{result.job_group}; the workers (openchargeback qcluster) do it.",
            )
        elif result.send:
            report_sending(request, emailing.Dispatch(outcomes=result.emails), "")

    # actions

    @admin.action(description="Email selected statements (not sent yet)…", permissions=["send"])
    def send_selected(
        self, request: HttpRequest, queryset: QuerySet[Statement]
    ) -> TemplateResponse | None:
        """A page with every email, its recipient, statements and amounts, and
        what is left out; "Send N emails" sends exactly those."""
        plan = emailing.emails_plan(statements=queryset)
        skipped = [(f"{s.number}, {s.pi.name or s.pi.email}", why) for s, why in plan.skipped]
        if not plan.emails:
            why = f" ({skipped_text(skipped)})" if skipped else ""
            messages.info(request, f"Nothing to send: no selected statement can be emailed{why}.")
            return None
        if "apply" in request.POST:
            if request.POST.get("plan") == plan.fingerprint():
                self._send(request, plan)
                return None
            messages.warning(
                request,
                "What would be sent changed since the page was shown (statements were sent or "
                "generated meanwhile): check the emails below again.",
            )
        return email_confirmation(
            self,
            request,
            action="send_selected",
            title="Send statements",
            intro="Each PI gets one email with their statements attached as PDFs. Check who "
            "gets what, then send.",
            emails=plan.emails,
            skipped=skipped,
            fingerprint=plan.fingerprint(),
        )

    def _send(self, request: HttpRequest, plan: emailing.SendPlan) -> None:
        actor = actor_for(request)
        ids: list[int] = []
        try:
            for period in plan.periods:
                chosen = [
                    s.pk for e in plan.emails if e.period.period == period for s in e.statements
                ]
                queued = emailing.emails_queue(period=period, actor=actor, statement_ids=chosen)
                ids += [e.pk for e in queued.emails]
                if queued.not_ready:
                    messages.warning(
                        request, f"Not emailed, no PDF yet: {', '.join(queued.not_ready)}"
                    )
        except BillingError as exc:
            messages.error(request, web_text(exc))
            return
        group = f"emails-{request.user.get_username()}"
        dispatch = emailing.emails_dispatch(email_ids=ids, group=group)
        report_sending(request, dispatch, group)

    @admin.action(description="Resend selected statements (a second copy)…", permissions=["resend"])
    def resend_selected(
        self, request: HttpRequest, queryset: QuerySet[Statement]
    ) -> TemplateResponse | None:
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            try:
                emails = emailing.emails_resend(
                    statements=queryset,
                    actor=actor_for(request),
                    reason=form.cleaned_data["reason"],
                )
            except BillingError as exc:
                messages.error(request, web_text(exc))
                return None
            group = f"resend-{request.user.get_username()}"
            dispatch = emailing.emails_dispatch(email_ids=[e.pk for e in emails], group=group)
            report_sending(request, dispatch, group)
            return None
        planned, problems = emailing.resend_plan(queryset)
        return email_confirmation(
            self,
            request,
            action="resend_selected",
            title="Resend statements",
            intro="Each PI of the selected statements gets one more email with them, marked "
            "as a copy. Use this when a PI asks again or the first email bounced.",
            emails=planned,
            problems=problems,
            form=form,
            verb="Resend",
        )


def job_status(period_pk: str | None) -> dict[str, Any]:
    """Statements and emails of a period by state, and the background queue."""
    from django_q.models import Failure, OrmQ

    period = (
        BillingPeriod.objects.filter(pk=period_pk).first()
        if period_pk and period_pk.isdigit()
        else BillingPeriod.objects.filter(statements__isnull=False).order_by("-period").first()
    )
    if period is None:
        return {}
    current = Statement.objects.filter(period=period, superseded_at=None)
    statements = dict(current.values_list("status").annotate(n=Count("id")).order_by())
    emails = EmailLog.objects.filter(period=period)
    email_counts = dict(emails.values_list("status").annotate(n=Count("id")).order_by())
    failures = Failure.objects.filter(
        Q(group__startswith=f"statements-{period.period}") | Q(func__startswith="statements.tasks")
    ).order_by("-stopped")[:5]
    return {
        "period": period,
        "statements": [
            (label, statements.get(value, 0)) for value, label in Statement.Status.choices
        ],
        "emails": [(label, email_counts.get(value, 0)) for value, label in EmailLog.Status.choices],
        "stuck": emailing.stuck(emails).count(),
        "unsent": current.filter(status=Statement.Status.READY)
        .exclude(deliveries__resend=False)
        .count(),
        "queued": OrmQ.objects.count(),
        "failures": failures,
    }


# --- Emails -------------------------------------------------------------------------


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
            and obj.claimed_at < emailing.stuck_before()
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
                    emailing.PlannedEmail(
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
