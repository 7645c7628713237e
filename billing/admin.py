"""Admin pages for billing records: the review queue (charges), periods,
PIs, projects, sources, settings and the read-only audit trail."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Q, QuerySet, Sum
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from billing import flags, listwords, selectors
from billing.adminkit import (
    ReadOnlyAdmin,
    RegexPreviewAdmin,
    TextInputFilter,
    action_page,
    action_summary,
    actor_for,
    changelist_url,
    money_column,
)
from billing.audit import Actor
from billing.blockers import (
    ApprovalPlan,
    approval_plan,
    charges_url,
    period_blockers,
    rate_form_url,
    with_reason,
)
from billing.errors import BillingError, web_text
from billing.exchange import exchange_rate_check, exchange_rate_set, home_currency, rates_which
from billing.models import (
    PI,
    AuditEvent,
    BillingPeriod,
    Charge,
    ChargeSummary,
    ExchangeRate,
    FlagRule,
    FundOrgPattern,
    InstitutionSettings,
    PatternRule,
    Project,
    Source,
    TagMapping,
)
from billing.review import (
    FixReport,
    charges_fix_attribution_report,
    charges_reapply_rules,
    charges_review,
)
from billing.services import (
    finalize_blocker_list,
    period_close,
    period_finalize,
    period_reopen,
    source_add,
    source_set,
)
from openchargeback import charts
from openchargeback.text import count


def clipped(text: str, title: str = "") -> str:
    """A list cell's text, cut by CSS to the column's width, whole in the tooltip."""
    return format_html('<span class="ocb-clip" title="{}">{}</span>', title or text, text)


class TransitionForm(forms.Form):
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2, "cols": 60}))
    allow_pending = forms.BooleanField(
        required=False,
        label="Close although charges are pending review (they stay out; recorded)",
    )
    confirm = forms.CharField(required=False, label="Type the period (YYYY-MM) to confirm")


@admin.register(BillingPeriod)
class BillingPeriodAdmin(ReadOnlyAdmin):
    """Periods with their lifecycle buttons (POST only; finalize typed to confirm)."""

    list_display = ["period", "status", "closed_at", "closed_by", "finalized_at", "finalized_by"]
    list_filter = ["status"]
    search_fields = ["period"]
    readonly_fields = [
        "period",
        "status",
        "created_at",
        "closed_at",
        "closed_by",
        "reopened_at",
        "reopened_by",
        "finalized_at",
        "finalized_by",
        "notes",
    ]
    change_form_template = "admin/billing/billingperiod/change_form.html"

    def get_urls(self) -> list[Any]:
        urls = [
            path(
                "<path:object_id>/transition/<str:step>/",
                self.admin_site.admin_view(self.transition_view),
                name="billing_billingperiod_transition",
            ),
        ]
        return urls + super().get_urls()

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        obj = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if obj is not None:
            context["steps"] = self._steps(request, obj)
            context["blockers"] = finalize_blocker_list(obj) if obj.status == "closed" else []
            if "close" in context["steps"]:
                context["close_blockers"] = period_blockers(obj)
            context["transition_form"] = TransitionForm()
            context.update(self.overview(request, obj))
        return super().change_view(request, object_id, form_url, extra_context=context)

    def overview(self, request: HttpRequest, obj: BillingPeriod) -> dict[str, Any]:
        """Billing's part of the month's page: totals per source and the audit
        history. The cycle, imports, statements, journal exports and the
        reconciliation are the other apps'; the project package adds them
        (openchargeback.overviews: billing imports no other app)."""
        by_source = (
            ChargeSummary.objects.filter(period=obj)
            .exclude(review_state=Charge.ReviewState.REJECTED)
            .values("source_id", slug=F("source__slug"), name=F("source__name"))
            .annotate(
                n=Sum("charges"),
                pending=Sum("charges", filter=Q(review_state=Charge.ReviewState.PENDING)),
                listed=Sum("list_total"),
                billed=Sum("billed_total"),
            )
            .order_by("name")
        )
        events = AuditEvent.objects.filter(period=obj)
        return {
            "by_source": [
                {**row, "pending": row["pending"] or 0, "subsidy": row["listed"] - row["billed"]}
                for row in by_source
            ],
            "audit": events.order_by("-created_at", "-id")[:25],
            "audit_count": events.count(),
        }

    def _steps(self, request: HttpRequest, obj: BillingPeriod) -> list[str]:
        user = request.user
        steps = []
        if obj.status == BillingPeriod.Status.OPEN and user.has_perm("billing.close_billingperiod"):
            steps.append("close")
        if obj.status == BillingPeriod.Status.CLOSED:
            if user.has_perm("billing.close_billingperiod"):
                steps.append("reopen")
            if user.has_perm("billing.finalize_billingperiod"):
                steps.append("finalize")
        return steps

    def transition_view(self, request: HttpRequest, object_id: str, step: str) -> HttpResponse:
        obj = self.get_object(request, object_id)
        if obj is None:
            raise Http404("No such period")
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if step not in self._steps(request, obj):
            raise PermissionDenied
        form = TransitionForm(request.POST)
        form.is_valid()
        data = form.cleaned_data
        actor = actor_for(request)
        try:
            if step == "close":
                period_close(
                    period=obj.period,
                    actor=actor,
                    note=data.get("note", ""),
                    allow_pending=bool(data.get("allow_pending")),
                )
            elif step == "reopen":
                period_reopen(period=obj.period, actor=actor, reason=data.get("note", ""))
            else:
                if data.get("confirm", "").strip() != obj.period:
                    raise BillingError(
                        f"type {obj.period} in the confirmation box to finalize: it is permanent"
                    )
                period_finalize(period=obj.period, actor=actor, note=data.get("note", ""))
        except BillingError as exc:
            # (a close refused for its blockers: they are listed, with links, on the page)
            self.message_user(request, web_text(exc), messages.ERROR)
        else:
            obj.refresh_from_db()
            self.message_user(request, f"Period {obj.period} is {obj.status}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:billing_billingperiod_change", args=[obj.pk]))


class SourceForm(forms.ModelForm):
    class Meta:
        model = Source
        fields = [
            "slug",
            "name",
            "filename_pattern",
            "credit_fund_org",
            "account_code",
            "enabled",
            "provider_names",
            # Cost basis (docs/decisions/0006-cost-basis.md)
            "cost_basis",
            "commitment_handling",
            "commitment_project",
            "commitment_fund_org",
        ]

    def clean_slug(self) -> str:
        from billing.services import normalise_slug

        slug = normalise_slug(self.cleaned_data["slug"])
        if Source.objects.filter(slug=slug).exists():
            raise forms.ValidationError(f"Source {slug!r} already exists.")
        return slug


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    form = SourceForm
    list_display = [
        "slug",
        "name",
        "filename_pattern",
        "credit_fund_org",
        "account_code",
        "cost_basis",
        "enabled",
    ]
    list_filter = ["enabled", "cost_basis"]
    search_fields = ["slug", "name"]
    autocomplete_fields = ["commitment_project"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["slug"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Source, form: Any, change: bool) -> None:
        """Through the same services (and audit trail) as `openchargeback sources`."""
        actor = actor_for(request)
        data = form.cleaned_data
        basis = {
            "cost_basis": data["cost_basis"],
            "commitment_handling": data["commitment_handling"],
            "commitment_project_id": data["commitment_project"].pk
            if data["commitment_project"]
            else None,
            "commitment_fund_org": data["commitment_fund_org"],
        }
        changed_basis = {
            f: value for f, value in basis.items() if f.removesuffix("_id") in form.changed_data
        }
        if change:
            fields = (
                "name",
                "filename_pattern",
                "credit_fund_org",
                "account_code",
                "enabled",
                "provider_names",
            )
            saved = source_set(
                slug=obj.slug,
                actor=actor,
                **{f: data[f] for f in fields if f in form.changed_data},
                **changed_basis,
            )
        else:
            saved = source_add(
                slug=data["slug"],
                name=data["name"],
                filename_pattern=data["filename_pattern"],
                credit_fund_org=data["credit_fund_org"],
                account_code=data["account_code"],
                enabled=data["enabled"],
                actor=actor,
            )
            if data.get("provider_names"):
                saved = source_set(
                    slug=saved.slug, actor=actor, provider_names=data["provider_names"]
                )
            if changed_basis:
                saved = source_set(slug=saved.slug, actor=actor, **changed_basis)
        obj.pk = saved.pk


TREND_PERIODS = 24  # periods drawn in a PI's or project's trend chart (the table has all)


class OwnerAdmin(admin.ModelAdmin):
    """PIs and projects: the edit form, then what they were billed, period by
    period (from the charge summaries), and their fund/orgs. Their statements
    are the statements app's: the project package adds them through
    :meth:`related` (openchargeback.overviews)."""

    change_form_template = "admin/billing/owner_change_form.html"
    readonly_fields = ["created_at"]
    owner_field: str  # "pi" or "project"

    def charges_query(self, obj: Any) -> str:
        raise NotImplementedError

    def related(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        """More of the owner's page from the apps billing does not import: nothing
        here; the site's subclass adds the statements (openchargeback.overviews)."""
        return {}

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        obj = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if obj is not None:
            past = selectors.history(**{self.owner_field: obj})
            oldest_first = past.periods[::-1][-TREND_PERIODS:]
            context.update(
                history=past,
                charges_url=reverse("admin:billing_charge_changelist")
                + "?"
                + self.charges_query(obj),
                trend=charts.trend(
                    [p.period for p in oldest_first],
                    [p.list_total for p in oldest_first],
                    [p.billed_total for p in oldest_first],
                    InstitutionSettings.cached().format_money,
                    title=f"List price and billed per period: {obj}",
                    id=f"trend-{self.owner_field}",
                ),
                **self.related(request, obj),
            )
        return super().change_view(request, object_id, form_url, extra_context=context)


