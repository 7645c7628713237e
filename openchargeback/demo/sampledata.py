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
:data:`DEMO_RATES` (HPC heavily subsidised, storage half subsidised with a free
allowance, a GPU price change in mid-September 2026).

The people are invented PIs, projects and fund/orgs; the FOCUS files have
per-source services and discounts (cloud discounted, IT storage at full
price), the tag-key variety of real exports, and in every month a handful of
rows that trip each auto-flag rule of the default settings (see
:data:`SCENARIOS`). The on-premises samples plant their own cases: a Slurm
account and a quota nobody mapped (:data:`UNMAPPED`: flagged
``unmapped_account``), jobs that are not billable (cancelled, short failures),
and a job running from the last evening of each month into the next one.
Azure (:data:`AMORTISED_SOURCE`, billed amortised by the demo) holds a GPU
reservation bought each month: the purchase row, the usage it covers (billed
0, EffectiveCost at the reserved price) and its unused hours, whose
EffectiveCosts add up to the purchase exactly. A few Azure and GCP rows are
in EUR.

The same seed and month always give the same bytes: the people and resources
come from ``random.Random(seed)``, each file from its own generator seeded with
``(seed, source, month)``, so a file does not depend on which other months were
asked for, nor on the current date.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from pathlib import Path

from billing.errors import BillingError
from billing.periods import year_month
from openchargeback.csvfile import LF, CsvWriter

SOURCES: tuple[str, ...] = ("aws", "azure", "gcp", "hpc", "storage", "it_storage", "openai")
# Sources whose sample is a FOCUS file, and those whose sample is converted usage.
FOCUS_SOURCES: tuple[str, ...] = ("aws", "azure", "gcp", "it_storage", "openai")
CONVERTED_SOURCES: tuple[str, ...] = ("hpc", "storage")
MAPPINGS_FILE = "account_mappings.csv"
# Cloud sub-accounts (FOCUS SubAccountId) mapped to their project: see untagged_projects.
CLOUD_MAPPINGS_FILE = "cloud_account_mappings.csv"
# Sources whose month comes as part files (AWS Data Exports split a big month), imported
# together as one delivery.
PART_FILES: dict[str, int] = {"aws": 2}
# The cloud source whose projects include some with no tags at all, attributed by
# sub-account mappings (all but the last of UNTAGGED_PROJECTS are mapped).
UNTAGGED_SOURCE = "gcp"
UNTAGGED_PROJECTS = 3
# The source billed on the amortised cost basis, with a VM reservation bought centrally.
AMORTISED_SOURCE = "azure"
COMMITMENT_PROJECT = "it-cloud-commitments"
COMMITMENT_PI = ("Central IT Cloud Team", "cloud-team@example.edu")
COMMITMENT_FUND_ORG = "ITS-CLOUD-COMMIT"
# Accounts with usage that account_mappings.csv leaves out, per mapping kind.
UNMAPPED: dict[str, tuple[str, ...]] = {
    "slurm": ("rc_workshop",),
    "storage": ("/research/imaging-core",),
}

COLUMNS: tuple[str, ...] = (
    "BillingAccountId",
    "BillingAccountName",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "BillingCurrency",
    "ListCost",
    "ListUnitPrice",
    "ContractedCost",
    "BilledCost",
    "EffectiveCost",
    "ChargeCategory",
    "ChargeDescription",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "RegionId",
    "ResourceId",
    "ResourceName",
    "ServiceCategory",
    "ServiceName",
    "SubAccountId",
    "SubAccountName",
    "CommitmentDiscountId",
    "CommitmentDiscountStatus",
    "CommitmentDiscountCategory",
    "Tags",
)
COST_COLUMNS: tuple[str, ...] = ("ListCost", "ContractedCost", "BilledCost", "EffectiveCost")

# Rows planted in every month, across the FOCUS files: scenario -> (rows, eligible sources).
# The flag reasons of billing/flags.py plus the two "no tags at all" spellings. Rows
# without usable tags (invalid, empty, NULL) also count as missing PI, project and
# fund/org, so those three get a single explicit row each.
_CLOUD = ("aws", "azure", "gcp")
_FOCUS = FOCUS_SOURCES
_PLAN: dict[str, tuple[int, tuple[str, ...]]] = {
    "missing_pi": (1, _FOCUS),
    "invalid_pi_email": (2, _FOCUS),
    "missing_project": (1, _FOCUS),
    "missing_fund_org": (1, _FOCUS),
    "invalid_fund_org": (2, _FOCUS),
    "pattern_match": (2, _CLOUD),
    "period_mismatch": (2, _FOCUS),
    "currency_mismatch": (2, ("azure", "gcp")),
    "large_charge": (2, _CLOUD),
    "project_pi_mismatch": (2, _FOCUS),
    "invalid_tags": (2, _FOCUS),
    "empty_tags": (1, _FOCUS),
    "null_tags": (1, _FOCUS),
}
SCENARIOS: tuple[str, ...] = tuple(_PLAN)

_FIELDS = ("pi_email", "project_id", "fund_org")


def parse_month(text: str) -> tuple[int, int]:
    """``"2026-09"`` -> ``(2026, 9)``; :class:`ValueError` for anything else."""
    try:
        year, month = year_month(text)
    except BillingError:
        year = month = 0
    if not 1970 <= year <= 9998:  # sample months start with the Unix epoch and have a next
        raise ValueError(f"{text!r} is not a month in YYYY-MM form (e.g. 2026-09)")
    return year, month


# --- The invented institution ----------------------------------------------------


@dataclass(frozen=True)
class Department:
    name: str
    code: str
    agencies: tuple[str, ...]


@dataclass(frozen=True)
class PI:
    name: str
    email: str
    department: Department


@dataclass(frozen=True)
class Project:
    project_id: str
    pi: PI
    fund_org: str
    grant_number: int | None
    sources: tuple[str, ...]


_DEPARTMENTS = {
    d.code: d
    for d in (
        Department("Biology", "BIO", ("NIH", "NSF", "USDA")),
        Department("Physics", "PHYS", ("DOE", "NSF")),
        Department("Computer Science", "CS", ("NSF", "DARPA", "GIFT")),
        Department("Public Health", "PH", ("NIH", "CDC")),
        Department("Earth Sciences", "GEO", ("NSF", "NASA", "USGS")),
        Department("Chemistry", "CHEM", ("NSF", "DOE", "NIH")),
        Department("Astronomy", "ASTRO", ("NASA", "NSF")),
        Department("Neuroscience", "NEURO", ("NIH", "NSF")),
        Department("Mechanical Engineering", "ME", ("DOE", "ONR", "NSF")),
        Department("Materials Science", "MSE", ("DOE", "NSF", "ARPAE")),
        Department("Economics", "ECON", ("NSF", "SLOAN")),
        Department("Ocean Sciences", "OCN", ("NOAA", "NSF", "ONR")),
        Department("Civil Engineering", "CE", ("DOT", "NSF")),
        Department("Linguistics", "LING", ("NSF", "NEH")),
        Department("Political Science", "POLS", ("NSF", "GIFT")),
    )
}

