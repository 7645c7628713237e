"""On-premises usage, the common currency of the Slurm and storage converters.

Readers (:mod:`ingest.usage.sacct`, :mod:`ingest.usage.quotas`) turn a cluster's or a
storage system's own export into :class:`Usage` records; pricing
(:mod:`ingest.usage.pricing`) turns those into FOCUS rows with a list price and
the institution's subsidy. Pure: no ORM, no I/O.

Quantities are exact :class:`fractions.Fraction` values in the rate's unit
(CPU-hours, GPU-hours, TB-months), never floats: a 7-second job on one CPU is
``Fraction(7, 3600)`` CPU-hours, and a day of 12.5 TB in a 31-day month is
``Fraction(125, 310)`` TB-months. Money is rounded to nano-units only once,
when a priced row is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Literal

Resource = Literal["cpu", "gpu", "storage"]

# One terabyte, as storage systems and price lists count it.
BYTES_PER_TB = 10**12
SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class Usage:
    """Usage of one resource by one account on one day.

    ``account`` is the Slurm account or the storage quota name (what the
    account mapping maps to a PI, project and fund/org); ``service`` is the
    Slurm partition or the storage tier; ``qos`` is the Slurm QOS ("" for
    storage). ``jobs`` counts the Slurm jobs that contributed (0 for storage).
    """

    resource: Resource
    account: str
    service: str
    qos: str
    day: date
    quantity: Fraction
    jobs: int = 0