@admin.register(PI)
class PIAdmin(OwnerAdmin):
    list_display = ["email", "name", "department"]
    search_fields = ["email", "name", "department"]
    owner_field = "pi"

    def charges_query(self, obj: PI) -> str:
        return urlencode({"pi": obj.email})

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        obj = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if obj is not None:
            context["projects"] = obj.projects.order_by("project_id")
        return super().change_view(request, object_id, form_url, extra_context=context)


@admin.register(Project)
class ProjectAdmin(OwnerAdmin):
    list_display = ["project_id", "title", "pi", "default_fund_org", "active"]
    list_filter = ["active"]
    list_select_related = ["pi"]
    search_fields = ["project_id", "title", "pi__email"]
    autocomplete_fields = ["pi"]
    owner_field = "project"

    def charges_query(self, obj: Project) -> str:
        return urlencode({"project": obj.project_id})


class ChargeClassFilter(admin.SimpleListFilter):
    """FOCUS ChargeClass: corrections of earlier periods apart (fixed choices, no scan)."""

    title = "charge class"
    parameter_name = "charge_class"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [("Correction", "Corrections"), ("regular", "Regular charges")]

    def queryset(self, request: Any, queryset: Any) -> Any:
        if self.value() == "Correction":
            return queryset.filter(charge_class="Correction")
        if self.value() == "regular":
            return queryset.exclude(charge_class="Correction")
        return queryset