# Invented people (name, department code) and their projects.
_PEOPLE: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Helena Marchetti", "BIO", ("soil-microbiome", "crispr-screen-liver", "single-cell-atlas")),
    ("Tobias Lindqvist", "PHYS", ("cosmic-ray-showers", "superconductivity-ab-initio")),
    (
        "Priya Raghunathan",
        "CS",
        ("speech-recognition-lowres", "crop-yield-ml", "vaccine-epitope-ml"),
    ),
    ("Samuel Okafor", "PH", ("malaria-vector-models", "antibiotic-resistance")),
    ("Ingrid Halvorsen", "GEO", ("glacier-mass-balance", "permafrost-carbon", "seismic-inversion")),
    ("Mateo Castellanos", "CHEM", ("catalyst-screening-dft", "quantum-dots-synthesis")),
    ("Yuki Tanabe", "ASTRO", ("exoplanet-atmospheres", "galaxy-mergers", "black-hole-imaging")),
    ("Rosalind Achterberg", "NEURO", ("neural-decoding", "sleep-eeg-cohort", "gut-brain-axis")),
    ("Daniel Kowalczyk", "ME", ("turbulent-combustion", "fluid-structure-fsi")),
    ("Amina Haddad", "MSE", ("battery-cathodes", "alloy-fatigue", "hydrogen-storage-mof")),
    ("Felix Brandauer", "ECON", ("housing-price-panel", "opioid-policy-panel")),
    ("Grace Nwosu", "BIO", ("coral-reef-genomics", "stem-cell-lineage", "plant-phenotyping")),
    (
        "Oliver Pemberton",
        "OCN",
        ("ocean-heat-content", "marine-mammal-acoustics", "microplastics-transport"),
    ),
    (
        "Leilani Kahale",
        "GEO",
        ("tsunami-inundation", "river-delta-morphology", "coastal-sediment-flux"),
    ),
    ("Victor Moreau", "PHYS", ("dark-matter-halos", "metamaterials-optics")),
    (
        "Sunita Deshpande",
        "PH",
        ("air-quality-sensors", "wildfire-smoke-exposure", "autism-genetics-cohort"),
    ),
    ("Henrik Vestergaard", "CE", ("urban-heat-islands", "traffic-flow-sim")),
    ("Clara Montalvo", "LING", ("language-acquisition", "dialect-corpus-asr")),
    ("Rafael Quintero", "POLS", ("election-forecasting", "legislative-text-mining")),
    ("Mei-Lin Zhou", "CHEM", ("rna-structure-probes", "polymer-rheology")),
)

# Probability that a project uses a source (every project uses at least one).
_SOURCE_ODDS: dict[str, int] = {
    "aws": 35,
    "azure": 20,
    "gcp": 20,
    "hpc": 55,
    "storage": 50,
    "it_storage": 16,
    "openai": 16,
}
_MIN_PROJECTS_PER_SOURCE = 5


# --- What each source sells ------------------------------------------------------


@dataclass(frozen=True)
class Service:
    name: str
    category: str
    unit: str
    price: str  # list unit price, exact text
    qty: tuple[int, int]  # per row, in units of 10**-qty_places
    qty_places: int
    period: str  # day | week | month
    resource_id: str  # str.format template, see _resource_fields
    resource_name: str
    description: str
    tier: str = ""  # hpc, storage: the Slurm partition or storage tier (the rate's service)


@dataclass(frozen=True)
class Special:
    """A marketplace purchase or a big GPU run for one source."""

    service: str
    category: str
    unit: str
    price: str
    resource_id: str
    resource_name: str
    description: str
    publisher: str = ""


@dataclass(frozen=True)
class Commitment:
    """A reservation bought each month that covers one service's usage (amortised source)."""

    covers: str  # the ChargeDescription of the usage it covers
    unit_price: str  # effective price per unit of covered usage, exact text
    utilisation: Decimal  # about this share of the purchased units is used
    commitment_id: str
    resource_name: str
    description: str


@dataclass(frozen=True)
class Profile:
    slug: str
    provider: str
    publisher: str
    issuer: str
    account_id: str
    account_name: str
    billed_share: Decimal  # BilledCost / ListCost
    contract_is_billed: bool  # cloud: the discount is contractual; on-prem: a subsidy
    places: int  # decimals written in cost cells (values are exact to 1e-9)
    trim: bool  # drop trailing zeros of costs (Azure-style)
    timestamps: str  # iso | space
    regions: tuple[str, ...]
    services: tuple[Service, ...]
    resources_per_project: tuple[int, int]
    distinct_services: bool
    tag_styles: tuple[tuple[str, int], ...]  # (style, weight)
    marketplace: tuple[Special, ...] = ()
    large: Special | None = None
    credit: str = ""
    credits_per_month: tuple[int, int] = (0, 0)
    commitment: Commitment | None = None


