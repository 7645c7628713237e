"""Deterministic generator of realistic sample inputs (demo, docs, tests).

Pure Python, no ORM, no floats: :func:`generate_sample_files` writes, per month,
one FOCUS 1.0 CSV per cloud or central-IT source (``azure_2026-09.csv``,
``it_storage_2026-09.csv``, ...; AWS as two part files of one delivery,
``aws_2026-09-00001.csv`` and ``-00002.csv``), the Slurm accounting of the HPC cluster as
``sacct --allocations --parsable2 --noheader`` prints it
(``hpc_2026-09.sacct.txt``) and the research-storage quota report
(``storage_2026-09.quotas.csv``; months with an odd number hold daily
snapshots), plus one ``account_mappings.csv`` mapping the Slurm accounts and
quotas to their PI, project and fund/org, and ``cloud_account_mappings.csv``
mapping the sub-accounts of the GCP projects that carry no tags (all but one,
left unmapped for the review queue). The HPC and storage inputs are priced
by the converters (:mod:`ingest.usage.converters`) with the rate card
:data:`onprem.DEMO_RATES` (HPC heavily subsidised, storage half subsidised with a free
allowance, a GPU price change in mid-September 2026).

The people are invented PIs, projects and fund/orgs; the FOCUS files have
per-source services and discounts (cloud discounted, IT storage at full
price), the tag-key variety of real exports, and in every month a handful of
rows that trip each auto-flag rule of the default settings (see
:data:`focus.SCENARIOS`). The on-premises samples plant their own cases: a Slurm
account and a quota nobody mapped (:data:`sources.UNMAPPED`: flagged
``unmapped_account``), jobs that are not billable (cancelled, short failures),
and a job running from the last evening of each month into the next one.
Azure (:data:`sources.AMORTISED_SOURCE`, billed amortised by the demo) holds a GPU
reservation bought each month: the purchase row, the usage it covers (billed
0, EffectiveCost at the reserved price) and its unused hours, whose
EffectiveCosts add up to the purchase exactly. A few Azure and GCP rows are
in EUR.

The same seed and month always give the same bytes: the people and resources
come from ``random.Random(seed)``, each file from its own generator seeded with
``(seed, source, month)``, so a file does not depend on which other months were
asked for, nor on the current date.

This module names and writes the files; the generators are beside it, one per
kind of input: ``sources`` (the sources, their columns and what each sells),
``institution`` (the people, projects and resources), ``focus`` (the FOCUS
files), ``onprem`` (the rate card, the mapping files, sacct and quotas) and
``months`` (a sample month).
"""

from __future__ import annotations

from pathlib import Path

from openchargeback.demo.focus import focus_csv, focus_lines
from openchargeback.demo.institution import Population, build_population
from openchargeback.demo.months import parse_month
from openchargeback.demo.onprem import (
    render_cloud_mappings,
    render_mappings,
    render_quotas,
    render_sacct,
)
from openchargeback.demo.sources import (
    CLOUD_MAPPINGS_FILE,
    MAPPINGS_FILE,
    PART_FILES,
    PROFILES,
    SOURCES,
)


def sample_file_name(source: str, month: str) -> str:
    """The name of ``source``'s sample for ``month``: FOCUS CSV, sacct text or quota report.
    A source whose months come as part files (:data:`PART_FILES`) has no single file: see
    :func:`sample_file_names`."""
    if source in PART_FILES:
        raise ValueError(f"{source} months come as part files; use sample_file_names")
    if source == "hpc":
        return f"hpc_{month}.sacct.txt"
    if source == "storage":
        return f"storage_{month}.quotas.csv"
    return f"{source}_{month}.csv"


def sample_file_names(source: str, month: str) -> tuple[str, ...]:
    """The files of ``source``'s sample for ``month``: one, or the part files of one
    delivery, numbered as AWS Data Exports number them (``aws_2026-09-00001.csv``, ...)."""
    parts = PART_FILES.get(source)
    if parts is None:
        return (sample_file_name(source, month),)
    return tuple(f"{source}_{month}-{n:05d}.csv" for n in range(1, parts + 1))


def render_file(
    source: str, month: str, *, seed: int = 2026, population: Population | None = None
) -> bytes:
    """The bytes of ``source``'s sample for ``month`` (see :func:`sample_file_name`):
    UTF-8, no BOM, ``\\n`` line endings."""
    if source not in PROFILES:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    parse_month(month)
    population = population or build_population(seed)
    if source == "hpc":
        return render_sacct(month, seed=seed, population=population)
    if source == "storage":
        return render_quotas(month, seed=seed, population=population)
    return focus_csv(focus_lines(source, month, seed=seed, population=population))


def render_files(
    source: str, month: str, *, seed: int = 2026, population: Population | None = None
) -> list[tuple[str, bytes]]:
    """(name, bytes) of each file of ``source``'s sample for ``month``
    (:func:`sample_file_names`): the part files share the month's rows, in order, each
    with the header; together they hold exactly the rows of :func:`render_file`."""
    names = sample_file_names(source, month)
    if len(names) == 1:
        return [(names[0], render_file(source, month, seed=seed, population=population))]
    population = population or build_population(seed)
    lines = focus_lines(source, month, seed=seed, population=population)
    size = -(-len(lines) // len(names))
    return [(name, focus_csv(lines[n * size : (n + 1) * size])) for n, name in enumerate(names)]


def generate_sample_files(out_dir: Path, *, months: list[str], seed: int = 2026) -> list[Path]:
    """Write every source's sample for every month (see :func:`sample_file_name`), then
    :data:`MAPPINGS_FILE`; return the paths.

    Overwrites files of the same name and touches nothing else in ``out_dir``.
    Raises :class:`ValueError` for a month that is not ``YYYY-MM``.
    """
    wanted = list(dict.fromkeys(m.strip() for m in months))
    for month in wanted:
        parse_month(month)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    population = build_population(seed)
    paths: list[Path] = []
    for month in wanted:
        for source in SOURCES:
            for name, data in render_files(source, month, seed=seed, population=population):
                path = out_dir / name
                path.write_bytes(data)
                paths.append(path)
    for name, data in (
        (MAPPINGS_FILE, render_mappings(population)),
        (CLOUD_MAPPINGS_FILE, render_cloud_mappings(population)),
    ):
        path = out_dir / name
        path.write_bytes(data)
        paths.append(path)
    return paths
