"""Ingest benchmark: how fast ``openchargeback ingest`` loads large FOCUS files.

What it measures
----------------
For each size N (default 100,000 and 1,000,000 rows) the script

1. generates a synthetic FOCUS 1.0 CSV file for one month (2026-09): ~500 PIs,
   ~2,000 projects (each owned by one PI), a few resources per project, 22
   columns, a JSON ``Tags`` cell with 7-8 keys per row, money with up to 10
   decimals built from integers. Files are cached in the work directory
   (default ``benchmarks/out``), so re-runs only pay for generation once.
   A small share of rows is realistically "dirty" (credits, tax, untagged
   resources, a malformed fund/org, Marketplace purchases) and gets flagged.
2. SQLite: migrates a fresh database in a temporary directory (not timed),
   then times ``openchargeback ingest FILE --source aws --period 2026-09 --json``
   as a child process: wall-clock seconds from spawn to exit, so interpreter
   and Django start-up, hashing and keeping the original file are included.
   Peak RSS is the child's ``ru_maxrss`` from ``os.wait4`` (the largest single
   process); peak tree RSS samples the proportional set size of the child and
   the parser process it forks every 500 ms (the memory the import really
   uses; RSS would count pages shared after fork twice). The JSON result is
   checked (``charges_created == N``; ``billed_total`` against the generated
   sum).
3. PostgreSQL, only when ``DATABASE_URL`` is ``postgres://`` or
   ``postgresql://``: the same on a database named ``<dbname>_bench`` that is
   dropped and created again for each size (the database in the URL itself is
   never touched), and dropped at the end unless ``--keep``.
4. A bare lower bound, also in a child process (``--lower-bound FILE`` mode):
   pandas ``read_csv(chunksize=20000, dtype=object, na_filter=False)``,
   ``json.loads`` of every Tags cell (stored back with ``json.dumps``), one
   ``executemany`` per chunk into a plain SQLite table with the file's other
   columns as text plus a JSON text column, no indexes, one transaction.

It prints one line per run, then a Markdown table
(size | backend | seconds | rows/s | peak RSS MiB | peak tree RSS MiB). With ``--json`` the
results go to stdout as one JSON object and progress goes to stderr.

Note: on Linux a child's ``ru_maxrss`` cannot be below this script's own peak
RSS (exec records the parent's memory high-water mark), so the script stays
small: it imports neither Django nor pandas itself.

How to run
----------
From the project root, with the project's virtualenv::

    .venv/bin/python benchmarks/bench_ingest.py                       # 100k and 1M rows
    .venv/bin/python benchmarks/bench_ingest.py --rows 20000 100000   # quicker
    .venv/bin/python benchmarks/bench_ingest.py --json > results.json
    DATABASE_URL=postgres://user:pass@localhost/ocb .venv/bin/python benchmarks/bench_ingest.py

Options: ``--workdir DIR`` (generated files and run directories; default
``benchmarks/out``), ``--keep`` (keep each run's database and instance
directory, and the PostgreSQL bench database), ``--seed N``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKDIR = ROOT / "benchmarks" / "out"
DEFAULT_ROWS = (100_000, 1_000_000)
DEFAULT_SEED = 2026
GENERATOR_VERSION = 1  # bump when the generated data changes: invalidates cached files

PERIOD = "2026-09"
SOURCE = "aws"
N_PIS = 500
N_PROJECTS = 2_000
CHUNK_ROWS = 20_000

SCALE = 10**10  # money is generated as integer counts of 1e-10 USD
CREDIT_SHARE = 0.01
TAX_SHARE = 0.005
UNTAGGED_RESOURCE_SHARE = 0.005
BAD_FUND_ORG_PROJECT_SHARE = 0.01
MARKETPLACE_RESOURCE_SHARE = 0.003

COLUMNS = [
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ListCost",
    "ContractedCost",
    "BilledCost",
    "EffectiveCost",
    "BillingCurrency",
    "ResourceId",
    "ResourceName",
    "ServiceName",
    "ServiceCategory",
    "ChargeCategory",
    "ChargeDescription",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ProviderName",
    "SubAccountId",
    "SubAccountName",
    "RegionId",
    "Tags",
]


@dataclass(frozen=True)
class Service:
    name: str
    category: str
    unit: str
    qty_milli: tuple[int, int]  # consumed quantity range, in 1/1000 of a unit
    price_e7: tuple[int, int]  # list price range, in 1e-7 USD per unit
    kind: str  # ARN resource kind
    weight: int
    description: str


SERVICES = (
    Service(
        "Amazon Elastic Compute Cloud",
        "Compute",
        "Hours",
        (250, 24_000),
        (52_000, 40_800_000),
        "instance",
        30,
        "On Demand Linux instance hours",
    ),
    Service(
        "Amazon Elastic Compute Cloud",
        "Storage",
        "GB-Mo",
        (1_000, 65_000),
        (800_000, 1_250_000),
        "volume",
        12,
        "EBS gp3 provisioned storage",
    ),
    Service(
        "Amazon Simple Storage Service",
        "Storage",
        "GB-Mo",
        (1, 5_000_000),
        (40_000, 230_000),
        "bucket",
        18,
        "S3 Standard storage",
    ),
    Service(
        "Amazon Relational Database Service",
        "Databases",
        "Hours",
        (1_000, 24_000),
        (170_000, 20_000_000),
        "db",
        8,
        "RDS PostgreSQL instance hours",
    ),
    Service(
        "AWS Lambda",
        "Compute",
        "Requests",
        (1_000_000, 5_000_000_000),
        (2, 2),
        "function",
        6,
        "Lambda requests",
    ),
    Service(
        "Amazon SageMaker",
        "AI and Machine Learning",
        "Hours",
        (250, 24_000),
        (500_000, 377_000_000),
        "notebook-instance",
        6,
        "SageMaker notebook instance hours",
    ),
    Service(
        "Amazon CloudWatch",
        "Management and Governance",
        "Metrics",
        (1_000, 500_000),
        (100_000, 3_000_000),
        "alarm",
        5,
        "CloudWatch custom metrics",
    ),
    Service(
        "AWS Data Transfer",
        "Networking",
        "GB",
        (1, 2_000_000),
        (100_000, 900_000),
        "transfer",
        10,
        "Data transfer out to the internet",
    ),
    Service(
        "Amazon Elastic File System",
        "Storage",
        "GB-Mo",
        (1_000, 800_000),
        (160_000, 3_000_000),
        "file-system",
        5,
        "EFS Standard storage",
    ),
)
MARKETPLACE = Service(
    "AWS Marketplace",
    "Other",
    "Units",
    (1_000, 1_000),
    (10_000_000, 2_000_000_000),
    "marketplace",
    0,
    "AWS Marketplace software subscription",
)

DEPARTMENTS = (
    ("BIO", "NSF", "genomics"),
    ("CHEM", "NSF", "catalysis"),
    ("PHYS", "DOE", "plasma"),
    ("ASCR", "DOE", "exascale"),
    ("NIGMS", "NIH", "proteomics"),
    ("NCI", "NIH", "oncology"),
    ("GEO", "NSF", "climate"),
    ("CISE", "NSF", "systems"),
    ("ECON", "INST", "markets"),
    ("LING", "INST", "corpora"),
)
FIRST_NAMES = (
    "ada",
    "alan",
    "barbara",
    "claude",
    "donald",
    "edsger",
    "frances",
    "grace",
    "hedy",
    "ida",
    "john",
    "katherine",
    "leslie",
    "margaret",
    "niklaus",
    "radia",
    "shafi",
    "tim",
    "ursula",
    "vint",
    "whitfield",
    "yukihiro",
    "zhang",
)
LAST_NAMES = (
    "lovelace",
    "turing",
    "liskov",
    "shannon",
    "knuth",
    "dijkstra",
    "allen",
    "hopper",
    "lamarr",
    "rhodes",
    "backus",
    "johnson",
    "lamport",
    "hamilton",
    "wirth",
    "perlman",
    "goldwasser",
    "berners",
    "mcilroy",
    "cerf",
    "diffie",
    "matsumoto",
    "rivest",
)
REGIONS = ("us-east-1", "us-east-1", "us-east-1", "us-east-2", "us-west-2", "eu-west-1")
EXTRA_TAGS = (
    ("environment", ("prod", "dev", "test", "staging")),
    ("team", ("data", "hpc-users", "ml", "web", "imaging")),
    ("data_classification", ("public", "internal", "restricted")),
    ("application", ("pipeline", "portal", "notebook", "archive", "simulation")),
    ("aws:createdBy", ("IAMUser:AIDAEXAMPLE:jdoe", "AssumedRole:AROAEXAMPLE:ci-deploy")),
)


@dataclass(frozen=True, slots=True)
class Resource:
    """A billed resource; its text columns are kept already CSV-encoded."""

    head: str  # ResourceId,ResourceName,ServiceName,ServiceCategory
    usage: str  # ChargeCategory,ChargeDescription of its usage rows
    unit: str  # ConsumedUnit
    tail: str  # ProviderName,SubAccountId,SubAccountName,RegionId,Tags
    qty_lo: int
    qty_hi: int
    list_price: int  # 1e-7 USD per unit; price * milli-units = 1e-10 USD
    contracted_price: int
    effective_price: int


def csv_fields(*values: str) -> str:
    """``values`` as one CSV fragment (quoted as needed), without line end."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(values)
    return out.getvalue()


