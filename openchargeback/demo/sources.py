"""The sample's sources: their slugs and files, the FOCUS columns, and what each
source sells (its services, prices, discounts and special rows)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

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


# The cloud sources (the planted scenarios and the resources of some kinds).
CLOUD_SOURCES = ("aws", "azure", "gcp")


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
PROFILES: dict[str, Profile] = {
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