_AZ = "/subscriptions/{sub}/resourceGroups/rg-{pid}/providers/"
# fmt: off
_PROFILES: dict[str, Profile] = {
    p.slug: p
    for p in (
        Profile(
            slug="aws",
            provider="AWS",
            publisher="AWS",
            issuer="Amazon Web Services, Inc.",
            account_id="483920175610",
            account_name="Research Computing AWS Organization",
            billed_share=Decimal("0.85"),
            contract_is_billed=True,
            places=10,
            trim=False,
            timestamps="iso",
            regions=("us-east-1", "us-west-2"),
            services=(
                Service(
                    "Amazon EC2", "Compute", "Hours", "0.1920", (4, 24), 0, "day",
                    "i-{hex17}", "{pid}-compute-{n:02d}",
                    "$0.192 per On Demand Linux m6i.xlarge Instance Hour",
                ),
                Service(
                    "Amazon EC2", "Compute", "Hours", "0.6800", (2, 24), 0, "day",
                    "i-{hex17}", "{pid}-batch-{n:02d}",
                    "$0.68 per On Demand Linux c6i.4xlarge Instance Hour",
                ),
                Service(
                    "Amazon EC2", "Compute", "Hours", "1.0060", (1, 20), 0, "day",
                    "i-{hex17}", "{pid}-gpu-{n:02d}",
                    "$1.006 per On Demand Linux g5.xlarge Instance Hour",
                ),
                Service(
                    "Amazon EBS", "Storage", "GB-Mo", "0.0800", (50, 4000), 0, "month",
                    "vol-{hex17}", "{pid}-data-vol-{n}",
                    "$0.08 per GB-month of General Purpose (gp3) provisioned storage",
                ),
                Service(
                    "Amazon S3", "Storage", "GB-Mo", "0.0230", (20000, 9000000), 3, "month",
                    "arn:aws:s3:::{pid}-{word}", "{pid}-{word}",
                    "$0.023 per GB - first 50 TB / month of storage used",
                ),
                Service(
                    "Amazon S3", "Storage", "Requests", "0.0000004000", (10000, 5000000), 0,
                    "month", "arn:aws:s3:::{pid}-{word}", "{pid}-{word}",
                    "$0.0004 per 1,000 GET and all other requests",
                ),
                Service(
                    "Amazon RDS", "Databases", "Hours", "0.1710", (24, 24), 0, "day",
                    "arn:aws:rds:{region}:{acct}:db:{pid}-db", "{pid}-db",
                    "$0.171 per RDS db.m6g.large Single-AZ instance hour running PostgreSQL",
                ),
                Service(
                    "AWS Lambda", "Compute", "GB-Seconds", "0.0000166667", (5000, 4000000), 0,
                    "month", "arn:aws:lambda:{region}:{acct}:function:{pid}-ingest",
                    "{pid}-ingest", "AWS Lambda - Total Compute - per GB-second",
                ),
                Service(
                    "Amazon SageMaker", "AI and Machine Learning", "Hours", "1.5150", (1, 12), 0,
                    "day", "arn:aws:sagemaker:{region}:{acct}:notebook-instance/{pid}-nb",
                    "{pid}-nb", "ml.g5.2xlarge notebook instance hour",
                ),
                Service(
                    "AWS Data Transfer", "Networking", "GB", "0.0900", (1000, 2500000), 3,
                    "month", "", "", "$0.09 per GB - first 10 TB / month data transfer out",
                ),
                Service(
                    "Amazon CloudWatch", "Management and Governance", "Metrics", "0.3000",
                    (5, 200), 0, "month", "arn:aws:logs:{region}:{acct}:log-group:/{pid}/app",
                    "/{pid}/app", "$0.30 per metric-month - first 10,000 metrics",
                ),
            ),
            resources_per_project=(2, 5),
            distinct_services=False,
            tag_styles=(
                ("plain", 50), ("aws_user", 30), ("spaced_project", 10), ("spaced_org", 10),
            ),
            marketplace=(
                Special(
                    "AWS Marketplace", "Other", "Subscriptions", "450.00", "prod-{hex13}",
                    "Northwind LabNotebook Enterprise", "Northwind LabNotebook, monthly seat pack",
                    "Northwind Scientific Software",
                ),
                Special(
                    "AWS Marketplace", "Other", "Subscriptions", "1200.00", "prod-{hex13}",
                    "Tailspin GeoAnalytics AMI", "Tailspin GeoAnalytics, annual license",
                    "Tailspin Analytics LLC",
                ),
            ),
            large=Special(
                "Amazon EC2", "Compute", "Hours", "32.7726", "i-{hex17}", "{pid}-train-p4d",
                "$32.7726 per On Demand Linux p4d.24xlarge Instance Hour",
            ),
            credit="AWS Cloud Credit for Research",
            credits_per_month=(1, 2),
        ),
        Profile(
            slug="azure",
            provider="Microsoft",
            publisher="Microsoft",
            issuer="Microsoft",
            account_id=(
                "/providers/Microsoft.Billing/billingAccounts/"
                "7c1f9a2e-55d3-4b8e-9f0a-3e6d2b1c8a47:0d5e8f21-6b4a-4c1e-8d2f-1a9b3c7e5f60_2019-05-31"
            ),
            account_name="Research Computing Azure",
            billed_share=Decimal("0.88"),
            contract_is_billed=True,
            places=8,
            trim=True,
            timestamps="iso",
            regions=("eastus", "westus2", "westeurope"),
            services=(
                Service(
                    "Azure Virtual Machines", "Compute", "Hours", "0.192", (4, 24), 0, "day",
                    _AZ + "Microsoft.Compute/virtualMachines/{name}", "{pid}-vm{n}",
                    "D4s v5 - Linux",
                ),
                Service(
                    "Azure Virtual Machines", "Compute", "Hours", "3.06", (1, 16), 0, "day",
                    _AZ + "Microsoft.Compute/virtualMachines/{name}", "{pid}-gpu{n}",
                    "NC6s v3 - Linux",
                ),
                Service(
                    "Azure Blob Storage", "Storage", "GB/Month", "0.0184", (10000, 2000000), 2,
                    "month", _AZ + "Microsoft.Storage/storageAccounts/{name}", "st{short}{hex4}",
                    "Hot LRS Data Stored",
                ),
                Service(
                    "Azure Cosmos DB", "Databases", "100 RU/s/Hour", "0.008", (744, 7440), 0,
                    "month", _AZ + "Microsoft.DocumentDB/databaseAccounts/{name}",
                    "cosmos-{pid}", "100 RU/s provisioned throughput",
                ),
                Service(
                    "Azure Machine Learning", "AI and Machine Learning", "Hours", "0.9", (1, 10),
                    0, "day", _AZ + "Microsoft.MachineLearningServices/workspaces/{name}",
                    "mlw-{pid}", "NCasT4 v3 compute instance",
                ),
                Service(
                    "Azure Kubernetes Service", "Compute", "Hours", "0.1", (600, 744), 0,
                    "month", _AZ + "Microsoft.ContainerService/managedClusters/{name}",
                    "aks-{pid}", "Standard tier uptime SLA",
                ),
            ),
            resources_per_project=(2, 4),
            distinct_services=False,
            tag_styles=(("plain", 55), ("azure_dept", 30), ("spaced_project", 15)),
            marketplace=(
                Special(
                    "Azure Marketplace", "Other", "Subscriptions", "380.00", "contoso-{hex8}",
                    "Contoso GeoSuite", "Contoso GeoSuite - Research plan, monthly",
                    "Contoso Analytics Ltd",
                ),
            ),
            large=Special(
                "Azure Virtual Machines", "Compute", "Hours", "27.197",
                _AZ + "Microsoft.Compute/virtualMachines/{name}", "{pid}-nd96",
                "ND96asr A100 v4 - Linux",
            ),
            credit="Azure Sponsorship Credit",
            credits_per_month=(0, 1),
            commitment=Commitment(
                covers="NC6s v3 - Linux",
                unit_price="1.8360",
                utilisation=Decimal("0.85"),
                commitment_id=(
                    "/providers/Microsoft.Capacity/reservationOrders/"
                    "5b2e8c14-7d3a-4f9e-a1c6-0e4b9d27f853/reservations/"
                    "c94a1f07-2e6b-4d85-b3f0-7a1d5e8c2b96"
                ),
                resource_name="RI NC6s v3 research GPU pool (1 year, monthly)",
                description="Reserved VM Instance, NC6s v3, 1 year, billed monthly",
            ),
        ),
        Profile(
            slug="gcp",
            provider="Google Cloud",
            publisher="Google Cloud",
            issuer="Google",
            account_id="01A7C3-5F92B4-E8D160",
            account_name="Research Computing GCP Billing",
            billed_share=Decimal("0.82"),
            contract_is_billed=True,
            places=6,
            trim=False,
            timestamps="iso",
            regions=("us-central1", "us-east4"),
            services=(
                Service(
                    "Compute Engine", "Compute", "Hours", "0.3885", (4, 24), 0, "day",
                    "//compute.googleapis.com/projects/{gproj}/zones/{region}-a/instances/{name}",
                    "{pid}-n2-{n}", "N2 Instance Core and Ram running in Americas",
                ),
                Service(
                    "Compute Engine", "Compute", "Hours", "3.6730", (1, 12), 0, "day",
                    "//compute.googleapis.com/projects/{gproj}/zones/{region}-a/instances/{name}",
                    "{pid}-a2-{n}", "A2 Instance with 1 NVIDIA A100 GPU running in Americas",
                ),
                Service(
                    "Cloud Storage", "Storage", "GiB-Mo", "0.0200", (5000, 1500000), 2, "month",
                    "//storage.googleapis.com/projects/_/buckets/{name}", "{pid}-{word}",
                    "Standard Storage US Multi-region",
                ),
                Service(
                    "BigQuery", "Analytics", "TiB", "6.2500", (1, 40000), 3, "month",
                    "//bigquery.googleapis.com/projects/{gproj}/datasets/{name}", "{under}",
                    "Analysis (on-demand queries)",
                ),
                Service(
                    "Vertex AI", "AI and Machine Learning", "Hours", "2.1900", (1, 10), 0, "day",
                    "//aiplatform.googleapis.com/projects/{gproj}/locations/{region}/endpoints/"
                    "{hex8}",
                    "{pid}-endpoint", "Custom training on NVIDIA T4",
                ),
                Service(
                    "Cloud SQL", "Databases", "Hours", "0.1255", (600, 744), 0, "month",
                    "//cloudsql.googleapis.com/projects/{gproj}/instances/{name}", "{pid}-pg",
                    "Cloud SQL for PostgreSQL: Zonal - 2 vCPU + 7.5GB RAM",
                ),
            ),
            resources_per_project=(2, 4),
            distinct_services=False,
            tag_styles=(("plain", 85), ("spaced_org", 15)),
            marketplace=(
                Special(
                    "Google Cloud Marketplace", "Other", "Subscriptions", "290.00",
                    "fabrikam-{hex8}", "Fabrikam Pipeline Pro", "Fabrikam Pipeline Pro, monthly",
                    "Fabrikam Data Inc.",
                ),
            ),
            large=Special(
                "Compute Engine", "Compute", "Hours", "29.3870",
                "//compute.googleapis.com/projects/{gproj}/zones/{region}-a/instances/{name}",
                "{pid}-a2-8g", "A2 Instance with 8 NVIDIA A100 GPUs running in Americas",
            ),
            credit="Google Cloud Research Credits",
            credits_per_month=(0, 1),
        ),
        # hpc and storage: which projects use which partitions and tiers (the sacct and
        # quota samples); the prices are the list rates of DEMO_RATES, the rest unused.
        Profile(
            slug="hpc",
            provider="Research Computing",
            publisher="Research Computing",
            issuer="Research Computing",
            account_id="RC-HPC",
            account_name="Research Computing HPC (Tamarack cluster)",
            billed_share=Decimal(0),
            contract_is_billed=False,
            places=4,
            trim=False,
            timestamps="space",
            regions=("campus-dc1",),
            services=(
                Service(
                    "HPC Cluster - CPU", "Compute", "Core-Hours", "0.0250", (200, 40000), 0,
                    "week", "tamarack/standard/{slurm}", "{slurm} on standard",
                    "CPU core-hours, standard partition", tier="standard",
                ),
                Service(
                    "HPC Cluster - CPU", "Compute", "Core-Hours", "0.0400", (100, 12000), 0,
                    "week", "tamarack/bigmem/{slurm}", "{slurm} on bigmem",
                    "CPU core-hours, large-memory partition", tier="bigmem",
                ),
                Service(
                    "HPC Cluster - GPU", "Compute", "GPU-Hours", "1.2000", (4, 500), 0, "week",
                    "tamarack/gpu/{slurm}", "{slurm} on gpu", "GPU hours, A100 partition",
                    tier="gpu",
                ),
            ),
            resources_per_project=(1, 2),
            distinct_services=True,
            tag_styles=(("plain", 80), ("spaced_org", 20)),
        ),
        Profile(
            slug="storage",
            provider="Research Computing",
            publisher="Research Computing",
            issuer="Research Computing",
            account_id="RC-STORAGE",
            account_name="Research Computing Storage",
            billed_share=Decimal("0.5"),
            contract_is_billed=False,
            places=4,
            trim=False,
            timestamps="space",
            regions=("campus-dc1",),
            services=(
                Service(
                    "Research Storage - Project", "Storage", "TB-Month", "8.0000", (500, 60000),
                    3, "month", "nas01:/research/{pid}", "/research/{pid}",
                    "Project storage, per TB-month", tier="standard",
                ),
                Service(
                    "Research Storage - Scratch", "Storage", "TB-Month", "2.0000",
                    (1000, 120000), 3, "month", "scratch:/scratch/{slurm}", "/scratch/{slurm}",
                    "Scratch storage, per TB-month", tier="scratch",
                ),
                Service(
                    "Research Storage - Archive", "Storage", "TB-Month", "3.5000",
                    (1000, 200000), 3, "month", "tape:/archive/{pid}", "/archive/{pid}",
                    "Tape archive, per TB-month", tier="archive",
                ),
            ),
            resources_per_project=(1, 3),
            distinct_services=True,
            tag_styles=(("plain", 80), ("spaced_org", 10), ("spaced_project", 10)),
        ),
        Profile(
            slug="it_storage",
            provider="Central IT",
            publisher="Central IT",
            issuer="Central IT",
            account_id="ITS-SFS",
            account_name="IT Secure File Services",
            billed_share=Decimal(1),
            contract_is_billed=True,
            places=2,
            trim=False,
            timestamps="iso",
            regions=("campus-dc2",),
            services=(
                Service(
                    "Secure File Services", "Storage", "GB-Month", "0.12", (50, 6000), 0,
                    "month", "sfs-{alloc}-vol{n:02d}", "{pid}-secure-{n}",
                    "Secure (HIPAA/CUI) file storage, per GB-month",
                ),
                Service(
                    "Secure File Services - Backup", "Storage", "GB-Month", "0.05", (50, 6000), 0,
                    "month", "sfs-{alloc}-bkp{n:02d}", "{pid}-secure-backup-{n}",
                    "Off-site backup of secure file storage, per GB-month",
                ),
            ),
            resources_per_project=(1, 3),
            distinct_services=False,
            tag_styles=(("plain", 100),),
        ),
        Profile(
            slug="openai",
            provider="OpenAI",
            publisher="OpenAI",
            issuer="OpenAI",
            account_id="org-Q4b7NcX2mR9tLw8ZkP3sHdVe",
            account_name="Research Computing OpenAI",
            billed_share=Decimal(1),
            contract_is_billed=True,
            places=10,
            trim=False,
            timestamps="iso",
            regions=("",),
            services=(
                Service(
                    "OpenAI API", "AI and Machine Learning", "Tokens", "0.0000025000",
                    (100000, 8000000), 0, "week", "{oproj}/gpt-4o/input", "gpt-4o",
                    "gpt-4o input tokens",
                ),
                Service(
                    "OpenAI API", "AI and Machine Learning", "Tokens", "0.0000100000",
                    (20000, 2000000), 0, "week", "{oproj}/gpt-4o/output", "gpt-4o",
                    "gpt-4o output tokens",
                ),
                Service(
                    "OpenAI API", "AI and Machine Learning", "Tokens", "0.0000001500",
                    (1000000, 50000000), 0, "week", "{oproj}/gpt-4o-mini/input", "gpt-4o-mini",
                    "gpt-4o-mini input tokens",
                ),
                Service(
                    "OpenAI API", "AI and Machine Learning", "Tokens", "0.0000006000",
                    (100000, 10000000), 0, "week", "{oproj}/gpt-4o-mini/output", "gpt-4o-mini",
                    "gpt-4o-mini output tokens",
                ),
                Service(
                    "OpenAI API", "AI and Machine Learning", "Tokens", "0.0000000200",
                    (1000000, 200000000), 0, "week", "{oproj}/text-embedding-3-small/input",
                    "text-embedding-3-small", "text-embedding-3-small input tokens",
                ),
            ),
            resources_per_project=(2, 4),
            distinct_services=True,
            tag_styles=(("plain", 100),),
        ),
    )
}
# fmt: on

