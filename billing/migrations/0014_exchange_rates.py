"""Exchange rates per foreign currency and billing month (issue: real cloud
exports billed right, currencies).

A rate of a finalized period is locked below the ORM like the period's
charges: triggers refuse INSERT, UPDATE and DELETE of a rate whose period is
finalized, whatever the code path. The roles get to see (everyone) and
record or change (billing admins) rates.
"""

import django.core.validators
import django.db.models.deletion
import django.db.models.functions.text
import django.db.models.lookups
import django.utils.timezone
from django.db import migrations, models

from billing.triggers import trigger_operation

_MESSAGE = "exchange rates of a finalized period cannot be changed"

SQLITE = [
    f"""
    CREATE TRIGGER exchangerate_finalized_insert BEFORE INSERT ON billing_exchangerate
    WHEN (SELECT status FROM billing_billingperiod WHERE id = NEW.period_id) = 'finalized'
    BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END
    """,
    f"""
    CREATE TRIGGER exchangerate_finalized_update BEFORE UPDATE ON billing_exchangerate
    WHEN (SELECT status FROM billing_billingperiod WHERE id = OLD.period_id) = 'finalized'
      OR (SELECT status FROM billing_billingperiod WHERE id = NEW.period_id) = 'finalized'
    BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END
    """,
    f"""
    CREATE TRIGGER exchangerate_finalized_delete BEFORE DELETE ON billing_exchangerate
    WHEN (SELECT status FROM billing_billingperiod WHERE id = OLD.period_id) = 'finalized'
    BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END
    """,
]

SQLITE_REVERSE = [
    f"DROP TRIGGER IF EXISTS exchangerate_finalized_{op}" for op in ("insert", "update", "delete")
]

POSTGRESQL = [
    f"""
    CREATE FUNCTION ocb_exchangerate_finalized() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF (TG_OP IN ('UPDATE', 'DELETE') AND EXISTS (
            SELECT 1 FROM billing_billingperiod WHERE id = OLD.period_id AND status = 'finalized'))
         OR (TG_OP IN ('INSERT', 'UPDATE') AND EXISTS (
            SELECT 1 FROM billing_billingperiod WHERE id = NEW.period_id AND status = 'finalized'))
      THEN
        RAISE EXCEPTION '{_MESSAGE}';
      END IF;
      IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
      RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER exchangerate_finalized BEFORE INSERT OR UPDATE OR DELETE
    ON billing_exchangerate FOR EACH ROW EXECUTE FUNCTION ocb_exchangerate_finalized()
    """,
]

POSTGRESQL_REVERSE = [
    "DROP TRIGGER IF EXISTS exchangerate_finalized ON billing_exchangerate",
    "DROP FUNCTION IF EXISTS ocb_exchangerate_finalized()",
]


def sync(apps, schema_editor):
    from billing.roles import roles_sync

    roles_sync(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0013_source_provider_names"),
    ]

    operations = [
        migrations.CreateModel(
            name="ExchangeRate",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "currency",
                    models.CharField(
                        help_text="The foreign BillingCurrency (ISO 4217, upper case).",
                        max_length=3,
                        validators=[
                            django.core.validators.RegexValidator(
                                "^[A-Z]{3}$", "An ISO 4217 code such as EUR."
                            )
                        ],
                    ),
                ),
                (
                    "rate",
                    models.CharField(
                        help_text="Home-currency units per one unit of the currency, exact "
                        "decimal text (e.g. 1.0850 for EUR when the home currency is USD).",
                        max_length=40,
                    ),
                ),
                (
                    "note",
                    models.CharField(
                        blank=True,
                        help_text="Where the rate comes from, e.g. 'ECB reference rate "
                        "2024-10-31'.",
                        max_length=300,
                    ),
                ),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("created_by", models.CharField(max_length=150)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("updated_by", models.CharField(max_length=150)),
                (
                    "period",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="exchange_rates",
                        to="billing.billingperiod",
                    ),
                ),
            ],
            options={
                "ordering": ["-period__period", "currency"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("period", "currency"), name="exchangerate_one_per_currency_month"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            django.db.models.lookups.Exact(
                                django.db.models.functions.text.Length("currency"), 3
                            ),
                            ("currency", django.db.models.functions.text.Upper("currency")),
                        ),
                        name="exchangerate_currency_code",
                    ),
                ],
            },
        ),
        trigger_operation(
            {"sqlite": SQLITE, "postgresql": POSTGRESQL},
            {"sqlite": SQLITE_REVERSE, "postgresql": POSTGRESQL_REVERSE},
        ),
        migrations.RunPython(sync, migrations.RunPython.noop),
    ]
