"""The base of the product's management commands: the options they share
(``--user``, ``--json``, ``--dry-run``) and user errors as one line with exit 1.

It lives in billing, the lowest app, so every app's commands (and the site's)
can build on it. It changes nothing itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from billing.audit import Actor
from billing.errors import BillingError

# An option is offered on the command's own parser (True), on none (False) or
# on the named actions of a command with sub-commands (`periods open`, ...).
Offer = bool | Collection[str]
# A help text, or one per action.
HelpText = str | Mapping[str, str]

DRY_RUN_NOTICE = "Dry run: every change above was rolled back; nothing written."


class BillingCommand(BaseCommand):
    """A command that opts in to the shared options with class attributes.

    - ``takes_user``: ``--user NAME``, the acting user of the audit trail
      (default ``user_default``, or the operating-system user when that is None);
      :meth:`actor` turns it into an :class:`Actor`.
    - ``takes_json``: ``--json``, machine output.
    - ``takes_dry_run``: ``--dry-run`` (state-changing commands only). With
      ``dry_run_rolls_back`` (True, or the actions named) the command runs as
      usual in a transaction that is rolled back, and a last line says so;
      otherwise the command passes ``options["dry_run"]`` to its service's own
      dry run (what commands that send email, write files or queue jobs must
      do: a rollback undoes none of that).

    Errors of ``user_errors`` (a user's mistake) become a ``CommandError`` with
    the same one-line message, so the CLI prints one line and exits 1; any other
    exception is a bug and keeps its traceback.
    """

    takes_user: ClassVar[Offer] = False
    takes_json: ClassVar[Offer] = False
    takes_dry_run: ClassVar[Offer] = False
    dry_run_rolls_back: ClassVar[Offer] = False
    user_default: ClassVar[str | None] = None
    user_help: ClassVar[HelpText] = "Acting user for the audit trail (default: OS user)."
    json_help: ClassVar[HelpText] = "Print one JSON object."
    dry_run_help: ClassVar[HelpText] = "Report what would be done; write nothing."
    user_errors: ClassVar[tuple[type[Exception], ...]] = (BillingError,)

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        for name, target in self._parsers(parser):
            if _offered(self.takes_dry_run, name):
                target.add_argument(
                    "--dry-run", action="store_true", help=_help(self.dry_run_help, name)
                )
            if _offered(self.takes_json, name):
                target.add_argument("--json", action="store_true", help=_help(self.json_help, name))
            if _offered(self.takes_user, name):
                target.add_argument(
                    "--user", default=self.user_default, help=_help(self.user_help, name)
                )
        return parser

    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            if not (options.get("dry_run") and self._rolls_back(options.get("action"))):
                return super().execute(*args, **options)
            with transaction.atomic():
                # Savepoint or transaction: either way nothing stays, and jobs
                # queued on commit are dropped with it.
                output = super().execute(*args, **options)
                transaction.set_rollback(True)
        except self.user_errors as exc:
            raise CommandError(str(exc)) from None
        notice = self.stderr if options.get("json") else self.stdout
        notice.write(DRY_RUN_NOTICE)
        return output

    @contextmanager
    def rolled_back(self) -> Iterator[None]:
        """A block whose database changes are undone, jobs queued on commit with
        them: for a dry run that must stop before a step a rollback cannot undo
        (sending email), which the command then skips."""
        with transaction.atomic():
            yield
            transaction.set_rollback(True)

    def _rolls_back(self, action: str | None) -> bool:
        rolls_back = self.dry_run_rolls_back
        return rolls_back if isinstance(rolls_back, bool) else action in rolls_back

    def actor(self, options: Mapping[str, Any]) -> Actor:
        """The acting user of ``--user`` (or the OS user), as the audit trail records it."""
        return Actor.from_cli(options.get("user"))

    def _parsers(self, parser: CommandParser) -> list[tuple[str, argparse.ArgumentParser]]:
        """The command's parser (named "") and each action's, if it has actions."""
        found: list[tuple[str, argparse.ArgumentParser]] = [("", parser)]
        for action in parser._actions:  # argparse keeps sub-parsers only there
            if isinstance(action, argparse._SubParsersAction):
                found += list(action.choices.items())
        return found


def _offered(offer: Offer, name: str) -> bool:
    if isinstance(offer, bool):
        return offer and name == ""
    return name in offer


def _help(text: HelpText, name: str) -> str:
    return text if isinstance(text, str) else text[name]
