"""The sample data generator: deterministic, well-formed, planting every flag scenario;
its Slurm and quota samples convert to exactly the usage they hold."""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import asdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing import flags
from billing.audit import Actor
from billing.patterns import compile_user_pattern
from billing.rules import EMAIL_RE, PatternSpec, RuleSet, evaluate, map_tags
from ingest.focus.parsers import parse_timestamp
from ingest.usage.converters import slurm_conversion, storage_conversion
from ingest.usage.mapping_files import account_mapping_import
from ingest.usage.quotas import parse_size, read_quotas
from ingest.usage.rates import rate_create
from ingest.usage.sacct import DEFAULT_BILLABLE_STATES, FIELDS, SacctOptions, read_sacct
from openchargeback.demo.institution import build_population
from openchargeback.demo.onprem import DEMO_RATES, untagged_sub_accounts
from openchargeback.demo.sampledata import (
    generate_sample_files,
    render_file,
    sample_file_name,
    sample_file_names,
)
from openchargeback.demo.sources import (
    AMORTISED_SOURCE,
    CLOUD_MAPPINGS_FILE,
    COMMITMENT_PROJECT,
    CONVERTED_SOURCES,
    FOCUS_SOURCES,
    MAPPINGS_FILE,
    PART_FILES,
    SOURCES,
    UNMAPPED,
    UNTAGGED_SOURCE,
)

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS: dict[str, Any] = json.loads((ROOT / "fixtures" / "defaults.json").read_text())
MONTHS = ["2026-08", "2026-09", "2026-10"]
HEADER = [
    "BillingAccountId", "BillingAccountName", "BillingPeriodStart", "BillingPeriodEnd",
    "ChargePeriodStart", "ChargePeriodEnd", "BillingCurrency", "ListCost", "ListUnitPrice",
    "ContractedCost", "BilledCost", "EffectiveCost", "ChargeCategory", "ChargeDescription",
    "ConsumedQuantity", "ConsumedUnit", "ProviderName", "PublisherName", "InvoiceIssuerName",
    "RegionId", "ResourceId", "ResourceName", "ServiceCategory", "ServiceName", "SubAccountId",
    "SubAccountName", "CommitmentDiscountId", "CommitmentDiscountStatus",
    "CommitmentDiscountCategory", "Tags",
]  # fmt: skip
COSTS = ("ListCost", "ContractedCost", "BilledCost", "EffectiveCost")
NUMBER = re.compile(r"-?\d+(\.\d+)?")
MAPPING = {f: {k.strip().lower() for k in keys} for f, keys in DEFAULTS["tag_mapping"].items()}
FUND_ORG_PATTERNS = [compile_user_pattern(p["pattern"]) for p in DEFAULTS["fund_org_patterns"]]
LARGE = Decimal(DEFAULTS["institution"]["large_charge_threshold"])

Row = dict[str, str]


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample_data")
    generate_sample_files(out, months=MONTHS)
    return out


def read(path: Path) -> list[Row]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def month_rows(sample_dir: Path, source: str, month: str) -> list[Row]:
    """The rows of a source's month: its file, or its part files in order."""
    return [row for name in sample_file_names(source, month) for row in read(sample_dir / name)]


def all_rows(sample_dir: Path, *sources: str) -> list[Row]:
    """The rows of the FOCUS files (every source but hpc and storage)."""
    return [
        row
        for m in MONTHS
        for s in sources or FOCUS_SOURCES
        for row in month_rows(sample_dir, s, m)
    ]


def file_names(month: str) -> list[str]:
    return [n for s in SOURCES for n in sample_file_names(s, month)]


def untagged_subs() -> dict[str, str]:
    """SubAccountId -> project of the untagged projects (the last one unmapped)."""
    return {sub: p.project_id for sub, _n, p in untagged_sub_accounts(build_population(2026))}


def commitment_row(row: Row) -> bool:
    return bool(row["CommitmentDiscountId"])


def json_tags(cell: str) -> dict[str, Any] | None:
    try:
        value = json.loads(cell)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def tag(tags: dict[str, Any], field: str) -> str:
    for key, value in tags.items():
        if key.strip().lower() in MAPPING[field]:
            return str(value).strip()
    return ""


def raw_scenarios(row: Row, month: str, owners: dict[str, str]) -> set[str]:
    """What a row plants, judged from the raw cells; ``owners`` is project -> first PI seen."""
    found: set[str] = set()
    cell = row["Tags"]
    tags = json_tags(cell)
    if cell == "":
        found.add("empty_tags")
    elif cell == "NULL":
        found.add("null_tags")
    elif tags is None:
        found.add("invalid_tags")
    if tags is not None:
        pi, project, fund = (tag(tags, f) for f in ("pi_email", "project_id", "fund_org"))
        if not pi:
            found.add("missing_pi")
        elif not EMAIL_RE.match(pi.lower()):
            found.add("invalid_pi_email")
        if not project:
            found.add("missing_project")
        if not fund:
            found.add("missing_fund_org")
        elif not any(p.fullmatch(fund) for p in FUND_ORG_PATTERNS):
            found.add("invalid_fund_org")
        if project and EMAIL_RE.match(pi.lower()) and owners.setdefault(project, pi) != pi:
            found.add("project_pi_mismatch")
    if "marketplace" in row["ServiceName"].lower():
        found.add("pattern_match")
    if not row["BillingPeriodStart"].startswith(month):
        found.add("period_mismatch")
    if row["BillingCurrency"] != "USD":
        found.add("currency_mismatch")
    if abs(Decimal(row["BilledCost"])) > LARGE:
        found.add("large_charge")
    return found


