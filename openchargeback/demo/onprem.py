"""The on-premises samples: the demo's rate card, the account mapping files, the
Slurm accounting (``sacct``) and the storage quota reports."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from openchargeback.csvfile import LF, CsvWriter
from openchargeback.demo.institution import (
    Population,
    Project,
    Resource,
    build_population,
    quota_name,
    slurm_account,
)
from openchargeback.demo.months import Month, parse_month
from openchargeback.demo.sources import UNMAPPED, UNTAGGED_SOURCE

# --- On-premises usage: rate card, account mappings, sacct and quota reports ----------


@dataclass(frozen=True)
class RateSpec:
    """One rate card entry of the demo (the fields of ``ingest.usage.rates.rate_create``)."""

    resource: str  # cpu | gpu | storage
    service: str  # partition or storage tier
    effective_from: date
    list_rate: Decimal
    subsidy_percent: Decimal
    free_allowance: Decimal = Decimal(0)
    monthly_credit: Decimal = Decimal(0)
    monthly_cap: Decimal | None = None
    description: str = ""
    qos: str = ""


_RATES_FROM = date(2026, 1, 1)
# The list rates are the prices of the hpc and storage profiles above.
DEMO_RATES: tuple[RateSpec, ...] = (
    RateSpec(
        "cpu", "standard", _RATES_FROM, Decimal("0.0250"), Decimal(80), Decimal(500),
        description="Standard partition: 500 CPU-hours free per project, 80% subsidised",
    ),
    RateSpec(
        "cpu", "bigmem", _RATES_FROM, Decimal("0.0400"), Decimal(80),
        description="Large-memory partition, 80% subsidised",
    ),
    RateSpec(
        "cpu", "gpu", _RATES_FROM, Decimal("0.0250"), Decimal(80),
        description="CPU cores of jobs on the A100 partition, 80% subsidised",
    ),
    RateSpec(
        "gpu", "gpu", _RATES_FROM, Decimal("1.2000"), Decimal(60), Decimal(10),
        description="A100 partition: 10 GPU-hours free per project, 60% subsidised",
    ),
    RateSpec(
        "gpu", "gpu", date(2026, 9, 16), Decimal("1.0500"), Decimal(60), Decimal(10),
        description="A100 partition after the September 2026 price review",
    ),
    RateSpec(
        "storage", "standard", _RATES_FROM, Decimal("8.0000"), Decimal(50), Decimal(1),
        description="Project storage: 1 TB free per project, half subsidised",
    ),
    RateSpec(
        "storage", "scratch", _RATES_FROM, Decimal("2.0000"), Decimal(50), Decimal(5),
        description="Scratch: 5 TB free per project, half subsidised",
    ),
    RateSpec(
        "storage", "archive", _RATES_FROM, Decimal("3.5000"), Decimal(50),
        monthly_cap=Decimal("150.00"),
        description="Tape archive, half subsidised, at most 150.00 a month per project",
    ),
)  # fmt: skip


def render_mappings(population: Population) -> bytes:
    """``account_mappings.csv`` as ``ingest.usage.mapping_files.account_mapping_import``
    reads it: every Slurm account and quota of the samples except those in
    :data:`UNMAPPED`."""
    rows: set[tuple[str, str, str, str, str]] = set()
    for resource in population.resources["hpc"]:
        project = resource.project
        rows.add(
            (
                "slurm",
                slurm_account(project),
                project.pi.email,
                project.project_id,
                project.fund_org,
            )
        )
    for resource in population.resources["storage"]:
        project = resource.project
        rows.add(
            (
                "storage",
                quota_name(resource),
                project.pi.email,
                project.project_id,
                project.fund_org,
            )
        )
    buffer = io.StringIO(newline="")
    writer = CsvWriter(buffer, neutralise=False, line_end=LF)  # input files, as providers write
    writer.writerow(("kind", "name", "pi_email", "project_id", "fund_org"))
    writer.writerows(sorted(rows))
    return buffer.getvalue().encode("utf-8")


def untagged_sub_accounts(population: Population) -> list[tuple[str, str, Project]]:
    """(SubAccountId, SubAccountName, project) of the untagged projects of
    :data:`UNTAGGED_SOURCE`, in :attr:`Population.untagged` order: all but the last are
    in :data:`CLOUD_MAPPINGS_FILE`."""
    found: dict[str, tuple[str, str, Project]] = {}
    for resource in population.resources[UNTAGGED_SOURCE]:
        if resource.untagged:
            found.setdefault(resource.project.project_id, (*resource.sub_account, resource.project))
    return [found[pid] for pid in population.untagged]


def render_cloud_mappings(population: Population) -> bytes:
    """:data:`CLOUD_MAPPINGS_FILE`: sub-account mappings (kind ``sub_account``, with the
    source column) of all untagged projects but the last, which stays unmapped."""
    buffer = io.StringIO(newline="")
    writer = CsvWriter(buffer, neutralise=False, line_end=LF)  # input files, as providers write
    writer.writerow(
        ("kind", "name", "pi_email", "project_id", "fund_org", "source", "effective_from",
         "effective_to")
    )  # fmt: skip
    for sub_id, _name, project in untagged_sub_accounts(population)[:-1]:
        writer.writerow(
            ("sub_account", sub_id, project.pi.email, project.project_id, project.fund_org,
             UNTAGGED_SOURCE, "", "")
        )  # fmt: skip
    return buffer.getvalue().encode("utf-8")


@dataclass(frozen=True)
class _Job:
    jobid: int
    account: str
    partition: str
    qos: str
    cpus: int
    gpus: int
    start: datetime | None  # naive local time, as sacct prints it; None: never started
    elapsed: int  # seconds
    state: str

    def line(self) -> str:
        tres = f"billing={self.cpus},cpu={self.cpus}"
        if self.gpus:
            tres += f",gres/gpu:a100={self.gpus},gres/gpu={self.gpus}"
        tres += f",mem={self.cpus * 4}G,node={max(1, self.cpus // 64)}"
        if self.start is None:
            start, end = "None", "None"
        else:
            start = self.start.isoformat()
            end = (self.start + timedelta(seconds=self.elapsed)).isoformat()
        days, rest = divmod(self.elapsed, 86400)
        hours, rest = divmod(rest, 3600)
        clock = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
        elapsed = f"{days}-{clock}" if days else clock
        cells = (self.jobid, self.account, self.partition, self.qos, self.cpus, tres)
        return "|".join(str(c) for c in (*cells, elapsed, start, end, self.state))


_CPUS = {"standard": (4, 8, 16, 32, 64, 128), "bigmem": (16, 32, 64), "gpu": (8, 16, 32)}
_STATES = (("COMPLETED", 78), ("TIMEOUT", 5), ("FAILED", 8), ("OUT_OF_MEMORY", 4), ("CANCELLED", 5))


def _job_ids(month: Month) -> int:
    """The first JobID of the month (ids grow with time, 10,000 a month)."""
    return 4_000_000 + ((month.year - 2020) * 12 + month.month - 1) * 10_000


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def _boundary_job(month: Month, population: Population, seed: int) -> _Job:
    """A job that starts on the month's last evening and ends in the next month; it is in
    both months' sacct output (each bills its own part)."""
    rng = random.Random(f"{seed}:hpc:{month.year:04d}-{month.month:02d}:boundary")  # noqa: S311
    cpu = [r for r in population.resources["hpc"] if r.service.tier != "gpu"]
    resource = rng.choice(cpu)
    start = _naive(month.end) - timedelta(hours=rng.randint(3, 8), minutes=rng.randint(0, 59))
    return _Job(
        jobid=_job_ids(month) + 9_999,
        account=slurm_account(resource.project),
        partition=resource.service.tier,
        qos="long",
        cpus=rng.choice((32, 64)),
        gpus=0,
        start=start,
        elapsed=rng.randint(20, 40) * 3600 + rng.randint(0, 3599),
        state="COMPLETED",
    )


