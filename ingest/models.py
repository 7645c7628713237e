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
