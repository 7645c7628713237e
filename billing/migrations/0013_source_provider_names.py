"""The provider names the default cloud sources claim when a multi-provider
FOCUS file is routed by provider (`ingest --route-by-provider`). Only empty
values are filled: a name an admin set is kept."""

from django.db import migrations

DEFAULT_PROVIDER_NAMES = {
    "aws": "AWS, Amazon Web Services",
    "azure": "Microsoft, Microsoft Azure, Azure",
    "gcp": "Google Cloud, GCP, Google",
}


def fill(apps, schema_editor):
    source_model = apps.get_model("billing", "Source")
    for slug, names in DEFAULT_PROVIDER_NAMES.items():
        source_model.objects.filter(slug=slug, provider_names="").update(provider_names=names)


class Migration(migrations.Migration):
    dependencies = [("billing", "0012_real_exports")]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
