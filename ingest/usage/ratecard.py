"""Which sources are priced by the site's own rate card. Reads only.

A source whose charges the Slurm or storage converters priced (imports named
by :func:`ingest.focus.basis.conversion_name`) takes an *institutional subsidy* off
list price; every other source is a provider's export, whose difference from
list price is the *provider discount* (docs/decisions/0006-cost-basis.md).
Registered with billing (:mod:`billing.ratecard`) by ``IngestConfig.ready``:
statements and the dashboard ask billing, not ingest.
"""

from __future__ import annotations

from ingest.focus.basis import is_conversion
from ingest.models import Import


def rate_card_sources() -> frozenset[str]:
    """Slugs of the sources with at least one converter import (any status)."""
    names = Import.objects.values_list("source__slug", "file_name").distinct()
    return frozenset(slug for slug, name in names.iterator() if is_conversion(name))