def money(units: int) -> str:
    """Format an integer count of 1e-10 USD as an exact decimal string."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), SCALE)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:010d}".rstrip("0")


def quantity(milli: int) -> str:
    whole, frac = divmod(milli, 1000)
    return f"{whole}.{frac:03d}".rstrip("0").rstrip(".") if frac else str(whole)


def to_nano_half_even(units: int) -> int:
    """Round 1e-10 units to 1e-9 units, half to even (what ingest does beyond 1e-9)."""
    q, r = divmod(abs(units), 10)
    if r > 5 or (r == 5 and q % 2):
        q += 1
    return -q if units < 0 else q


def build_resources(rng: random.Random) -> list[Resource]:
    """PIs -> projects -> resources; tag JSON strings precomputed per project."""
    pis = []
    for i in range(N_PIS):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        pis.append(
            {
                "email": f"{first}.{last}{i}@example.edu",
                "last": last,
                "cost_center": f"CC-{rng.randrange(10_000, 100_000)}",
                "account": str(rng.randrange(10**11, 10**12)),
            }
        )
    weights = [s.weight for s in SERVICES]
    resources: list[Resource] = []
    for p in range(N_PROJECTS):
        # Every PI owns at least one project; the rest are spread at random.
        pi = pis[p] if p < N_PIS else pis[rng.randrange(N_PIS)]
        dept, agency, topic = rng.choice(DEPARTMENTS)
        project_id = f"{dept.lower()}-{topic}-{p:04d}"
        year = rng.choice((2023, 2024, 2025, 2026))
        fund_org = (
            f"{agency}-{dept}-{year}"
            if agency != "INST"
            else f"INST-{dept}-{rng.randrange(1, 99):04d}"
        )
        if rng.random() < BAD_FUND_ORG_PROJECT_SHARE:
            fund_org = fund_org.lower().replace("-", " ")  # fails the fund/org pattern
        tags: dict[str, str] = {
            "pi_email": pi["email"],
            "project_id": project_id,
            "fund_org": fund_org,
            "cost_center": pi["cost_center"],
            "grant_number": f"{agency}-{rng.randrange(1_000_000, 10_000_000)}",
            "request_id": f"RITM{rng.randrange(10**6, 10**7):07d}",
        }
        for key, values in rng.sample(EXTRA_TAGS, rng.choice((1, 2))):
            tags[key] = rng.choice(values)
        tags_json = json.dumps(tags)
        for k in range(rng.randrange(1, 8)):
            svc = (
                MARKETPLACE
                if rng.random() < MARKETPLACE_RESOURCE_SHARE
                else rng.choices(SERVICES, weights)[0]
            )
            region = rng.choice(REGIONS)
            name = f"{project_id}-{svc.kind}-{k}"
            if svc.kind == "bucket":
                rid = f"arn:aws:s3:::{name}"
            elif svc.kind in ("instance", "volume"):
                prefix = "i" if svc.kind == "instance" else "vol"
                rid = (
                    f"arn:aws:ec2:{region}:{pi['account']}:{svc.kind}/"
                    f"{prefix}-{rng.getrandbits(68):017x}"
                )
            else:
                rid = f"arn:aws:{svc.kind}:{region}:{pi['account']}:{svc.kind}/{name}"
            list_price = rng.randrange(svc.price_e7[0], svc.price_e7[1] + 1)
            contracted = list_price * (100 - rng.choice((0, 0, 5, 10, 15))) // 100
            effective = contracted * 72 // 100 if rng.random() < 0.3 else contracted
            tags_cell = "" if rng.random() < UNTAGGED_RESOURCE_SHARE else tags_json
            resources.append(
                Resource(
                    head=csv_fields(rid, name, svc.name, svc.category),
                    usage=csv_fields("Usage", svc.description),
                    unit=csv_fields(svc.unit),
                    tail=csv_fields(
                        "AWS", pi["account"], f"rc-{pi['last']}-lab", region, tags_cell
                    ),
                    qty_lo=svc.qty_milli[0],
                    qty_hi=svc.qty_milli[1],
                    list_price=list_price,
                    contracted_price=contracted,
                    effective_price=effective,
                )
            )
    return resources


def generate(path: Path, rows: int, seed: int) -> dict[str, Any]:
    """Write ``rows`` FOCUS rows to ``path`` (atomically); return the file's metadata.

    Text columns are CSV-encoded once per resource by the csv module; the
    per-row values (timestamps, decimals) never need quoting, so a row is
    joined from precomputed fragments, several times faster than
    ``csv.writer.writerow`` on 22 fields with a quoted JSON cell.
    """
    rng = random.Random(seed)
    resources = build_resources(rng)
    month = datetime.strptime(PERIOD, "%Y-%m").replace(tzinfo=UTC)
    next_month = (month + timedelta(days=32)).replace(day=1)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    billing = f"{month.strftime(stamp)},{next_month.strftime(stamp)}"
    days = [
        f"{billing},{(month + timedelta(days=d)).strftime(stamp)},"
        f"{(month + timedelta(days=d + 1)).strftime(stamp)}"
        for d in range((next_month - month).days)
    ]
    credit = csv_fields("Credit", "AWS Research Credits", "", "")
    tax = csv_fields("Tax", "Sales tax", "", "")
    randrange, rand = rng.randrange, rng.random
    n_resources, n_days = len(resources), len(days)
    billed_total = billed_total_nano = 0
    part = path.with_name(path.name + ".part")
    with part.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerow(COLUMNS)
        batch: list[str] = []
        for _ in range(rows):
            res = resources[randrange(n_resources)]
            day = days[randrange(n_days)]
            qty = randrange(res.qty_lo, res.qty_hi + 1)
            roll = rand()
            if roll < CREDIT_SHARE:
                charge = credit
                billed = effective = contracted = -qty * res.contracted_price
                list_cost = 0
            elif roll < CREDIT_SHARE + TAX_SHARE:
                charge = tax
                billed = effective = contracted = list_cost = qty * res.contracted_price * 6 // 100
            else:
                charge = f"{res.usage},{quantity(qty)},{res.unit}"
                list_cost = qty * res.list_price
                billed = contracted = qty * res.contracted_price
                effective = qty * res.effective_price
            billed_total += billed
            billed_total_nano += to_nano_half_even(billed)
            batch.append(
                f"{day},{money(list_cost)},{money(contracted)},{money(billed)},"
                f"{money(effective)},USD,{res.head},{charge},{res.tail}\n"
            )
            if len(batch) == 2_000:
                fh.write("".join(batch))
                batch.clear()
        fh.write("".join(batch))
    part.replace(path)
    return {
        "file": str(path),
        "rows": rows,
        "seed": seed,
        "version": GENERATOR_VERSION,
        "bytes": path.stat().st_size,
        "resources": n_resources,
        "billed_total": money(billed_total),
        "billed_total_nano": str(Decimal(billed_total_nano).scaleb(-9)),
    }


def ensure_file(workdir: Path, rows: int, seed: int, log: TextIO) -> dict[str, Any]:
    """The cached file for (rows, seed), generated when missing or stale."""
    path = workdir / f"focus-{SOURCE}-{PERIOD}-{rows}rows-seed{seed}-v{GENERATOR_VERSION}.csv"
    return cached_file(path, "rows", rows, lambda: generate(path, rows, seed), log)


def cached_file(
    path: Path, size_key: str, size: int, make: Callable[[], dict[str, Any]], log: TextIO
) -> dict[str, Any]:
    """The metadata of a generated file kept with it (``<file>.json``); `make()`
    writes the file and returns it when the file is missing or stale (its byte
    count or ``meta[size_key]`` differ)."""
    meta_path = path.with_name(path.name + ".json")
    if path.is_file() and meta_path.is_file():
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        if meta.get("bytes") == path.stat().st_size and meta.get(size_key) == size:
            print(f"reusing {path.name} ({meta['bytes'] / 2**20:,.1f} MiB)", file=log, flush=True)
            return meta
    print(f"generating {path.name} ...", file=log, end=" ", flush=True)
    started = time.perf_counter()
    meta = make()
    meta["generate_seconds"] = round(time.perf_counter() - started, 2)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    print(
        f"{meta['bytes'] / 2**20:,.1f} MiB in {meta['generate_seconds']:.1f} s",
        file=log,
        flush=True,
    )
    return meta


# --- child processes ----------------------------------------------------------


@dataclass
class Child:
    cmd: list[str]
    returncode: int
    seconds: float
    peak_rss_mib: float
    stdout: str
    stderr: str
    peak_tree_rss_mib: float = 0.0


def _tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and its children, summed (KiB, Linux only).

    An upper bound: pages shared after fork() are counted once per process.
    (Proportional set size would split them, but reading smaps_rollup takes
    the target's memory-map lock and slowed the import by ~10%.)
    """
    total = 0
    pids = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                pids.extend(int(c) for c in fh.read().split())
    except OSError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


