"""A finalized period's statements are permanent: database triggers refuse
INSERT, UPDATE or DELETE of its statements and of the charges they list."""

from django.db import migrations

from billing.triggers import trigger_operation

_FINALIZED = "(SELECT status FROM billing_billingperiod WHERE id = {ref}.period_id) = 'finalized'"
_LINK_FINALIZED = (
    "(SELECT p.status FROM statements_statement s JOIN billing_billingperiod p "
    "ON p.id = s.period_id WHERE s.id = {ref}.statement_id) = 'finalized'"
)
_RAISE = "BEGIN SELECT RAISE(ABORT, 'statements of a finalized period cannot be changed'); END"

SQLITE = [
    f"CREATE TRIGGER statement_finalized_insert BEFORE INSERT ON statements_statement "
    f"WHEN {_FINALIZED.format(ref='NEW')} {_RAISE}",
    f"CREATE TRIGGER statement_finalized_update BEFORE UPDATE ON statements_statement "
    f"WHEN {_FINALIZED.format(ref='OLD')} OR {_FINALIZED.format(ref='NEW')} {_RAISE}",
    f"CREATE TRIGGER statement_finalized_delete BEFORE DELETE ON statements_statement "
    f"WHEN {_FINALIZED.format(ref='OLD')} {_RAISE}",
    f"CREATE TRIGGER statementcharge_finalized_insert BEFORE INSERT ON statements_statementcharge "
    f"WHEN {_LINK_FINALIZED.format(ref='NEW')} {_RAISE}",
    f"CREATE TRIGGER statementcharge_finalized_update BEFORE UPDATE ON statements_statementcharge "
    f"WHEN {_LINK_FINALIZED.format(ref='OLD')} OR {_LINK_FINALIZED.format(ref='NEW')} {_RAISE}",
    f"CREATE TRIGGER statementcharge_finalized_delete BEFORE DELETE ON statements_statementcharge "
    f"WHEN {_LINK_FINALIZED.format(ref='OLD')} {_RAISE}",
]
SQLITE_REVERSE = [
    f"DROP TRIGGER IF EXISTS {table}_finalized_{op}"
    for table in ("statement", "statementcharge")
    for op in ("insert", "update", "delete")
]

POSTGRESQL = [
    """
    CREATE FUNCTION ocb_statement_finalized() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF (TG_OP IN ('UPDATE', 'DELETE') AND EXISTS (
            SELECT 1 FROM billing_billingperiod WHERE id = OLD.period_id AND status = 'finalized'))
         OR (TG_OP IN ('INSERT', 'UPDATE') AND EXISTS (
            SELECT 1 FROM billing_billingperiod WHERE id = NEW.period_id AND status = 'finalized'))
      THEN
        RAISE EXCEPTION 'statements of a finalized period cannot be changed';
      END IF;
      IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
      RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER statement_finalized BEFORE INSERT OR UPDATE OR DELETE ON statements_statement
    FOR EACH ROW EXECUTE FUNCTION ocb_statement_finalized()
    """,
    """
    CREATE FUNCTION ocb_statementcharge_finalized() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF (TG_OP IN ('UPDATE', 'DELETE') AND EXISTS (
            SELECT 1 FROM statements_statement s JOIN billing_billingperiod p
            ON p.id = s.period_id WHERE s.id = OLD.statement_id AND p.status = 'finalized'))
         OR (TG_OP IN ('INSERT', 'UPDATE') AND EXISTS (
            SELECT 1 FROM statements_statement s JOIN billing_billingperiod p
            ON p.id = s.period_id WHERE s.id = NEW.statement_id AND p.status = 'finalized'))
      THEN
        RAISE EXCEPTION 'statements of a finalized period cannot be changed';
      END IF;
      IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
      RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER statementcharge_finalized
    BEFORE INSERT OR UPDATE OR DELETE ON statements_statementcharge
    FOR EACH ROW EXECUTE FUNCTION ocb_statementcharge_finalized()
    """,
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER IF EXISTS statementcharge_finalized ON statements_statementcharge",
    "DROP FUNCTION IF EXISTS ocb_statementcharge_finalized()",
    "DROP TRIGGER IF EXISTS statement_finalized ON statements_statement",
    "DROP FUNCTION IF EXISTS ocb_statement_finalized()",
]


class Migration(migrations.Migration):
    dependencies = [("statements", "0001_statements"), ("billing", "0007_roles_see_jobs")]

    operations = [
        trigger_operation(
            {"sqlite": SQLITE, "postgresql": POSTGRESQL},
            {"sqlite": SQLITE_REVERSE, "postgresql": POSTGRESQL_REVERSE},
        )
    ]
