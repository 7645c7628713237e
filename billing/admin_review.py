"""The review queue's actions: their forms, what they say before and after
(what stays pending and why), and the mixin ChargeAdmin runs them from."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.widgets import AutocompleteSelect
from django.db.models import Count, QuerySet, Sum
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.html import format_html

from billing import flags
from billing.adminkit import action_page, action_summary, actor_for, changelist_url
from billing.audit import Actor
from billing.blockers import ApprovalPlan, approval_plan, charges_url, rate_form_url
from billing.errors import BillingError, web_text
from billing.exchange import home_currency, rates_which
from billing.models import PI, Charge, InstitutionSettings, Project
from billing.review import (
    FixReport,
    charges_fix_attribution_report,
    charges_reapply_rules,
    charges_review,
)
from openchargeback.text import count


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


class ChargeReviewActions(admin.ModelAdmin):
    """The review actions of the charge admin (approve, reject, reset, fix
    attribution, re-apply rules) and the steps they share: each parses its
    form, calls billing.review and reports."""

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