# --- Determinism and files ---------------------------------------------------------


def test_same_seed_and_months_write_byte_identical_files(tmp_path: Path) -> None:
    first = generate_sample_files(tmp_path / "a", months=MONTHS, seed=7)
    second = generate_sample_files(tmp_path / "b", months=MONTHS, seed=7)
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_another_seed_writes_different_files(tmp_path: Path) -> None:
    (a,) = generate_sample_files(tmp_path / "a", months=["2026-09"], seed=1)[:1]
    (b,) = generate_sample_files(tmp_path / "b", months=["2026-09"], seed=2)[:1]
    assert a.read_bytes() != b.read_bytes()


def test_a_months_files_do_not_depend_on_the_other_months_requested(tmp_path: Path) -> None:
    generate_sample_files(tmp_path / "one", months=["2026-09"])
    generate_sample_files(tmp_path / "three", months=MONTHS)
    for name in [*file_names("2026-09"), MAPPINGS_FILE, CLOUD_MAPPINGS_FILE]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "three" / name).read_bytes()


def test_writes_one_file_per_source_and_month_and_returns_the_paths(sample_dir: Path) -> None:
    paths = generate_sample_files(sample_dir, months=MONTHS)
    assert [p.name for p in paths] == [
        *(n for m in MONTHS for n in file_names(m)),
        MAPPINGS_FILE,
        CLOUD_MAPPINGS_FILE,
    ]
    assert {p.name for p in sample_dir.iterdir()} == {p.name for p in paths}
    names = {p.name for p in paths}
    assert {
        "it_storage_2026-09.csv",
        "hpc_2026-09.sacct.txt",
        "storage_2026-09.quotas.csv",
        "aws_2026-09-00001.csv",
        "aws_2026-09-00002.csv",
    } <= names
    assert not {"hpc_2026-09.csv", "storage_2026-09.csv", "aws_2026-09.csv"} & names
    assert all(p.parent == sample_dir for p in paths)


def test_a_bad_month_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        generate_sample_files(tmp_path / "out", months=["2026-09", "2026-13"])
    assert not (tmp_path / "out").exists()


def test_files_are_utf8_without_bom_with_lf_endings_and_focus_files_have_the_header(
    sample_dir: Path,
) -> None:
    for path in sorted(sample_dir.iterdir()):
        data = path.read_bytes()
        assert not data.startswith(b"\xef\xbb\xbf")
        assert b"\r" not in data
        assert data.endswith(b"\n")
        first = next(csv.reader([data.decode("utf-8").split("\n", 1)[0]]))
        if path.name.endswith(".sacct.txt"):
            assert first[0].split("|")[0].isdigit()  # --noheader: the first job straight away
        elif path.name.endswith(".quotas.csv"):
            assert first in (
                ["quota", "bytes_used", "tier"],
                ["date", "quota", "bytes_used", "tier"],
            )
        elif path.name == MAPPINGS_FILE:
            assert first == ["kind", "name", "pi_email", "project_id", "fund_org"]
        elif path.name == CLOUD_MAPPINGS_FILE:
            assert first == [
                "kind", "name", "pi_email", "project_id", "fund_org", "source",
                "effective_from", "effective_to",
            ]  # fmt: skip
        else:
            assert first == HEADER


def test_each_source_month_has_a_few_hundred_rows_at_most(sample_dir: Path) -> None:
    for month in MONTHS:
        for source in FOCUS_SOURCES:
            for name in sample_file_names(source, month):
                assert 10 <= len(read(sample_dir / name)) <= 300, name
        jobs = sacct_lines(sample_dir, month)
        assert 100 <= len(jobs) <= 400


# --- Money -------------------------------------------------------------------------


def test_every_cost_cell_is_an_exact_decimal(sample_dir: Path) -> None:
    places: Counter[int] = Counter()
    for row in all_rows(sample_dir):
        for column in COSTS:
            cell = row[column]
            assert NUMBER.fullmatch(cell), (column, cell)
            assert Decimal(cell).is_finite()
            decimals = cell.partition(".")[2]
            places[len(decimals)] += 1
            assert decimals[9:].strip("0") == "", cell  # exact to 1e-9, as the ingest keeps
        for column in ("ListUnitPrice", "ConsumedQuantity"):
            assert row[column] == "" or NUMBER.fullmatch(row[column]), (column, row[column])
        assert Decimal(row["ListCost"]) >= Decimal(row["BilledCost"])
        if not commitment_row(row):
            assert Decimal(row["EffectiveCost"]) == Decimal(row["BilledCost"])
    assert max(places) == 10  # cloud costs carry up to 10 decimals
    assert len(places) >= 4  # and the sources differ in how many


def test_credit_rows_are_negative(sample_dir: Path) -> None:
    credits = [r for r in all_rows(sample_dir) if r["ChargeCategory"] == "Credit"]
    assert credits
    assert all(Decimal(r["BilledCost"]) < 0 for r in credits)