class FlagReasonFilter(admin.SimpleListFilter):
    title = "flag reason"
    parameter_name = "reason"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(flags.NEEDS_ATTRIBUTION, "Needs attribution (not approvable)"), *flags.CHOICES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Charge]) -> QuerySet[Charge]:
        reason = self.value()
        if reason not in flags.BIT and reason != flags.NEEDS_ATTRIBUTION:
            return queryset
        return with_reason(queryset, reason)


class PIFilter(TextInputFilter):
    title = "PI"
    parameter_name = "pi"
    placeholder = "email or name"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Charge]) -> QuerySet[Charge]:
        text = self.text()
        if not text:
            return queryset
        if "@" in text:
            return queryset.filter(pi__in=PI.objects.filter(email=text.lower()))
        return queryset.filter(
            pi__in=PI.objects.filter(email__icontains=text)
            | PI.objects.filter(name__icontains=text)
        )


class ProjectFilter(TextInputFilter):
    title = "project"
    parameter_name = "project"
    placeholder = "project id"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Charge]) -> QuerySet[Charge]:
        text = self.text()
        if not text:
            return queryset
        exact = Project.objects.filter(project_id=text)
        if exact.exists():
            return queryset.filter(project__in=exact)
        return queryset.filter(project__in=Project.objects.filter(project_id__icontains=text))


class FundOrgFilter(TextInputFilter):
    title = "fund/org"
    parameter_name = "fund_org"
    placeholder = "starts with"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Charge]) -> QuerySet[Charge]:
        text = self.text()
        return queryset.filter(fund_org__startswith=text) if text else queryset


class ImportFilter(TextInputFilter):
    """Charges of one import (the import pages link here)."""

    title = "import"
    parameter_name = "import_record__id__exact"
    placeholder = "import number"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Charge]) -> QuerySet[Charge]:
        text = self.text().lstrip("#")
        if not text:
            return queryset
        return queryset.filter(import_record_id=int(text)) if text.isdigit() else queryset.none()


class FixAttributionForm(forms.Form):
    """Who pays, picked from the registry; a new PI or project only on purpose."""

    pi = forms.ModelChoiceField(
        PI.objects.all(),
        required=False,
        label="PI",
        widget=AutocompleteSelect(Charge._meta.get_field("pi"), admin.site),
        help_text="Type a name or an email to search the PIs.",
    )
    create_pi = forms.BooleanField(required=False, label="Create a new PI instead")
    new_pi_email = forms.EmailField(required=False, label="New PI's email")
    new_pi_name = forms.CharField(required=False, max_length=200, label="New PI's name")
    project = forms.ModelChoiceField(
        Project.objects.all(),
        required=False,
        label="Project",
        widget=AutocompleteSelect(Charge._meta.get_field("project"), admin.site),
        help_text="Type a project id, title or PI email to search the projects.",
    )
    create_project = forms.BooleanField(required=False, label="Create a new project instead")
    new_project_id = forms.CharField(required=False, max_length=200, label="New project id")
    new_project_title = forms.CharField(required=False, max_length=300, label="New project's title")
    fund_org = forms.CharField(required=False, max_length=100, label="Fund/org")
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2, "cols": 60}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("create_pi"):
            if data.get("pi"):
                self.add_error("pi", "Pick an existing PI or create a new one, not both.")
            email = (data.get("new_pi_email") or "").strip().lower()
            if not email and "new_pi_email" not in self.errors:
                self.add_error("new_pi_email", "A new PI needs an email address.")
            elif email and PI.objects.filter(email=email).exists():
                self.add_error("new_pi_email", f"{email} is already a PI: pick it above.")
            if not (data.get("new_pi_name") or "").strip():
                self.add_error("new_pi_name", "A new PI needs a name.")
        if data.get("create_project"):
            if data.get("project"):
                self.add_error("project", "Pick an existing project or create a new one, not both.")
            code = (data.get("new_project_id") or "").strip()
            if not code:
                self.add_error("new_project_id", "A new project needs an id.")
            elif Project.objects.filter(project_id=code).exists():
                self.add_error("new_project_id", f"{code} is already a project: pick it above.")
        if not (
            data.get("pi")
            or data.get("create_pi")
            or data.get("project")
            or data.get("create_project")
            or data.get("fund_org")
        ):
            raise forms.ValidationError("Fill in at least one of PI, project, fund/org.")
        return data

    def fix(self) -> dict[str, Any]:
        """The keyword arguments of the attribution fix service."""
        data = self.cleaned_data
        pi, project = data.get("pi"), data.get("project")
        return {
            "pi_email": data["new_pi_email"] if data["create_pi"] else (pi.email if pi else None),
            "create_pi": bool(data["create_pi"]),
            "pi_name": data["new_pi_name"] if data["create_pi"] else "",
            "project_id": data["new_project_id"]
            if data["create_project"]
            else (project.project_id if project else None),
            "create_project": bool(data["create_project"]),
            "project_title": data["new_project_title"] if data["create_project"] else "",
            "fund_org": data["fund_org"] or None,
            "note": data["note"],
        }


