"""Statements in the admin: read-only records, with the generate / send /
resend actions, PDF preview and download, and the state of the background
jobs. The email log and the confirmation every send shows first are
``statements.admin_emails``."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from csp.constants import SELF
from csp.decorators import csp_replace
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.clickjacking import xframe_options_sameorigin

from billing.adminkit import ReadOnlyAdmin, actor_for, money_column
from billing.errors import BillingError, web_text
from billing.models import BillingPeriod, InstitutionSettings
from openchargeback.text import count as _count
from statements import emailing, selectors
from statements.admin_emails import SHOWN_EMAILS, email_confirmation, report_sending, skipped_text
from statements.models import EmailLog, EmailStatement, Statement
from statements.services import GenerateResult, statements_generate

# The Content-Security-Policy's frame-ancestors, for the PDF alone (typed
# for views with arguments; django-csp's types allow the request only).
_framed_by_self: Callable[[Callable[..., Any]], Callable[..., Any]] = csp_replace(
    {"frame-ancestors": [SELF]}
)


def recipients_context(preview: GenerateResult, period: BillingPeriod) -> dict[str, Any]:
    """Who a "generate and send" would email (``selectors.generate_recipients``),
    as rows of email_confirmation's."""
    money = InstitutionSettings.cached().format_money
    recipients = selectors.generate_recipients(
        period=period, would_create=preview.would_create, unchanged=preview.unchanged
    )
    rows = [
        {
            "name": r.name or "—",
            "to": r.to,
            "statements": [
                {
                    "number": st.number,
                    "project": st.project_id or "(no project)",
                    "due": money(st.due),
                }
                for st in r.statements
            ],
            "total": money(r.due),
        }
        for r in recipients
    ]
    total = sum((r.due for r in recipients), Decimal(0))
    statements = sum(len(r.statements) for r in recipients)
    return {
        "rows": rows[:SHOWN_EMAILS],
        "more": max(len(rows) - SHOWN_EMAILS, 0),
        "total": money(total),
        "email_count": len(rows),
        "summary": f"Then {_count(len(rows), 'email')} to {_count(len(rows), 'PI')}, "
        f"{_count(statements, 'statement')}, total due {money(total)}.",
    }


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
                        email__claimed_at__lt=selectors.stuck_before(),
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
        return selectors.with_email_status(super().get_queryset(request))

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
            extra["deliveries"] = selectors.statement_deliveries(statement)
            extra["versions"] = selectors.statement_versions(statement)
        return super().change_view(request, object_id, form_url, extra)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = dict(extra_context or {})
        extra["can_generate"] = self.has_generate_permission(request)
        status = selectors.job_status(request.GET.get("period__id__exact"))
        extra["jobs"] = vars(status) if status is not None else {}  # the page's mapping
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
            "sending": recipients_context(preview, form.cleaned_data["period"])
            if preview is not None and preview.send
            else None,
        }
        return TemplateResponse(request, "admin/statements/statement/generate.html", context)

    def _report_generate(self, request: HttpRequest, result: GenerateResult) -> None:
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
        plan = selectors.emails_plan(statements=queryset)
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

    def _send(self, request: HttpRequest, plan: selectors.SendPlan) -> None:
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
        planned, problems = selectors.resend_plan(queryset)
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