def test_aws_months_come_as_part_files_that_together_hold_the_month(sample_dir: Path) -> None:
    assert PART_FILES == {"aws": 2}
    for month in MONTHS:
        names = sample_file_names("aws", month)
        assert names == (f"aws_{month}-00001.csv", f"aws_{month}-00002.csv")
        parts = [read(sample_dir / n) for n in names]
        assert abs(len(parts[0]) - len(parts[1])) <= 1
        whole = list(csv.DictReader(render_file("aws", month).decode("utf-8").splitlines()))
        assert parts[0] + parts[1] == whole
    with pytest.raises(ValueError, match="part files"):
        sample_file_name("aws", "2026-09")


def test_the_amortised_source_buys_a_reservation_its_usage_and_unused_hours_add_up_to(
    sample_dir: Path,
) -> None:
    assert not [r for s in FOCUS_SOURCES if s != AMORTISED_SOURCE for r in all_rows(sample_dir, s)
                if commitment_row(r)]  # fmt: skip
    for month in MONTHS:
        rows = [r for r in month_rows(sample_dir, AMORTISED_SOURCE, month) if commitment_row(r)]
        assert len({r["CommitmentDiscountId"] for r in rows}) == 1
        (purchase,) = [r for r in rows if r["ChargeCategory"] == "Purchase"]
        (unused,) = [r for r in rows if r["CommitmentDiscountStatus"] == "Unused"]
        used = [r for r in rows if r["CommitmentDiscountStatus"] == "Used"]
        assert len(used) == len(rows) - 2 >= 1
        paid = Decimal(purchase["BilledCost"])
        assert paid > 0
        assert Decimal(purchase["EffectiveCost"]) == 0
        assert Decimal(unused["BilledCost"]) == 0 < Decimal(unused["EffectiveCost"])
        for row in used:  # covered: nothing billed, the reserved price effective
            assert Decimal(row["BilledCost"]) == 0
            effective = Decimal(row["EffectiveCost"])
            assert effective == Decimal(row["ConsumedQuantity"]) * Decimal("1.8360")
            assert 0 < effective < Decimal(row["ContractedCost"]) < Decimal(row["ListCost"])
            assert row["ChargeCategory"] == "Usage"
            assert row["ChargeDescription"] == "NC6s v3 - Linux"
        assert sum(Decimal(r["EffectiveCost"]) for r in [*used, unused]) == paid
        hours = sum(Decimal(r["ConsumedQuantity"]) for r in used)
        assert (
            Decimal("0.75")
            < hours / (hours + Decimal(unused["ConsumedQuantity"]))
            <= Decimal("0.85")
        )


def test_untagged_projects_are_mapped_by_sub_account_but_the_last(sample_dir: Path) -> None:
    subs = untagged_sub_accounts(build_population(2026))
    assert len(subs) == 3
    mappings = read(sample_dir / CLOUD_MAPPINGS_FILE)
    assert [
        (r["kind"], r["name"], r["pi_email"], r["project_id"], r["fund_org"], r["source"])
        for r in mappings
    ] == [
        ("sub_account", sub, p.pi.email, p.project_id, p.fund_org, UNTAGGED_SOURCE)
        for sub, _name, p in subs[:-1]
    ]
    wanted = {sub for sub, _n, _p in subs}
    for month in MONTHS:
        rows = [r for r in month_rows(sample_dir, UNTAGGED_SOURCE, month)
                if r["SubAccountId"] in wanted]  # fmt: skip
        assert {r["SubAccountId"] for r in rows} == wanted
        for row in rows:
            tags = json_tags(row["Tags"])
            assert tags is not None
            assert not any(tag(tags, f) for f in ("pi_email", "project_id", "fund_org"))
        for source in FOCUS_SOURCES:  # every other row of every source carries tags
            if source != UNTAGGED_SOURCE:
                assert (
                    not {r["SubAccountId"] for r in month_rows(sample_dir, source, month)} & wanted
                )


def test_cloud_is_discounted_it_storage_at_full_price(sample_dir: Path) -> None:
    for row in all_rows(sample_dir, "aws", "azure", "gcp"):
        if row["ChargeCategory"] != "Credit" and not commitment_row(row):
            assert Decimal(row["ListCost"]) > Decimal(row["BilledCost"]) > 0
            share = Decimal(row["BilledCost"]) / Decimal(row["ListCost"])
            assert Decimal("0.79") < share < Decimal("0.91")
    for row in all_rows(sample_dir, "it_storage"):
        assert Decimal(row["BilledCost"]) == Decimal(row["ListCost"]) > 0


def test_timestamps_parse_and_charge_periods_lie_in_their_billing_period(
    sample_dir: Path,
) -> None:
    for row in all_rows(sample_dir):
        bp_start, bp_end, cp_start, cp_end = (
            parse_timestamp(row[f"{kind}Period{edge}"])
            for kind in ("Billing", "Charge")
            for edge in ("Start", "End")
        )
        assert bp_start <= cp_start < cp_end <= bp_end
        assert bp_start.day == 1
        assert bp_end.day == 1
    assert (
        month_rows(sample_dir, "aws", "2026-09")[0]["BillingPeriodStart"] == "2026-09-01T00:00:00Z"
    )
    assert (
        read(sample_dir / "openai_2026-09.csv")[0]["BillingPeriodStart"] == "2026-09-01T00:00:00Z"
    )


# --- People, projects, services, tags ------------------------------------------------