def fix_preview_lines(report: FixReport) -> list[str]:
    """The preview of an attribution fix, in sentences."""
    lines = [f"{count(report.changed, 'charge')} would change."]
    if report.cleared:
        lines.append(
            "Flags cleared: "
            + ", ".join(
                f"{flags.LABEL[r]} on {count(n, 'charge')}" for r, n in report.cleared.items()
            )
            + "."
        )
    else:
        lines.append("No flag would clear.")
    if report.added:
        lines.append(
            "Newly flagged: "
            + ", ".join(
                f"{flags.LABEL[r]} on {count(n, 'charge')}" for r, n in report.added.items()
            )
            + "."
        )
    if report.approved:
        lines.append(f"{count(report.approved, 'charge')} would be approved (no flag left).")
    return lines


class ReviewActionForm(helpers.ActionForm):
    """The queue's action bar, with a note that goes on every reviewed charge."""

    note = forms.CharField(
        required=False,
        max_length=1000,
        widget=forms.TextInput(
            attrs={"placeholder": "Note (optional; asked for when rejecting)", "size": 40}
        ),
    )


class RejectForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why these charges are rejected; stored on each charge and in the audit trail.",
    )


class ApproveForm(forms.Form):
    note = forms.CharField(
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Optional; stored on each approved charge and in the audit trail.",
    )


def blocked_url(queryset: QuerySet[Charge]) -> str:
    """The queue of the pending charges that need their attribution fixed
    (of the selection's period, when it has one)."""
    periods = set(queryset.values_list("period_id", flat=True).distinct()[:2])
    query = {"reason": flags.NEEDS_ATTRIBUTION, "review_state__exact": "pending"}
    if len(periods) == 1:
        query["period__id__exact"] = str(periods.pop())
    return charges_url(**query)


def approval_lines(plan: ApprovalPlan, blocked_link: str, *, lead: str) -> list[str]:
    """What stays pending of an approval and why, each with the page that
    fixes it (`lead`: "Stay pending", "Left pending", "Nothing was approved")."""
    found: list[str] = []
    if plan.stuck:
        found.append(
            format_html(
                '{}: {} ({} billed). <a href="{}">Show them</a>.',
                lead,
                plan.stuck.text(),
                InstitutionSettings.cached().format_money(plan.stuck.billed),
                blocked_link,
            )
        )
    if plan.missing:
        first = plan.missing[0]
        found.append(
            format_html(
                "{}: {} in another currency cannot be approved without an exchange rate "
                '({}). <a href="{}">Record the rate</a> ({} per {}).',
                lead,
                count(sum(m.charges for m in plan.missing), "charge"),
                rates_which(plan.missing),
                rate_form_url(plan.missing),
                home_currency(),
                first.currency,
            )
        )
    return found


