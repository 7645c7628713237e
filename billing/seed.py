"""Seed default settings from ``fixtures/defaults.json``. Safe to re-run: it
only adds what is missing and never overwrites what an admin has edited."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.apps import apps as global_apps
from django.conf import settings

DEFAULTS_FILE = Path(settings.BASE_DIR) / "fixtures" / "defaults.json"


def load_defaults() -> dict[str, Any]:
    with open(DEFAULTS_FILE, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def defaults_seed(apps: Any = global_apps) -> dict[str, int]:
    """Create missing default rows; returns how many of each kind were created."""
    from decimal import Decimal

    data = load_defaults()
    created: dict[str, int] = {}

    institution_model = apps.get_model("billing", "InstitutionSettings")
    inst = dict(data["institution"])
    threshold = Decimal(inst.pop("large_charge_threshold"))
    if not institution_model.objects.filter(pk=1).exists():
        institution_model.objects.create(pk=1, large_charge_threshold=threshold, **inst)
        created["institution"] = 1

    source_model = apps.get_model("billing", "Source")
    created["sources"] = 0
    # An early migration seeds with the model as it was then: fields added
    # later (provider_names) are left to the migration that added them.
    source_fields = {f.name for f in source_model._meta.get_fields()}
    for row in data["sources"]:
        known = {k: v for k, v in row.items() if k in source_fields}
        _obj, new = source_model.objects.get_or_create(slug=row["slug"], defaults=known)
        created["sources"] += int(new)

    mapping_model = apps.get_model("billing", "TagMapping")
    created["tag_mapping"] = 0
    for fld, keys in data["tag_mapping"].items():
        _obj, new = mapping_model.objects.get_or_create(
            field=fld, defaults={"tag_keys": "\n".join(keys)}
        )
        created["tag_mapping"] += int(new)

    rule_model = apps.get_model("billing", "FlagRule")
    created["flag_rules"] = 0
    for row in data["flag_rules"]:
        _obj, new = rule_model.objects.get_or_create(
            reason=row["reason"], defaults={"description": row["description"]}
        )
        created["flag_rules"] += int(new)

    pattern_model = apps.get_model("billing", "PatternRule")
    created["pattern_rules"] = 0
    for row in data["pattern_rules"]:
        _obj, new = pattern_model.objects.get_or_create(
            name=row["name"],
            defaults={k: row[k] for k in ("pattern", "target", "enabled")},
        )
        created["pattern_rules"] += int(new)

    fund_model = apps.get_model("billing", "FundOrgPattern")
    created["fund_org_patterns"] = 0
    for row in data["fund_org_patterns"]:
        _obj, new = fund_model.objects.get_or_create(
            pattern=row["pattern"], defaults={"description": row["description"]}
        )
        created["fund_org_patterns"] += int(new)
    return created