def test_population_has_twenty_pis_and_fifty_projects_with_valid_fund_orgs() -> None:
    population = build_population(2026)
    assert len(population.pis) == 20
    assert len({p.email for p in population.pis}) == 20
    assert all(p.email.endswith("@example.edu") for p in population.pis)
    assert len({p.project_id for p in population.projects}) == 50
    for project in population.projects:
        assert any(p.fullmatch(project.fund_org) for p in FUND_ORG_PATTERNS), project.fund_org
    for source in SOURCES:
        assert len({r.project.project_id for r in population.resources[source]}) >= 5


def test_only_the_planted_rows_tag_a_project_with_another_pis_email(sample_dir: Path) -> None:
    owner = {p.project_id: p.pi.email for p in build_population(2026).projects}
    agree = disagree = 0
    for row in all_rows(sample_dir):
        tags = json_tags(row["Tags"]) or {}
        pi, project = tag(tags, "pi_email"), tag(tags, "project_id")
        if project and EMAIL_RE.match(pi):
            agree += pi == owner[project]
            disagree += pi != owner[project]
    assert agree > 900
    assert disagree == PLANTED_PER_MONTH["project_pi_mismatch"] * len(MONTHS)


def test_services_have_realistic_names(sample_dir: Path) -> None:
    names = {r["ServiceName"] for r in all_rows(sample_dir)}
    assert {
        "Amazon EC2",
        "Amazon S3",
        "Azure Virtual Machines",
        "BigQuery",
        "Secure File Services",
        "OpenAI API",
    } <= names


def test_tags_use_the_key_spellings_of_real_exports(sample_dir: Path) -> None:
    keys: set[str] = set()
    numeric: set[str] = set()
    for row in all_rows(sample_dir):
        tags = json_tags(row["Tags"]) or {}
        keys.update(tags)
        numeric.update(k for k, v in tags.items() if isinstance(v, int))
    assert {"pi_email", "project_id", "fund_org"} <= keys
    assert {"user:pi_email", "Project_ID ", " org", "ms:Department"} <= keys
    assert "grant_number" in numeric


# --- Planted flag scenarios ----------------------------------------------------------

PLANTED_PER_MONTH = {
    "missing_pi": 1,
    "invalid_pi_email": 2,
    "missing_project": 1,
    "missing_fund_org": 1,
    "invalid_fund_org": 2,
    "pattern_match": 2,
    "period_mismatch": 2,
    "currency_mismatch": 2,
    "large_charge": 2,
    "project_pi_mismatch": 2,
    "invalid_tags": 2,
    "empty_tags": 1,
    "null_tags": 1,
}


@pytest.mark.parametrize("month", MONTHS)
def test_each_month_plants_every_flag_scenario_a_few_times(sample_dir: Path, month: str) -> None:
    counts: Counter[str] = Counter()
    examples: dict[str, Row] = {}
    untagged = untagged_subs()
    for source in FOCUS_SOURCES:
        owners: dict[str, str] = {}  # per month: the owner must appear earlier in its rows
        for row in month_rows(sample_dir, source, month):
            if row["SubAccountId"] in untagged:
                continue  # no tags by design: attributed by sub-account (see below)
            for scenario in raw_scenarios(row, month, owners):
                counts[scenario] += 1
                examples.setdefault(scenario, row)
    assert dict(counts) == PLANTED_PER_MONTH
    assert examples["currency_mismatch"]["BillingCurrency"] == "EUR"
    assert "Marketplace" in examples["pattern_match"]["ServiceName"]
    assert examples["period_mismatch"]["BillingPeriodStart"] < month
    # Unmapped Slurm accounts and storage quotas come from the converters'
    # sample inputs, not from FOCUS files: see
    # test_the_demo_flags_unmapped_accounts_and_puts_hpc_and_storage_on_statements.
    focus_reasons = set(flags.REASONS) - {"unmapped_account"}
    assert set(PLANTED_PER_MONTH) - {"empty_tags", "null_tags"} == focus_reasons