_TAG_KEYS: dict[str, tuple[str, str, str]] = {
    "plain": ("pi_email", "project_id", "fund_org"),
    "azure_dept": ("pi_email", "project_id", "fund_org"),
    "aws_user": ("user:pi_email", "user:project_id", "user:fund_org"),
    "spaced_project": ("pi_email", "Project_ID ", "fund_org"),
    "spaced_org": ("pi_email", "project_id", " org"),
}
_WORDS = ("raw", "results", "archive", "shared", "staging", "models", "images", "reads")
_INVALID_FUND_ORGS = ("bio 2024/001", "TBD", "Chem-Startup", "nsf_geo_2025", "12345")
_EUR_REGIONS = {"azure": "westeurope", "gcp": "europe-west4"}


@dataclass(frozen=True)
class Resource:
    project: Project
    service: Service
    resource_id: str
    resource_name: str
    region: str
    sub_account: tuple[str, str]
    tag_keys: tuple[str, str, str]  # keys used for pi_email, project_id, fund_org
    tag_extras: tuple[tuple[str, str | int], ...]
    fields: tuple[tuple[str, str], ...]  # template values, for specials on this project
    untagged: bool = False  # no PI, project or fund/org tags (attributed by sub-account)


@dataclass(frozen=True)
class Population:
    pis: tuple[PI, ...]
    projects: tuple[Project, ...]
    resources: dict[str, tuple[Resource, ...]]
    # UNTAGGED_SOURCE projects whose resources carry no attribution tags, in order: all
    # but the last have a sub-account mapping in CLOUD_MAPPINGS_FILE.
    untagged: tuple[str, ...] = ()


