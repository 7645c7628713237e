"""The ``openchargeback`` console script: ``openchargeback X`` = ``manage.py X``.

Hyphenated names from the product's documentation (``export-journal``) are
accepted as aliases of the underscore command names (``export_journal``).
"""

from __future__ import annotations

import os
import sys


def _alias(argv: list[str]) -> list[str]:
    if len(argv) > 1 and "-" in argv[1] and not argv[1].startswith("-"):
        argv = [argv[0], argv[1].replace("-", "_"), *argv[2:]]
    return argv


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openchargeback.settings")
    from django.core.exceptions import ImproperlyConfigured

    try:
        from django.core.management import execute_from_command_line

        execute_from_command_line(_alias(list(sys.argv if argv is None else argv)))
    except ImproperlyConfigured as exc:
        # Configuration mistakes are user errors: one line, exit 1.
        sys.stderr.write(f"Configuration error: {exc}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
