"""Journal settings, custom layouts (templates) and the record of every export."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from billing.fields import MoneyField
from billing.models import BillingPeriod, check_placeholders, validate_regex
from billing.patterns import compile_user_pattern
from journals.builders import DESCRIPTION_FIELDS


def validate_fund_org_pattern(value: str) -> None:
    validate_regex(value)
    if not compile_user_pattern(value).groupindex:
        raise ValidationError(
            "Name the parts with groups, e.g. ^(?P<fund>[A-Z0-9]+)-(?P<orgn>[A-Z0-9-]+)$."
        )


def validate_account_pattern(value: str) -> None:
    validate_regex(value)


def validate_description_template(value: str) -> None:
    check_placeholders(value, DESCRIPTION_FIELDS, "description template")


class JournalSettings(models.Model):
    """How charges become general-ledger lines (one row, pk 1)."""

    fund_org_pattern = models.CharField(
        max_length=300,
        default=r"^(?P<fund>[A-Z0-9]+)-(?P<orgn>[A-Z0-9-]+)$",
        validators=[validate_fund_org_pattern],
        verbose_name="fund/org pattern",
        help_text="Regular expression with named groups that splits a fund/org into its "
        "parts (fund, orgn, ...); every fund/org in a journal must match it.",
    )
    default_account = models.CharField(
        max_length=40,
        blank=True,
        help_text="GL account used when neither the charge, its project nor its source names one.",
    )
    account_pattern = models.CharField(
        max_length=200,
        blank=True,
        validators=[validate_account_pattern],
        help_text="If set, every account code must match it (e.g. ^\\d{6}$).",
    )
    description_template = models.CharField(
        max_length=200,
        default="{source} {period} {project_id}",
        validators=[validate_description_template],
        help_text="Line description; may use {source} {period} {fund_org} {pi_email} {project_id}.",
    )
    description_max_length = models.PositiveIntegerField(
        default=35, help_text="Descriptions are cut to this length (Banner: 35). 0: no limit."
    )

    class Meta:
        verbose_name = "journal settings"
        verbose_name_plural = "journal settings"
        constraints = [
            models.CheckConstraint(condition=models.Q(pk=1), name="journalsettings_singleton")
        ]

    def __str__(self) -> str:
        return "Journal settings"

    def clean(self) -> None:
        """One fund/org rule: refused if the review's fund/org patterns would
        accept fund/orgs in use that this pattern cannot split."""
        from billing.blockers import disagreement_text, fund_org_disagreements, known_fund_orgs

        saved = JournalSettings.objects.filter(pk=self.pk).first()
        known = known_fund_orgs()
        before = (
            set(fund_org_disagreements(split=saved.fund_org_pattern, known=known))
            if saved
            else set()
        )
        after = fund_org_disagreements(split=self.fund_org_pattern, known=known)
        new = [f for f in after if f not in before]
        if new:
            raise ValidationError(
                {"fund_org_pattern": disagreement_text(new, saving="journal fund/org pattern")}
            )

    @classmethod
    def load(cls) -> JournalSettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj


class JournalTemplate(models.Model):
    """An institution's upload layout: columns, each a Django template.

    Each line of `columns` is ``Header | {{ template }}`` with an optional
    third part ``| number`` for an amount column (a number in XLSX). A
    template sees ``entry`` (one journal line), ``period``, ``line`` (its
    number) and ``currency`` — never settings or secrets.
    """

    class Base(models.TextChoices):
        GL = "gl", "GL (double entry)"
        SUMMARY = "summary", "Summary (PI x project x fund/org)"
        DETAIL = "detail", "Detail (one row per charge)"

    slug = models.SlugField(max_length=50, unique=True, help_text="Used as --format SLUG.")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    base = models.CharField(
        max_length=10,
        choices=Base.choices,
        default=Base.GL,
        help_text="Which journal lines the template lays out.",
    )
    columns = models.TextField(
        help_text="One column per line: Header | {{ entry.fund }} [| number]."
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from journals.layouts import parse_columns

        try:
            parse_columns(self.columns)
        except ValueError as exc:
            raise ValidationError({"columns": str(exc)}) from None
        if self.slug in ("detail", "summary", "gl"):
            raise ValidationError({"slug": "That name is taken by a built-in format."})


class JournalExport(models.Model):
    """One journal file as it was handed over; kept and downloadable again.

    Exports of a finalized period cannot be changed or deleted (database
    triggers).
    """

    period = models.ForeignKey(BillingPeriod, on_delete=models.PROTECT, related_name="journals")
    format = models.CharField(max_length=50, help_text="detail, summary, gl or a template slug.")
    template = models.ForeignKey(
        JournalTemplate, on_delete=models.PROTECT, null=True, blank=True, related_name="exports"
    )
    xlsx = models.BooleanField(default=False, verbose_name="XLSX")
    file = models.FileField(upload_to="journals/", max_length=300)
    sha256 = models.CharField(max_length=64, verbose_name="SHA-256")
    debit_total = MoneyField()
    credit_total = MoneyField()
    exact_total = MoneyField(help_text="Unrounded Σ billed of the included charges.")
    lines = models.PositiveIntegerField()
    charge_count = models.PositiveIntegerField()
    include_pending = models.BooleanField(
        default=False, help_text="Charges pending review were included on request."
    )
    data_hash = models.CharField(
        max_length=64, help_text="SHA-256 of the period's included charges when exported."
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150)
    cost_basis = models.CharField(
        max_length=300,
        blank=True,
        db_default="",
        default="",
        help_text="The cost basis of the exported charges: 'billed cost', 'amortised cost "
        "(EffectiveCost)', or per source when sources differ.",
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "journal export"
        permissions = [("export_journal", "Can export journals")]

    def __str__(self) -> str:
        kind = "XLSX" if self.xlsx else "CSV"
        return f"{self.period.period} {self.format} {kind} ({self.created_at:%Y-%m-%d %H:%M})"

    def as_dict(self) -> dict[str, Any]:
        from openchargeback.money import CENT

        return {
            "id": self.pk,
            "period": self.period.period,
            "format": self.format,
            "xlsx": self.xlsx,
            "file": self.file.path if self.file else "",
            "sha256": self.sha256,
            "debit_total": f"{self.debit_total.quantize(CENT):f}",
            "credit_total": f"{self.credit_total.quantize(CENT):f}",
            "lines": self.lines,
            "charges": self.charge_count,
            "include_pending": self.include_pending,
            "cost_basis": self.cost_basis,
        }
