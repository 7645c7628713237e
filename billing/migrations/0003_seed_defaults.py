from django.db import migrations


def seed(apps, schema_editor):
    from billing.seed import seed_defaults

    seed_defaults(apps)


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
