"""Statements (one per period x PI x project, versioned) and the email log."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from billing.fields import MoneyField
from billing.models import PI, BillingPeriod, Charge, Project
from statements.building import Revision


class Statement(models.Model):
    """One version of a PI project's statement for a period.

    A statement's numbers and PDF never change: regenerating after the data
    changed creates version n+1 and marks this one superseded. Totals are
    sums of lines rounded to cents (SPEC §2); `exact_billed` is the unrounded
    sum, kept to show the rounding difference.
    """

    class Status(models.TextChoices):
        RENDERING = "rendering", "Rendering"
        READY = "ready", "Ready"
        FAILED = "failed", "Rendering failed"

    period = models.ForeignKey(BillingPeriod, on_delete=models.PROTECT, related_name="statements")
    pi = models.ForeignKey(
        PI, on_delete=models.PROTECT, related_name="statements", verbose_name="PI"
    )
    project = models.ForeignKey(
        Project,
        on_delete=models.PROTECT,
        related_name="statements",
        null=True,
        blank=True,
        help_text="Empty for the PI's charges that name no project.",
    )
    sequence = models.PositiveIntegerField(
        help_text="Number of this PI project within the period; the same for every version."
    )
    version = models.PositiveIntegerField(default=1)
    number = models.CharField(max_length=40, unique=True, help_text="period-sequence-version")
    fund_org = models.CharField(max_length=200, blank=True, verbose_name="fund/org")

    list_total = MoneyField()
    discount_total = MoneyField(help_text="List minus billed: the institution's contribution.")
    billed_total = MoneyField(help_text="Amount due: the sum of the rounded statement lines.")
    exact_billed = MoneyField(help_text="Unrounded sum of the charges' billed cost.")
    charge_count = models.PositiveIntegerField()
    content_hash = models.CharField(
        max_length=64, help_text="SHA-256 of everything the statement shows (data, not bytes)."
    )

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RENDERING)
    error = models.TextField(blank=True)
    generated_at = models.DateTimeField(help_text="Printed on the statement.")
    generated_by = models.CharField(max_length=150)
    pdf = models.FileField(upload_to="statements/", blank=True, max_length=300)
    pdf_sha256 = models.CharField(max_length=64, blank=True, verbose_name="PDF SHA-256")
    line_items = models.FileField(
        upload_to="statements/",
        blank=True,
        max_length=300,
        help_text="Every charge as CSV, when there are more than the PDF lists.",
    )
    superseded_at = models.DateTimeField(null=True, blank=True)
    superseded_by = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="supersedes"
    )

    class Meta:
        ordering = ["period", "sequence", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["period", "sequence", "version"], name="statement_unique_version"
            ),
            models.UniqueConstraint(
                fields=["period", "pi", "project"],
                condition=models.Q(superseded_at__isnull=True),
                name="statement_one_current",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["rendering", "ready", "failed"]),
                name="statement_status_valid",
            ),
        ]
        permissions = [
            ("generate_statement", "Can generate statements"),
            ("send_statement", "Can send statements by email"),
            ("resend_statement", "Can resend statements already sent"),
        ]

    def __str__(self) -> str:
        return self.number

    def revision(self) -> Revision | None:
        """What this version says about the one it replaces: None for a first version."""
        replaced = Statement.objects.filter(superseded_by=self).first()
        return None if replaced is None else self.replacing(replaced)

    def replacing(self, replaced: Statement) -> Revision:
        """What this version says about `replaced`, its previous version."""
        return Revision(
            number=replaced.number,
            version=replaced.version,
            generated_at=replaced.generated_at,
            billed_before=replaced.billed_total,
            billed_after=self.billed_total,
        )


class StatementCharge(models.Model):
    """The exact charges a statement version covers."""

    statement = models.ForeignKey(Statement, on_delete=models.CASCADE, related_name="items")
    charge = models.ForeignKey(Charge, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["statement", "charge"], name="statement_charge_unique")
        ]

    def __str__(self) -> str:
        return f"{self.statement_id}: charge {self.charge_id}"


class EmailLog(models.Model):
    """One email to a PI with that PI's statements of a period.

    The row is claimed (`sending`) before the message goes to the mail
    server, so a worker that dies mid-send leaves a visible `sending` row for
    an operator to resolve instead of a second copy. A statement version is
    in at most one non-resend email (unique constraint on the link table).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be sent"
        SENDING = "sending", "Sending (claimed)"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    period = models.ForeignKey(BillingPeriod, on_delete=models.PROTECT, related_name="emails")
    pi = models.ForeignKey(PI, on_delete=models.PROTECT, related_name="emails", verbose_name="PI")
    to = models.EmailField(max_length=254)
    subject = models.CharField(max_length=300, blank=True)
    resend = models.BooleanField(default=False, help_text="An operator's explicit resend.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150)
    claimed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    message_id = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "email"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="email_due")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "sending", "sent", "failed"]),
                name="email_status_valid",
            )
        ]

    def __str__(self) -> str:
        return f"Email {self.pk} to {self.to} ({self.status})"


class EmailStatement(models.Model):
    """Which statements an email carries."""

    email = models.ForeignKey(EmailLog, on_delete=models.CASCADE, related_name="items")
    statement = models.ForeignKey(Statement, on_delete=models.PROTECT, related_name="deliveries")
    resend = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["statement"],
                condition=models.Q(resend=False),
                name="statement_emailed_once",
            )
        ]

    def __str__(self) -> str:
        return f"email {self.email_id}: statement {self.statement_id}"
