"""Seed the example layouts (plain GL, Banner, Workday, PeopleSoft), make a
finalized period's journal exports permanent (database triggers), and give
the roles their journal permissions."""

from django.db import migrations

from billing.triggers import trigger_operation

LAYOUTS = [
    {
        "slug": "plain-gl",
        "name": "Plain GL (CSV)",
        "description": "One row per GL line with debit and credit columns.",
        "columns": "\n".join(
            [
                "Period | {{ period }}",
                "Line | {{ line }}",
                "Fund/org | {{ entry.fund_org }}",
                "Account | {{ entry.account }}",
                "Debit | {{ entry.debit }} | number",
                "Credit | {{ entry.credit }} | number",
                "Description | {{ entry.description }}",
                "Source | {{ entry.source }}",
            ]
        ),
    },
    {
        "slug": "banner",
        "name": "Banner journal upload",
        "description": "Ellucian Banner style (FGAJVCD/GURFEED): fund and organisation "
        "codes, account, amount with a D/C indicator, 35-character description.",
        "columns": "\n".join(
            [
                "Doc Code | J{{ period|cut:'-' }}",
                "Seq Num | {{ line }}",
                "Rule Class | JE16",
                "Trans Date | {{ period }}-01",
                "Fund | {{ entry.fund }}",
                "Orgn | {{ entry.orgn }}",
                "Acct | {{ entry.account }}",
                "Amount | {{ entry.amount }} | number",
                "DR/CR | {% if entry.is_debit %}D{% else %}C{% endif %}",
                "Description | {{ entry.description|slice:':35' }}",
            ]
        ),
    },
    {
        "slug": "workday",
        "name": "Workday accounting journal",
        "description": "Workday Accounting Journal import style: ledger account, worktags "
        "(fund, cost center), separate debit and credit amounts, memo.",
        "columns": "\n".join(
            [
                "Journal Key | OCB-{{ period }}",
                "Line Order | {{ line }}",
                "Ledger Account | {{ entry.account }}",
                "Debit Amount | {{ entry.debit }} | number",
                "Credit Amount | {{ entry.credit }} | number",
                "Currency | {{ currency }}",
                "Fund | {{ entry.fund }}",
                "Cost Center | {{ entry.orgn }}",
                "Memo | {{ entry.description }}",
                "Project | {{ entry.project_id }}",
            ]
        ),
    },
    {
        "slug": "peoplesoft",
        "name": "PeopleSoft GL journal",
        "description": "PeopleSoft journal entry upload style: business unit, journal id "
        "and date, account, department, fund, signed monetary amount.",
        "columns": "\n".join(
            [
                "BUSINESS_UNIT | UNIV1",
                "JOURNAL_ID | OCB{{ period|cut:'-' }}",
                "JOURNAL_DATE | {{ period }}-01",
                "JOURNAL_LINE | {{ line }}",
                "ACCOUNT | {{ entry.account }}",
                "DEPTID | {{ entry.orgn }}",
                "FUND_CODE | {{ entry.fund }}",
                "MONETARY_AMOUNT | {{ entry.signed }} | number",
                "CURRENCY_CD | {{ currency }}",
                "LINE_DESCR | {{ entry.description|slice:':30' }}",
            ]
        ),
    },
]


def seed(apps, schema_editor):
    template_model = apps.get_model("journals", "JournalTemplate")
    for layout in LAYOUTS:
        template_model.objects.get_or_create(slug=layout["slug"], defaults=layout)
    apps.get_model("journals", "JournalSettings").objects.get_or_create(pk=1)


def sync(apps, schema_editor):
    from billing.roles import roles_sync

    roles_sync(apps)


_FINALIZED = "(SELECT status FROM billing_billingperiod WHERE id = OLD.period_id) = 'finalized'"
_RAISE = "BEGIN SELECT RAISE(ABORT, 'journal exports of a finalized period cannot be changed'); END"
SQLITE = [
    f"CREATE TRIGGER journalexport_finalized_update BEFORE UPDATE ON journals_journalexport "
    f"WHEN {_FINALIZED} {_RAISE}",
    f"CREATE TRIGGER journalexport_finalized_delete BEFORE DELETE ON journals_journalexport "
    f"WHEN {_FINALIZED} {_RAISE}",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS journalexport_finalized_update",
    "DROP TRIGGER IF EXISTS journalexport_finalized_delete",
]
POSTGRESQL = [
    """
    CREATE FUNCTION ocb_journalexport_finalized() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF EXISTS (SELECT 1 FROM billing_billingperiod WHERE id = OLD.period_id
                 AND status = 'finalized') THEN
        RAISE EXCEPTION 'journal exports of a finalized period cannot be changed';
      END IF;
      IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
      RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER journalexport_finalized BEFORE UPDATE OR DELETE ON journals_journalexport
    FOR EACH ROW EXECUTE FUNCTION ocb_journalexport_finalized()
    """,
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER IF EXISTS journalexport_finalized ON journals_journalexport",
    "DROP FUNCTION IF EXISTS ocb_journalexport_finalized()",
]


class Migration(migrations.Migration):
    dependencies = [
        ("journals", "0001_journals"),
        ("statements", "0003_roles"),
    ]

    operations = [
        migrations.RunPython(seed, migrations.RunPython.noop),
        trigger_operation(
            {"sqlite": SQLITE, "postgresql": POSTGRESQL},
            {"sqlite": SQLITE_REVERSE, "postgresql": POSTGRESQL_REVERSE},
        ),
        migrations.RunPython(sync, migrations.RunPython.noop),
    ]
