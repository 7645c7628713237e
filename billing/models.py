"""Core billing records: periods, sources, PIs, projects, charges, audit, settings.

One module, as Django expects of an app: the models refer to one another, and
their writers and reads live elsewhere (billing.services, billing.selectors, ...).
"""

from __future__ import annotations

import re
import time
from decimal import Decimal
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Length, Lower, Substr, Upper
from django.db.models.lookups import Exact, In
from django.utils import timezone

from billing import flags
from billing.fields import JSONTextField, MoneyField
from billing.patterns import PatternError, compile_user_pattern
from billing.periods import PERIOD_RE
from billing.placeholders import template_problem
from openchargeback.money import format_money

period_validator = RegexValidator(PERIOD_RE, "Enter a month as YYYY-MM (e.g. 2025-01).")
slug_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9_-]*$", "Lowercase letters, digits, '_' and '-' only."
)


EMAIL_SUBJECT_FIELDS = ("period", "pi_name", "total", "institution")


def check_placeholders(value: str, allowed: tuple[str, ...], what: str) -> None:
    """A template may use the `allowed` {placeholders}, written plainly, nothing else
    (see billing.placeholders)."""
    problem = template_problem(value, allowed)
    if problem is not None:
        raise ValidationError(
            "Not a valid %(what)s: %(problem)s", params={"what": what, "problem": problem}
        )


def validate_subject_template(value: str) -> None:
    """A subject may use {period}, {pi_name}, {total} and {institution}, nothing else."""
    check_placeholders(value, EMAIL_SUBJECT_FIELDS, "subject template")


def validate_regex(value: str) -> None:
    """A pattern people type: refused unless RE2 runs it within the bounds of
    billing.patterns (linear time, no lookaround or backreferences)."""
    try:
        compile_user_pattern(value)
    except PatternError as exc:
        raise ValidationError(f"Not a valid regular expression: {exc}") from None


