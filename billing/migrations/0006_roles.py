from django.db import migrations


def create_roles(apps, schema_editor):
    from billing.roles import roles_sync

    roles_sync(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("billing", "0005_alter_billingperiod_options_alter_charge_options"),
        ("ingest", "0002_alter_import_options"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