class _TreeSampler(threading.Thread):
    """Samples the child's process-tree RSS every 200 ms while it runs."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kib = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            self.peak_kib = max(self.peak_kib, _tree_rss_kib(self.pid))


def run_child(cmd: list[str], env: dict[str, str] | None = None) -> Child:
    """Run ``cmd`` to completion; wall time and peak RSS come from ``os.wait4``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        sampler = _TreeSampler(proc.pid)
        sampler.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        sampler.stopped.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    # ru_maxrss is KiB on Linux, bytes on macOS.
    rss_bytes = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return Child(
        cmd, proc.returncode, seconds, rss_bytes / 2**20, stdout, stderr, sampler.peak_kib / 1024
    )


class BenchmarkFailed(Exception):
    pass


def fail_child(what: str, child: Child, reason: str | None = None) -> BenchmarkFailed:
    print(f"\n{what} failed: {reason or f'exit status {child.returncode}'}", file=sys.stderr)
    print(f"command: {' '.join(child.cmd)}", file=sys.stderr)
    if child.stdout.strip():
        print(f"--- stdout ---\n{child.stdout.rstrip()[-20_000:]}", file=sys.stderr)
    print(f"--- stderr ---\n{child.stderr.rstrip()[-20_000:]}", file=sys.stderr)
    return BenchmarkFailed(what)


