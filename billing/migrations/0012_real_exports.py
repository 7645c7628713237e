"""Columns for real cloud exports (issue: real cloud exports billed right).

Charge: FOCUS invoice, charge class and frequency, billing account, host
provider and publisher, commitment discount, PricingCurrency (never money),
split cost allocation, the cost basis and currency conversion provenance.
Source: cost basis, commitment handling, provider routing.

The charge table can hold millions of rows and carries the finalized-period
triggers. Django would rebuild it on SQLite for every new NOT NULL column
(and drop its triggers), so the charge columns are added with ALTER TABLE
ADD COLUMN and a constant default on both databases; the model state is
told the same through SeparateDatabaseAndState. resource_name and
consumed_quantity become text: SQLite never enforced their lengths, and on
PostgreSQL varchar -> text needs no rewrite.
"""

from django.db import migrations, models
import billing.fields
import django.db.models.deletion

# column -> (SQLite type, PostgreSQL type, DEFAULT clause or None for NULL)
_TEXT = "''"
CHARGE_COLUMNS = [
    ("invoice_id", "varchar(200)", "varchar(200)", _TEXT),
    ("charge_class", "varchar(20)", "varchar(20)", _TEXT),
    ("charge_frequency", "varchar(20)", "varchar(20)", _TEXT),
    ("billing_account_id", "varchar(200)", "varchar(200)", _TEXT),
    ("billing_account_name", "varchar(200)", "varchar(200)", _TEXT),
    ("host_provider_name", "varchar(200)", "varchar(200)", _TEXT),
    ("publisher_name", "varchar(200)", "varchar(200)", _TEXT),
    ("commitment_discount_id", "text", "text", _TEXT),
    ("commitment_discount_status", "varchar(20)", "varchar(20)", _TEXT),
    ("commitment_discount_category", "varchar(20)", "varchar(20)", _TEXT),
    ("pricing_currency", "varchar(40)", "varchar(40)", _TEXT),
    ("pricing_currency_list_unit_price", "text", "text", _TEXT),
    ("pricing_currency_contracted_unit_price", "text", "text", _TEXT),
    ("pricing_currency_effective_cost", "text", "text", _TEXT),
    ("allocated_resource_id", "text", "text", _TEXT),
    ("allocated_resource_name", "text", "text", _TEXT),
    ("allocated_method_id", "varchar(200)", "varchar(200)", _TEXT),
    ("cost_basis", "varchar(10)", "varchar(10)", "'billed'"),
    ("exchange_rate", "varchar(40)", "varchar(40)", _TEXT),
    ("invoiced_cost", "bigint", "bigint", None),
    ("original_list_cost", "bigint", "bigint", None),
    ("original_billed_cost", "bigint", "bigint", None),
]


def _add(vendor):
    index = 0 if vendor == "sqlite" else 1
    statements = []
    for name, *types, default in CHARGE_COLUMNS:
        tail = "NULL" if default is None else f"DEFAULT {default} NOT NULL"
        statements.append(f'ALTER TABLE billing_charge ADD COLUMN "{name}" {types[index]} {tail}')
    if vendor == "postgresql":
        statements += [
            "ALTER TABLE billing_charge ALTER COLUMN resource_name TYPE text",
            "ALTER TABLE billing_charge ALTER COLUMN consumed_quantity TYPE text",
        ]
    return statements


def _drop(vendor):
    statements = [
        f'ALTER TABLE billing_charge DROP COLUMN "{name}"' for name, *_ in CHARGE_COLUMNS
    ]
    if vendor == "postgresql":
        statements += [
            "ALTER TABLE billing_charge ALTER COLUMN resource_name TYPE varchar(300)",
            "ALTER TABLE billing_charge ALTER COLUMN consumed_quantity TYPE varchar(50)",
        ]
    return statements


def add_columns(apps, schema_editor):
    for sql in _add(schema_editor.connection.vendor):
        schema_editor.execute(sql)


