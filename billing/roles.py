"""The three roles (Django groups) and their permissions (SPEC §8).

- viewer: read everything (background jobs included), download statements
  and journals; users, groups and login lockouts are for superusers;
- reviewer: viewer + approve, reject, reset, fix attribution (and resend);
- billing admin: reviewer + import, periods, generate, send, export, settings.

Apps added later extend ROLE_PERMISSIONS; `roles_sync` makes the groups
match it exactly and is safe to re-run.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps as global_apps

VIEWER, REVIEWER, BILLING_ADMIN = "viewer", "reviewer", "billing admin"

_BILLING_MODELS = (
    "billingperiod",
    "source",
    "pi",
    "project",
    "charge",
    "auditevent",
    "institutionsettings",
    "tagmapping",
    "flagrule",
    "patternrule",
    "fundorgpattern",
    "exchangerate",
)
_SETTINGS_MODELS = (
    "source",
    "institutionsettings",
    "tagmapping",
    "flagrule",
    "patternrule",
    "fundorgpattern",
)

# Background jobs (django-q2): everyone may see what ran and what failed.
_JOBS = [("django_q", f"view_{m}") for m in ("schedule", "success", "failure", "ormq")]

_STATEMENTS = [("statements", f"view_{m}") for m in ("statement", "emaillog")]
_JOURNALS = [
    ("journals", f"view_{m}") for m in ("journalexport", "journalsettings", "journaltemplate")
]

# The rate card and the account mappings that price on-premises usage.
_RATE_MODELS = ("rate", "accountmapping")

_VIEW = (
    [("billing", f"view_{m}") for m in _BILLING_MODELS]
    + [("ingest", "view_import")]
    + [("ingest", f"view_{m}") for m in _RATE_MODELS]
    + _STATEMENTS
    + _JOURNALS
    + _JOBS
)
_REVIEW = [
    ("billing", "review_charge"),
    ("billing", "fix_attribution_charge"),
    ("statements", "resend_statement"),
]
_ADMIN = (
    [("ingest", "import_focus")]
    + [("statements", "generate_statement"), ("statements", "send_statement")]
    + [("journals", "export_journal")]
    + [("journals", f"change_{m}") for m in ("journalsettings", "journaltemplate")]
    + [("journals", f"{verb}_journaltemplate") for verb in ("add", "delete")]
    + [("ingest", f"{verb}_{m}") for m in _RATE_MODELS for verb in ("add", "change", "delete")]
    + [("billing", "close_billingperiod"), ("billing", "finalize_billingperiod")]
    + [("billing", "add_billingperiod"), ("billing", "change_billingperiod")]
    + [("billing", f"{verb}_{m}") for m in ("pi", "project") for verb in ("add", "change")]
    # Exchange rates are recorded and changed, never deleted (charges use them).
    + [("billing", f"{verb}_exchangerate") for verb in ("add", "change")]
    + [
        ("billing", f"{verb}_{m}")
        for m in _SETTINGS_MODELS
        for verb in ("add", "change", "delete")
        if (verb, m) != ("delete", "institutionsettings")
    ]
)

ROLE_PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    VIEWER: _VIEW,
    REVIEWER: _VIEW + _REVIEW,
    BILLING_ADMIN: _VIEW + _REVIEW + _ADMIN,
}


_DEFAULT_VERBS = ("add", "change", "delete", "view")


def roles_sync(apps: Any = global_apps) -> None:
    """Create the groups and give each exactly its permissions."""
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after migrations (post_migrate); a
    # migration that needs them creates them itself. An app whose models are
    # not migrated yet is skipped: a later migration syncs the roles again.
    ready = set()
    for label in {app_label for perms in ROLE_PERMISSIONS.values() for app_label, _ in perms}:
        try:
            app_config = apps.get_app_config(label)
        except LookupError:
            continue
        ready.add(label)
        stub = getattr(app_config, "models_module", None) is None
        if stub:
            app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        if stub:
            app_config.models_module = None
    # Likewise a model added by a later migration of a migrated app: its
    # default permissions (add/change/delete/view_<model>) wait for that one.
    models = {(m._meta.app_label, m._meta.model_name) for m in apps.get_models()}
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for role, wanted in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        perms = []
        for app_label, codename in wanted:
            if app_label not in ready:
                continue
            verb, _, model_name = codename.partition("_")
            if verb in _DEFAULT_VERBS and (app_label, model_name) not in models:
                continue
            perm = permission_model.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if perm is None:
                raise LookupError(f"permission {app_label}.{codename} does not exist")
            perms.append(perm)
        group.permissions.set(perms)
