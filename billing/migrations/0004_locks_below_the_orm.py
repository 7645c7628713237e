"""Finalized means immutable below the ORM; the audit trail is append-only.

Database triggers refuse, whatever the code path (ORM, bulk update, raw SQL):
- INSERT, UPDATE or DELETE of a charge whose period is finalized;
- reopening, renaming or deleting a finalized period;
- UPDATE or DELETE of an audit event.
"""

from django.db import migrations

from billing.triggers import CHARGE_INSERT_TRIGGER_SQL, trigger_operation

SQLITE = [
    CHARGE_INSERT_TRIGGER_SQL,
    """
    CREATE TRIGGER charge_finalized_update BEFORE UPDATE ON billing_charge
    WHEN (SELECT status FROM billing_billingperiod WHERE id = OLD.period_id) = 'finalized'
      OR (SELECT status FROM billing_billingperiod WHERE id = NEW.period_id) = 'finalized'
    BEGIN SELECT RAISE(ABORT, 'charges of a finalized period cannot be changed'); END
    """,
    """
    CREATE TRIGGER charge_finalized_delete BEFORE DELETE ON billing_charge
    WHEN (SELECT status FROM billing_billingperiod WHERE id = OLD.period_id) = 'finalized'
    BEGIN SELECT RAISE(ABORT, 'charges of a finalized period cannot be changed'); END
    """,
    """
    CREATE TRIGGER period_finalized_update BEFORE UPDATE ON billing_billingperiod
    WHEN OLD.status = 'finalized'
      AND (NEW.status != 'finalized' OR NEW.period != OLD.period)
    BEGIN SELECT RAISE(ABORT, 'a finalized period is permanent'); END
    """,
    """
    CREATE TRIGGER period_finalized_delete BEFORE DELETE ON billing_billingperiod
    WHEN OLD.status = 'finalized'
    BEGIN SELECT RAISE(ABORT, 'a finalized period is permanent'); END
    """,
    """
    CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON billing_auditevent
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END
    """,
    """
    CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON billing_auditevent
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END
    """,
]

SQLITE_REVERSE = [
    f"DROP TRIGGER IF EXISTS {name}"
    for name in (
        "charge_finalized_insert",
        "charge_finalized_update",
        "charge_finalized_delete",
        "period_finalized_update",
        "period_finalized_delete",
        "audit_append_only_update",
        "audit_append_only_delete",
    )
]

POSTGRESQL = [
    """
    CREATE FUNCTION ocb_charge_finalized() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF (TG_OP IN ('UPDATE', 'DELETE') AND EXISTS (
            SELECT 1 FROM billing_billingperiod WHERE id = OLD.period_id AND status = 'finalized'))
         OR (TG_OP IN ('INSERT', 'UPDATE') AND EXISTS (
            SELECT 1 FROM billing_billingperiod WHERE id = NEW.period_id AND status = 'finalized'))
      THEN
        RAISE EXCEPTION 'charges of a finalized period cannot be changed';
      END IF;
      IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
      RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER charge_finalized BEFORE INSERT OR UPDATE OR DELETE ON billing_charge
    FOR EACH ROW EXECUTE FUNCTION ocb_charge_finalized()
    """,
    """
    CREATE FUNCTION ocb_period_finalized() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF OLD.status = 'finalized' AND (
           TG_OP = 'DELETE' OR NEW.status <> 'finalized' OR NEW.period <> OLD.period) THEN
        RAISE EXCEPTION 'a finalized period is permanent';
      END IF;
      IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
      RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER period_finalized BEFORE UPDATE OR DELETE ON billing_billingperiod
    FOR EACH ROW EXECUTE FUNCTION ocb_period_finalized()
    """,
    """
    CREATE FUNCTION ocb_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'the audit trail is append-only';
    END $$
    """,
    """
    CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON billing_auditevent
    FOR EACH ROW EXECUTE FUNCTION ocb_audit_append_only()
    """,
]

POSTGRESQL_REVERSE = [
    "DROP TRIGGER IF EXISTS audit_append_only ON billing_auditevent",
    "DROP FUNCTION IF EXISTS ocb_audit_append_only()",
    "DROP TRIGGER IF EXISTS period_finalized ON billing_billingperiod",
    "DROP FUNCTION IF EXISTS ocb_period_finalized()",
    "DROP TRIGGER IF EXISTS charge_finalized ON billing_charge",
    "DROP FUNCTION IF EXISTS ocb_charge_finalized()",
]


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_seed_defaults")]

    operations = [
        trigger_operation(
            {"sqlite": SQLITE, "postgresql": POSTGRESQL},
            {"sqlite": SQLITE_REVERSE, "postgresql": POSTGRESQL_REVERSE},
        )
    ]
