from django.db import migrations


def seed(apps, schema_editor):
    from billing.seed import defaults_seed

    defaults_seed(apps)


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
