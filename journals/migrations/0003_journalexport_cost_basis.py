"""JournalExport.cost_basis: the cost basis of the exported charges.

Added with ALTER TABLE ADD COLUMN and a constant default, never a SQLite table
rebuild (which would drop the finalized-period triggers of 0002).
"""

from django.db import migrations, models

_ADD = (
    "ALTER TABLE journals_journalexport ADD COLUMN cost_basis varchar(300) "
    "NOT NULL DEFAULT ''"
)
_DROP = "ALTER TABLE journals_journalexport DROP COLUMN cost_basis"


class Migration(migrations.Migration):
    dependencies = [
        ("journals", "0002_layouts_locks_roles"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(_ADD, _DROP)],
            state_operations=[
                migrations.AddField(
                    model_name="journalexport",
                    name="cost_basis",
                    field=models.CharField(
                        blank=True,
                        db_default="",
                        default="",
                        help_text="The cost basis of the exported charges: 'billed cost', "
                        "'amortised cost (EffectiveCost)', or per source when sources differ.",
                        max_length=300,
                    ),
                ),
            ],
        ),
    ]
