"""The ``openchargeback`` console script: ``openchargeback X`` = ``manage.py X``.

Hyphenated names from the product's documentation (``export-journal``) are
accepted as aliases of the underscore command names (``export_journal``).
"""

from __future__ import annotations

import os
import sys
import time


def _alias(argv: list[str]) -> list[str]:
    if len(argv) > 1 and "-" in argv[1] and not argv[1].startswith("-"):
        argv = [argv[0], argv[1].replace("-", "_"), *argv[2:]]
    return argv


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openchargeback.settings")
    from django.core.exceptions import ImproperlyConfigured

    args = _alias(list(sys.argv if argv is None else argv))
    started = time.monotonic()
    status: int | str = 0
    try:
        from django.core.management import execute_from_command_line

        execute_from_command_line(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except ImproperlyConfigured as exc:
        # Configuration mistakes are user errors: one line, exit 1.
        sys.stderr.write(f"Configuration error: {exc}\n")
        sys.exit(1)
    except BrokenPipeError:
        # The reader went away (`openchargeback show ... | head`): stop quietly.
        status = "broken pipe"
        _silence_stdout()
        sys.exit(1)
    except SystemExit as exc:
        status = exc.code if exc.code is not None else 0
        raise
    except BaseException:
        status = "error"
        raise
    finally:
        _log_command(args[1:2], status, started)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush of the
    closed pipe does not print "Exception ignored ... BrokenPipeError"."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (embedded, tests)
        pass
    finally:
        os.close(devnull)


def _log_command(name: list[str], status: int | str, started: float) -> None:
    """One line per command run (its name, exit status, duration); never the
    arguments, which may hold paths or addresses."""
    from django.conf import settings

    if not name or not settings.configured:
        return
    from openchargeback.logging import command_log

    command_log.info(
        "command",
        extra={
            "event": "command",
            "command": name[0],
            "status": status,
            "duration_ms": round((time.monotonic() - started) * 1000),
        },
    )


if __name__ == "__main__":
    main()
