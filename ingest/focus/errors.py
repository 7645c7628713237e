"""The one error of a file a user can fix: refused by the reader or the
importer, it says what and where in one line (a BillingError, so every
command and page reports it the same way)."""

from __future__ import annotations

from billing.errors import BillingError


class IngestError(BillingError):
    """A user-caused problem with a file; the message is one line.

    ``web`` says the same for a browser user (buttons, not commands)."""

    def __init__(self, message: str, *, web: str = "") -> None:
        super().__init__(message, web=web)
