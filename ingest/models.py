"""Import records: one per FOCUS file that created charges, with the file kept."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

from billing.fields import MoneyField
from billing.models import Source


class Import(models.Model):
    """A FOCUS file imported into one source. The original bytes are kept, compressed."""

    class Status(models.TextChoices):
        IMPORTED = "imported", "Imported"
        SUPERSEDED = "superseded", "Superseded by a --replace import"

    file_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64, db_index=True, verbose_name="SHA-256")
    stored_file = models.CharField(
        max_length=300, help_text="Path of the kept original, relative to MEDIA_ROOT."
    )
    file_size = models.BigIntegerField(help_text="Bytes, as uploaded.")
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="imports")
    expected_period = models.CharField(max_length=7, blank=True)
    periods = models.JSONField(default=list, help_text="Months (YYYY-MM) the file's rows fall in.")
    actor = models.CharField(max_length=150)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.IMPORTED)
    replace = models.BooleanField(
        default=False, help_text="Imported with --replace (superseded earlier imports)."
    )
    rows_read = models.PositiveIntegerField(default=0)
    charges_created = models.PositiveIntegerField(default=0)
    duplicates_skipped = models.PositiveIntegerField(default=0)
    charges_removed = models.PositiveIntegerField(
        default=0, help_text="Charges of earlier imports removed by --replace."
    )
    flagged_count = models.PositiveIntegerField(default=0)
    flag_counts = models.JSONField(default=dict, help_text="Flag reason -> number of charges.")
    billed_total = MoneyField(
        default=Decimal(0), help_text="Exact sum of BilledCost of the charges created."
    )
    values_rounded = models.PositiveIntegerField(
        default=0,
        help_text="Cost values with digits beyond 1e-9, rounded half-even to the nano-unit.",
    )
    errors = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        permissions = [("import_focus", "Can import FOCUS files")]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.source_id})"


class Upload(models.Model):
    """A file dropped on the admin's import page, kept until it is imported or discarded.

    Files dropped together share a batch. Each is previewed (a dry run) with
    the source and period detected from its name, which a person may change,
    then imported; both steps run in the request for small files and on a
    django-q2 worker for large ones.
    """

    class Status(models.TextChoices):
        STAGED = "staged", "Staged"
        PREVIEWING = "previewing", "Previewing"
        PREVIEWED = "previewed", "Previewed"
        IMPORTING = "importing", "Importing"
        IMPORTED = "imported", "Imported"
        FAILED = "failed", "Failed"
        DISCARDED = "discarded", "Discarded"

    batch = models.UUIDField(db_index=True, help_text="Files uploaded together share a batch.")
    file_name = models.CharField(max_length=255, help_text="The name the file had on upload.")
    stored_file = models.CharField(
        max_length=300,
        blank=True,
        help_text="Staged copy, relative to MEDIA_ROOT (a random name); emptied once deleted.",
    )
    file_size = models.BigIntegerField(help_text="Bytes, as uploaded.")
    actor = models.CharField(max_length=150)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    source = models.ForeignKey(
        Source, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    period = models.CharField(
        max_length=7, blank=True, help_text="Expected period (YYYY-MM); blank for none."
    )
    detected_source = models.ForeignKey(
        Source, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    detected_period = models.CharField(max_length=7, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.STAGED)
    job_started_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the running preview or import claimed the file (empty while queued).",
    )
    preview = models.JSONField(
        default=dict, blank=True, help_text="What the last dry run reported."
    )
    result = models.JSONField(default=dict, blank=True, help_text="What the import reported.")
    error = models.TextField(blank=True, help_text="Why the last step failed (one line).")
    import_record = models.ForeignKey(
        Import, on_delete=models.SET_NULL, null=True, blank=True, related_name="uploads"
    )

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return self.file_name
