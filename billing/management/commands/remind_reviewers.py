"""Email the reviewers when charges wait for review in open periods; for cron or a schedule."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.core.management.base import CommandError
from django.db.models import Sum
from django.urls import reverse

from billing.commands import BillingCommand
from billing.models import BillingPeriod, Charge, ChargeSummary, InstitutionSettings
from openchargeback.text import count


class Command(BillingCommand):
    help = (
        "Send one reminder to every active user who may review charges (with an email "
        "address) when charges are pending review in open periods; nothing when none are."
    )

    takes_dry_run = True
    dry_run_help = "Print the reminder; send nothing."

    def handle(self, *args: Any, **options: Any) -> None:
        pending = (
            ChargeSummary.objects.filter(
                period__status=BillingPeriod.Status.OPEN,
                review_state=Charge.ReviewState.PENDING,
            )
            .values("period_id", "period__period")
            .annotate(n=Sum("charges"), billed=Sum("billed_total"))
            .order_by("period__period")
        )
        if not pending:
            self.stdout.write("Nothing is pending review: no reminder sent.")
            return
        money = InstitutionSettings.cached().format_money
        site = settings.OPENCHARGEBACK_SITE_URL.rstrip("/")
        queue = reverse("admin:billing_charge_changelist")
        lines = []
        for row in pending:
            line = f"- {row['period__period']}: {count(row['n'], 'charge')}, {money(row['billed'])}"
            if site:
                line += (
                    f"\n  {site}{queue}?period__id__exact={row['period_id']}"
                    "&review_state__exact=pending"
                )
            lines.append(line)
        total = sum(row["n"] for row in pending)
        subject = (
            f"{InstitutionSettings.cached().name}: {count(total, 'charge')} waiting for review"
        )
        body = (
            "Charges are waiting for review before their month can be closed:\n\n"
            + "\n".join(lines)
            + "\n\nApprove, fix or reject them in the review queue (Billing -> Charges), or "
            "with `openchargeback review list --period YYYY-MM`.\n"
        )
        users = get_user_model().objects.filter(is_active=True).exclude(email="")
        to = sorted({u.email for u in users if u.has_perm("billing.review_charge")})
        if not to:
            raise CommandError(
                "charges are pending review but no active reviewer has an email address: "
                "add one to a reviewer's user in the admin"
            )
        if options["dry_run"]:
            self.stdout.write(f"To: {', '.join(to)}\nSubject: {subject}\n\n{body}")
            return
        send_mail(subject, body, None, to)
        self.stdout.write(f"Reminder sent to {count(len(to), 'reviewer')}: {subject}.")
