"""Account mappings for cloud accounts: kinds for a FOCUS SubAccountId,
BillingAccountId and ResourceId, each naming its source, with effective
dates. Slurm and storage mappings keep their names unique (ignoring case)
and stay undated. Only the small mapping table changes."""

import django.db.models.deletion
import django.db.models.functions.text
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0012_real_exports'),
        ('ingest', '0005_import_delivery_conformance'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='accountmapping',
            options={'ordering': ['kind', 'source', 'name', 'effective_from']},
        ),
        migrations.RemoveConstraint(
            model_name='accountmapping',
            name='accountmapping_unique_name',
        ),
        migrations.RemoveConstraint(
            model_name='accountmapping',
            name='accountmapping_kind_valid',
        ),
        migrations.AddField(
            model_name='accountmapping',
            name='effective_from',
            field=models.DateField(blank=True, help_text="Cloud kinds: first day the mapping applies (by the charge's ChargePeriodStart date); blank: from the start.", null=True),
        ),
        migrations.AddField(
            model_name='accountmapping',
            name='effective_to',
            field=models.DateField(blank=True, help_text='Cloud kinds: last day the mapping applies; blank: until further notice.', null=True),
        ),
        migrations.AddField(
            model_name='accountmapping',
            name='source',
            field=models.ForeignKey(blank=True, help_text='Cloud kinds: the source whose charges this maps. Blank for Slurm accounts and storage quotas.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='account_mappings', to='billing.source'),
        ),
        migrations.AlterField(
            model_name='accountmapping',
            name='kind',
            field=models.CharField(choices=[('slurm', 'Slurm account'), ('storage', 'Storage quota'), ('sub_account', 'Cloud sub-account (SubAccountId)'), ('billing_account', 'Cloud billing account (BillingAccountId)'), ('resource', 'Cloud resource (ResourceId)')], max_length=20),
        ),
        migrations.AlterField(
            model_name='accountmapping',
            name='name',
            field=models.CharField(help_text='The Slurm account, storage quota, SubAccountId or BillingAccountId (any letter case), or the ResourceId (exact).', max_length=1000),
        ),
        migrations.AddConstraint(
            model_name='accountmapping',
            constraint=models.UniqueConstraint(models.F('kind'), django.db.models.functions.text.Lower('name'), condition=models.Q(('kind__in', ['slurm', 'storage'])), name='accountmapping_unique_name', violation_error_message='This account or quota name is already mapped (names match ignoring case).'),
        ),
        migrations.AddConstraint(
            model_name='accountmapping',
            constraint=models.UniqueConstraint(condition=models.Q(('kind__in', ['sub_account', 'billing_account', 'resource'])), fields=('source', 'kind', 'name', 'effective_from'), name='accountmapping_unique_cloud_start', violation_error_message='This account is already mapped from that date.'),
        ),
        migrations.AddConstraint(
            model_name='accountmapping',
            constraint=models.CheckConstraint(condition=models.Q(('kind__in', ['slurm', 'storage', 'sub_account', 'billing_account', 'resource'])), name='accountmapping_kind_valid'),
        ),
        migrations.AddConstraint(
            model_name='accountmapping',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('effective_from__isnull', True), ('effective_to__isnull', True), ('kind__in', ['slurm', 'storage']), ('source__isnull', True)), models.Q(('kind__in', ['sub_account', 'billing_account', 'resource']), ('source__isnull', False)), _connector='OR'), name='accountmapping_source_for_cloud_only', violation_error_message='Cloud mappings name their source; Slurm and storage mappings have no source and no dates.'),
        ),
        migrations.AddConstraint(
            model_name='accountmapping',
            constraint=models.CheckConstraint(condition=models.Q(('effective_from__isnull', True), ('effective_to__isnull', True), ('effective_to__gte', models.F('effective_from')), _connector='OR'), name='accountmapping_dates_in_order', violation_error_message='The mapping ends before it starts.'),
        ),
    ]
