from django.db import migrations


def sync(apps, schema_editor):
    from billing.roles import roles_sync

    roles_sync(apps)


class Migration(migrations.Migration):
    """Every role may see background jobs (django-q2) once their tables exist."""

    dependencies = [
        ("billing", "0006_roles"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