@admin.register(Charge)
class ChargeAdmin(ReadOnlyAdmin):
    """The review queue: filter, then approve, reject (with a note) or reset."""

    # Compact columns (billing.listwords, openchargeback/changelist.css): the
    # queue fits 1366 px without scrolling sideways; long text is cut with
    # the whole of it in the tooltip.
    list_display = [
        "id",
        "reasons",
        "state",
        "period",
        "source",
        "pi_name",
        "project_name",
        "fund_org_text",
        "service",
        "billed_amount",
        "list_amount",
    ]
    list_filter = [
        "review_state",
        FlagReasonFilter,
        ChargeClassFilter,
        "period",
        "source",
        PIFilter,
        ProjectFilter,
        FundOrgFilter,
        ImportFilter,
    ]
    list_select_related = ["period", "source", "pi", "project"]
    # No joins in the search: PIs and projects have their own filters.
    search_fields = ["resource_id", "resource_name", "service_name", "fund_org"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # counting per filter choice scans millions of rows
    list_per_page = 100
    ordering = ["-id"]
    actions = ["approve", "reject", "reset", "fix_attribution", "reapply_rules"]
    action_form = ReviewActionForm

    list_amount = money_column("list_cost", "list")
    billed_amount = money_column("billed_cost", "billed")

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/review/", view(self.review_view), name="billing_charge_review"),
            path("<path:object_id>/fix/", view(self.fix_view), name="billing_charge_fix"),
            *super().get_urls(),
        ]

    def _charge(self, request: HttpRequest, object_id: str) -> Charge:
        obj = (
            Charge.objects.select_related("period", "source", "pi", "project__pi", "import_record")
            .filter(pk=unquote(object_id))
            .first()
            if unquote(object_id).isdigit()
            else None
        )
        if obj is None:
            raise Http404("No such charge.")
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        return obj

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """The reviewer's page of one charge: who, what, how much, why it is
        flagged and what fixes it, the buttons, the history, the raw record."""
        import json

        from billing.explain import ChargeFacts, describe_event, explain_flags
        from openchargeback.money import money_str

        obj = self._charge(request, object_id)
        if request.method == "POST":
            raise PermissionDenied  # the record is read-only; its buttons post elsewhere
        settings = InstitutionSettings.cached()
        money = settings.format_money
        ruleset = selectors.load_ruleset()
        owner = obj.project.pi if obj.project else None
        explanations = explain_flags(
            ChargeFacts(
                reasons=obj.flag_reasons,
                pi_email=obj.pi.email if obj.pi else "",
                project_id=obj.project.project_id if obj.project else "",
                project_owner_email=owner.email if owner else "",
                fund_org=obj.fund_org,
                tags=obj.tags,
                details=obj.flag_details if isinstance(obj.flag_details, dict) else {},
                period=obj.period.period,
                currency=obj.billing_currency,
                billed=money(obj.billed_cost),
                large_limit=money(settings.large_charge_threshold)
                if settings.large_charge_threshold is not None
                else "",
            ),
            ruleset,
        )
        states = dict(Charge.ReviewState.choices)
        history = [
            {
                "when": event.created_at,
                "actor": event.actor,
                "channel": event.channel,
                "text": describe_event(
                    event.action, event.before, event.after, lambda s: states.get(s, s).lower()
                ),
                "reason": event.reason,
            }
            for event in AuditEvent.objects.filter(
                object_type="billing.charge", object_id=str(obj.pk)
            ).order_by("-created_at", "-id")[:200]
        ]
        is_open = obj.period.status == BillingPeriod.Status.OPEN
        amounts = [
            ("Billed", obj.billed_cost),
            ("List", obj.list_cost),
            ("Effective", obj.effective_cost),
        ]
        if obj.contracted_cost != obj.billed_cost:
            amounts.append(("Contracted", obj.contracted_cost))
        raw_money = [
            (name, money_str(getattr(obj, name)) if getattr(obj, name) is not None else "")
            for name in (
                "billed_cost",
                "list_cost",
                "contracted_cost",
                "effective_cost",
                "invoiced_cost",
                "original_billed_cost",
                "original_list_cost",
            )
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": f"Charge {obj.pk}",
            "subtitle": None,
            "opts": self.model._meta,
            "original": obj,
            "charge": obj,
            "owner": owner,
            "amounts": [
                (label, money(value), str(value)) for label, value in amounts if value is not None
            ],
            "state_label": states.get(obj.review_state, obj.review_state),
            "explanations": explanations,
            "history": history,
            "is_open": is_open,
            "can_review": is_open and self.has_review_permission(request),
            # Who pays is unknown or wrong: fixed or rejected, never approved as is.
            "blocked": [flags.LABEL[r] for r in obj.flag_reasons if flags.blocks_approval(r)],
            "can_fix": is_open and self.has_fix_attribution_permission(request),
            "import_url": reverse("admin:ingest_import_change", args=[obj.import_record_id]),
            "tags_json": json.dumps(obj.tags, indent=2, ensure_ascii=False, sort_keys=True),
            "details_json": json.dumps(obj.flag_details, indent=2, ensure_ascii=False),
            "raw_money": raw_money,
        }
        return TemplateResponse(request, "admin/billing/charge/review.html", context)

    def review_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Approve, reject or reset one charge from its page (POST only)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = self._charge(request, object_id)
        if not self.has_review_permission(request):
            raise PermissionDenied
        action = request.POST.get("review", "")
        if action not in {"approve", "reject", "reset"}:
            raise Http404("Unknown review action.")
        self._review(
            request, Charge.objects.filter(pk=obj.pk), action, note=request.POST.get("note", "")
        )
        return HttpResponseRedirect(reverse("admin:billing_charge_change", args=[obj.pk]))

    def fix_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Fix attribution of one charge from its page: Preview, then Apply."""
        obj = self._charge(request, object_id)
        if not self.has_fix_attribution_permission(request):
            raise PermissionDenied
        page = reverse("admin:billing_charge_change", args=[obj.pk])
        response = self._fix_page(
            request,
            Charge.objects.filter(pk=obj.pk),
            hidden=[],
            cancel_url=page,
            done_url=page,
        )
        assert response is not None
        return response

    @admin.display(description="flags")
    def reasons(self, obj: Charge) -> str:
        return format_html_join(
            "",
            '<span class="ocb-chip" title="{}">{}</span>',
            ((flags.LABEL[r], listwords.short_reason(r)) for r in obj.flag_reasons),
        )

    @admin.display(description="state", ordering="review_state")
    def state(self, obj: Charge) -> str:
        return obj.get_review_state_display().removesuffix(" review")

    @admin.display(description="PI", ordering="pi__name")
    def pi_name(self, obj: Charge) -> str:
        return clipped(obj.pi.name or obj.pi.email, str(obj.pi)) if obj.pi else "-"

    @admin.display(description="project", ordering="project__project_id")
    def project_name(self, obj: Charge) -> str:
        if obj.project is None:
            return "-"
        title = obj.project.title
        return clipped(
            obj.project.project_id, f"{obj.project.project_id}: {title}" if title else ""
        )

    @admin.display(description="fund/org", ordering="fund_org")
    def fund_org_text(self, obj: Charge) -> str:
        return clipped(obj.fund_org) if obj.fund_org else "-"

    @admin.display(description="service", ordering="service_name")
    def service(self, obj: Charge) -> str:
        return clipped(obj.service_name) if obj.service_name else "-"

    def has_review_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.review_charge")

    @admin.action(description="Approve selected charges", permissions=["review"])
    def approve(self, request: HttpRequest, queryset: QuerySet[Charge]) -> TemplateResponse | None:
        """One charge is approved at once; more (or "all N matching") first go
        through a page with the count, the amounts and what stays pending."""
        if "apply" in request.POST:
            form = ApproveForm(request.POST)
            if form.is_valid():
                self._review(request, queryset, "approve", note=form.cleaned_data["note"])
                return None
        else:
            note = request.POST.get("note", "")
            bulk = (
                request.POST.get("select_across") == "1"
                or len(request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)) > 1
            )
            plan = approval_plan(queryset)
            if not bulk or not plan.approved or plan.locked:
                # Nothing to confirm: one charge, nothing it would approve, or a
                # refusal (a closed period) that _review reports.
                self._review(request, queryset, "approve", note=note, plan=plan)
                return None
            form = ApproveForm(initial={"note": note})
        plan = approval_plan(queryset)
        money = InstitutionSettings.cached().format_money
        return self._action_page(
            request,
            queryset,
            action="approve",
            form=form,
            title="Approve charges",
            intro="Approved charges go on the PIs' statements and the journal when the month "
            "is closed. Charges whose attribution is wrong, and charges in another currency "
            "without an exchange rate, stay pending.",
            details=[
                format_html(
                    "<strong>Will be approved: {}</strong>, billed {}, list {}.",
                    count(plan.approved, "charge"),
                    money(plan.approved_billed),
                    money(plan.approved_listed),
                ),
                *(
                    [f"Already approved, left as they are: {count(plan.already, 'charge')}."]
                    if plan.already
                    else []
                ),
                *approval_lines(plan, blocked_url(queryset), lead="Stay pending"),
            ],
            submit_label=f"Approve {count(plan.approved, 'charge')}",
        )

    @admin.action(description="Reset selected charges to pending review", permissions=["review"])
    def reset(self, request: HttpRequest, queryset: QuerySet[Charge]) -> None:
        self._review(request, queryset, "reset", note=request.POST.get("note", ""))

    @admin.action(description="Reject selected charges…", permissions=["review"])
    def reject(self, request: HttpRequest, queryset: QuerySet[Charge]) -> TemplateResponse | None:
        bar_note = request.POST.get("note", "")
        form = RejectForm(
            request.POST if "apply" in request.POST else None, initial={"note": bar_note}
        )
        if form.is_valid():
            self._review(request, queryset, "reject", note=form.cleaned_data["note"])
            return None
        return self._action_page(
            request,
            queryset,
            action="reject",
            form=form,
            title="Reject charges",
            intro="Rejected charges leave every total, statement and journal; they stay visible "
            "under the “Rejected” filter and can be reset to pending while the period is open.",
            submit_label=f"Reject {count(queryset.count(), 'charge')}",
        )

    def has_fix_attribution_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.fix_attribution_charge")

    @admin.action(
        description="Fix attribution of selected charges…", permissions=["fix_attribution"]
    )
    def fix_attribution(
        self, request: HttpRequest, queryset: QuerySet[Charge]
    ) -> TemplateResponse | None:
        return self._fix_page(
            request,
            queryset,
            hidden=[
                *(
                    (helpers.ACTION_CHECKBOX_NAME, pk)
                    for pk in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
                ),
                ("select_across", request.POST.get("select_across", "0")),
                ("action", "fix_attribution"),
            ],
            cancel_url=changelist_url(self, request),
            done_url=None,
        )

    def _fix_page(
        self,
        request: HttpRequest,
        queryset: QuerySet[Charge],
        *,
        hidden: list[tuple[str, Any]],
        cancel_url: str,
        done_url: str | None,
    ) -> Any:
        """Fix attribution in two steps: Preview (a dry run: how many charges
        change, which flags clear), then Apply. ``done_url`` None: return None
        (an admin action goes back to the changelist)."""
        submitted = "preview" in request.POST or "apply" in request.POST
        form = FixAttributionForm(
            request.POST if submitted else None,
            initial={"note": request.POST.get("note", "")},
        )
        preview: list[str] = []
        if form.is_valid():
            actor = actor_for(request)
            try:
                report = charges_fix_attribution_report(
                    charges=queryset, actor=actor, dry_run="apply" not in request.POST, **form.fix()
                )
            except BillingError as exc:
                form.add_error(None, web_text(exc))
            else:
                if "apply" in request.POST:
                    text = f"Fixed {count(report.changed, 'charge')}"
                    if report.cleared:
                        text += ": cleared " + ", ".join(flags.LABEL[r] for r in report.cleared)
                    if report.approved:
                        text += f"; {count(report.approved, 'charge')} now approved"
                    self.message_user(request, text + ".", messages.SUCCESS)
                    return HttpResponseRedirect(done_url) if done_url else None
                preview = fix_preview_lines(report)
        total = queryset.aggregate(t=Sum("billed_cost"))["t"] or Decimal(0)
        context = {
            **self.admin_site.each_context(request),
            "title": "Fix attribution",
            "opts": self.model._meta,
            "form": form,
            "media": self.media + form.media,
            "hidden": hidden,
            "preview": preview,
            "cancel_url": cancel_url,
            "summary": action_summary(
                queryset.count(),
                "charge",
                "billed total " + InstitutionSettings.cached().format_money(total),
            ),
        }
        return TemplateResponse(request, "admin/billing/charge/fix_attribution.html", context)

    @admin.action(description="Re-apply the flag rules to selected charges", permissions=["review"])
    def reapply_rules(self, request: HttpRequest, queryset: QuerySet[Charge]) -> None:
        self._run(
            request,
            "Re-evaluated",
            lambda actor: charges_reapply_rules(charges=queryset, actor=actor),
        )

    def _action_page(
        self,
        request: HttpRequest,
        queryset: QuerySet[Charge],
        *,
        action: str,
        form: forms.Form,
        title: str,
        intro: str,
        details: list[str] | None = None,
        submit_label: str = "",
    ) -> TemplateResponse:
        totals = queryset.aggregate(
            n=Count("id"), billed=Sum("billed_cost"), listed=Sum("list_cost")
        )
        money = InstitutionSettings.cached().format_money
        return action_page(
            self,
            request,
            action=action,
            form=form,
            title=title,
            intro=intro,
            summary=action_summary(
                totals["n"],
                "charge",
                f"billed total {money(totals['billed'] or Decimal(0))}, "
                f"list total {money(totals['listed'] or Decimal(0))}",
            ),
            details=details,
            submit_label=submit_label,
        )

    def _run(self, request: HttpRequest, verb: str, work: Callable[[Actor], int]) -> bool:
        try:
            changed = work(actor_for(request))
        except BillingError as exc:
            self.message_user(request, web_text(exc), messages.ERROR)
            return False
        self.message_user(request, f"{verb} {count(changed, 'charge')}.", messages.SUCCESS)
        return True

    def _review(
        self,
        request: HttpRequest,
        queryset: QuerySet[Charge],
        action: str,
        *,
        note: str,
        plan: ApprovalPlan | None = None,
    ) -> None:
        verb = {"approve": "Approved", "reject": "Rejected", "reset": "Reset"}[action]
        # Charges whose attribution is wrong, and charges in another currency
        # without a rate, stay pending (and are named, with where to fix them).
        if action == "approve" and plan is None:
            plan = approval_plan(queryset)
        held = plan is not None and bool(plan.stuck or plan.missing)
        done = False
        if not held or (plan is not None and plan.approved):
            done = self._run(
                request,
                verb,
                lambda actor: charges_review(
                    charges=queryset, action=action, actor=actor, note=note
                ),
            )
        if held and plan is not None:
            lead = "Left pending" if done else "Nothing was approved"
            for line in approval_lines(plan, blocked_url(queryset), lead=lead):
                self.message_user(request, line, messages.WARNING)


class WordsFilter(admin.AllValuesFieldListFilter):
    """The values of a code field, shown in words (billing.listwords); the
    query string keeps the code (?action=charge.approve)."""

    words: Callable[[str], str] = staticmethod(str)

    def choices(self, changelist: Any) -> Any:
        for choice in super().choices(changelist):
            if choice["display"] in self.lookup_choices:
                choice = {**choice, "display": self.words(str(choice["display"]))}
            yield choice


class ActionFilter(WordsFilter):
    words = staticmethod(listwords.action_words)


class ObjectTypeFilter(WordsFilter):
    words = staticmethod(listwords.object_type_words)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail: read-only for everyone, superusers included."""

    list_display = ["created_at", "actor", "channel", "what", "period", "reason"]
    list_filter = [
        ("action", ActionFilter),
        "channel",
        ("object_type", ObjectTypeFilter),
        "period",
        "actor",
    ]
    list_select_related = ["period"]
    search_fields = ["actor", "object_repr", "object_id", "reason"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    date_hierarchy = "created_at"

    @admin.display(description="what", ordering="action")
    def what(self, obj: AuditEvent) -> str:
        """The action and its object in words (billing.listwords), the code in
        the tooltip, linked to the object's page when it has one."""
        url = listwords.audit_object_url(obj)
        sentence = listwords.audit_sentence(obj)
        if url:
            return format_html('<a href="{}" title="{}">{}</a>', url, obj.action, sentence)
        return format_html('<span title="{}">{}</span>', obj.action, sentence)


@admin.register(InstitutionSettings)
class InstitutionSettingsAdmin(admin.ModelAdmin):
    list_display = ["name", "currency", "large_charge_threshold"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not InstitutionSettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TagMapping)
class TagMappingAdmin(admin.ModelAdmin):
    list_display = ["field", "tag_keys"]


@admin.register(FlagRule)
class FlagRuleAdmin(admin.ModelAdmin):
    list_display = ["reason", "enabled", "description"]
    list_editable = ["enabled"]


@admin.register(PatternRule)
class PatternRuleAdmin(RegexPreviewAdmin):
    list_display = ["name", "pattern", "target", "enabled"]
    list_filter = ["enabled", "target"]
    preview_template = "admin/billing/patternrule/preview.html"
    preview_fields = ("pattern", "target")

    def run_preview(
        self, request: HttpRequest, data: dict[str, Any], period: BillingPeriod
    ) -> selectors.PatternPreview:
        return selectors.pattern_preview(
            pattern=data["pattern"], target=data["target"] or "any", period=period
        )


@admin.register(FundOrgPattern)
class FundOrgPatternAdmin(RegexPreviewAdmin):
    list_display = ["pattern", "description", "enabled"]
    list_filter = ["enabled"]
    preview_template = "admin/billing/fundorgpattern/preview.html"

    def run_preview(
        self, request: HttpRequest, data: dict[str, Any], period: BillingPeriod
    ) -> selectors.FundOrgPreview:
        exclude = request.GET.get("exclude")
        return selectors.fund_org_preview(
            pattern=data["pattern"],
            period=period,
            exclude_pk=int(exclude) if exclude and exclude.isdigit() else None,
        )


class ExchangeRateForm(forms.ModelForm):
    """A rate for a currency and month; the month may not have charges yet."""

    month = forms.CharField(
        max_length=7, label="Period", help_text="The billing month, YYYY-MM (e.g. 2024-10)."
    )

    class Meta:
        model = ExchangeRate
        fields = ["currency", "rate", "note"]
        help_texts = {"rate": "Home-currency units per one unit of the currency, e.g. 1.0850."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["month"].initial = self.instance.period.period
            for name in ("month", "currency"):
                if name in self.fields:  # not for read-only users
                    self.fields[name].disabled = True

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            code, text, month, _note = exchange_rate_check(
                currency=data.get("currency", ""),
                period=data.get("month", ""),
                rate=data.get("rate", ""),
                note=data.get("note", ""),
            )
        except BillingError as exc:
            raise forms.ValidationError(web_text(exc)) from None
        data.update(currency=code, rate=text, month=month)
        return data

    def validate_unique(self) -> None:
        """exchange_rate_set records or changes the one rate of a currency and month."""


@admin.register(ExchangeRate)
class ExchangeRateAdmin(admin.ModelAdmin):
    """Exchange rates: recorded and changed through billing.exchange (audited,
    charges converted), never deleted; locked once the month is finalized."""

    form = ExchangeRateForm
    list_display = ["period", "currency", "rate", "note", "updated_by", "updated_at"]
    list_filter = ["currency", "period"]
    list_select_related = ["period"]
    search_fields = ["currency", "note"]
    fields = ["month", "currency", "rate", "note"]
    ordering = ["-period__period", "currency"]

    @admin.display(description="period")
    def month(self, obj: ExchangeRate) -> str:
        """The period, for read-only pages (the form has its own field)."""
        return obj.period.period

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.period.status == BillingPeriod.Status.FINALIZED:
            return False
        return super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: ExchangeRate, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            saved = exchange_rate_set(
                currency=data["currency"],
                period=data["month"],
                rate=data["rate"],
                note=data["note"],
                actor=actor_for(request),
            )
        except BillingError as exc:  # the period was locked after the form was checked
            raise PermissionDenied(web_text(exc)) from None
        for name in ("pk", "period", "currency", "rate", "note", "updated_at", "updated_by"):
            setattr(obj, name, getattr(saved.rate, name))
        self.message_user(
            request,
            f"{count(saved.converted, 'charge')} in {saved.rate.currency} converted.",
            messages.INFO,
        )