def build_population(seed: int = 2026) -> Population:
    """The invented PIs, projects and their resources, identical for every month."""
    rng = random.Random(seed)  # noqa: S311 - sample data, not security
    pis: list[PI] = []
    projects: list[Project] = []
    for name, code, slugs in _PEOPLE:
        dept = _DEPARTMENTS[code]
        pi = PI(name, name.lower().replace(" ", ".") + "@example.edu", dept)
        pis.append(pi)
        for slug in slugs:
            projects.append(
                Project(
                    project_id=slug,
                    pi=pi,
                    fund_org=_fund_org(rng, dept),
                    grant_number=rng.randint(10000, 99999) if rng.random() < 0.5 else None,
                    sources=_pick_sources(rng),
                )
            )
    projects = _ensure_coverage(rng, projects)
    resources = {slug: _resources(rng, _PROFILES[slug], projects) for slug in SOURCES}
    # Chosen by a generator of their own, so the rest of the population is as before.
    cloud = resources[UNTAGGED_SOURCE]
    pick = random.Random(f"{seed}:untagged")  # noqa: S311 - sample data, not security
    users = sorted({r.project.project_id for r in cloud})
    untagged = tuple(pick.sample(users, UNTAGGED_PROJECTS))
    resources[UNTAGGED_SOURCE] = tuple(
        replace(r, untagged=True) if r.project.project_id in untagged else r for r in cloud
    )
    return Population(tuple(pis), tuple(projects), resources, untagged)


def _fund_org(rng: random.Random, dept: Department) -> str:
    year = rng.randint(2022, 2026)
    roll = rng.random()
    if roll < 0.12:
        return f"{dept.code}-STARTUP-{year}"
    agency = rng.choice(dept.agencies)
    if roll < 0.55:
        return f"{agency}-{dept.code}-{year}"
    return f"{agency}-{dept.code}-{year}-{rng.randint(1, 999):03d}"


def _pick_sources(rng: random.Random) -> tuple[str, ...]:
    chosen = tuple(s for s in SOURCES if rng.randrange(100) < _SOURCE_ODDS[s])
    return chosen or (rng.choice(("hpc", "storage", "aws")),)


def _ensure_coverage(rng: random.Random, projects: list[Project]) -> list[Project]:
    """Give every source enough projects for its normal rows and planted ones."""
    result = list(projects)
    for slug in SOURCES:
        users = [i for i, p in enumerate(result) if slug in p.sources]
        others = [i for i, p in enumerate(result) if slug not in p.sources]
        for i in rng.sample(others, max(0, _MIN_PROJECTS_PER_SOURCE - len(users))):
            p = result[i]
            result[i] = Project(
                p.project_id,
                p.pi,
                p.fund_org,
                p.grant_number,
                tuple(s for s in SOURCES if s in p.sources or s == slug),
            )
    return result


def _hex(rng: random.Random, digits: int) -> str:
    return format(rng.getrandbits(4 * digits), f"0{digits}x")


def _guid(rng: random.Random) -> str:
    return "-".join(_hex(rng, n) for n in (8, 4, 4, 4, 12))


