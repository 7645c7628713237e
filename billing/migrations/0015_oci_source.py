"""The default `oci` source (Oracle Cloud Infrastructure), and the
unmapped_account flag relabelled "Unmapped account" now that cloud accounts
are mapped too (labels are not storage format; the bit is unchanged).

The source is added only when no source `oci` exists. A site seeded from
fixtures/defaults.json before source routing existed got `oci` without its
provider names; those are filled in only while they are still blank and the
source still has the default name, so nothing an admin edited changes.
"""

from django.db import migrations, models

OCI = {
    "slug": "oci",
    "name": "Oracle Cloud Infrastructure",
    "filename_pattern": r"oci|oracle",
    "provider_names": "Oracle, OCI, Oracle Cloud Infrastructure",
}


def add_oci(apps, schema_editor):
    source_model = apps.get_model("billing", "Source")
    existing = source_model.objects.filter(slug=OCI["slug"]).first()
    if existing is None:
        source_model.objects.create(**OCI)
    elif not existing.provider_names and existing.name == OCI["name"]:
        existing.provider_names = OCI["provider_names"]
        existing.save(update_fields=["provider_names"])


class Migration(migrations.Migration):
    dependencies = [("billing", "0014_exchange_rates")]

    operations = [
        migrations.AlterField(
            model_name="flagrule",
            name="reason",
            field=models.CharField(
                choices=[
                    ("missing_pi", "Missing PI"),
                    ("invalid_pi_email", "Invalid PI email"),
                    ("missing_project", "Missing project"),
                    ("missing_fund_org", "Missing fund/org"),
                    ("invalid_fund_org", "Invalid fund/org"),
                    ("pattern_match", "Matches a review pattern"),
                    ("period_mismatch", "Outside the expected period"),
                    ("currency_mismatch", "Other currency"),
                    ("large_charge", "Large charge"),
                    ("project_pi_mismatch", "Project belongs to another PI"),
                    ("invalid_tags", "Tags are not a JSON object"),
                    ("unmapped_account", "Unmapped account"),
                ],
                max_length=30,
                unique=True,
            ),
        ),
        migrations.RunPython(add_oci, migrations.RunPython.noop),
    ]
