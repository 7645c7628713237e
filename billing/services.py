"""Writes to billing records: audit events, periods, sources. Safe to re-run
where noted; every change is recorded as an AuditEvent with its actor."""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from billing.models import AuditEvent, BillingPeriod, Source, period_validator


class BillingError(Exception):
    """A user-caused problem (wrong period, locked data, bad value): one line."""


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
    return AuditEvent.objects.create(
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


def validate_period(value: str) -> str:
    """'2025-01' -> '2025-01'; anything else raises BillingError."""
    value = value.strip()
    try:
        period_validator(value)
    except ValidationError:
        raise BillingError(f"period {value!r} is not a month in the form YYYY-MM") from None
    return value


def period_get_or_create(*, period: str, actor: Actor) -> BillingPeriod:
    """The BillingPeriod for a month, created open (and audited) on first sight."""
    period = validate_period(period)
    obj, created = BillingPeriod.objects.get_or_create(period=period)
    if created:
        audit(actor=actor, action="period.create", obj=obj, period=obj, after={"status": "open"})
    return obj


def normalise_slug(slug: str) -> str:
    return slug.strip().lower()


@transaction.atomic
def source_add(
    *,
    slug: str,
    name: str = "",
    filename_pattern: str = "",
    credit_fund_org: str = "",
    account_code: str = "",
    actor: Actor,
) -> Source:
    """Create a source. Refuses a slug that exists (in any letter case)."""
    slug = normalise_slug(slug)
    if Source.objects.filter(slug=slug).exists():
        raise BillingError(f"source {slug!r} already exists")
    source = Source(
        slug=slug,
        name=name or slug.upper(),
        filename_pattern=filename_pattern,
        credit_fund_org=credit_fund_org,
        account_code=account_code,
    )
    try:
        source.full_clean()
    except ValidationError as exc:
        problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
        raise BillingError(f"source {slug!r}: {problems}") from None
    source.save()
    audit(
        actor=actor,
        action="source.create",
        obj=source,
        after={
            "slug": source.slug,
            "name": source.name,
            "filename_pattern": source.filename_pattern,
            "credit_fund_org": source.credit_fund_org,
            "account_code": source.account_code,
        },
    )
    return source


def source_for_slug(slug: str) -> Source:
    """The source for a slug, ignoring case; BillingError names the known ones."""
    source = Source.objects.filter(slug=normalise_slug(slug)).first()
    if source is None:
        known = ", ".join(Source.objects.values_list("slug", flat=True)) or "none"
        raise BillingError(
            f"unknown source {slug!r} (known: {known}); add it with "
            f"`openchargeback sources add {normalise_slug(slug)}`"
        )
    if not source.enabled:
        raise BillingError(f"source {source.slug!r} is disabled; enable it in the admin first")
    return source


def detect_source(filename: str) -> Source | None:
    """The enabled source whose filename pattern matches, the longest pattern winning."""
    best: tuple[int, Source] | None = None
    for source in Source.objects.filter(enabled=True).exclude(filename_pattern=""):
        try:
            hit = re.search(source.filename_pattern, filename, re.IGNORECASE)
        except re.error:
            continue
        if hit and (best is None or len(source.filename_pattern) > best[0]):
            best = (len(source.filename_pattern), source)
    return best[1] if best else None


_PERIOD_HINT = re.compile(r"(?<!\d)(20\d{2})[-_]?(0[1-9]|1[0-2])(?!\d)")


def detect_period(filename: str) -> str | None:
    """A month hinted in a file name: 2025-01, 2025_01 or 202501."""
    match = _PERIOD_HINT.search(filename)
    return f"{match.group(1)}-{match.group(2)}" if match else None
