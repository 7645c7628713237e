"""The sample FOCUS generator: deterministic, well-formed, and planting every flag scenario."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing import flags
from billing.rules import EMAIL_RE, PatternSpec, RuleSet, evaluate, map_tags
from ingest.parsers import parse_timestamp
from ingest.sampledata import SOURCES, build_population, generate_sample_files

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS: dict[str, Any] = json.loads((ROOT / "fixtures" / "defaults.json").read_text())
MONTHS = ["2026-08", "2026-09", "2026-10"]
HEADER = [
    "BillingAccountId", "BillingAccountName", "BillingPeriodStart", "BillingPeriodEnd",
    "ChargePeriodStart", "ChargePeriodEnd", "BillingCurrency", "ListCost", "ListUnitPrice",
    "ContractedCost", "BilledCost", "EffectiveCost", "ChargeCategory", "ChargeDescription",
    "ConsumedQuantity", "ConsumedUnit", "ProviderName", "PublisherName", "InvoiceIssuerName",
    "RegionId", "ResourceId", "ResourceName", "ServiceCategory", "ServiceName", "SubAccountId",
    "SubAccountName", "Tags",
]  # fmt: skip
COSTS = ("ListCost", "ContractedCost", "BilledCost", "EffectiveCost")
NUMBER = re.compile(r"-?\d+(\.\d+)?")
MAPPING = {f: {k.strip().lower() for k in keys} for f, keys in DEFAULTS["tag_mapping"].items()}
FUND_ORG_PATTERNS = [re.compile(p["pattern"]) for p in DEFAULTS["fund_org_patterns"]]
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


def all_rows(sample_dir: Path, *sources: str) -> list[Row]:
    return [
        row for m in MONTHS for s in sources or SOURCES for row in read(sample_dir / f"{s}_{m}.csv")
    ]


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
    for source in SOURCES:
        name = f"{source}_2026-09.csv"
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "three" / name).read_bytes()


def test_writes_one_file_per_source_and_month_and_returns_the_paths(sample_dir: Path) -> None:
    paths = generate_sample_files(sample_dir, months=MONTHS)
    assert [p.name for p in paths] == [f"{s}_{m}.csv" for m in MONTHS for s in SOURCES]
    assert {p.name for p in sample_dir.iterdir()} == {p.name for p in paths}
    assert "it_storage_2026-09.csv" in {p.name for p in paths}
    assert all(p.parent == sample_dir for p in paths)


def test_a_bad_month_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        generate_sample_files(tmp_path / "out", months=["2026-09", "2026-13"])
    assert not (tmp_path / "out").exists()


def test_files_have_the_focus_header_utf8_without_bom_and_lf_endings(sample_dir: Path) -> None:
    for path in sorted(sample_dir.iterdir()):
        data = path.read_bytes()
        assert not data.startswith(b"\xef\xbb\xbf")
        assert b"\r" not in data
        assert data.endswith(b"\n")
        text = data.decode("utf-8")
        assert next(csv.reader([text.split("\n", 1)[0]])) == HEADER


def test_each_source_month_has_a_few_hundred_rows_at_most(sample_dir: Path) -> None:
    for path in sample_dir.iterdir():
        assert 10 <= len(read(path)) <= 300, path.name


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
        assert Decimal(row["EffectiveCost"]) == Decimal(row["BilledCost"])
    assert max(places) == 10  # cloud costs carry up to 10 decimals
    assert len(places) >= 4  # and the sources differ in how many


def test_credit_rows_are_negative(sample_dir: Path) -> None:
    credits = [r for r in all_rows(sample_dir) if r["ChargeCategory"] == "Credit"]
    assert credits
    assert all(Decimal(r["BilledCost"]) < 0 for r in credits)


def test_hpc_rows_are_fully_subsidised(sample_dir: Path) -> None:
    rows = all_rows(sample_dir, "hpc")
    assert rows
    for row in rows:
        assert Decimal(row["BilledCost"]) == 0
        assert Decimal(row["ListCost"]) > 0


def test_cloud_is_discounted_storage_half_subsidised_it_storage_full_price(
    sample_dir: Path,
) -> None:
    for row in all_rows(sample_dir, "aws", "azure", "gcp"):
        if row["ChargeCategory"] != "Credit":
            assert Decimal(row["ListCost"]) > Decimal(row["BilledCost"]) > 0
            share = Decimal(row["BilledCost"]) / Decimal(row["ListCost"])
            assert Decimal("0.79") < share < Decimal("0.91")
    for row in all_rows(sample_dir, "storage"):
        list_cost, billed = Decimal(row["ListCost"]), Decimal(row["BilledCost"])
        assert list_cost > 0
        assert abs(billed * 2 - list_cost) <= Decimal("0.0001")  # half, to the file's 4 places
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
        assert bp_start.day == 1 and bp_end.day == 1
    assert read(sample_dir / "aws_2026-09.csv")[0]["BillingPeriodStart"] == "2026-09-01T00:00:00Z"
    assert read(sample_dir / "hpc_2026-09.csv")[0]["BillingPeriodStart"] == "2026-09-01 00:00:00"


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
    assert agree > 1000
    assert disagree == PLANTED_PER_MONTH["project_pi_mismatch"] * len(MONTHS)


def test_services_have_realistic_names(sample_dir: Path) -> None:
    names = {r["ServiceName"] for r in all_rows(sample_dir)}
    assert {
        "Amazon EC2",
        "Amazon S3",
        "Azure Virtual Machines",
        "BigQuery",
        "HPC Cluster - CPU",
        "HPC Cluster - GPU",
        "Research Storage - Project",
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
    for source in SOURCES:
        owners: dict[str, str] = {}  # per file: the owner must appear earlier in the same file
        for row in read(sample_dir / f"{source}_{month}.csv"):
            for scenario in raw_scenarios(row, month, owners):
                counts[scenario] += 1
                examples.setdefault(scenario, row)
    assert dict(counts) == PLANTED_PER_MONTH
    assert examples["currency_mismatch"]["BillingCurrency"] == "EUR"
    assert "Marketplace" in examples["pattern_match"]["ServiceName"]
    assert examples["period_mismatch"]["BillingPeriodStart"] < month
    assert set(PLANTED_PER_MONTH) - {"empty_tags", "null_tags"} == set(flags.REASONS)


def test_default_rules_flag_only_the_planted_rows(sample_dir: Path) -> None:
    """Replays the default rule set over the files in ingest order, as `ingest --period` would."""
    ruleset = RuleSet(
        mapping={f: tuple(k.strip().lower() for k in keys) for f, keys in MAPPING.items()},
        patterns=tuple(
            PatternSpec(r["name"], re.compile(r["pattern"]), r["target"])
            for r in DEFAULTS["pattern_rules"]
            if r["enabled"]
        ),
        fund_org_patterns=tuple(FUND_ORG_PATTERNS),
        large_charge_nanos=int(LARGE.scaleb(9)),
        currency=DEFAULTS["institution"]["currency"],
    )
    owners: dict[str, str] = {}
    for month in MONTHS:
        reasons: Counter[str] = Counter()
        flagged = 0
        for source in SOURCES:
            for row in read(sample_dir / f"{source}_{month}.csv"):
                attribution = map_tags(row["Tags"], ruleset)
                pi = attribution.values.get("pi_email", "")
                project = attribution.values.get("project_id", "")
                mask, _details = evaluate(
                    ruleset,
                    pi_email=pi,
                    project_id=project,
                    fund_org=attribution.values.get("fund_org", ""),
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
        assert flagged == sum(PLANTED_PER_MONTH.values()), month
        # Rows without usable tags (invalid, empty, NULL) also miss PI, project and
        # fund/org; a badly spelled PI on a known project is also a project/PI mismatch.
        assert dict(reasons) == {
            "missing_pi": 5,
            "invalid_pi_email": 2,
            "missing_project": 5,
            "missing_fund_org": 5,
            "invalid_fund_org": 2,
            "pattern_match": 2,
            "period_mismatch": 2,
            "currency_mismatch": 2,
            "large_charge": 2,
            "project_pi_mismatch": 4,
            "invalid_tags": 2,
        }, month


# --- The command -------------------------------------------------------------------


def test_command_writes_the_files_and_prints_one_summary_line(tmp_path: Path) -> None:
    out = tmp_path / "samples"
    stdout = _run("--output", str(out), "--months", "2026-09,2026-10", "--seed", "5")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}_{m}.csv" for s in SOURCES for m in ("2026-09", "2026-10")
    )
    assert stdout.count("\n") == 1
    assert "Wrote 14 files" in stdout and str(out) in stdout


def test_command_rerun_overwrites_its_files_with_the_same_bytes(tmp_path: Path) -> None:
    _run("--output", str(tmp_path), "--months", "2026-09")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    (tmp_path / "aws_2026-09.csv").write_text("stale\n")
    _run("--output", str(tmp_path), "--months", "2026-09")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_command_defaults_to_sample_data_under_base_dir(tmp_path: Path, settings: Any) -> None:
    settings.BASE_DIR = tmp_path
    _run("--months", "2026-09")
    assert (tmp_path / "sample_data" / "openai_2026-09.csv").is_file()
    assert len(list((tmp_path / "sample_data").iterdir())) == len(SOURCES)


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