def openchargeback_cmd() -> list[str]:
    script = Path(sys.executable).parent / "openchargeback"
    return [str(script)] if script.is_file() else [sys.executable, str(ROOT / "manage.py")]


def app_env(database_url: str, instance_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DEBUG="true",
        DATABASE_URL=database_url,
        OPENCHARGEBACK_INSTANCE_DIR=str(instance_dir),
        MEDIA_ROOT=str(instance_dir / "files"),
        STATIC_ROOT=str(instance_dir / "static"),
    )
    return env


def parse_json_output(text: str) -> dict[str, Any] | None:
    text = text.strip()
    for candidate in (text, text.rsplit("\n", 1)[-1]):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


@dataclass
class Result:
    rows: int
    backend: str
    seconds: float
    peak_rss_mib: float
    details: dict[str, Any] = field(default_factory=dict)
    peak_tree_rss_mib: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["peak_rss_mib"] = round(self.peak_rss_mib, 1)
        data["peak_tree_rss_mib"] = round(self.peak_tree_rss_mib, 1)
        data["rows_per_second"] = round(self.rows_per_second)
        return data


def ingest_once(
    backend: str, meta: dict[str, Any], database_url: str, run_dir: Path, log: TextIO
) -> Result:
    """Migrate (untimed), then time one ingest of the file in a child process."""
    rows = meta["rows"]
    env = app_env(database_url, run_dir / "instance")
    migrate = run_child([*openchargeback_cmd(), "migrate", "--no-input", "-v", "0"], env)
    if migrate.returncode != 0:
        raise fail_child(f"migrate ({backend})", migrate)
    cmd = [
        *openchargeback_cmd(),
        "ingest",
        meta["file"],
        "--source",
        SOURCE,
        "--period",
        PERIOD,
        "--json",
    ]
    child = run_child(cmd, env)
    what = f"ingest of {rows:,} rows ({backend})"
    if child.returncode != 0:
        raise fail_child(what, child)
    out = parse_json_output(child.stdout)
    if out is None:
        raise fail_child(what, child, "stdout is not one JSON object")
    if out.get("status") != "imported" or out.get("charges_created") != rows:
        raise fail_child(
            what,
            child,
            f"expected status 'imported' and charges_created {rows}, got status "
            f"{out.get('status')!r} and charges_created {out.get('charges_created')!r}",
        )
    billed = out.get("billed_total")
    expected = {Decimal(meta["billed_total"]), Decimal(meta["billed_total_nano"])}
    try:
        billed_ok = billed is not None and Decimal(str(billed)) in expected
    except InvalidOperation:
        billed_ok = False
    if not billed_ok:
        print(
            f"  warning: billed_total {billed} is neither the generated sum "
            f"{meta['billed_total']} nor its per-value nano-rounded sum "
            f"{meta['billed_total_nano']}",
            file=log,
        )
    details = {
        key: out.get(key)
        for key in ("charges_created", "duplicates_skipped", "flagged", "flags", "billed_total")
    }
    details["billed_total_matches"] = billed_ok
    return Result(
        rows, backend, child.seconds, child.peak_rss_mib, details, child.peak_tree_rss_mib
    )