def _sub_account(rng: random.Random, slug: str, project: Project) -> tuple[str, str]:
    pid = project.project_id
    if slug == "aws":
        return str(rng.randint(10**11, 10**12 - 1)), pid
    if slug == "azure":
        return f"/subscriptions/{_guid(rng)}", f"RC-{pid}"
    if slug == "gcp":
        return f"{pid[:25].rstrip('-')}-{rng.randint(100, 999)}", pid
    if slug == "hpc":
        return _slurm(project), _slurm(project)
    if slug == "it_storage":
        return f"SFS-{rng.randint(1000, 9999)}", f"Secure storage for {pid}"
    if slug == "openai":
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        return "proj_" + "".join(rng.choice(alphabet) for _ in range(24)), pid
    return f"alloc-{pid}", pid


def _slurm(project: Project) -> str:
    last = project.pi.name.split()[-1].lower().replace("-", "")
    return f"{last}_{project.project_id.split('-')[0]}"


def _resources(
    rng: random.Random, profile: Profile, projects: Sequence[Project]
) -> tuple[Resource, ...]:
    out: list[Resource] = []
    styles = [s for s, _w in profile.tag_styles]
    weights = [w for _s, w in profile.tag_styles]
    for project in projects:
        if profile.slug not in project.sources:
            continue
        sub_id, sub_name = _sub_account(rng, profile.slug, project)
        low, high = profile.resources_per_project
        count = rng.randint(low, high)
        if profile.distinct_services:
            services = rng.sample(profile.services, min(count, len(profile.services)))
            services.sort(key=profile.services.index)
        else:
            services = [rng.choice(profile.services) for _ in range(count)]
        region = rng.choice(profile.regions)
        fields = _resource_fields(profile, project, sub_id, region)
        for n, service in enumerate(services, start=1):
            values = {**fields, "n": n, "word": rng.choice(_WORDS), "hex4": _hex(rng, 4)}
            values.update(hex8=_hex(rng, 8), hex13=_hex(rng, 13), hex17=_hex(rng, 17))
            name = service.resource_name.format(**values)
            values["name"] = name
            style = rng.choices(styles, weights)[0]
            extras: list[tuple[str, str | int]] = []
            if style == "azure_dept":
                extras.append(("ms:Department", project.pi.department.name))
            if project.grant_number is not None and rng.random() < 0.6:
                extras.append(("grant_number", project.grant_number))  # a JSON number
            if rng.random() < 0.25:
                extras.append(("environment", rng.choice(("research", "production", "dev"))))
            if profile.slug in _CLOUD and rng.random() < 0.2:
                extras.append(("created_by", "terraform"))
            out.append(
                Resource(
                    project=project,
                    service=service,
                    resource_id=service.resource_id.format(**values),
                    resource_name=name,
                    region=region,
                    sub_account=(sub_id, sub_name),
                    tag_keys=_TAG_KEYS[style],
                    tag_extras=tuple(extras),
                    fields=tuple((k, str(v)) for k, v in fields.items()),
                )
            )
    return tuple(out)


def _resource_fields(
    profile: Profile, project: Project, sub_id: str, region: str
) -> dict[str, str]:
    pid = project.project_id
    return {
        "pid": pid,
        "short": pid.replace("-", "")[:14],
        "under": pid.replace("-", "_"),
        "region": region,
        "acct": sub_id if profile.slug == "aws" else "",
        "sub": sub_id.removeprefix("/subscriptions/"),
        "gproj": sub_id,
        "oproj": sub_id,
        "slurm": _slurm(project),
        "alloc": sub_id.removeprefix("SFS-"),
    }


# --- Rows ------------------------------------------------------------------------


@dataclass
class _Line:
    cells: dict[str, str]
    tags: dict[str, str | int] | str  # a str is written as is (broken, empty, NULL)
    project: str = ""  # set when the row must come after a normal row of this project


@dataclass(frozen=True)
class _Month:
    year: int
    month: int

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.next().start

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def next(self) -> _Month:
        return _Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> _Month:
        return _Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)


def _quantize(value: Decimal, places: int) -> Decimal:
    result = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return abs(result) if result.is_zero() else result  # never "-0.00"


def _money(value: Decimal, profile: Profile) -> str:
    # Exact to 1e-9 (what the ingest keeps), written with up to 10 decimals like real
    # exports: "0.0000004170".
    exact = _quantize(value, min(profile.places, 9))
    text = format(_quantize(exact, profile.places), "f")
    if profile.trim and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _ts(moment: datetime, profile: Profile) -> str:
    if profile.timestamps == "space":
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _tags(
    resource: Resource,
    *,
    drop: str = "",
    pi_email: str | None = None,
    fund_org: str | None = None,
) -> dict[str, str | int]:
    values = {
        "pi_email": resource.project.pi.email if pi_email is None else pi_email,
        "project_id": resource.project.project_id,
        "fund_org": resource.project.fund_org if fund_org is None else fund_org,
    }
    tags: dict[str, str | int] = {
        key: values[fld]
        for key, fld in zip(resource.tag_keys, _FIELDS, strict=True)
        if fld != drop and not resource.untagged
    }
    tags.update(resource.tag_extras)
    return tags


