"""Slurm benchmark: a month of ``sacct`` job lines converted and ingested.

Issue 8's acceptance: 1,000,000 sacct job lines converted and ingested in
under 60 s.

What it measures
----------------
For each size N (default 1,000,000 lines) the script

1. generates a ``sacct --allocations --parsable2 --noheader`` file of N job
   lines for one month (2026-09) in the default field order
   ``JobID|Account|Partition|QOS|AllocCPUS|AllocTRES|Elapsed|Start|End|State``:
   ~400 accounts of very different sizes (6 of them unmapped), partitions
   standard, highmem, gpu and debug with QOS normal and long, 1 to 128 CPUs,
   1 to 8 GPUs on the gpu partition (AllocTRES with ``gres/gpu:a100=N``,
   ``gres/gpu=N`` or both), run times from seconds to days printed as
   ``MM:SS``, ``HH:MM:SS`` and ``D-HH:MM:SS``, jobs straddling the start and
   the end of the month and a few that ran wholly after it, array tasks
   (``123_4``), and states mostly COMPLETED with FAILED, TIMEOUT,
   ``CANCELLED by N`` (some cancelled while pending) and OUT_OF_MEMORY.
   The file is deterministic for a seed and cached in the work directory
   (default ``benchmarks/out``); the generator also computes, on its own,
   the FOCUS rows and list and billed totals the conversion must produce
   (exact integers, rounded per row half to even).
2. Builds a scratch site (not timed), in child processes: ``migrate``, the
   rate card (CPU-hour rates for each partition and a GPU-hour rate on gpu,
   each with a subsidy; a QOS ``long`` rate on standard; the standard rate
   changing on 2026-09-15; a rate from October that must not apply) and the
   account mappings of all but 6 accounts, imported from a mapping CSV that
   creates the PIs and projects.
3. Times two child processes, wall seconds from spawn to exit with peak RSS
   from ``os.wait4`` (and the process tree's peak RSS, sampled), plus their
   CPU seconds (user + system, the import's parser process included), which
   another job on the machine changes much less than wall time:
   ``openchargeback slurm-usage --period 2026-09 --sacct-file FILE
   --what-if --json`` (read and price only: the conversion), then the same
   with ``--ingest`` instead of ``--what-if`` (conversion, FOCUS file and the
   import through the normal ingest path). The difference is the cost of
   writing and importing the FOCUS rows.
4. Checks the JSON of both: rows and list and billed totals equal to the
   generator's, rows imported equal to the conversion's rows, billed total
   imported equal to the conversion's, the unmapped accounts listed and
   their rows flagged ``unmapped_account``; then counts the charges in the
   database (a child process) against the same figures.

It prints one line per run (with the load average before it), then a
Markdown table (lines | backend | command | seconds | CPU seconds | lines/s |
peak RSS MiB | peak tree RSS MiB | FOCUS rows), and whether 1M lines met the
60 s target. With ``--json`` the results go to stdout as one JSON object and
progress goes to stderr.

This script keeps Django out of its own process (site set-up and checks run
in children): on Linux a child's ``ru_maxrss`` cannot be below the parent's.

Timings on a shared or small machine are noisy: run it more than once, and
when wall time is well above CPU time, the machine was busy.

How to run
----------
From the project root, with the project's virtualenv::

    .venv/bin/python benchmarks/bench_slurm.py                         # 1M lines
    .venv/bin/python benchmarks/bench_slurm.py --lines 100000 1000000
    .venv/bin/python benchmarks/bench_slurm.py --lines 20000 --json > results.json
    DATABASE_URL=postgres://user:pass@localhost/ocb .venv/bin/python benchmarks/bench_slurm.py

Options: ``--workdir DIR`` (generated files and run directories; default
``benchmarks/out``), ``--keep`` (keep each run directory and the PostgreSQL
bench database), ``--seed N``. SQLite by default (a database in the run
directory);
PostgreSQL when ``DATABASE_URL`` is ``postgres://...`` (a database
``<dbname>_bench`` is created and dropped; the database in the URL is never
touched).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import resource
import sys
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from bench_common import bench, scratch_site

PERIOD = "2026-09"
SOURCE = "hpc"
DEFAULT_LINES = (1_000_000,)
DEFAULT_SEED = 2026
TARGET_LINES = 1_000_000
TARGET_SECONDS = 60
GENERATOR_VERSION = 1  # bump when the generated data changes: invalidates cached files
ACTOR = "bench"

MONTH_START = date(2026, 9, 1)
DAYS = 30
DAY = 86_400
MONTH_SECONDS = DAYS * DAY
NANOS = 10**9

N_ACCOUNTS = 400  # mapped ones; the unmapped ones come on top
N_PIS = 260
UNMAPPED = (
    "guest-workshop",
    "ondemand-test",
    "admin-benchmark",
    "newlab-onboarding",
    "vendor-eval",
    "course-cs580",
)

PARTITIONS = ("standard", "highmem", "gpu", "debug")
QOS = ("normal", "long")
STANDARD, HIGHMEM, GPU, DEBUG = range(4)
NORMAL, LONG = range(2)

# (resource, partition, QOS or "" for any, effective from, list rate per unit, subsidy %)
RATES = (
    ("cpu", "standard", "", "2026-01-01", "0.0125", "25"),
    ("cpu", "standard", "", "2026-09-15", "0.014", "25"),  # the mid-month change
    ("cpu", "standard", "long", "2026-01-01", "0.015", "25"),
    ("cpu", "highmem", "", "2026-01-01", "0.021", "20"),
    ("cpu", "gpu", "", "2026-01-01", "0.0125", "25"),
    ("cpu", "gpu", "", "2026-10-01", "0.013", "25"),  # next month's: must not apply
    ("gpu", "gpu", "", "2026-01-01", "1.10", "12.5"),
    ("cpu", "debug", "", "2026-01-01", "0.01", "50"),
)

# Run-time buckets (lowest second, highest second, weight) per kind of job.
ELAPSED_NORMAL = (
    (1, 60, 8),
    (60, 600, 20),
    (600, 3_600, 27),
    (3_600, 4 * 3_600, 25),
    (4 * 3_600, 12 * 3_600, 12),
    (12 * 3_600, 48 * 3_600, 8),
)
ELAPSED_LONG = (
    (600, 3_600, 5),
    (3_600, 12 * 3_600, 25),
    (12 * 3_600, 2 * DAY, 40),
    (2 * DAY, 7 * DAY, 30),
)
ELAPSED_DEBUG = ((1, 60, 20), (60, 600, 50), (600, 3_600, 30))
TIME_LIMITS = (3_600, 4 * 3_600, 12 * 3_600, 24 * 3_600, 48 * 3_600)  # TIMEOUT run times

CPUS = {
    STANDARD: (1, 1, 1, 2, 4, 4, 8, 8, 16, 16, 24, 32, 32, 48, 64, 96, 128),
    HIGHMEM: (4, 8, 8, 16, 16, 32, 64, 128),
    DEBUG: (1, 2, 4, 4, 8, 16),
}
GPUS = (1, 1, 1, 1, 2, 2, 2, 4, 4, 8)
GPU_TYPES = ("a100", "a100", "a100", "h100")
MEM_GB_PER_CPU = {STANDARD: 4, HIGHMEM: 16, DEBUG: 2, GPU: 8}

# Shares of lines.
ARRAY_START_SHARE = 0.02  # a line starts an array job of 2-50 tasks
STRADDLE_START_SHARE = 0.015  # started in August, still running on September 1
AFTER_MONTH_SHARE = 0.002  # eligible in September, started in October
MM_SS_SHARE = 0.3  # short run times printed MM:SS (older sacct)
BILLABLE = frozenset({"COMPLETED", "TIMEOUT", "OUT_OF_MEMORY", "FAILED"})
FAILED_MIN_SECONDS = 5 * 60


# --- the site: accounts, owners, rates ----------------------------------------------


@dataclass(frozen=True)
class Account:
    name: str
    pi_email: str
    project_id: str
    fund_org: str
    weight: int  # relative number of jobs
    streams: tuple[tuple[int, int, int], ...]  # (partition, QOS, weight)

    @property
    def mapped(self) -> bool:
        return bool(self.project_id)


def site_plan(seed: int) -> list[Account]:
    """The accounts and who pays for them; the same for every file size."""
    rng = random.Random(f"slurm-site-{seed}")
    pis = [
        f"{rng.choice(bench.FIRST_NAMES)}.{rng.choice(bench.LAST_NAMES)}{i}@example.edu"
        for i in range(N_PIS)
    ]
    accounts: list[Account] = []
    projects_of: dict[str, list[tuple[str, str]]] = {}
    used: set[str] = set(UNMAPPED)
    for i in range(N_ACCOUNTS):
        pi = pis[i] if i < N_PIS else pis[rng.randrange(N_PIS)]
        dept, agency, topic = rng.choice(bench.DEPARTMENTS)
        earlier = projects_of.setdefault(pi, [])
        if earlier and rng.random() < 0.3:
            project_id, fund_org = earlier[0]  # a second account of the same project
        else:
            project_id = f"{dept.lower()}-{topic}-{i:04d}"
            fund_org = (
                f"{agency}-{dept}-{rng.choice((2024, 2025, 2026))}"
                if agency != "INST"
                else f"INST-{dept}-{rng.randrange(1, 99):04d}"
            )
            earlier.append((project_id, fund_org))
        # Slurm account names: the PI's lab, then lab-topic for further ones.
        lab = pi.split("@")[0].split(".")[1]
        name = lab if lab not in used else f"{lab}-{topic}"
        if name in used:
            name = f"{lab}-{topic}{i}"
        used.add(name)
        accounts.append(
            Account(name, pi, project_id, fund_org, 1_000_000 // (i + 5), _streams(rng))
        )
    for name in UNMAPPED:
        accounts.append(Account(name, "", "", "", 2_000, _streams(rng)))
    return accounts


def _streams(rng: random.Random) -> tuple[tuple[int, int, int], ...]:
    """Which partitions and QOS an account uses, and how much."""
    streams = [(STANDARD, NORMAL, 60)]
    for partition, qos, share, weight in (
        (STANDARD, LONG, 0.5, 10),
        (HIGHMEM, NORMAL, 0.3, 15),
        (HIGHMEM, LONG, 0.1, 5),
        (GPU, NORMAL, 0.25, 30),
        (GPU, LONG, 0.08, 10),
        (DEBUG, NORMAL, 0.6, 5),
    ):
        if rng.random() < share:
            streams.append((partition, qos, weight))
    return tuple(streams)


def mapping_csv(accounts: list[Account]) -> str:
    rows = [("kind", "name", "pi_email", "project_id", "fund_org")]
    rows += [("slurm", a.name, a.pi_email, a.project_id, a.fund_org) for a in accounts if a.mapped]
    return "".join(",".join(row) + "\n" for row in rows)


def _nanos(text: str) -> int:
    """A decimal string as an exact integer count of 1e-9 units."""
    value = Decimal(text).scaleb(9)
    if value != value.to_integral_value():
        raise ValueError(f"{text} has more than 9 decimals")
    return int(value)


def rate_table() -> dict[tuple[str, str, str], list[tuple[int, int]]]:
    """(resource, partition, QOS) -> (list rate in nanos, subsidy in 1/100 %) per day.

    The rate in force on a day: the latest one for the QOS started by then,
    else the latest one for any QOS (the rule of ``ingest.usage.pricing``)."""
    table: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
    for resource_name, partition in (("cpu", p) for p in PARTITIONS):
        for key in ((resource_name, partition, q) for q in QOS):
            table[key] = [_in_force(*key, MONTH_START + timedelta(days=d)) for d in range(DAYS)]
    for qos in QOS:
        key = ("gpu", "gpu", qos)
        table[key] = [_in_force(*key, MONTH_START + timedelta(days=d)) for d in range(DAYS)]
    return table


def _in_force(resource_name: str, partition: str, qos: str, day: date) -> tuple[int, int]:
    for wanted in (qos, ""):
        started = [
            r
            for r in RATES
            if r[:3] == (resource_name, partition, wanted) and date.fromisoformat(r[3]) <= day
        ]
        if started:
            latest = max(started, key=lambda r: r[3])
            return _nanos(latest[4]), _nanos(latest[5]) // 10**7
    raise ValueError(f"no rate for {resource_name} {partition} {qos} on {day}")


def _half_even(num: int, den: int) -> int:
    q, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and q % 2):
        q += 1
    return q


def money_text(nanos: int) -> str:
    whole, frac = divmod(nanos, NANOS)
    return f"{whole}.{frac:09d}"


# --- the sacct file -----------------------------------------------------------------


def _picker(rng: random.Random, buckets: tuple[tuple[int, int, int], ...]) -> Any:
    """A function drawing a run time (seconds) from weighted buckets."""
    rnd = rng.random
    cum: list[int] = []
    total = 0
    for _lo, _hi, weight in buckets:
        total += weight
        cum.append(total)
    spans = [(lo, hi - lo) for lo, hi, _w in buckets]
    find = bisect.bisect_right

    def pick() -> int:
        lo, width = spans[find(cum, rnd() * total)]
        return lo + int(rnd() * width)

    return pick


def generate(path: Path, lines: int, seed: int) -> dict[str, Any]:  # noqa: C901 - one hot loop, kept flat for speed
    """Write ``lines`` sacct job lines; return what the conversion must find."""
    accounts = site_plan(seed)
    rng = random.Random(f"slurm-jobs-{seed}")
    rnd = rng.random

    streams: list[tuple[int, int, int]] = []  # (account, partition, QOS)
    cum: list[int] = []
    total = 0
    for a, account in enumerate(accounts):
        stream_total = sum(w for _p, _q, w in account.streams)
        for partition, qos, weight in account.streams:
            streams.append((a, partition, qos))
            total += account.weight * weight * 1000 // stream_total
            cum.append(total)
    prefix = [
        f"{accounts[a].name}|{PARTITIONS[p]}|{QOS[q]}|" for a, p, q in streams
    ]  # Account|Partition|QOS|
    elapsed_of = {
        (STANDARD, NORMAL): _picker(rng, ELAPSED_NORMAL),
        (HIGHMEM, NORMAL): _picker(rng, ELAPSED_NORMAL),
        (GPU, NORMAL): _picker(rng, ELAPSED_NORMAL),
        (DEBUG, NORMAL): _picker(rng, ELAPSED_DEBUG),
        (STANDARD, LONG): _picker(rng, ELAPSED_LONG),
        (HIGHMEM, LONG): _picker(rng, ELAPSED_LONG),
        (GPU, LONG): _picker(rng, ELAPSED_LONG),
    }
    long_pick = _picker(rng, ELAPSED_LONG)
    # Timestamps from -10 to +42 days around the month: "YYYY-MM-DDTHH:" + "MM:SS".
    first_hour = -10 * 24
    hours = [
        f"{(MONTH_START + timedelta(hours=h)).isoformat()}T{h % 24:02d}:"
        for h in range(first_hour, (DAYS + 12) * 24)
    ]
    min_sec = [f"{m:02d}:{s:02d}" for m in range(60) for s in range(60)]

    def stamp(t: int) -> str:
        return hours[t // 3600 - first_hour] + min_sec[t % 3600]

    # What the conversion must find: seconds per stream and day.
    cpu_seconds = [0] * (len(streams) * DAYS)
    gpu_seconds = [0] * (len(streams) * DAYS)
    counts = {"billed": 0, "outside": 0, "skipped": 0, "array_tasks": 0}
    find = bisect.bisect_right
    next_id = 4_200_000
    array_left = 0
    array_id = array_task = 0
    stream = partition = qos = cpus = gpus = 0
    alloc = tres = ""
    part = path.with_name(path.name + ".part")
    batch: list[str] = []
    with part.open("w", encoding="utf-8", newline="\n") as fh:
        for _ in range(lines):
            if array_left:
                array_left -= 1
                job_id = f"{array_id}_{array_task}"
                array_task += 1
                counts["array_tasks"] += 1
            else:
                stream = find(cum, rnd() * total)
                _a, partition, qos = streams[stream]
                if partition == GPU:
                    gpus = GPUS[int(rnd() * len(GPUS))]
                    cpus = gpus * (4, 8, 16)[int(rnd() * 3)]
                    kind = GPU_TYPES[int(rnd() * len(GPU_TYPES))]
                    style = rnd()
                    if style < 0.5:
                        gres = f"gres/gpu:{kind}={gpus},gres/gpu={gpus}"
                    elif style < 0.75:
                        gres = f"gres/gpu:{kind}={gpus}"
                    else:
                        gres = f"gres/gpu={gpus}"
                    tres = (
                        f"billing={cpus},cpu={cpus},{gres},mem={cpus * MEM_GB_PER_CPU[GPU]}G,node=1"
                    )
                else:
                    gpus = 0
                    sizes = CPUS[partition]
                    cpus = sizes[int(rnd() * len(sizes))]
                    nodes = (cpus + 63) // 64
                    mem = cpus * MEM_GB_PER_CPU[partition]
                    tres = f"billing={cpus},cpu={cpus},mem={mem}G,node={nodes}"
                alloc = f"{prefix[stream]}{cpus}|{tres}|"
                if rnd() < ARRAY_START_SHARE:
                    array_id, array_task = next_id, 0
                    array_left = 1 + int(rnd() * 49)
                    next_id += array_left + 1
                    job_id = f"{array_id}_{array_task}"
                    array_task += 1
                    counts["array_tasks"] += 1
                else:
                    job_id = str(next_id)
                    next_id += 1

            r = rnd()
            if r < 0.84:
                state = "COMPLETED"
            elif r < 0.90:
                state = "FAILED"
            elif r < 0.93:
                state = "TIMEOUT"
            elif r < 0.98:
                state = f"CANCELLED by {1000 + int(rnd() * 4000)}"
            else:
                state = "OUT_OF_MEMORY"

            if state.startswith("CANCELLED") and rnd() < 0.5:
                # Cancelled while pending: it never started.
                t = int(rnd() * MONTH_SECONDS)
                batch.append(f"{job_id}|{prefix[stream]}0||00:00:00|Unknown|{stamp(t)}|{state}\n")
                counts["skipped"] += 1
                continue

            where = rnd()
            if where < STRADDLE_START_SHARE:
                elapsed = long_pick()
                start = -1 - int(rnd() * (elapsed - 1))
            elif where < STRADDLE_START_SHARE + AFTER_MONTH_SHARE:
                elapsed = elapsed_of[partition, qos]()
                start = MONTH_SECONDS + int(rnd() * 6 * 3600)
            else:
                if state == "TIMEOUT":
                    elapsed = TIME_LIMITS[int(rnd() * len(TIME_LIMITS))] + int(rnd() * 90)
                else:
                    elapsed = elapsed_of[partition, qos]()
                start = int(rnd() * MONTH_SECONDS)
            end = start + elapsed

            h, rest = divmod(elapsed, 3600)
            if h >= 24:
                shown = f"{h // 24}-{h % 24:02d}:{min_sec[rest]}"
            elif h or rnd() >= MM_SS_SHARE:
                shown = f"{h:02d}:{min_sec[rest]}"
            else:
                shown = min_sec[rest]
            batch.append(f"{job_id}|{alloc}{shown}|{stamp(start)}|{stamp(end)}|{state}\n")
            if len(batch) >= 5_000:
                fh.write("".join(batch))
                batch.clear()

            word = state.split(" ", 1)[0]
            if word not in BILLABLE or (word == "FAILED" and elapsed < FAILED_MIN_SECONDS):
                counts["skipped"] += 1
                continue
            lo = start if start > 0 else 0
            hi = end if end < MONTH_SECONDS else MONTH_SECONDS
            if hi <= lo:
                counts["outside"] += 1
                continue
            counts["billed"] += 1
            base = stream * DAYS
            day = lo // DAY
            while lo < hi:
                upto = min(hi, (day + 1) * DAY)
                cpu_seconds[base + day] += cpus * (upto - lo)
                if gpus:
                    gpu_seconds[base + day] += gpus * (upto - lo)
                lo = upto
                day += 1
        fh.write("".join(batch))
    part.replace(path)

    table = rate_table()
    rows = unmapped_rows = list_nanos = billed_nanos = 0
    unmapped: set[str] = set()
    for s, (a, p, q) in enumerate(streams):
        for resource_name, seconds_of in (("cpu", cpu_seconds), ("gpu", gpu_seconds)):
            if resource_name == "gpu" and p != GPU:
                continue
            rates = table[resource_name, PARTITIONS[p], QOS[q]]
            for d in range(DAYS):
                seconds = seconds_of[s * DAYS + d]
                if not seconds:
                    continue
                rate, subsidy = rates[d]
                rows += 1
                list_nanos += _half_even(seconds * rate, 3600)
                billed_nanos += _half_even(seconds * rate * (10_000 - subsidy), 3600 * 10_000)
                if not accounts[a].mapped:
                    unmapped_rows += 1
                    unmapped.add(accounts[a].name)
    return {
        "file": str(path),
        "lines": lines,
        "seed": seed,
        "version": GENERATOR_VERSION,
        "bytes": path.stat().st_size,
        "accounts": len(accounts),
        "jobs_billed": counts["billed"],
        "jobs_not_billable": counts["skipped"],
        "jobs_outside_period": counts["outside"],
        "array_tasks": counts["array_tasks"],
        "cpu_hours": str(Decimal(sum(cpu_seconds)) / 3600),
        "gpu_hours": str(Decimal(sum(gpu_seconds)) / 3600),
        "focus_rows": rows,
        "list_cost": money_text(list_nanos),
        "billed_cost": money_text(billed_nanos),
        "unmapped": sorted(unmapped),
        "unmapped_rows": unmapped_rows,
    }


def ensure_file(workdir: Path, lines: int, seed: int, log: TextIO) -> dict[str, Any]:
    """The cached file for (lines, seed), generated when missing or stale."""
    path = workdir / f"sacct-{PERIOD}-{lines}lines-seed{seed}-v{GENERATOR_VERSION}.txt"
    return bench.cached_file(path, "lines", lines, lambda: generate(path, lines, seed), log)


# --- child processes: site set-up and the database check ----------------------------


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openchargeback.settings")
    import django

    django.setup()


def setup_site(seed: int, run_dir: Path) -> dict[str, Any]:
    """Rates and account mappings (``--setup-site`` mode; Django in this process)."""
    _django()
    from billing.audit import Actor
    from ingest.usage.mapping_files import account_mapping_import
    from ingest.usage.rates import rate_create

    actor = Actor(name=ACTOR, channel="cli")
    for resource_name, service, qos, start, list_rate, subsidy in RATES:
        rate_create(
            actor=actor,
            resource=resource_name,
            service=service,
            qos=qos,
            effective_from=date.fromisoformat(start),
            list_rate=Decimal(list_rate),
            subsidy_percent=Decimal(subsidy),
        )
    path = run_dir / "slurm-accounts.csv"
    path.write_text(mapping_csv(site_plan(seed)), encoding="utf-8")
    result = account_mapping_import(path=path, actor=actor)
    return {
        "rates": len(RATES),
        "mappings": result.created,
        "pis": result.pis_created,
        "projects": result.projects_created,
    }


def count_charges() -> dict[str, Any]:
    """The period's HPC charges in the database (``--count-charges`` mode)."""
    _django()
    from django.db.models import Count, F, Q, Sum

    from billing import flags
    from billing.models import Charge

    charges = Charge.objects.filter(period__period=PERIOD, source__slug=SOURCE)
    unmapped = F("flags").bitand(flags.BIT["unmapped_account"])
    sums = charges.annotate(unmapped_bit=unmapped).aggregate(
        n=Count("id"),
        list_cost=Sum("list_cost"),
        billed_cost=Sum("billed_cost"),
        unmapped_flagged=Count("id", filter=Q(unmapped_bit__gt=0)),
        projects=Count("project", distinct=True),
        pis=Count("pi", distinct=True),
    )
    return {
        "charges": sums["n"],
        "list_cost": str(sums["list_cost"] or 0),
        "billed_cost": str(sums["billed_cost"] or 0),
        "unmapped_flagged": sums["unmapped_flagged"],
        "projects": sums["projects"],
        "pis": sums["pis"],
    }


