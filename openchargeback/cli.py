"""The ``openchargeback`` console script: ``openchargeback X`` = ``manage.py X``.

Hyphenated names from the product's documentation (``export-journal``) are
accepted as aliases of the underscore command names (``export_journal``).
``--help`` lists the product's commands first, each with its one-line
description, then Django's; ``--version`` prints the product's version.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import time
from importlib import metadata
from pathlib import Path

# The product's apps, in the order their commands are listed, with their headings.
PRODUCT_APPS = {
    "ingest": "Import",
    "billing": "Periods, review, sources and rates",
    "statements": "Statements and emails",
    "journals": "Journals",
    "openchargeback": "Operations",
}
HELP_ARGS: tuple[list[str], ...] = ([], ["help"], ["--help"], ["-h"])


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
        # `openchargeback --version` and `openchargeback COMMAND --version`: the
        # product's version (Django's runner would print Django's).
        if args[1:] in (["--version"], ["version"]) or args[2:] == ["--version"]:
            sys.stdout.write(f"{version()}\n")
            return
        if args[1:] in HELP_ARGS:
            sys.stdout.write(help_text())
            return
        from django.conf import settings
        from django.core.management import execute_from_command_line

        # Read the settings now: Django's command runner would swallow a
        # configuration error here and fail later with a traceback.
        settings.INSTALLED_APPS  # noqa: B018 - evaluated for its ImproperlyConfigured

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


def version() -> str:
    """The product's version: the installed package's, else the source tree's
    pyproject.toml (a checkout run without installing), else "unknown"."""
    try:
        return metadata.version("openchargeback")
    except metadata.PackageNotFoundError:
        pass
    import tomllib

    try:
        with (Path(__file__).resolve().parent.parent / "pyproject.toml").open("rb") as fh:
            return str(tomllib.load(fh)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def _summary(help_text: str, room: int) -> str:
    """A command's description in one line of `room` characters: the first
    sentence of its help, cut at a word with "…" if still too long."""
    words = " ".join(help_text.split())
    first, dot, _rest = words.partition(". ")
    sentence = first + ("." if dot else "")
    if len(sentence) <= room:
        return sentence
    return sentence[: room - 3].rsplit(" ", 1)[0].rstrip(",;:") + "..."


def help_text() -> str:
    """The product's commands by app, each with its description, then Django's own."""
    import django
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import get_commands, load_command_class

    try:
        django.setup()
    except ImproperlyConfigured as exc:
        return _help_without_settings(exc)
    by_app: dict[str, list[tuple[str, str]]] = {}
    for name, app in get_commands().items():
        try:
            described = str(load_command_class(app, name).help or "")
        except Exception:  # a broken third-party command must not break --help
            described = ""
        # the product's commands by the names its documentation uses (export-journal)
        shown = name.replace("_", "-") if app in PRODUCT_APPS else name
        by_app.setdefault(app, []).append((shown, described))
    # One line per command, as wide as the terminal (80 to 120 columns): a long
    # description is cut; the command's own --help has it all.
    columns = max(80, min(shutil.get_terminal_size((100, 24)).columns, 120))

    def rows(commands: list[tuple[str, str]]) -> list[str]:
        width = max(len(name) for name, _ in commands) + 2
        return [
            f"    {name:<{width}}{_summary(text, columns - 4 - width)}".rstrip()
            for name, text in commands
        ]

    out = [
        f"Usage: openchargeback COMMAND [options]   (OpenChargeback {version()})",
        "",
        "Run `openchargeback help COMMAND` (or COMMAND --help) for a command's options.",
        "",
        "OpenChargeback commands:",
    ]
    for app, heading in PRODUCT_APPS.items():
        if app in by_app:
            out += [f"  {heading}", *rows(sorted(by_app.pop(app)))]
    out += ["", "Django's commands (site and database administration):"]
    out += rows(sorted(command for commands in by_app.values() for command in commands))
    return "\n".join(out) + "\n"


def _help_without_settings(error: Exception) -> str:
    """--help when the settings cannot load: the product's commands by name (their
    descriptions need the settings), and what is wrong with the configuration."""
    from importlib.util import find_spec

    from django.core.management import find_commands

    out = ["Usage: openchargeback COMMAND [options]", "", "OpenChargeback commands:"]
    for app, heading in PRODUCT_APPS.items():
        spec = find_spec(app)
        places = list(spec.submodule_search_locations or []) if spec else []
        names = sorted(
            name.replace("_", "-")
            for place in places
            for name in find_commands(str(Path(place) / "management"))
        )
        if names:
            out.append(f"  {heading}")
            out += textwrap.wrap(
                ", ".join(names), 79, initial_indent="    ", subsequent_indent="    "
            )
    out += [
        "",
        "Descriptions and Django's commands are listed once the configuration loads:",
        f"Configuration error: {error}",
    ]
    return "\n".join(out) + "\n"


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
