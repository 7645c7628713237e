"""Import records (one per FOCUS file that created charges, with the file kept),
the rate card, and the account mappings that say who pays for a Slurm account,
a storage quota or a cloud account."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F
from django.db.models.functions import Lower
from django.utils import timezone

from billing.fields import MoneyField
from billing.models import Project, Source


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
    delivery = models.UUIDField(
        null=True,
        blank=True,
        db_index=True,
        help_text="Files imported together as one delivery (a month's part files) share it.",
    )
    fingerprint_version = models.PositiveSmallIntegerField(
        default=1,
        help_text="How the charges' fingerprints were computed (docs/decisions/0002-dedup.md).",
    )
    conformance = models.JSONField(
        default=list,
        blank=True,
        help_text="FOCUS rules the file breaks: rule, rows, first lines. Informative.",
    )
    invoice_totals = models.JSONField(
        default=dict,
        blank=True,
        help_text="InvoiceId -> exact sum of BilledCost of the file's rows, as text.",
    )

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


class Rate(models.Model):
    """A rate card entry: the price of a unit of a resource on a partition or
    storage tier, from a date until a newer entry for the same resource,
    service and QOS takes over. Entries in force during a finalized month are
    never edited: they are superseded by adding a newer one (ingest.usage.rates)."""

    class Resource(models.TextChoices):
        CPU = "cpu", "CPU-hour"
        GPU = "gpu", "GPU-hour"
        STORAGE = "storage", "TB-month"

    resource = models.CharField(
        max_length=10,
        choices=Resource.choices,
        verbose_name="resource (unit)",
        help_text="What is priced, and so the unit of every amount below.",
    )
    service = models.CharField(
        max_length=100, help_text="The Slurm partition (CPU, GPU) or the storage tier."
    )
    qos = models.CharField(
        max_length=100,
        blank=True,
        verbose_name="QOS",
        help_text="Slurm QOS this rate is for; blank: any QOS without a rate of its own. "
        "Always blank for storage.",
    )
    effective_from = models.DateField(
        help_text="First day the rate applies; it applies until a newer rate for the same "
        "resource, service and QOS starts."
    )
    list_rate = MoneyField(
        validators=[MinValueValidator(Decimal(0))],
        help_text="List price per unit (per CPU-hour, GPU-hour or TB-month), before subsidy.",
    )
    subsidy_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))],
        verbose_name="subsidy %",
        help_text="Percent of the list price the institution pays (0-100).",
    )
    free_allowance = models.DecimalField(
        max_digits=15,
        decimal_places=4,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
        help_text="Free units per project per month: CPU or GPU hours; for storage, TB "
        "free every day (a level, not TB-months).",
    )
    monthly_credit = MoneyField(
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
        help_text="Amount taken off each project's bill per month (after subsidy).",
    )
    # MoneyField's stub types say Decimal; this one may be None (no cap).
    monthly_cap = MoneyField(  # type: ignore[misc]
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Most a project is billed per month at this rate; blank: no cap.",
    )
    description = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["resource", "service", "qos", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["resource", "service", "qos", "effective_from"],
                name="rate_unique_start",
                violation_error_message="A rate for this resource, service and QOS already "
                "starts on that day.",
            ),
            models.CheckConstraint(
                condition=models.Q(resource__in=["cpu", "gpu", "storage"]),
                name="rate_resource_valid",
            ),
            models.CheckConstraint(
                condition=~models.Q(resource="storage") | models.Q(qos=""),
                name="rate_storage_no_qos",
                violation_error_message="Storage rates have no QOS; leave it blank.",
            ),
            models.CheckConstraint(
                condition=models.Q(list_rate__gte=0), name="rate_list_rate_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(subsidy_percent__gte=0) & models.Q(subsidy_percent__lte=100),
                name="rate_subsidy_percent_range",
            ),
            models.CheckConstraint(
                condition=models.Q(free_allowance__gte=0), name="rate_free_allowance_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(monthly_credit__gte=0), name="rate_monthly_credit_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(monthly_cap__isnull=True) | models.Q(monthly_cap__gte=0),
                name="rate_monthly_cap_not_negative",
            ),
        ]

    def __str__(self) -> str:
        qos = f" QOS {self.qos}" if self.qos else ""
        return (
            f"{self.get_resource_display()} {self.service}{qos} from {self.effective_from:%Y-%m-%d}"
        )


class AccountMapping(models.Model):
    """Who pays for an account: a project (and so its PI) and a fund/org.

    On-premises kinds (a Slurm account, a storage quota) are used by the
    converters and are not dated. Cloud kinds (a FOCUS SubAccountId: AWS
    account, Azure subscription, GCP project, OCI compartment; a
    BillingAccountId; a ResourceId) belong to one source and may be dated:
    a charge uses the mapping in force on its ChargePeriodStart date (else
    the first day of its billing month). Names match ignoring case, except
    resource ids, which match exactly. See docs/integrations/cloud-accounts.md.
    """

    class Kind(models.TextChoices):
        SLURM = "slurm", "Slurm account"
        STORAGE = "storage", "Storage quota"
        SUB_ACCOUNT = "sub_account", "Cloud sub-account (SubAccountId)"
        BILLING_ACCOUNT = "billing_account", "Cloud billing account (BillingAccountId)"
        RESOURCE = "resource", "Cloud resource (ResourceId)"

    ON_PREMISES_KINDS = ("slurm", "storage")
    CLOUD_KINDS = ("sub_account", "billing_account", "resource")

    kind = models.CharField(max_length=20, choices=Kind.choices)
    source = models.ForeignKey(
        Source,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="account_mappings",
        help_text="Cloud kinds: the source whose charges this maps. Blank for Slurm accounts "
        "and storage quotas.",
    )
    name = models.CharField(
        max_length=1000,
        help_text="The Slurm account, storage quota, SubAccountId or BillingAccountId (any "
        "letter case), or the ResourceId (exact).",
    )
    project = models.ForeignKey(
        Project,
        on_delete=models.PROTECT,
        related_name="account_mappings",
        help_text="The project billed; its PI receives the statement.",
    )
    fund_org = models.CharField(
        max_length=100,
        blank=True,
        verbose_name="fund/org",
        help_text="Blank: the project's default fund/org.",
    )
    effective_from = models.DateField(
        null=True,
        blank=True,
        help_text="Cloud kinds: first day the mapping applies (by the charge's "
        "ChargePeriodStart date); blank: from the start.",
    )
    effective_to = models.DateField(
        null=True,
        blank=True,
        help_text="Cloud kinds: last day the mapping applies; blank: until further notice.",
    )
    notes = models.TextField(blank=True)
    active = models.BooleanField(
        default=True, help_text="Inactive mappings are kept but not used: the account is unmapped."
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["kind", "source", "name", "effective_from"]
        constraints = [
            models.UniqueConstraint(
                F("kind"),
                Lower("name"),
                condition=models.Q(kind__in=["slurm", "storage"]),
                name="accountmapping_unique_name",
                violation_error_message="This account or quota name is already mapped "
                "(names match ignoring case).",
            ),
            models.UniqueConstraint(
                fields=["source", "kind", "name", "effective_from"],
                condition=models.Q(kind__in=["sub_account", "billing_account", "resource"]),
                name="accountmapping_unique_cloud_start",
                violation_error_message="This account is already mapped from that date.",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    kind__in=["slurm", "storage", "sub_account", "billing_account", "resource"]
                ),
                name="accountmapping_kind_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    kind__in=["slurm", "storage"],
                    source__isnull=True,
                    effective_from__isnull=True,
                    effective_to__isnull=True,
                )
                | models.Q(
                    kind__in=["sub_account", "billing_account", "resource"], source__isnull=False
                ),
                name="accountmapping_source_for_cloud_only",
                violation_error_message="Cloud mappings name their source; Slurm and storage "
                "mappings have no source and no dates.",
            ),
            models.CheckConstraint(
                condition=models.Q(effective_from__isnull=True)
                | models.Q(effective_to__isnull=True)
                | models.Q(effective_to__gte=F("effective_from")),
                name="accountmapping_dates_in_order",
                violation_error_message="The mapping ends before it starts.",
            ),
        ]

    def __str__(self) -> str:
        where = f" ({self.source_id})" if self.source_id else ""
        return f"{self.get_kind_display()} {self.name}{where}"

    @property
    def is_cloud(self) -> bool:
        return self.kind in self.CLOUD_KINDS

    def clean(self) -> None:
        self.name = self.name.strip()
        if self.project_id is not None and self.project.pi_id is None:
            raise ValidationError(
                {"project": "This project has no PI yet; set its PI first (the PI is billed)."}
            )
        if self.kind in self.CLOUD_KINDS and self.source_id is None:
            raise ValidationError({"source": "Cloud mappings name the source they map."})
        if self.kind in self.ON_PREMISES_KINDS:
            if self.source_id is not None:
                raise ValidationError(
                    {"source": "Slurm accounts and storage quotas have no source; leave it blank."}
                )
            if self.effective_from or self.effective_to:
                raise ValidationError(
                    "Slurm and storage mappings are not dated; leave the dates blank."
                )
        if self.effective_from and self.effective_to and self.effective_to < self.effective_from:
            raise ValidationError({"effective_to": "The mapping ends before it starts."})

    @property
    def effective_fund_org(self) -> str:
        """The fund/org charged: this mapping's, else the project's default."""
        return self.fund_org or self.project.default_fund_org