def drop_columns(apps, schema_editor):
    for sql in _drop(schema_editor.connection.vendor):
        schema_editor.execute(sql)


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0011_unmapped_account_flag'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(add_columns, drop_columns)],
            state_operations=[
                migrations.AddField(
                    model_name='charge',
                    name='allocated_method_id',
                    field=models.CharField(blank=True, db_default='', default='', max_length=200),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='allocated_resource_id',
                    field=models.TextField(blank=True, db_default='', default=''),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='allocated_resource_name',
                    field=models.TextField(blank=True, db_default='', default=''),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='billing_account_id',
                    field=models.CharField(blank=True, db_default='', default='', max_length=200),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='billing_account_name',
                    field=models.CharField(blank=True, db_default='', default='', max_length=200),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='charge_class',
                    field=models.CharField(blank=True, db_default='', default='', help_text="FOCUS ChargeClass: 'Correction' for a row correcting an earlier period.", max_length=20),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='charge_frequency',
                    field=models.CharField(blank=True, db_default='', default='', max_length=20),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='commitment_discount_category',
                    field=models.CharField(blank=True, db_default='', default='', max_length=20),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='commitment_discount_id',
                    field=models.TextField(blank=True, db_default='', default=''),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='commitment_discount_status',
                    field=models.CharField(blank=True, db_default='', default='', help_text='FOCUS CommitmentDiscountStatus: Used or Unused.', max_length=20),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='cost_basis',
                    field=models.CharField(blank=True, db_default='billed', default='billed', help_text="The source's cost basis when imported: billed or amortised.", max_length=10),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='exchange_rate',
                    field=models.CharField(blank=True, db_default='', default='', help_text='Home-currency units per BillingCurrency unit used to convert this charge (exact decimal text); empty for home-currency charges.', max_length=40),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='host_provider_name',
                    field=models.CharField(blank=True, db_default='', default='', max_length=200),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='invoice_id',
                    field=models.CharField(blank=True, db_default='', default='', max_length=200),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='invoiced_cost',
                    field=billing.fields.MoneyField(blank=True, help_text='BilledCost as the file says, in BillingCurrency, when billed_cost is another amount (amortised basis, or converted currency); empty when equal.', null=True),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='original_billed_cost',
                    field=billing.fields.MoneyField(blank=True, help_text='The billed amount in BillingCurrency before conversion to the home currency.', null=True),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='original_list_cost',
                    field=billing.fields.MoneyField(blank=True, help_text='ListCost in BillingCurrency before conversion to the home currency.', null=True),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='pricing_currency',
                    field=models.CharField(blank=True, db_default='', default='', help_text='FOCUS PricingCurrency (may be a virtual currency such as credits); never added to money.', max_length=40),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='pricing_currency_contracted_unit_price',
                    field=models.TextField(blank=True, db_default='', default='', help_text='Exact decimal text, PricingCurrency.'),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='pricing_currency_effective_cost',
                    field=models.TextField(blank=True, db_default='', default='', help_text='Exact decimal text, PricingCurrency.'),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='pricing_currency_list_unit_price',
                    field=models.TextField(blank=True, db_default='', default='', help_text='Exact decimal text, PricingCurrency.'),
                ),
                migrations.AddField(
                    model_name='charge',
                    name='publisher_name',
                    field=models.CharField(blank=True, db_default='', default='', max_length=200),
                ),
                migrations.AlterField(
                    model_name='charge',
                    name='consumed_quantity',
                    field=models.TextField(blank=True, help_text='As written in the file (exact decimal text).'),
                ),
                migrations.AlterField(
                    model_name='charge',
                    name='fingerprint',
                    field=models.CharField(help_text="Hash of the row's columns that describe the line item (docs/decisions/0002-dedup.md).", max_length=32),
                ),
                migrations.AlterField(
                    model_name='charge',
                    name='resource_name',
                    field=models.TextField(blank=True),
                ),
            ],
        ),
        migrations.AddField(
            model_name='source',
            name='commitment_fund_org',
            field=models.CharField(blank=True, help_text="Fund/org charged for commitment purchases and unused commitment (blank: the commitment project's default fund/org).", max_length=100, verbose_name='commitment fund/org'),
        ),
        migrations.AddField(
            model_name='source',
            name='commitment_handling',
            field=models.CharField(choices=[('central', 'Bill to the central commitment project and fund/org'), ('exclude', 'Exclude from statements and journals')], default='central', help_text="Under the amortised basis: where commitment purchases and unused commitment go instead of the purchaser's tags.", max_length=10),
        ),
        migrations.AddField(
            model_name='source',
            name='commitment_project',
            field=models.ForeignKey(blank=True, help_text='The central project (its PI gets the statement) billed for commitment purchases and unused commitment under the amortised basis.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='billing.project'),
        ),
        migrations.AddField(
            model_name='source',
            name='cost_basis',
            field=models.CharField(choices=[('billed', 'Billed cost (what the provider invoices)'), ('amortised', 'Amortised cost (EffectiveCost: commitments spread over usage)')], default='billed', help_text='Which FOCUS cost is billed to PIs: BilledCost, or EffectiveCost (commitment purchases amortised over the usage they cover).', max_length=10),
        ),
        migrations.AddField(
            model_name='source',
            name='provider_names',
            field=models.CharField(blank=True, help_text='Comma-separated ProviderName values (any letter case) whose rows this source takes from a multi-provider FOCUS file.', max_length=300),
        ),
    ]
