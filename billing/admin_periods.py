"""The billing periods' admin pages: the list with each month's totals and
the lifecycle buttons (close, reopen, finalize), POST only."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import F, Q, Sum
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import path, reverse

from billing.adminkit import ReadOnlyAdmin, actor_for
from billing.blockers import period_blockers
from billing.errors import BillingError, web_text
from billing.models import AuditEvent, BillingPeriod, Charge, ChargeSummary
from billing.services import finalize_blocker_list, period_close, period_finalize, period_reopen


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