class BillingPeriod(models.Model):
    """One calendar month of billing: open -> closed -> finalized."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"
        FINALIZED = "finalized", "Finalized"

    period = models.CharField(
        max_length=7, unique=True, validators=[period_validator], help_text="YYYY-MM"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.CharField(max_length=150, blank=True)
    reopened_at = models.DateTimeField(null=True, blank=True)
    reopened_by = models.CharField(max_length=150, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    finalized_by = models.CharField(max_length=150, blank=True)
    notes = models.TextField(
        blank=True, help_text="Appended with each transition; never overwritten."
    )

    class Meta:
        ordering = ["-period"]
        permissions = [
            ("close_billingperiod", "Can close and reopen billing periods"),
            ("finalize_billingperiod", "Can finalize billing periods"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["open", "closed", "finalized"]),
                name="billingperiod_status_valid",
            ),
            # Portable (no REGEXP, which plain SQLite lacks): 'YYYY-MM'.
            models.CheckConstraint(
                condition=models.Q(Exact(Length("period"), 7))
                & models.Q(period__gte="1900-01")
                & models.Q(period__lte="9999-12")
                & models.Q(Exact(Substr("period", 5, 1), "-"))
                & models.Q(In(Substr("period", 6, 2), [f"{m:02d}" for m in range(1, 13)])),
                name="billingperiod_period_yyyy_mm",
            ),
        ]

    def __str__(self) -> str:
        return self.period

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN


class Source(models.Model):
    """Where charges come from (aws, azure, hpc, ...) and how they are credited in the GL."""

    slug = models.CharField(
        max_length=40,
        unique=True,
        validators=[slug_validator],
        help_text="Stable lowercase identifier, e.g. 'aws'. 'AWS' and 'aws' are the same source.",
    )
    name = models.CharField(max_length=100)
    filename_pattern = models.CharField(
        max_length=200,
        blank=True,
        help_text="Regular expression matched against upload file names for auto-detection; "
        "the longest matching pattern wins.",
        validators=[validate_regex],
    )
    credit_fund_org = models.CharField(
        max_length=100, blank=True, help_text="Fund/org credited in journals for this source."
    )
    account_code = models.CharField(
        max_length=40, blank=True, help_text="GL account code used for this source's charges."
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class CostBasis(models.TextChoices):
        BILLED = "billed", "Billed cost (what the provider invoices)"
        AMORTISED = "amortised", "Amortised cost (EffectiveCost: commitments spread over usage)"

    class CommitmentHandling(models.TextChoices):
        CENTRAL = "central", "Bill to the central commitment project and fund/org"
        EXCLUDE = "exclude", "Exclude from statements and journals"

    cost_basis = models.CharField(
        max_length=10,
        choices=CostBasis.choices,
        default=CostBasis.BILLED,
        help_text="Which FOCUS cost is billed to PIs: BilledCost, or EffectiveCost "
        "(commitment purchases amortised over the usage they cover).",
    )
    commitment_handling = models.CharField(
        max_length=10,
        choices=CommitmentHandling.choices,
        default=CommitmentHandling.CENTRAL,
        help_text="Under the amortised basis: where commitment purchases and unused "
        "commitment go instead of the purchaser's tags.",
    )
    commitment_project = models.ForeignKey(
        "Project",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The central project (its PI gets the statement) billed for commitment "
        "purchases and unused commitment under the amortised basis.",
    )
    commitment_fund_org = models.CharField(
        max_length=100,
        blank=True,
        verbose_name="commitment fund/org",
        help_text="Fund/org charged for commitment purchases and unused commitment "
        "(blank: the commitment project's default fund/org).",
    )
    provider_names = models.CharField(
        max_length=300,
        blank=True,
        help_text="Comma-separated ProviderName values (any letter case) whose rows this "
        "source takes from a multi-provider FOCUS file.",
    )

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(slug=Lower("slug")), name="source_slug_lowercase"
            ),
        ]

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        super().clean()
        if (
            self.cost_basis == self.CostBasis.AMORTISED
            and self.commitment_handling == self.CommitmentHandling.CENTRAL
            and self.commitment_project_id is None
        ):
            raise ValidationError(
                {
                    "commitment_project": "The amortised cost basis with central commitment "
                    "handling needs a commitment project to bill commitment purchases and "
                    "unused commitment to."
                }
            )


class PI(models.Model):
    """A Principal Investigator, identified by email (stored lowercase)."""

    email = models.EmailField(max_length=254, unique=True)
    name = models.CharField(max_length=200, blank=True)
    department = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "PI"
        verbose_name_plural = "PIs"
        ordering = ["email"]
        constraints = [
            models.CheckConstraint(condition=models.Q(email=Lower("email")), name="pi_email_lower"),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


class Project(models.Model):
    """A project (e.g. a grant's work) that belongs to one PI."""

    project_id = models.CharField(max_length=200, unique=True, verbose_name="project id")
    title = models.CharField(max_length=300, blank=True)
    pi = models.ForeignKey(
        PI,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="projects",
        verbose_name="PI",
        help_text="Empty until a charge names the project's PI.",
    )
    default_fund_org = models.CharField(max_length=100, blank=True)
    account_code = models.CharField(
        max_length=40, blank=True, help_text="GL account override for this project's charges."
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["project_id"]

    def __str__(self) -> str:
        return self.project_id


class Charge(models.Model):
    """One FOCUS line item, with its provenance and review state."""

    class ReviewState(models.TextChoices):
        PENDING = "pending", "Pending review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    period = models.ForeignKey(
        BillingPeriod, on_delete=models.PROTECT, related_name="charges", db_index=False
    )
    source = models.ForeignKey(
        Source, on_delete=models.PROTECT, related_name="charges", db_index=False
    )
    import_record = models.ForeignKey(
        "ingest.Import",
        on_delete=models.PROTECT,
        related_name="charges",
        verbose_name="import",
        db_index=False,  # see the note on pi/project below
    )
    line_number = models.PositiveIntegerField(
        help_text="Line of the record in the imported file (header = line 1); row number "
        "for Parquet."
    )
    fingerprint = models.CharField(
        max_length=32,
        help_text="Hash of the row's columns that describe the line item "
        "(docs/decisions/0002-dedup.md).",
    )
    occurrence = models.PositiveIntegerField(
        default=0, help_text="0 for the first identical row in a file, 1 for the second, ..."
    )

    # No single-column indexes on pi, project or import: each one costs ingest
    # several microseconds per row on SQLite (pi and project have thousands of
    # random insertion points), see docs/decisions/0003-sqlite-locking.md.
    # Month-end reads go through the (period, review_state) index.
    pi = models.ForeignKey(
        PI,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="charges",
        db_index=False,
    )
    project = models.ForeignKey(
        Project,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="charges",
        db_index=False,
    )
    fund_org = models.CharField(max_length=100, blank=True, verbose_name="fund/org")
    cost_center = models.CharField(max_length=100, blank=True)
    reference_1 = models.CharField(max_length=200, blank=True)
    reference_2 = models.CharField(max_length=200, blank=True)
    account_code = models.CharField(max_length=40, blank=True)

    service_name = models.CharField(max_length=200, blank=True)
    service_category = models.CharField(max_length=100, blank=True)
    charge_category = models.CharField(max_length=50, blank=True)
    charge_description = models.TextField(blank=True)
    resource_id = models.TextField(blank=True)
    resource_name = models.TextField(blank=True)
    sub_account_id = models.CharField(max_length=200, blank=True)
    sub_account_name = models.CharField(max_length=200, blank=True)
    provider_name = models.CharField(max_length=100, blank=True)
    consumed_quantity = models.TextField(
        blank=True, help_text="As written in the file (exact decimal text)."
    )
    consumed_unit = models.CharField(max_length=50, blank=True)
    charge_period_start = models.DateTimeField(null=True, blank=True)
    charge_period_end = models.DateTimeField(null=True, blank=True)
    billing_currency = models.CharField(max_length=3, blank=True)

    # FOCUS columns kept for provenance, invoices, commitments and allocation.
    # db_default: the importer inserts with raw SQL and names only the columns
    # it fills (see ingest.focus.bulk.ROW_COLUMNS).
    invoice_id = models.CharField(max_length=200, blank=True, db_default="", default="")
    charge_class = models.CharField(
        max_length=20,
        blank=True,
        db_default="",
        default="",
        help_text="FOCUS ChargeClass: 'Correction' for a row correcting an earlier period.",
    )
    charge_frequency = models.CharField(max_length=20, blank=True, db_default="", default="")
    billing_account_id = models.CharField(max_length=200, blank=True, db_default="", default="")
    billing_account_name = models.CharField(max_length=200, blank=True, db_default="", default="")
    host_provider_name = models.CharField(max_length=200, blank=True, db_default="", default="")
    publisher_name = models.CharField(max_length=200, blank=True, db_default="", default="")
    commitment_discount_id = models.TextField(blank=True, db_default="", default="")
    commitment_discount_status = models.CharField(
        max_length=20,
        blank=True,
        db_default="",
        default="",
        help_text="FOCUS CommitmentDiscountStatus: Used or Unused.",
    )
    commitment_discount_category = models.CharField(
        max_length=20, blank=True, db_default="", default=""
    )
    pricing_currency = models.CharField(
        max_length=40,
        blank=True,
        db_default="",
        default="",
        help_text="FOCUS PricingCurrency (may be a virtual currency such as credits); "
        "never added to money.",
    )
    pricing_currency_list_unit_price = models.TextField(
        blank=True, db_default="", default="", help_text="Exact decimal text, PricingCurrency."
    )
    pricing_currency_contracted_unit_price = models.TextField(
        blank=True, db_default="", default="", help_text="Exact decimal text, PricingCurrency."
    )
    pricing_currency_effective_cost = models.TextField(
        blank=True, db_default="", default="", help_text="Exact decimal text, PricingCurrency."
    )
    allocated_resource_id = models.TextField(blank=True, db_default="", default="")
    allocated_resource_name = models.TextField(blank=True, db_default="", default="")
    allocated_method_id = models.CharField(max_length=200, blank=True, db_default="", default="")
    cost_basis = models.CharField(
        max_length=10,
        blank=True,
        db_default="billed",
        default="billed",
        help_text="The source's cost basis when imported: billed or amortised.",
    )
    invoiced_cost = MoneyField(  # type: ignore[misc]
        null=True,
        blank=True,
        help_text="BilledCost as the file says, in BillingCurrency, when billed_cost is "
        "another amount (amortised basis, or converted currency); empty when equal.",
    )
    original_list_cost = MoneyField(  # type: ignore[misc]
        null=True,
        blank=True,
        help_text="ListCost in BillingCurrency before conversion to the home currency.",
    )
    original_billed_cost = MoneyField(  # type: ignore[misc]
        null=True,
        blank=True,
        help_text="The billed amount in BillingCurrency before conversion to the home currency.",
    )
    exchange_rate = models.CharField(
        max_length=40,
        blank=True,
        db_default="",
        default="",
        help_text="Home-currency units per BillingCurrency unit used to convert this charge "
        "(exact decimal text); empty for home-currency charges.",
    )

    list_cost = MoneyField(help_text="ListCost; equals BilledCost when the file has none.")
    contracted_cost = MoneyField(help_text="ContractedCost; equals BilledCost when absent.")
    billed_cost = MoneyField(help_text="BilledCost: what the PI is charged.")
    effective_cost = MoneyField(help_text="EffectiveCost; equals BilledCost when absent.")
    tags = JSONTextField(default=dict, blank=True)

    flags = models.PositiveIntegerField(
        default=0, help_text="Bitmask of flag reasons (see billing.flags)."
    )
    flag_details = JSONTextField(
        default=dict, blank=True, help_text="Extra detail per reason, e.g. the matched pattern."
    )
    review_state = models.CharField(
        max_length=10, choices=ReviewState.choices, default=ReviewState.APPROVED
    )
    reviewed_by = models.CharField(max_length=150, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True)

    class Meta:
        permissions = [
            ("review_charge", "Can approve, reject and reset charges"),
            ("fix_attribution_charge", "Can fix the PI, project and fund/org of charges"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "fingerprint", "occurrence"], name="charge_unique_line_item"
            ),
            models.CheckConstraint(
                condition=models.Q(review_state__in=["pending", "approved", "rejected"]),
                name="charge_review_state_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["period", "review_state"], name="charge_period_state"),
        ]

    def __str__(self) -> str:
        return f"Charge {self.pk} ({self.source_id}, line {self.line_number})"

    @property
    def flag_reasons(self) -> list[str]:
        return flags.from_mask(self.flags)

    @property
    def discount(self) -> Decimal:
        return self.list_cost - self.billed_cost


class AuditEvent(models.Model):
    """Append-only record of a state change: who, what, before/after, why, when."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(
        max_length=150, help_text="User name, or 'system' / the command that acted."
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    channel = models.CharField(
        max_length=20, default="system", help_text="cli, admin, job or system."
    )
    action = models.CharField(max_length=60, db_index=True)
    object_type = models.CharField(max_length=60)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    period = models.ForeignKey(
        BillingPeriod,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="audit_events",
        db_constraint=False,
    )
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.object_repr}"


# --- Institution settings (edited in the admin, seeded from fixtures/) ---------


class InstitutionSettings(models.Model):
    """The one row of institution-wide settings (pk is always 1)."""

    name = models.CharField(max_length=200, default="Research Computing")
    contact_email = models.EmailField(blank=True)
    contact_phone = models.CharField(max_length=50, blank=True)
    address = models.TextField(blank=True)
    currency = models.CharField(
        max_length=3,
        default="USD",
        validators=[RegexValidator(r"^[A-Z]{3}$", "An ISO 4217 code such as USD.")],
        help_text="The installation's one billing currency; rows in another are flagged.",
    )
    thousands_separator = models.CharField(max_length=1, default=",", blank=True)
    decimal_separator = models.CharField(max_length=1, default=".")
    large_charge_threshold = MoneyField(
        default=Decimal("10000"),
        help_text="A charge whose BilledCost is above this amount is flagged large_charge.",
    )
    email_subject = models.CharField(
        max_length=200,
        default="{institution} statement for {period}: {total} due",
        validators=[validate_subject_template],
        help_text="Subject of the statement emails; may use {period}, {pi_name}, {total} "
        "and {institution}. The bodies are the templates statements/email/body.txt and "
        "body.html (see the statements guide to override them).",
    )

    class Meta:
        verbose_name = "institution settings"
        verbose_name_plural = "institution settings"
        constraints = [
            models.CheckConstraint(condition=models.Q(pk=1), name="institutionsettings_singleton")
        ]

    def __str__(self) -> str:
        return self.name

    # Pages format many amounts; they read the settings at most every few seconds.
    _cache: ClassVar[tuple[float, InstitutionSettings] | None] = None
    CACHE_SECONDS: ClassVar[float] = 10.0

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        type(self)._cache = None

    @classmethod
    def load(cls) -> InstitutionSettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj

    @classmethod
    def cached(cls) -> InstitutionSettings:
        """The settings as of at most CACHE_SECONDS ago (for display only)."""
        hit = cls._cache
        now = time.monotonic()
        if hit is None or now - hit[0] > cls.CACHE_SECONDS:
            hit = (now, cls.load())
            cls._cache = hit
        return hit[1]

    def format_money(self, value: Decimal, *, places: int = 2) -> str:
        """An amount as people here write it: currency symbol and separators."""
        return format_money(
            value,
            currency=self.currency,
            thousands=self.thousands_separator,
            decimal_point=self.decimal_separator,
            places=places,
        )


class TagMapping(models.Model):
    """Which tag keys feed a charge field; the first key present wins."""

    class Field(models.TextChoices):
        PI_EMAIL = "pi_email", "PI email"
        PROJECT_ID = "project_id", "Project id"
        FUND_ORG = "fund_org", "Fund/org"
        COST_CENTER = "cost_center", "Cost center"
        ACCOUNT_CODE = "account_code", "Account code"
        REFERENCE_1 = "reference_1", "Reference 1"
        REFERENCE_2 = "reference_2", "Reference 2"

    field = models.CharField(max_length=20, choices=Field.choices, unique=True)
    tag_keys = models.TextField(
        help_text="Candidate tag keys, one per line, in order of preference. Matching ignores "
        "case and surrounding spaces ('user:PI_Email ' matches 'user:pi_email')."
    )

    class Meta:
        ordering = ["field"]

    def __str__(self) -> str:
        return self.get_field_display()

    @property
    def keys(self) -> list[str]:
        return [k.strip().lower() for k in re.split(r"[\n,]", self.tag_keys) if k.strip()]


class FlagRule(models.Model):
    """Turns a flag reason on or off for new imports and re-applied rules."""

    reason = models.CharField(max_length=30, choices=flags.CHOICES, unique=True)
    enabled = models.BooleanField(default=True)
    description = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["reason"]

    def __str__(self) -> str:
        return self.reason


class PatternRule(models.Model):
    """A regular expression that sends matching charges to review (pattern_match)."""

    class Target(models.TextChoices):
        ANY = "any", "Service, resource id or resource name"
        SERVICE_NAME = "service_name", "ServiceName"
        RESOURCE_ID = "resource_id", "ResourceId"
        RESOURCE_NAME = "resource_name", "ResourceName"

    name = models.CharField(max_length=100)
    pattern = models.CharField(max_length=500, validators=[validate_regex])
    target = models.CharField(max_length=20, choices=Target.choices, default=Target.ANY)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name}: {self.pattern}"


class FundOrgPattern(models.Model):
    """A valid fund/org shape; a fund/org matching none (full match) is flagged."""

    pattern = models.CharField(max_length=500, validators=[validate_regex])
    description = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["pattern"]
        verbose_name = "fund/org pattern"

    def __str__(self) -> str:
        return self.pattern

    def clean(self) -> None:
        """One fund/org rule: refused if review would then accept fund/orgs in use
        that the journal's split pattern cannot split (billing.blockers)."""
        from billing.blockers import disagreement_text, fund_org_disagreements, known_fund_orgs

        others = list(
            FundOrgPattern.objects.filter(enabled=True)
            .exclude(pk=self.pk)
            .values_list("pattern", flat=True)
        )
        saved = FundOrgPattern.objects.filter(pk=self.pk).first() if self.pk else None
        was = [saved.pattern] if saved and saved.enabled else []
        will = [self.pattern] if self.enabled else []
        known = known_fund_orgs()
        before = set(fund_org_disagreements(validation=[*others, *was], known=known))
        after = fund_org_disagreements(validation=[*others, *will], known=known)
        new = [f for f in after if f not in before]
        if new:
            raise ValidationError({"pattern": disagreement_text(new, saving="fund/org pattern")})


class ChargeSummary(models.Model):
    """Charges of a period added up per source, PI, project, fund/org and review
    state: what the dashboard, period, PI and project pages read instead of
    scanning millions of charges.

    Derived data. Every service that writes charges rebuilds the summaries of
    the periods it touched in the same transaction (billing.summaries), so they
    are never behind the charges they add up.
    """

    period = models.ForeignKey(BillingPeriod, on_delete=models.CASCADE, related_name="+")
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+")
    pi = models.ForeignKey(PI, on_delete=models.CASCADE, null=True, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, null=True, related_name="+")
    fund_org = models.CharField(max_length=100, blank=True)
    review_state = models.CharField(max_length=10, choices=Charge.ReviewState.choices)
    charges = models.PositiveIntegerField()
    flagged = models.PositiveIntegerField(help_text="Charges with at least one flag.")
    list_total = MoneyField()
    billed_total = MoneyField()

    class Meta:
        verbose_name_plural = "charge summaries"
        indexes = [models.Index(fields=["project", "period"], name="summary_project_period")]

    def __str__(self) -> str:
        return f"{self.period_id}/{self.source_id}/{self.project_id}/{self.review_state}"


CURRENCY_RE = r"^[A-Z]{3}$"


class ExchangeRate(models.Model):
    """What one unit of a foreign BillingCurrency is worth in the home currency
    for one billing month (e.g. EUR 2024-10: 1.0850 USD per EUR).

    Charges of that currency and month are converted with it (billing.exchange
    exchange_rate_set and charges_convert). Editable while the period is open;
    while it is closed only if no charge of the period is in the currency; never
    once it is finalized (a database trigger refuses, see migration 0014).
    """

    period = models.ForeignKey(
        BillingPeriod, on_delete=models.PROTECT, related_name="exchange_rates"
    )
    currency = models.CharField(
        max_length=3,
        validators=[RegexValidator(CURRENCY_RE, "An ISO 4217 code such as EUR.")],
        help_text="The foreign BillingCurrency (ISO 4217, upper case).",
    )
    rate = models.CharField(
        max_length=40,
        help_text="Home-currency units per one unit of the currency, exact decimal text "
        "(e.g. 1.0850 for EUR when the home currency is USD).",
    )
    note = models.CharField(
        max_length=300,
        blank=True,
        help_text="Where the rate comes from, e.g. 'ECB reference rate 2024-10-31'.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.CharField(max_length=150)

    class Meta:
        ordering = ["-period__period", "currency"]
        constraints = [
            models.UniqueConstraint(
                fields=["period", "currency"], name="exchangerate_one_per_currency_month"
            ),
            models.CheckConstraint(
                condition=models.Q(Exact(Length("currency"), 3))
                & models.Q(currency=Upper("currency")),
                name="exchangerate_currency_code",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.currency} {self.period.period}: {self.rate}"