def test_default_rules_flag_only_the_planted_rows(sample_dir: Path) -> None:
    """Replays the default rule set over the files in ingest order, as `ingest --period` would."""
    ruleset = RuleSet(
        mapping={f: tuple(k.strip().lower() for k in keys) for f, keys in MAPPING.items()},
        patterns=tuple(
            PatternSpec(r["name"], compile_user_pattern(r["pattern"]), r["target"])
            for r in DEFAULTS["pattern_rules"]
            if r["enabled"]
        ),
        fund_org_patterns=tuple(FUND_ORG_PATTERNS),
        large_charge_nanos=int(LARGE.scaleb(9)),
        currency=DEFAULTS["institution"]["currency"],
    )
    # The sub-account mappings the demo imports first: a row whose tags name nobody else
    # takes PI, project and fund/org from them; other rows of that source with no PI or
    # no project are also flagged unmapped_account.
    mapped = {
        r["name"]: {f: r[f] for f in ("pi_email", "project_id", "fund_org")}
        for r in read(sample_dir / CLOUD_MAPPINGS_FILE)
    }
    (unmapped_sub,) = set(untagged_subs()) - set(mapped)
    owners: dict[str, str] = {}
    for month in MONTHS:
        reasons: Counter[str] = Counter()
        flagged = 0
        for source in FOCUS_SOURCES:
            for row in month_rows(sample_dir, source, month):
                attribution = map_tags(row["Tags"], ruleset)
                values = dict(attribution.values)
                owner = mapped.get(row["SubAccountId"]) if source == UNTAGGED_SOURCE else None
                if owner and all(
                    values.get(f, "") in ("", owner[f]) for f in ("pi_email", "project_id")
                ):
                    values = {f: values.get(f) or owner[f] for f in owner}
                pi = values.get("pi_email", "")
                project = values.get("project_id", "")
                unmapped = ""
                if source == UNTAGGED_SOURCE and owner is None:
                    unmapped = f"sub-account {row['SubAccountId']}"
                mask, _details = evaluate(
                    ruleset,
                    pi_email=pi,
                    project_id=project,
                    fund_org=values.get("fund_org", ""),
                    unmapped=unmapped,
                    service_name=row["ServiceName"],
                    resource_id=row["ResourceId"],
                    resource_name=row["ResourceName"],
                    period=parse_timestamp(row["BillingPeriodStart"]).strftime("%Y-%m"),
                    expected_period=month,
                    currency=row["BillingCurrency"],
                    billed_nanos=int(Decimal(row["BilledCost"]).scaleb(9)),
                    tags_invalid=attribution.tags_invalid,
                    project_owner_email=owners.get(project) if project else None,
                )
                if project and pi:
                    owners.setdefault(project, pi)
                flagged += mask != 0
                reasons.update(flags.from_mask(mask))
        # The unmapped untagged project's rows, and the planted rows of that source
        # without a PI or a project (their sub-accounts are not mapped either).
        cloud = month_rows(sample_dir, UNTAGGED_SOURCE, month)
        lost = sum(r["SubAccountId"] == unmapped_sub for r in cloud)
        ownerless = {"missing_pi", "missing_project", "invalid_tags", "empty_tags", "null_tags"}
        unowned = sum(
            bool(raw_scenarios(r, month, {}) & ownerless)
            for r in cloud
            if r["SubAccountId"] not in untagged_subs()
        )
        assert lost > 0, month
        assert flagged == sum(PLANTED_PER_MONTH.values()) + lost, month
        # Rows without usable tags (invalid, empty, NULL) also miss PI, project and
        # fund/org; a badly spelled PI on a known project is also a project/PI mismatch.
        assert dict(reasons) == {
            "missing_pi": 5 + lost,
            "invalid_pi_email": 2,
            "missing_project": 5 + lost,
            "missing_fund_org": 5 + lost,
            "invalid_fund_org": 2,
            "pattern_match": 2,
            "period_mismatch": 2,
            "currency_mismatch": 2,
            "large_charge": 2,
            "project_pi_mismatch": 4,
            "invalid_tags": 2,
            "unmapped_account": lost + unowned,
        }, month


# --- On-premises samples: sacct output, quota reports, mappings, rate card -----------

ACTOR = Actor(name="tester", channel="cli")
Key = tuple[str, str, str, str, date]  # resource, account, partition/tier, qos, day


def sacct_lines(sample_dir: Path, month: str) -> list[list[str]]:
    text = (sample_dir / sample_file_name("hpc", month)).read_text(encoding="utf-8")
    return [line.split("|") for line in text.splitlines() if line]


def month_bounds(month: str) -> tuple[datetime, datetime]:
    first = datetime.fromisoformat(f"{month}-01T00:00:00")
    return first, (first + timedelta(days=32)).replace(day=1)