class _FileBuilder:
    """The rows of one source-month file."""

    def __init__(
        self, profile: Profile, month: _Month, population: Population, rng: random.Random
    ) -> None:
        self.profile = profile
        self.month = month
        self.population = population
        self.rng = rng

    def line(
        self,
        resource: Resource,
        start: datetime,
        end: datetime,
        *,
        quantity: Decimal,
        price: str,
        billing: _Month | None = None,
        category: str = "Usage",
        service: str | None = None,
        service_category: str | None = None,
        description: str | None = None,
        resource_id: str | None = None,
        resource_name: str | None = None,
        publisher: str | None = None,
        currency: str = "USD",
        region: str | None = None,
        tags: dict[str, str | int] | str | None = None,
    ) -> _Line:
        p = self.profile
        billing = billing or self.month
        list_cost = quantity * Decimal(price)
        billed = list_cost * p.billed_share
        contracted = billed if p.contract_is_billed else list_cost
        svc = resource.service
        cells = {
            "BillingAccountId": p.account_id,
            "BillingAccountName": p.account_name,
            "BillingPeriodStart": _ts(billing.start, p),
            "BillingPeriodEnd": _ts(billing.end, p),
            "ChargePeriodStart": _ts(start, p),
            "ChargePeriodEnd": _ts(end, p),
            "BillingCurrency": currency,
            "ListCost": _money(list_cost, p),
            "ListUnitPrice": price,
            "ContractedCost": _money(contracted, p),
            "BilledCost": _money(billed, p),
            "EffectiveCost": _money(billed, p),
            "ChargeCategory": category,
            "ChargeDescription": svc.description if description is None else description,
            "ConsumedQuantity": format(quantity, "f"),
            "ConsumedUnit": svc.unit,
            "ProviderName": p.provider,
            "PublisherName": p.publisher if publisher is None else publisher,
            "InvoiceIssuerName": p.issuer,
            "RegionId": resource.region if region is None else region,
            "ResourceId": resource.resource_id if resource_id is None else resource_id,
            "ResourceName": resource.resource_name if resource_name is None else resource_name,
            "ServiceCategory": svc.category if service_category is None else service_category,
            "ServiceName": svc.name if service is None else service,
            "SubAccountId": resource.sub_account[0],
            "SubAccountName": resource.sub_account[1],
            "CommitmentDiscountId": "",
            "CommitmentDiscountStatus": "",
            "CommitmentDiscountCategory": "",
        }
        return _Line(cells, _tags(resource) if tags is None else tags)

    def quantity(self, service: Service) -> Decimal:
        low, high = service.qty
        return Decimal(self.rng.randint(low, high)).scaleb(-service.qty_places)

    def windows(self, service: Service) -> list[tuple[datetime, datetime]]:
        """Charge periods for one resource this month."""
        start, end = self.month.start, self.month.end
        if service.period == "month":
            return [(start, end)]
        if service.period == "week":
            weeks = [
                (start + timedelta(days=d), min(start + timedelta(days=d + 7), end))
                for d in range(0, self.month.days, 7)
            ]
            kept = [w for w in weeks if self.rng.random() < 0.85]
            return kept or weeks[:1]
        days = sorted(self.rng.sample(range(self.month.days), self.rng.randint(2, 5)))
        return [(start + timedelta(days=d), start + timedelta(days=d + 1)) for d in days]

    def usage(self, resource: Resource, **kwargs: object) -> _Line:
        """One ordinary usage row of ``resource`` in a random window of the month."""
        start, end = self.rng.choice(self.windows(resource.service))
        return self.line(
            resource,
            start,
            end,
            quantity=self.quantity(resource.service),
            price=resource.service.price,
            **kwargs,  # type: ignore[arg-type]
        )

    # -- the file ---------------------------------------------------------------
    def build(self, scenarios: Sequence[str]) -> list[_Line]:
        rng = self.rng
        normal: list[_Line] = []
        used: list[Resource] = []
        resources = self.population.resources[self.profile.slug]
        for resource in resources:
            if rng.random() < 0.08 and len(resources) > 1:
                continue  # idle this month
            used.append(resource)
            for start, end in self.windows(resource.service):
                line = self.line(
                    resource,
                    start,
                    end,
                    quantity=self.quantity(resource.service),
                    price=resource.service.price,
                )
                normal.append(line)
        if not used:
            used.append(resources[0])
            normal.append(self.usage(resources[0]))
        normal.sort(key=lambda ln: (ln.cells["ChargePeriodStart"], ln.cells["ResourceId"]))
        if self.profile.commitment is not None:
            normal.extend(self.commitment(self.profile.commitment, normal, used))
        # Credits and planted rows go to resources with tags (an untagged project's
        # rows are all ordinary usage, for its sub-account mapping to attribute).
        tagged = [r for r in used if not r.untagged] or used
        low, high = self.profile.credits_per_month
        for resource in rng.sample(tagged, min(len(tagged), rng.randint(low, high))):
            normal.append(self.credit(resource))
        planted = [self.planted(kind, rng.choice(tagged)) for kind in scenarios]
        return self.interleave(normal, planted)

    def commitment(
        self, commitment: Commitment, normal: list[_Line], used: list[Resource]
    ) -> list[_Line]:
        """Cover the month's usage of one service by a reservation: the covered rows bill
        0 with an EffectiveCost at the reserved price; the month's purchase (BilledCost,
        EffectiveCost 0) and its unused hours (EffectiveCost only) are added. The
        EffectiveCost of the used and unused rows adds up to the purchase exactly."""
        p = self.profile
        price = Decimal(commitment.unit_price)
        covered = [ln for ln in normal if ln.cells["ChargeDescription"] == commitment.covers]
        if not covered:
            return []
        hours = Decimal(0)
        for ln in covered:
            quantity = Decimal(ln.cells["ConsumedQuantity"])
            hours += quantity
            ln.cells.update(
                BilledCost=_money(Decimal(0), p),
                EffectiveCost=_money(quantity * price, p),
                CommitmentDiscountId=commitment.commitment_id,
                CommitmentDiscountStatus="Used",
                CommitmentDiscountCategory="Usage",
            )
        bought = (hours / commitment.utilisation).to_integral_value(ROUND_CEILING)
        owner = next(r for r in used if r.resource_id == covered[0].cells["ResourceId"])
        rows = []
        for kind, quantity in (("purchase", bought), ("unused", bought - hours)):
            line = self.line(
                owner,
                self.month.start,
                self.month.end,
                quantity=quantity,
                price=commitment.unit_price,
                category="Purchase" if kind == "purchase" else "Usage",
                description=commitment.description
                if kind == "purchase"
                else "Unused reservation hours, NC6s v3",
                resource_id=commitment.commitment_id,
                resource_name=commitment.resource_name,
            )
            cost = _money(quantity * price, p)
            zero = _money(Decimal(0), p)
            line.cells.update(CommitmentDiscountId=commitment.commitment_id)
            line.cells.update(CommitmentDiscountCategory="Usage")
            if kind == "purchase":
                line.cells.update(
                    ListCost=cost,
                    ContractedCost=cost,
                    BilledCost=cost,
                    EffectiveCost=zero,
                    ConsumedQuantity="",
                    ConsumedUnit="",
                )
            else:
                line.cells.update(
                    ListCost=zero,
                    ListUnitPrice="",
                    ContractedCost=zero,
                    BilledCost=zero,
                    EffectiveCost=cost,
                    CommitmentDiscountStatus="Unused",
                )
            rows.append(line)
        return rows

    def credit(self, resource: Resource) -> _Line:
        amount = -Decimal(self.rng.randint(5000, 80000)).scaleb(-2)
        line = self.line(
            resource,
            self.month.start,
            self.month.end,
            quantity=Decimal(0),
            price="0",
            category="Credit",
            description=self.profile.credit,
        )
        money = _money(amount, self.profile)
        line.cells.update(
            ListCost=_money(Decimal(0), self.profile),
            ListUnitPrice="",
            ContractedCost=money,
            BilledCost=money,
            EffectiveCost=money,
            ConsumedQuantity="",
            ConsumedUnit="",
        )
        return line

    def interleave(self, normal: list[_Line], planted: list[_Line]) -> list[_Line]:
        """Insert planted rows at random places, each after a normal row of its project."""
        first: dict[str, int] = {}
        for i, ln in enumerate(normal):
            first.setdefault(_project_of(ln), i)
        slots: dict[int, list[_Line]] = {}
        for ln in planted:
            low = first[ln.project] + 1 if ln.project else 1
            slots.setdefault(self.rng.randint(low, len(normal)), []).append(ln)
        out: list[_Line] = []
        for i in range(len(normal) + 1):
            out.extend(slots.get(i, ()))
            if i < len(normal):
                out.append(normal[i])
        return out

    def planted(self, kind: str, resource: Resource) -> _Line:
        """One row that trips ``kind`` (and, for rows without tags, the missing_* rules)."""
        rng = self.rng
        pi = resource.project.pi
        pid = resource.project.project_id
        line: _Line
        if kind in ("missing_pi", "missing_project", "missing_fund_org"):
            drop = {"missing_pi": "pi_email", "missing_project": "project_id"}.get(kind, "fund_org")
            line = self.usage(resource, tags=_tags(resource, drop=drop))
            if kind == "missing_project":
                return line  # no project: it may go anywhere
        elif kind == "invalid_pi_email":
            first, last = pi.name.lower().split()[0], pi.name.lower().split()[-1]
            bad = rng.choice((f"{first[0]}{last}", pi.name, pi.email.split(".")[0] + "@"))
            line = self.usage(resource, tags=_tags(resource, pi_email=bad))
        elif kind == "invalid_fund_org":
            bad = rng.choice(_INVALID_FUND_ORGS)
            line = self.usage(resource, tags=_tags(resource, fund_org=bad))
        elif kind == "pattern_match":
            line = self.special(resource, rng.choice(self.profile.marketplace), category="Purchase")
        elif kind == "large_charge":
            assert self.profile.large is not None
            line = self.special(resource, self.profile.large, large=True)
        elif kind == "period_mismatch":
            prev = self.month.previous()
            day = rng.randrange(prev.days)
            start = prev.start + timedelta(days=day)
            line = self.line(
                resource,
                start,
                start + timedelta(days=1),
                quantity=self.quantity(resource.service),
                price=resource.service.price,
                billing=prev,
                description=resource.service.description + " (late usage record)",
            )
        elif kind == "currency_mismatch":
            region = _EUR_REGIONS.get(self.profile.slug, resource.region)
            line = self.usage(resource, currency="EUR", region=region)
        elif kind == "project_pi_mismatch":
            others = [p for p in self.population.pis if p != pi]
            line = self.usage(resource, tags=_tags(resource, pi_email=rng.choice(others).email))
        elif kind == "invalid_tags":
            email, fund = pi.email, resource.project.fund_org
            raw = rng.choice(
                (
                    "{pi_email: broken",
                    f'{{"pi_email": "{email}", "project_id": "{pid}", "fund_org": "{fund}"',
                    f"pi_email={email};project_id={pid};fund_org={fund}",
                    f"{{'pi_email': '{email}', 'project_id': '{pid}'}}",
                )
            )
            return self.usage(resource, tags=raw)
        elif kind == "empty_tags":
            return self.usage(resource, tags="")
        elif kind == "null_tags":
            return self.usage(resource, tags="NULL")
        else:  # pragma: no cover - _PLAN and this dispatch are kept in step
            raise ValueError(f"unknown scenario {kind!r}")
        line.project = pid
        return line

    def special(
        self, resource: Resource, special: Special, *, category: str = "Usage", large: bool = False
    ) -> _Line:
        rng = self.rng
        values: dict[str, str | int] = dict(resource.fields)
        values.update(n=1, hex8=_hex(rng, 8), hex13=_hex(rng, 13), hex17=_hex(rng, 17))
        name = special.resource_name.format(**values)
        values["name"] = name
        price = Decimal(special.price)
        if large:
            # Enough hours for a billed amount between 10,500 and 14,500 (> the default
            # 10,000 large-charge threshold), whatever this source's discount.
            target = Decimal(rng.randint(10500, 14500))
            hours = (target / (price * self.profile.billed_share)).to_integral_value(ROUND_CEILING)
            quantity = hours
        else:
            quantity = Decimal(1)
        line = self.line(
            resource,
            self.month.start,
            self.month.end,
            quantity=quantity,
            price=special.price,
            category=category,
            service=special.service,
            service_category=special.category,
            description=special.description,
            resource_id=special.resource_id.format(**values),
            resource_name=name,
            publisher=special.publisher or None,
        )
        line.cells["ConsumedUnit"] = special.unit
        return line


