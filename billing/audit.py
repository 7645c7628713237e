"""The audit trail's writers: who acts (``Actor``) and the AuditEvent rows of
a change. One home, so every app records changes the same way; call them
inside the transaction that makes the change."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from billing.models import AuditEvent, BillingPeriod
from openchargeback.logging import audit_log


@dataclass(frozen=True)
class Actor:
    """Who acts: a user name (``--user``, the web user, or ``system``) and how."""

    name: str
    channel: str = "cli"
    user_id: int | None = None

    @classmethod
    def for_user(cls, user: AbstractBaseUser, channel: str = "admin") -> Actor:
        return cls(name=user.get_username(), channel=channel, user_id=user.pk)

    @classmethod
    def from_cli(cls, name: str | None) -> Actor:
        """``--user`` if given, else the operating-system user; linked to a
        Django user of the same name when one exists."""
        username = name or getpass.getuser()
        user = get_user_model().objects.filter(username=username).only("pk").first()
        return cls(name=username, channel="cli", user_id=user.pk if user else None)

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls(name=name, channel="system")


def audit(
    *,
    actor: Actor,
    action: str,
    obj: Any = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    period: BillingPeriod | None = None,
    before: Any = None,
    after: Any = None,
    reason: str = "",
) -> AuditEvent:
    """Record one state change. Call inside the transaction that makes it."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)[:300]
    log_audit(actor, action, object_type=object_type, object_id=object_id, count=1)
    event = audit_event(
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr,
        period=period,
        before=before,
        after=after,
        reason=reason,
    )
    event.save(force_insert=True)
    return event


def audit_event(
    *,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str,
    object_repr: str,
    period: BillingPeriod | None = None,
    period_id: int | None = None,
    before: Any = None,
    after: Any = None,
    reason: str = "",
    created_at: datetime | None = None,
) -> AuditEvent:
    """One audit row, not saved: what :func:`audit` saves, and what writers
    that record many changes at once pass to ``AuditEvent.objects.bulk_create``
    (with one :func:`log_audit` line for the lot)."""
    event = AuditEvent(
        actor=actor.name,
        channel=actor.channel,
        user_id=actor.user_id,
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr[:300],
        period=period,
        before=before,
        after=after,
        reason=reason,
    )
    if period_id is not None:
        event.period_id = period_id
    if created_at is not None:
        event.created_at = created_at
    return event


def charge_event(
    *,
    actor: Actor,
    action: str,
    charge_id: int,
    period_id: int | None,
    created_at: datetime,
    before: Any = None,
    after: Any = None,
    reason: str = "",
) -> AuditEvent:
    """:func:`audit_event` for a change to one charge, named by its id (the
    bulk writers do not load the charge)."""
    return audit_event(
        actor=actor,
        action=action,
        object_type="billing.charge",
        object_id=str(charge_id),
        object_repr=f"Charge {charge_id}",
        period_id=period_id,
        before=before,
        after=after,
        reason=reason,
        created_at=created_at,
    )


def audit_change(
    *,
    actor: Actor,
    action: str,
    obj: Any,
    before: dict[str, Any],
    after: dict[str, Any],
    reason: str = "",
) -> None:
    """Record a change of `obj` with only the fields whose value changed."""
    audit(
        actor=actor,
        action=action,
        obj=obj,
        before={k: v for k, v in before.items() if after[k] != v},
        after={k: v for k, v in after.items() if before[k] != v},
        reason=reason,
    )


def audit_created(
    *, actor: Actor, action: str, records: list[tuple[Any, Any]], reason: str = ""
) -> None:
    """Record one creation event per ``(object, after)`` pair, in one insert.

    The same rows :func:`audit` writes one at a time, for writers that create
    many records at once (an import's new PIs and projects).
    """
    if not records:
        return
    log_audit(actor, action, object_type=records[0][0]._meta.label_lower, count=len(records))
    AuditEvent.objects.bulk_create(
        [
            audit_event(
                actor=actor,
                action=action,
                object_type=obj._meta.label_lower,
                object_id=str(obj.pk),
                object_repr=str(obj),
                after=after,
                reason=reason,
            )
            for obj, after in records
        ]
    )


def log_audit(actor: Actor, action: str, *, count: int, **fields: Any) -> None:
    """The structured log line of audit events (the AuditEvent rows are the record)."""
    audit_log.info(
        "audit",
        extra={
            "event": "audit",
            "action": action,
            "actor": actor.name,
            "channel": actor.channel,
            "count": count,
            **fields,
        },
    )
