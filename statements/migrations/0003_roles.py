from django.db import migrations


def sync(apps, schema_editor):
    from billing.roles import roles_sync

    roles_sync(apps)


class Migration(migrations.Migration):
    """Everyone sees statements and emails; reviewers resend; billing admins generate and send."""

    dependencies = [
        ("statements", "0002_locks_below_the_orm"),
        ("billing", "0008_institution_email_subject"),
    ]

    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