def _self_child(mode: str, seed: int, env: dict[str, str], run_dir: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), mode, "--seed", str(seed)]
    cmd += ["--workdir", str(run_dir)]
    child = bench.run_child(cmd, env)
    if child.returncode != 0:
        raise bench.fail_child(mode.lstrip("-"), child)
    out = bench.parse_json_output(child.stdout)
    if out is None:
        raise bench.fail_child(mode.lstrip("-"), child, "stdout is not one JSON object")
    return out


# --- the timed runs -----------------------------------------------------------------


@dataclass
class Run:
    lines: int
    backend: str
    command: str  # what-if | ingest
    seconds: float
    peak_rss_mib: float
    peak_tree_rss_mib: float
    focus_rows: int
    cpu_seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["cpu_seconds"] = round(self.cpu_seconds, 3)
        data["peak_rss_mib"] = round(self.peak_rss_mib, 1)
        data["peak_tree_rss_mib"] = round(self.peak_tree_rss_mib, 1)
        data["lines_per_second"] = round(self.lines_per_second)
        return data


def _check(what: str, problems: list[str], child: Any) -> None:
    if problems:
        raise bench.fail_child(what, child, "; ".join(problems))


def _check_conversion(conversion: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """The conversion's JSON against what the generator computed."""
    problems = []
    for name, key in (("rows", "focus_rows"), ("unmapped", "unmapped")):
        if conversion.get(name) != meta[key]:
            problems.append(f"conversion {name} {conversion.get(name)!r}, expected {meta[key]!r}")
    for name in ("list_cost", "billed_cost"):
        got = conversion.get(name)
        if got is None or Decimal(str(got)) != Decimal(meta[name]):
            problems.append(f"conversion {name} {got!r}, expected {meta[name]}")
    owners = conversion.get("owners") or []
    unmapped_rows = sum(o["rows"] for o in owners if o.get("unmapped_account"))
    if unmapped_rows != meta["unmapped_rows"]:
        problems.append(f"{unmapped_rows} unmapped rows, expected {meta['unmapped_rows']}")
    return problems


def convert_once(
    command: str, meta: dict[str, Any], env: dict[str, str], backend: str, log: TextIO
) -> Run:
    """Time ``slurm-usage --what-if`` or ``--ingest`` in a child process and check its JSON."""
    lines = meta["lines"]
    action = ["--what-if"] if command == "what-if" else ["--ingest", "--user", ACTOR]
    cmd = [
        *bench.openchargeback_cmd(),
        "slurm-usage",
        "--period",
        PERIOD,
        "--sacct-file",
        meta["file"],
        *action,
        "--json",
    ]
    print(f"  timing slurm-usage {' '.join(action)} on {lines:,} lines ...", file=log, flush=True)
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = bench.run_child(cmd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the child and the processes it waited for: less
    # sensitive than wall time to other work on the machine.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    what = f"slurm-usage {command} of {lines:,} lines ({backend})"
    if child.returncode != 0:
        raise bench.fail_child(what, child)
    out = bench.parse_json_output(child.stdout)
    if out is None or "conversion" not in out:
        raise bench.fail_child(what, child, "stdout is not the command's JSON object")
    conversion = out["conversion"]
    problems = _check_conversion(conversion, meta)
    details: dict[str, Any] = {
        "list_cost": conversion.get("list_cost"),
        "billed_cost": conversion.get("billed_cost"),
        "subsidy": conversion.get("subsidy"),
        "unmapped": len(conversion.get("unmapped") or []),
        "owners": len(conversion.get("owners") or []),
        "load_average_before": round(load, 2),
    }
    created = 0
    if command == "ingest":
        result = out.get("import") or {}
        created = result.get("charges_created") or 0
        if result.get("status") != "imported":
            problems.append(f"import status {result.get('status')!r}")
        if created != conversion.get("rows"):
            problems.append(f"{created} charges created for {conversion.get('rows')} rows")
        billed = result.get("billed_total")
        if billed is None or Decimal(str(billed)) != Decimal(str(conversion.get("billed_cost"))):
            problems.append(
                f"imported billed total {billed}, converted {conversion.get('billed_cost')}"
            )
        flagged = (result.get("flags") or {}).get("unmapped_account", 0)
        if flagged != meta["unmapped_rows"]:
            problems.append(f"{flagged} rows flagged unmapped_account, {meta['unmapped_rows']}")
        details.update(
            charges_created=created,
            flagged=result.get("flagged"),
            flags=result.get("flags"),
            duplicates_skipped=result.get("duplicates_skipped"),
        )
    _check(what, problems, child)
    rows = created if command == "ingest" else conversion["rows"]
    return Run(
        lines,
        backend,
        command,
        child.seconds,
        child.peak_rss_mib,
        child.peak_tree_rss_mib,
        rows,
        cpu,
        details,
    )


def run_size(args: argparse.Namespace, meta: dict[str, Any], log: TextIO) -> list[Run]:
    lines = meta["lines"]
    with scratch_site(f"ocb-slurm-bench-{lines}-", keep=args.keep, parent=args.workdir) as (
        run_dir,
        url,
        backend,
    ):
        env = bench.app_env(url, run_dir / "instance")
        print(f"building a site on {backend} (not timed) ...", file=log, flush=True)
        migrate = bench.run_child(
            [*bench.openchargeback_cmd(), "migrate", "--no-input", "-v", "0"], env
        )
        if migrate.returncode != 0:
            raise bench.fail_child(f"migrate ({backend})", migrate)
        site = _self_child("--setup-site", args.seed, env, run_dir)
        print(
            f"  {site['rates']} rates, {site['mappings']} account mappings "
            f"({site['pis']} PIs, {site['projects']} projects created)",
            file=log,
            flush=True,
        )
        runs = []
        for command in ("what-if", "ingest"):
            run = convert_once(command, meta, env, backend, log)
            runs.append(run)
            print(describe(run), file=log, flush=True)
        db = _self_child("--count-charges", args.seed, env, run_dir)
        ingest = runs[-1]
        problems = []
        if db["charges"] != ingest.focus_rows:
            problems.append(f"{db['charges']} charges in the database, {ingest.focus_rows} created")
        if Decimal(db["billed_cost"]) != Decimal(meta["billed_cost"]):
            problems.append(f"database billed {db['billed_cost']}, expected {meta['billed_cost']}")
        if db["unmapped_flagged"] != meta["unmapped_rows"]:
            problems.append(f"{db['unmapped_flagged']} charges flagged unmapped in the database")
        if problems:
            raise bench.BenchmarkFailed("; ".join(problems))
        ingest.details["database"] = db
        ingest.details["import_seconds"] = round(ingest.seconds - runs[0].seconds, 3)
        print(
            f"  checked: {db['charges']:,} charges in the database for {db['projects']} "
            f"projects of {db['pis']} PIs, billed {db['billed_cost']} (= the generator's), "
            f"{db['unmapped_flagged']:,} flagged unmapped_account",
            file=log,
            flush=True,
        )
        return runs


# --- report -------------------------------------------------------------------------


def describe(run: Run) -> str:
    return (
        f"  {run.lines:>11,} lines  {run.backend:<10} {run.command:<8} {run.seconds:8.2f} s "
        f"(CPU {run.cpu_seconds:6.2f} s) "
        f"{run.lines_per_second:>11,.0f} lines/s  peak RSS {run.peak_rss_mib:7.1f} MiB  "
        f"tree RSS {run.peak_tree_rss_mib:7.1f} MiB  {run.focus_rows:,} FOCUS rows  "
        f"(load average before: {run.details.get('load_average_before', 0):.1f})"
    )


def markdown_table(runs: list[Run]) -> str:
    lines = [
        "| lines | backend | command | seconds | CPU seconds | lines/s | peak RSS MiB "
        "| peak tree RSS MiB | FOCUS rows |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        command = "slurm-usage --what-if" if r.command == "what-if" else "slurm-usage --ingest"
        lines.append(
            f"| {r.lines:,} | {r.backend} | {command} | {r.seconds:.2f} | {r.cpu_seconds:.2f} | "
            f"{r.lines_per_second:,.0f} | {r.peak_rss_mib:.1f} | {r.peak_tree_rss_mib:.1f} "
            f"| {r.focus_rows:,} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--lines",
        type=int,
        nargs="+",
        default=list(DEFAULT_LINES),
        help="File sizes, in sacct job lines.",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=bench.DEFAULT_WORKDIR,
        help="Generated files (cached) and run directories.",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="Keep run directories (database, instance dir) and the PostgreSQL bench database.",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="Data generator seed.")
    parser.add_argument("--json", action="store_true", help="Print the results as JSON.")
    parser.add_argument("--setup-site", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count-charges", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any(n <= 0 for n in args.lines):
        parser.error("--lines: sizes must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.setup_site:
        print(json.dumps(setup_site(args.seed, args.workdir)))
        return 0
    if args.count_charges:
        print(json.dumps(count_charges()))
        return 0

    log = sys.stderr if args.json else sys.stdout
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    runs: list[Run] = []
    files: list[dict[str, Any]] = []
    try:
        for lines in dict.fromkeys(args.lines):
            meta = ensure_file(args.workdir, lines, args.seed, log)
            files.append(meta)
            runs.extend(run_size(args, meta, log))
    except bench.BenchmarkFailed as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1

    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    own_peak_mib = own_peak / 2**20 if sys.platform == "darwin" else own_peak / 1024
    print(file=log)
    print(markdown_table(runs), file=log)
    print(
        "\nseconds: wall time of the child process (start-up included); CPU seconds: its "
        "user + system time and that of the processes it waited for; lines/s: lines / "
        f"seconds. Peak RSS floor (this script's own peak): {own_peak_mib:.1f} MiB",
        file=log,
    )
    for run in runs:
        if run.command == "ingest" and run.lines == TARGET_LINES:
            verdict = "met" if run.seconds < TARGET_SECONDS else "MISSED"
            print(
                f"target (issue 8): {TARGET_LINES:,} sacct lines converted and ingested in "
                f"< {TARGET_SECONDS} s on {run.backend}: {run.seconds:.1f} s "
                f"({run.cpu_seconds:.1f} s CPU), {verdict}",
                file=log,
            )
            if run.cpu_seconds and run.seconds > 1.5 * run.cpu_seconds:
                # The import runs in two processes, so on an idle machine wall
                # time is at most about the CPU time.
                print(
                    f"  wall time is {run.seconds / run.cpu_seconds:.1f} x the CPU time: the "
                    "machine was busy with other work; re-run on an idle one to judge",
                    file=log,
                )
    if args.json:
        payload = {
            "period": PERIOD,
            "source": SOURCE,
            "python": sys.version.split()[0],
            "platform": sys.platform,
            "cpus": os.cpu_count(),
            "benchmark_peak_rss_mib": round(own_peak_mib, 1),
            "target_seconds": TARGET_SECONDS,
            "files": files,
            "results": [r.as_dict() for r in runs],
        }
        print(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