def _month_jobs(rng: random.Random, month: Month, population: Population) -> list[_Job]:
    length = month.days * 86400
    first = _naive(month.start)
    targets = [(slurm_account(r.project), r.service.tier) for r in population.resources["hpc"]] + [
        (account, "standard") for account in UNMAPPED["slurm"]
    ]
    jobs: list[_Job] = []
    for account, partition in targets:
        if rng.random() < 0.08:
            continue  # idle this month
        for _ in range(rng.randint(2, 8)):
            state = rng.choices([s for s, _w in _STATES], [w for _s, w in _STATES])[0]
            if state == "FAILED" and rng.random() < 0.5:
                elapsed = rng.randint(5, 299)  # too short to bill
            elif partition == "gpu":
                elapsed = rng.randint(1800, 30 * 3600)
            else:
                elapsed = rng.randint(600, 40 * 3600)
            offset = rng.randrange(length - elapsed)
            start: datetime | None = first + timedelta(seconds=offset)
            if state == "CANCELLED":
                state = f"CANCELLED by {rng.randint(20000, 69999)}"
                if rng.random() < 0.4:
                    start, elapsed = None, 0  # cancelled while pending
            jobs.append(
                _Job(
                    jobid=0,
                    account=account,
                    partition=partition,
                    qos="long" if elapsed > 24 * 3600 else rng.choice(("normal", "normal", "high")),
                    cpus=rng.choice(_CPUS[partition]),
                    gpus=rng.choice((1, 1, 2, 4)) if partition == "gpu" else 0,
                    start=start,
                    elapsed=elapsed,
                    state=state,
                )
            )
    jobs.sort(key=lambda j: (j.start or first, j.account, j.partition))
    base = _job_ids(month)
    return [
        _Job(base + n, j.account, j.partition, j.qos, j.cpus, j.gpus, j.start, j.elapsed, j.state)
        for n, j in enumerate(jobs, start=1)
    ]