def lower_bound_once(meta: dict[str, Any], run_dir: Path) -> Result:
    rows = meta["rows"]
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--lower-bound",
        meta["file"],
        "--lower-bound-db",
        str(run_dir / "lower-bound.sqlite3"),
    ]
    child = run_child(cmd)
    what = f"lower bound on {rows:,} rows"
    if child.returncode != 0:
        raise fail_child(what, child)
    out = parse_json_output(child.stdout)
    if out is None or out.get("rows") != rows:
        raise fail_child(what, child, f"expected {rows} rows, got {out}")
    return Result(
        rows,
        "lower bound (pandas + sqlite3)",
        child.seconds,
        child.peak_rss_mib,
        {"in_process_seconds": out["seconds"]},
        child.peak_tree_rss_mib,
    )


def lower_bound(path: Path, db_path: Path | None) -> dict[str, Any]:
    """Bare load: pandas chunks + json.loads of Tags + executemany, one transaction."""
    import sqlite3

    import pandas as pd

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        target = db_path or Path(tmp) / "lower-bound.sqlite3"
        target.unlink(missing_ok=True)
        con = sqlite3.connect(target, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        rows = 0
        insert = ""
        text_columns: list[str] = []
        reader = pd.read_csv(path, chunksize=CHUNK_ROWS, dtype=object, na_filter=False)
        with reader:
            for frame in reader:
                if not insert:
                    text_columns = [c for c in frame.columns if c != "Tags"]
                    names = ", ".join(f'"{c}" TEXT' for c in text_columns)
                    con.execute(f"CREATE TABLE charge ({names}, tags TEXT)")
                    marks = ", ".join("?" * (len(text_columns) + 1))
                    insert = f"INSERT INTO charge VALUES ({marks})"
                    con.execute("BEGIN")
                tags = [json.dumps(json.loads(cell)) if cell else "{}" for cell in frame["Tags"]]
                columns = [frame[c].tolist() for c in text_columns]
                con.executemany(insert, zip(*columns, tags, strict=True))
                rows += len(frame)
        con.execute("COMMIT")
        con.close()
    return {"rows": rows, "seconds": round(time.perf_counter() - started, 3)}


# --- PostgreSQL -----------------------------------------------------------------


def is_postgres(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


def bench_database_url(url: str) -> tuple[str, str]:
    """(``<dbname>_bench``, the URL pointing at it) for a PostgreSQL URL."""
    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise BenchmarkFailed(f"DATABASE_URL names no database: {url}")
    bench = f"{name}_bench"
    return bench, parts._replace(path="/" + quote(bench)).geturl()


def pg_admin(action: str, url: str, name: str) -> None:
    """Drop (and for 'create', create again) database ``name`` on the server of ``url``."""
    if action not in ("create", "drop"):
        raise SystemExit(f"--pg-admin: unknown action {action!r}")
    import environ
    import psycopg
    from psycopg import sql

    config = environ.Env.db_url_config(url)
    params: dict[str, Any] = {
        key: str(config[setting])
        for key, setting in (("user", "USER"), ("password", "PASSWORD"))
        if config.get(setting)
    }
    if config.get("HOST"):
        params["host"] = str(config["HOST"])
    if config.get("PORT"):
        params["port"] = str(config["PORT"])
    django_only = {"isolation_level", "server_side_binding", "pool", "assume_role"}
    params.update({k: v for k, v in (config.get("OPTIONS") or {}).items() if k not in django_only})
    error: Exception | None = None
    for maintenance in ("postgres", "template1"):
        try:
            conn = psycopg.connect(dbname=maintenance, autocommit=True, **params)
        except psycopg.OperationalError as exc:
            error = exc
            continue
        with conn:
            force = " WITH (FORCE)" if conn.info.server_version >= 130000 else ""
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}" + force).format(sql.Identifier(name)))
            if action == "create":
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return
    raise SystemExit(f"cannot connect to the maintenance database: {error}")


def pg_admin_child(action: str, url: str, name: str) -> None:
    """Run :func:`pg_admin` in a child (psycopg stays out of this process's RSS).

    The URL goes through the environment, not the command line (it may hold a password).
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--pg-admin", action, name]
    child = run_child(cmd, {**os.environ, "DATABASE_URL": url})
    if child.returncode != 0:
        raise fail_child(f"{action} PostgreSQL database {name}", child)


# --- report ---------------------------------------------------------------------


def describe(result: Result) -> str:
    extra = ""
    if "flagged" in result.details:
        extra = f", {result.details['flagged']} flagged"
    return (
        f"  {result.rows:>11,} rows  {result.backend:<30} {result.seconds:8.2f} s "
        f"{result.rows_per_second:>11,.0f} rows/s  peak RSS {result.peak_rss_mib:8.1f} MiB  "
        f"tree RSS {result.peak_tree_rss_mib:8.1f} MiB{extra}"
    )


def markdown_table(results: list[Result]) -> str:
    lines = [
        "| size | backend | seconds | rows/s | peak RSS MiB | peak tree RSS MiB |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.rows:,} | {r.backend} | {r.seconds:.2f} | {r.rows_per_second:,.0f} "
            f"| {r.peak_rss_mib:.1f} | {r.peak_tree_rss_mib:.1f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark `openchargeback ingest` on generated FOCUS files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--rows", type=int, nargs="+", default=list(DEFAULT_ROWS), help="File sizes, in rows."
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help="Generated files (cached) and run directories.",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="Keep run directories (databases, instance dirs) and the PostgreSQL bench database.",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="Data generator seed.")
    parser.add_argument("--json", action="store_true", help="Print the results as JSON.")
    parser.add_argument("--lower-bound", type=Path, metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--lower-bound-db", type=Path, metavar="PATH", help=argparse.SUPPRESS)
    parser.add_argument("--pg-admin", nargs=2, metavar=("ACTION", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any(n <= 0 for n in args.rows):
        parser.error("--rows: sizes must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.lower_bound:
        print(json.dumps(lower_bound(args.lower_bound, args.lower_bound_db)))
        return 0
    if args.pg_admin:
        action, name = args.pg_admin
        pg_admin(action, os.environ.get("DATABASE_URL", ""), name)
        return 0

    log = sys.stderr if args.json else sys.stdout
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    database_url = os.environ.get("DATABASE_URL", "")
    postgres = is_postgres(database_url)
    if not postgres:
        print(
            "PostgreSQL: skipped (DATABASE_URL is not a postgres:// or postgresql:// URL)",
            file=log,
        )
    results: list[Result] = []
    files: list[dict[str, Any]] = []
    bench_db = ""
    try:
        for rows in dict.fromkeys(args.rows):
            meta = ensure_file(workdir, rows, args.seed, log)
            files.append(meta)
            run_dir = Path(tempfile.mkdtemp(prefix=f"run-{rows}rows-", dir=workdir))
            try:
                sqlite_url = f"sqlite:///{run_dir / 'sqlite' / 'bench.sqlite3'}"
                runs = [("sqlite", sqlite_url, run_dir / "sqlite")]
                if postgres:
                    name, bench_url = bench_database_url(database_url)
                    pg_admin_child("create", database_url, name)
                    bench_db = name  # exists now: drop it at the end
                    runs.append(("postgresql", bench_url, run_dir / "postgresql"))
                for backend, url, backend_dir in runs:
                    result = ingest_once(backend, meta, url, backend_dir, log)
                    results.append(result)
                    print(describe(result), file=log, flush=True)
                result = lower_bound_once(meta, run_dir)
                results.append(result)
                print(describe(result), file=log, flush=True)
            finally:
                if args.keep:
                    print(f"  kept {run_dir}", file=log)
                else:
                    shutil.rmtree(run_dir, ignore_errors=True)
    except BenchmarkFailed:
        return 1
    finally:
        if bench_db and not args.keep:
            with contextlib.suppress(BenchmarkFailed):
                pg_admin_child("drop", database_url, bench_db)
        elif bench_db:
            print(f"kept PostgreSQL database {bench_db}", file=log)

    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    own_peak_mib = own_peak / 2**20 if sys.platform == "darwin" else own_peak / 1024
    print(file=log)
    print(markdown_table(results), file=log)
    print(
        f"\nseconds: wall time of the child process (start-up included); peak RSS floor "
        f"(this script's own peak): {own_peak_mib:.1f} MiB",
        file=log,
    )
    if args.json:
        payload = {
            "period": PERIOD,
            "source": SOURCE,
            "python": sys.version.split()[0],
            "platform": sys.platform,
            "cpus": os.cpu_count(),
            "postgresql": postgres,
            "benchmark_peak_rss_mib": round(own_peak_mib, 1),
            "files": files,
            "results": [r.as_dict() for r in results],
        }
        print(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
