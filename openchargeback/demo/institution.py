"""The invented institution: departments, PIs, their projects and the
resources each project uses at each source, all from ``random.Random(seed)``."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from openchargeback.demo.sources import (
    CLOUD_SOURCES,
    PROFILES,
    SOURCES,
    UNTAGGED_PROJECTS,
    UNTAGGED_SOURCE,
    Profile,
    Service,
)

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

_TAG_KEYS: dict[str, tuple[str, str, str]] = {
    "plain": ("pi_email", "project_id", "fund_org"),
    "azure_dept": ("pi_email", "project_id", "fund_org"),
    "aws_user": ("user:pi_email", "user:project_id", "user:fund_org"),
    "spaced_project": ("pi_email", "Project_ID ", "fund_org"),
    "spaced_org": ("pi_email", "project_id", " org"),
}
_WORDS = ("raw", "results", "archive", "shared", "staging", "models", "images", "reads")


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
    resources = {slug: _resources(rng, PROFILES[slug], projects) for slug in SOURCES}
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


def hex_digits(rng: random.Random, digits: int) -> str:
    return format(rng.getrandbits(4 * digits), f"0{digits}x")


def _guid(rng: random.Random) -> str:
    return "-".join(hex_digits(rng, n) for n in (8, 4, 4, 4, 12))


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
            values = {**fields, "n": n, "word": rng.choice(_WORDS), "hex4": hex_digits(rng, 4)}
            values.update(
                hex8=hex_digits(rng, 8), hex13=hex_digits(rng, 13), hex17=hex_digits(rng, 17)
            )
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
            if profile.slug in CLOUD_SOURCES and rng.random() < 0.2:
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


def slurm_account(project: Project) -> str:
    """The project's Slurm account: PI's last name and the project's first word."""
    return _slurm(project)


def quota_name(resource: Resource) -> str:
    """The storage quota of a storage resource (its path, e.g. ``/research/<project>``)."""
    return resource.resource_name