def _project_of(line: _Line) -> str:
    if isinstance(line.tags, str):
        return ""
    for key, value in line.tags.items():
        if key.strip().lower() in ("project_id", "user:project_id"):
            return str(value)
    return ""


def plan_month(month: str, *, seed: int = 2026) -> dict[str, list[str]]:
    """Which planted scenarios go into which source's file for ``month``."""
    parse_month(month)
    rng = random.Random(f"{seed}:{month}:plan")  # noqa: S311 - sample data, not security
    plan: dict[str, list[str]] = {slug: [] for slug in SOURCES}
    for kind, (count, eligible) in _PLAN.items():
        for slug in rng.sample(eligible, count):
            plan[slug].append(kind)
    return plan


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
    if source not in _PROFILES:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    parse_month(month)
    population = population or build_population(seed)
    if source == "hpc":
        return render_sacct(month, seed=seed, population=population)
    if source == "storage":
        return render_quotas(month, seed=seed, population=population)
    return _focus_csv(_focus_lines(source, month, seed=seed, population=population))


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
    lines = _focus_lines(source, month, seed=seed, population=population)
    size = -(-len(lines) // len(names))
    return [(name, _focus_csv(lines[n * size : (n + 1) * size])) for n, name in enumerate(names)]


def _focus_lines(source: str, month: str, *, seed: int, population: Population) -> list[_Line]:
    year, number = parse_month(month)
    rng = random.Random(f"{seed}:{source}:{month}")  # noqa: S311 - sample data, not security
    builder = _FileBuilder(_PROFILES[source], _Month(year, number), population, rng)
    return builder.build(plan_month(month, seed=seed)[source])


def _focus_csv(lines: Sequence[_Line]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = CsvWriter(buffer, neutralise=False, line_end=LF)  # input files, as providers write
    writer.writerow(COLUMNS)
    for ln in lines:
        tags = ln.tags if isinstance(ln.tags, str) else json.dumps(ln.tags, ensure_ascii=False)
        writer.writerow([*(ln.cells[c] for c in COLUMNS[:-1]), tags])
    return buffer.getvalue().encode("utf-8")


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


def slurm_account(project: Project) -> str:
    """The project's Slurm account: PI's last name and the project's first word."""
    return _slurm(project)


def quota_name(resource: Resource) -> str:
    """The storage quota of a storage resource (its path, e.g. ``/research/<project>``)."""
    return resource.resource_name


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


def _job_ids(month: _Month) -> int:
    """The first JobID of the month (ids grow with time, 10,000 a month)."""
    return 4_000_000 + ((month.year - 2020) * 12 + month.month - 1) * 10_000


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def _boundary_job(month: _Month, population: Population, seed: int) -> _Job:
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


def _month_jobs(rng: random.Random, month: _Month, population: Population) -> list[_Job]:
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
    current = _Month(year, number)
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


def _quota_size(resource: Resource, month: _Month, seed: int) -> int:
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
    current = _Month(year, number)
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