def elapsed_seconds(text: str) -> int:
    days, _, clock = text.rpartition("-")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return int(days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds


def expected_slurm_usage(jobs: list[list[str]], month: str) -> dict[Key, Fraction]:
    """Hours per (resource, account, partition, QOS, day) worked out from the raw fields:
    billable jobs (default states, FAILED from 5 minutes), clipped to the month."""
    low, high = month_bounds(month)
    usage: dict[Key, Fraction] = defaultdict(Fraction)
    for cells in jobs:
        job = dict(zip(FIELDS, cells, strict=True))
        state = job["State"].split()[0]
        seconds = elapsed_seconds(job["Elapsed"])
        if state not in DEFAULT_BILLABLE_STATES or (state == "FAILED" and seconds < 300):
            continue
        tres = dict(item.split("=") for item in job["AllocTRES"].split(","))
        counts = {"cpu": int(job["AllocCPUS"]), "gpu": int(tres.get("gres/gpu", "0"))}
        start = datetime.fromisoformat(job["Start"])
        end = start + timedelta(seconds=seconds)
        moment = max(start, low)
        while moment < min(end, high):
            midnight = datetime.combine(moment.date() + timedelta(days=1), datetime.min.time())
            upto = min(end, high, midnight)
            part = (upto - moment) // timedelta(seconds=1)
            for resource, n in counts.items():
                if n:
                    key = (resource, job["Account"], job["Partition"], job["QOS"], moment.date())
                    usage[key] += Fraction(n * part, 3600)
            moment = upto
    return dict(usage)


def size_bytes(text: str) -> int:
    number, _, unit = text.partition(" ")
    exact = Decimal(number) * {"": 1, "GB": 10**9, "TB": 10**12}[unit]
    assert exact == exact.to_integral_value(), text
    return int(exact)


def expected_tb_months(path: Path, month: str) -> dict[tuple[str, str], Fraction]:
    """TB-months per (quota, tier): one size all month, or each day the latest snapshot."""
    low, high = month_bounds(month)
    days = (high - low).days
    rows = read(path)
    result: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    if "date" not in rows[0]:
        for row in rows:
            result[(row["quota"], row["tier"])] += Fraction(size_bytes(row["bytes_used"]), 10**12)
        return dict(result)
    snapshots: dict[tuple[str, str], dict[date, int]] = defaultdict(dict)
    for row in rows:
        snapshots[(row["quota"], row["tier"])][date.fromisoformat(row["date"])] = size_bytes(
            row["bytes_used"]
        )
    for key, sizes in snapshots.items():
        for n in range(days):
            day = low.date() + timedelta(days=n)
            known = [d for d in sizes if d <= day]
            if known:
                result[key] += Fraction(sizes[max(known)], 10**12 * days)
    return dict(result)


def test_sacct_samples_parse_and_every_billable_cpu_second_is_counted(sample_dir: Path) -> None:
    for month in MONTHS:
        jobs = sacct_lines(sample_dir, month)
        assert all(len(cells) == len(FIELDS) for cells in jobs)
        assert len({cells[0] for cells in jobs}) == len(jobs)  # JobIDs unique
        name = sample_file_name("hpc", month)
        with (sample_dir / name).open(encoding="utf-8") as fh:
            usages, summary = read_sacct(
                fh, name=name, period=month, options=SacctOptions.default()
            )
        expected = expected_slurm_usage(jobs, month)
        got = {(u.resource, u.account, u.service, u.qos, u.day): u.quantity for u in usages}
        assert got == expected, month
        assert summary.cpu_hours == sum(v for k, v in expected.items() if k[0] == "cpu")
        assert summary.gpu_hours == sum(v for k, v in expected.items() if k[0] == "gpu") > 0
        # every line accounted for: billed, or skipped for its state (cancelled, short failures)
        assert summary.lines == len(jobs)
        assert summary.jobs_billed + sum(summary.skipped_by_state.values()) == len(jobs)
        assert {"CANCELLED", "FAILED"} <= set(summary.skipped_by_state)
        assert {cells[9].split()[0] for cells in jobs} >= {"COMPLETED", "TIMEOUT", "OUT_OF_MEMORY"}
        low, high = month_bounds(month)
        starts = [datetime.fromisoformat(c[7]) for c in jobs if c[7] != "None"]
        assert min(starts) < low  # the job running in from the month before
        assert max(datetime.fromisoformat(c[8]) for c in jobs if c[8] != "None") > high


def test_the_job_straddling_a_month_end_is_billed_once_across_the_two_months(
    sample_dir: Path,
) -> None:
    for month, following in itertools.pairwise(MONTHS):
        last, first = sacct_lines(sample_dir, month)[-1], sacct_lines(sample_dir, following)[0]
        assert last == first  # the same job, as sacct prints it for either month
        both = [expected_slurm_usage([last], m) for m in (month, following)]
        assert all(both)
        cpu_hours = sum(v for part in both for v in part.values())
        assert cpu_hours == Fraction(int(last[4]) * elapsed_seconds(last[6]), 3600)


def test_quota_samples_parse_to_the_tb_months_they_hold(sample_dir: Path) -> None:
    for month in MONTHS:
        path = sample_dir / sample_file_name("storage", month)
        usages, summary = read_quotas(path, name=path.name, period=month, default_tier="none")
        expected = expected_tb_months(path, month)
        got: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
        for u in usages:
            got[(u.account, u.service)] += u.quantity
        assert dict(got) == expected, month
        assert summary.tb_months == sum(expected.values())
        assert summary.dated == (month == "2026-09")  # one month of daily snapshots
        assert set(summary.tiers) == {"standard", "scratch", "archive"}
        if summary.dated:
            assert summary.snapshots_before_period > 0
            assert summary.quotas_billed == summary.quotas == len(expected)
        units = {cell.partition(" ")[2] for cell in (r["bytes_used"] for r in read(path))}
        assert units == {"", "GB", "TB"}
        assert all(size_bytes(r["bytes_used"]) == parse_size(r["bytes_used"]) for r in read(path))


def test_the_mapping_file_maps_every_account_but_the_unmapped_ones(sample_dir: Path) -> None:
    population = build_population(2026)
    owner = {p.project_id: (p.pi.email, p.fund_org) for p in population.projects}
    mappings = read(sample_dir / MAPPINGS_FILE)
    names = {(r["kind"], r["name"]) for r in mappings}
    assert len(names) == len(mappings)
    for row in mappings:
        assert (row["pi_email"], row["fund_org"]) == owner[row["project_id"]]
    accounts = {c[1] for m in MONTHS for c in sacct_lines(sample_dir, m)}
    quotas = {r["quota"] for m in MONTHS for r in read(sample_dir / sample_file_name("storage", m))}
    assert {n for k, n in names if k == "slurm"} == accounts - set(UNMAPPED["slurm"])
    assert {n for k, n in names if k == "storage"} == quotas - set(UNMAPPED["storage"])
    assert set(UNMAPPED["slurm"]) <= accounts
    assert set(UNMAPPED["storage"]) <= quotas
    # an account is the PI's last name and the project's first word; a quota is a path
    for row in mappings:
        last = row["pi_email"].split("@")[0].split(".")[-1].replace("-", "")
        account = f"{last}_{row['project_id'].split('-')[0]}"
        if row["kind"] == "slurm":
            assert row["name"] == account
        else:
            tier, _, leaf = row["name"].strip("/").partition("/")
            assert (tier, leaf) in {
                ("research", row["project_id"]),
                ("archive", row["project_id"]),
                ("scratch", account),
            }


def _load_rates_and_mappings(sample_dir: Path) -> None:
    for spec in DEMO_RATES:
        rate_create(actor=ACTOR, **asdict(spec))
    account_mapping_import(path=sample_dir / MAPPINGS_FILE, actor=ACTOR)


def test_the_rate_card_changes_a_rate_in_the_middle_of_a_demo_month() -> None:
    changes = [r for r in DEMO_RATES if r.effective_from.day != 1]
    assert [f"{r.effective_from:%Y-%m}" for r in changes] == ["2026-09"]
    assert all(r.subsidy_percent > 0 for r in DEMO_RATES)
    assert {r.resource for r in DEMO_RATES if r.free_allowance} == {"cpu", "gpu", "storage"}


@pytest.mark.django_db
def test_converted_months_bill_exactly_the_generated_usage(sample_dir: Path) -> None:
    _load_rates_and_mappings(sample_dir)
    options = SacctOptions.default()
    for month in MONTHS:
        name = sample_file_name("hpc", month)
        with (sample_dir / name).open(encoding="utf-8") as fh:
            slurm = slurm_conversion(lines=fh, name=name, period=month, options=options)
        expected = expected_slurm_usage(sacct_lines(sample_dir, month), month)
        got = {
            (r.resource, r.account, r.service, r.qos, r.start_day): r.quantity for r in slurm.rows
        }
        assert got == expected, month
        assert sum(r.quantity for r in slurm.rows if r.resource == "cpu") == sum(
            v for k, v in expected.items() if k[0] == "cpu"
        )
        assert slurm.unmapped == list(UNMAPPED["slurm"])
        for row in slurm.rows:
            assert row.list_nanos == round(row.quantity * Fraction(row.terms.list_rate) * 10**9)
            if row.service == "bigmem":  # 80% subsidy, nothing free
                assert row.billed_nanos == round(row.quantity * Fraction("0.008") * 10**9)
            if row.resource == "gpu":  # the price review of 16 September
                new = row.start_day >= date(2026, 9, 16)
                assert row.terms.list_rate == Decimal("1.0500" if new else "1.2000")
        assert 0 < slurm.billed_cost < slurm.list_cost

        path = sample_dir / sample_file_name("storage", month)
        storage = storage_conversion(path=path, name=path.name, period=month, tier="none")
        tb = expected_tb_months(path, month)
        by_quota: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
        for row in storage.rows:
            by_quota[(row.account, row.service)] += row.quantity
        assert dict(by_quota) == tb
        assert storage.unmapped == list(UNMAPPED["storage"])
        if month != "2026-09":  # one size all month: 1 TB free, then 8.00 a TB-month, half paid
            for row in storage.rows:
                if row.service == "standard":
                    chargeable = max(Fraction(0), tb[(row.account, "standard")] - 1)
                    assert row.billed_nanos == round(chargeable * 4 * 10**9), row.account


@pytest.mark.django_db
def test_the_demo_flags_unmapped_accounts_and_puts_hpc_and_storage_on_statements(
    tmp_path: Path, settings: Any
) -> None:
    from billing.models import Charge
    from ingest.models import AccountMapping, Import, Rate
    from statements.models import Statement, StatementCharge

    settings.MEDIA_ROOT = str(tmp_path / "media")
    call_command("demo", "--no-admin-user", "--output", str(tmp_path / "samples"), stdout=_quiet())
    bit = flags.REASONS["unmapped_account"][0]
    unmapped = Charge.objects.filter(flags__gte=bit).select_related("period", "source")
    found = {
        (c.period.period, c.source.slug, c.flag_details["unmapped_account"], c.review_state)
        for c in unmapped
        if "unmapped_account" in c.flag_reasons and c.source.slug in CONVERTED_SOURCES
    }
    assert found == {
        (m, slug, label, "rejected" if m == MONTHS[0] else "pending")
        for m in MONTHS
        for slug, label in (
            ("hpc", f"Slurm account {UNMAPPED['slurm'][0]}"),
            ("storage", f"Storage quota {UNMAPPED['storage'][0]}"),
        )
    }
    flagged = [
        c
        for c in unmapped
        if "unmapped_account" in c.flag_reasons and c.source.slug in CONVERTED_SOURCES
    ]
    assert all(c.pi_id is None for c in flagged)
    # every other converted charge belongs to its project's PI
    owner = {p.project_id: p.pi.email for p in build_population(2026).projects}
    converted = Charge.objects.filter(source__slug__in=CONVERTED_SOURCES).exclude(
        pk__in=[c.pk for c in flagged]
    )
    assert converted.count() > 1000
    for project, pi in converted.values_list("project__project_id", "pi__email").distinct():
        assert owner[project] == pi

    # the first month's statements show on-premises lines next to the cloud ones
    sources: dict[int, set[str]] = defaultdict(set)
    for statement, slug in StatementCharge.objects.filter(
        statement__period__period=MONTHS[0], statement__superseded_at__isnull=True
    ).values_list("statement_id", "charge__source__slug"):
        sources[statement].add(slug)
    cloud = set(FOCUS_SOURCES)
    mixed = [s for s in sources.values() if {"hpc", "storage"} <= s and s & cloud]
    assert mixed
    assert sum(1 for s in sources.values() if "hpc" in s and s & cloud) >= 3
    assert Statement.objects.filter(pk__in=list(sources)).count() == len(sources)

    _check_the_demos_real_export_cases(MONTHS)

    counts = (Charge.objects.count(), Import.objects.count(), Rate.objects.count())
    assert counts[2] == len(DEMO_RATES)
    mappings = AccountMapping.objects.count()
    call_command("demo", "--no-admin-user", "--output", str(tmp_path / "samples"), stdout=_quiet())
    assert (Charge.objects.count(), Import.objects.count(), Rate.objects.count()) == counts
    assert AccountMapping.objects.count() == mappings


def _check_the_demos_real_export_cases(months: list[str]) -> None:
    """Part files, the amortised source's reservation, EUR at a rate, sub-account mappings."""
    from billing.models import Charge
    from ingest.models import Import
    from statements.models import StatementCharge

    # each AWS month: its two part files, one delivery
    for month in months:
        imports = Import.objects.filter(source__slug="aws", expected_period=month)
        assert sorted(imports.values_list("file_name", flat=True)) == list(
            sample_file_names("aws", month)
        )
        assert imports.values("delivery").distinct().count() == 1
    # the reservation: purchase and unused hours to the commitment project, the covered
    # usage billed at its EffectiveCost to the projects that ran it
    azure = Charge.objects.filter(source__slug=AMORTISED_SOURCE)
    assert set(azure.values_list("cost_basis", flat=True)) == {"amortised"}
    central = azure.filter(project__project_id=COMMITMENT_PROJECT)
    assert sorted(central.values_list("period__period", "charge_category")) == sorted(
        (m, c) for m in months for c in ("Purchase", "Usage")
    )
    for charge in central:
        if charge.charge_category == "Purchase":
            assert charge.billed_cost == 0 < (charge.invoiced_cost or 0)
        else:
            assert charge.commitment_discount_status == "Unused"
            assert charge.billed_cost > 0
    used = azure.filter(commitment_discount_status="Used")
    assert used.exists()
    assert not used.filter(project__project_id=COMMITMENT_PROJECT).exists()
    assert all(c.billed_cost > 0 and c.invoiced_cost == 0 for c in used)
    # EUR rows: billed in dollars at the month's rate, on the first month's statements
    eur = Charge.objects.filter(billing_currency="EUR")
    assert {c.exchange_rate for c in eur} == {"1.0850"}
    first = eur.filter(period__period=months[0])
    assert first
    assert all(c.review_state == "approved" for c in first)
    assert StatementCharge.objects.filter(charge__in=first).count() == first.count()
    # untagged GCP projects: attributed by their sub-account, the last one left unmapped
    subs = untagged_sub_accounts(build_population(2026))
    gcp = Charge.objects.filter(source__slug=UNTAGGED_SOURCE)
    for sub, _name, project in subs[:-1]:
        rows = gcp.filter(sub_account_id=sub)
        assert rows.exists()
        assert set(rows.values_list("project__project_id", "pi__email", "flags")) == {
            (project.project_id, project.pi.email, 0)
        }
    lost = gcp.filter(sub_account_id=subs[-1][0])
    assert {c.period.period for c in lost} == set(months)
    assert all(c.pi_id is None and "unmapped_account" in c.flag_reasons for c in lost)
    assert {c.review_state for c in lost if c.period.period != months[0]} == {"pending"}


def _quiet() -> Any:
    from io import StringIO

    return StringIO()


# --- The command -------------------------------------------------------------------


def test_command_writes_the_files_and_prints_one_summary_line(tmp_path: Path) -> None:
    out = tmp_path / "samples"
    stdout = _run("--output", str(out), "--months", "2026-09,2026-10", "--seed", "5")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MAPPINGS_FILE, CLOUD_MAPPINGS_FILE, *file_names("2026-09"), *file_names("2026-10")]
    )
    assert stdout.count("\n") == 1
    assert "Wrote 18 files" in stdout
    assert str(out) in stdout
    jobs = sum(len(sacct_lines(out, m)) for m in ("2026-09", "2026-10"))
    focus = sum(len(read(p)) for p in out.iterdir() if not p.name.endswith(".sacct.txt"))
    assert f"({jobs + focus:,} rows" in stdout


