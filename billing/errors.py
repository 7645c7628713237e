"""The user-error type of every app: a problem the person can fix, as one line.

``ingest``, ``journals``, ``ingest.usage.pricing`` and the backup subclass it,
so one ``except BillingError`` catches every user error (an entry point shows
it as one line, exit 1 from the command line). Pure: no ORM, no I/O.
"""

from __future__ import annotations

from typing import Any


class BillingError(Exception):
    """A user-caused problem (wrong period, locked data, bad value): one line.

    ``str()`` is the line for the command line (it may name flags and
    commands); ``web`` says the same for a browser user, who has buttons
    instead of flags; ``blockers`` are the problems one by one, with the admin
    page that fixes each.
    """

    def __init__(self, message: str, *, web: str = "", blockers: Any = ()) -> None:
        super().__init__(message)
        self.web = web or message
        self.blockers = list(blockers)


def web_text(exc: Exception) -> str:
    """An error's wording for a browser user (see BillingError.web)."""
    return str(getattr(exc, "web", "") or exc)
