"""The charges' admin pages: the review queue (its columns and filters) and
one charge's page; the actions the queue and the page's buttons run are
billing.admin_review's."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
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

from billing import flags, listwords, selectors
from billing.admin_review import ChargeReviewActions, ReviewActionForm
from billing.adminkit import ReadOnlyAdmin, TextInputFilter, money_column
from billing.blockers import with_reason
from billing.models import PI, AuditEvent, BillingPeriod, Charge, InstitutionSettings, Project


def clipped(text: str, title: str = "") -> str:
    """A list cell's text, cut by CSS to the column's width, whole in the tooltip."""
    return format_html('<span class="ocb-clip" title="{}">{}</span>', title or text, text)


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


@admin.register(Charge)
class ChargeAdmin(ChargeReviewActions, ReadOnlyAdmin):
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