def test_command_rerun_overwrites_its_files_with_the_same_bytes(tmp_path: Path) -> None:
    _run("--output", str(tmp_path), "--months", "2026-09")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    (tmp_path / "aws_2026-09-00002.csv").write_text("stale\n")
    _run("--output", str(tmp_path), "--months", "2026-09")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_command_defaults_to_sample_data_under_base_dir(tmp_path: Path, settings: Any) -> None:
    settings.BASE_DIR = tmp_path
    _run("--months", "2026-09")
    assert (tmp_path / "sample_data" / "openai_2026-09.csv").is_file()
    assert len(list((tmp_path / "sample_data").iterdir())) == len(file_names("2026-09")) + 2


@pytest.mark.parametrize("months", ["2026-13", "2026-9", "26-09", "September", "2026-09,oops", ","])
def test_command_rejects_a_bad_month_and_writes_nothing(tmp_path: Path, months: str) -> None:
    with pytest.raises(CommandError, match="--months") as excinfo:
        _run("--output", str(tmp_path / "out"), "--months", months)
    assert "\n" not in str(excinfo.value)
    assert excinfo.value.returncode != 0
    assert not (tmp_path / "out").exists()


def test_command_line_exits_non_zero_with_one_line_for_a_bad_month(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "generate_sample_data", "--months", "2026-13"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "DEBUG": "true"},
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "2026-13" in result.stderr


def _run(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("generate_sample_data", *args, stdout=out)
    return out.getvalue()
