"""What the rate card and account mapping pages ask, without changing
anything: which rates are in force on a day, which sources have cloud
mappings, which months may still be re-attributed. The rate book the pricing
reads, and a rate's lock, are ingest.usage.rates (they decide the writes too)."""

from __future__ import annotations

from datetime import date

from django.db.models import Q, QuerySet

from billing.models import BillingPeriod, Source
from ingest.models import AccountMapping, Rate


def rates_in_force(rates: QuerySet[Rate], day: date) -> QuerySet[Rate]:
    """Of rates annotated with their window (rates_with_windows), those in force on `day`."""
    return rates.filter(
        Q(effective_from__lte=day) & (Q(next_from__isnull=True) | Q(next_from__gt=day))
    )


def rates_starting_after(rates: QuerySet[Rate], day: date) -> QuerySet[Rate]:
    return rates.filter(effective_from__gt=day)


def rates_superseded(rates: QuerySet[Rate], day: date) -> QuerySet[Rate]:
    """Of rates annotated with their window, those a newer rate replaced by `day`."""
    return rates.filter(Q(next_from__lte=day))


def cloud_mapping_sources(mappings: QuerySet[AccountMapping] | None = None) -> QuerySet[Source]:
    """The sources of the cloud mappings among `mappings` (None: the active ones)."""
    if mappings is None:
        mappings = AccountMapping.objects.filter(active=True)
    return Source.objects.filter(
        pk__in=mappings.filter(kind__in=AccountMapping.CLOUD_KINDS).values("source_id")
    )


def open_periods() -> QuerySet[BillingPeriod]:
    """The months whose pending charges the cloud mappings may still change."""
    return BillingPeriod.objects.filter(status=BillingPeriod.Status.OPEN)