def render_sacct(month: str, *, seed: int = 2026, population: Population | None = None) -> bytes:
    """``hpc_<month>.sacct.txt``: what ``sacct --allocations --parsable2 --noheader`` prints
    for the month (fields ``ingest.usage.sacct.FIELDS``), run after the month ended: the jobs of
    the month, the job running in from the previous month and the one running on into the
    next."""
    year, number = parse_month(month)
    population = population or build_population(seed)
    current = Month(year, number)
    rng = random.Random(f"{seed}:hpc:{month}")  # noqa: S311 - sample data, not security
    jobs = [
        _boundary_job(current.previous(), population, seed),
        *_month_jobs(rng, current, population),
        _boundary_job(current, population, seed),
    ]
    return "".join(job.line() + "\n" for job in jobs).encode("utf-8")


def _size_text(rng: random.Random, size: int) -> str:
    """A size in bytes as a report may write it: bytes, or an exact decimal in TB or GB."""
    roll = rng.random()
    if roll < 0.3:
        return str(size)
    if roll < 0.75:
        return f"{Decimal(size).scaleb(-12).normalize():f} TB"
    return f"{Decimal(size).scaleb(-9).normalize():f} GB"


def _quota_size(resource: Resource, month: Month, seed: int) -> int:
    """The quota's size this month, in bytes (a multiple of 10 MB): a base size per quota,
    growing a little from month to month."""
    low, high = resource.service.qty  # TB, in thousandths
    base = random.Random(f"{seed}:storage:{quota_name(resource)}").randint(low, high)  # noqa: S311
    growth = 100 + (month.year * 12 + month.month) % 7  # percent
    return base * growth * 10**7


def render_quotas(month: str, *, seed: int = 2026, population: Population | None = None) -> bytes:
    """``storage_<month>.quotas.csv``: the quota report (``quota,bytes_used,tier``) with one
    size per quota; months with an odd number hold daily snapshots instead
    (``date,quota,bytes_used,tier``), starting with the last snapshot of the month before
    and skipping a few days (the size carries over), and one quota created mid-month."""
    year, number = parse_month(month)
    population = population or build_population(seed)
    current = Month(year, number)
    rng = random.Random(f"{seed}:storage:{month}")  # noqa: S311 - sample data, not security
    quotas = [(quota_name(r), r.service.tier, _quota_size(r, current, seed)) for r in
              population.resources["storage"]]  # fmt: skip
    unmapped_tb = rng.randint(2000, 9000)  # thousandths of a TB
    quotas += [(name, "standard", unmapped_tb * 10**9) for name in UNMAPPED["storage"]]
    buffer = io.StringIO(newline="")
    writer = CsvWriter(buffer, neutralise=False, line_end=LF)  # input files, as providers write
    if number % 2 == 0:
        writer.writerow(("quota", "bytes_used", "tier"))
        for name, tier, size in quotas:
            writer.writerow((name, _size_text(rng, size), tier))
        return buffer.getvalue().encode("utf-8")
    writer.writerow(("date", "quota", "bytes_used", "tier"))
    first = current.start.date()
    new_quota = rng.randrange(len(quotas))
    for index, (name, tier, size) in enumerate(quotas):
        days = [first - timedelta(days=1)] + [
            first + timedelta(days=d) for d in range(current.days) if rng.random() < 0.85
        ]
        if index == new_quota:
            days = [first + timedelta(days=9 + d) for d in range(current.days - 9)]
        level = size
        for day in days:
            level = max(0, level + rng.randint(-20, 30) * 10**8 * (1 + size // 10**13))
            writer.writerow((day.isoformat(), name, _size_text(rng, level), tier))
    return buffer.getvalue().encode("utf-8")
