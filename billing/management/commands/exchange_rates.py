"""Exchange rates per foreign currency and month: set, list, import, export.

`set` and `import` record rates through billing.exchange (audited) and
convert the month's charges in that currency; re-running with the same rates
changes nothing. `import` is all or nothing: one bad row and nothing is
recorded. ``set --dry-run`` records the rate and rolls it back."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandParser

from billing.commands import BillingCommand
from billing.errors import BillingError
from billing.exchange import exchange_rate_set, exchange_rates_import, home_currency
from billing.models import ExchangeRate
from billing.periods import parse_period
from openchargeback.csvfile import CsvWriter
from openchargeback.text import count

EXPORT_COLUMNS = ("currency", "period", "rate", "note", "updated_by", "updated_at")


class Command(BillingCommand):
    help = "Exchange rates of foreign billing currencies per month: set, list, import, export."
    takes_json = ("set", "list", "import")
    json_help = {"set": "Print JSON.", "list": "Print a JSON array.", "import": "Print JSON."}
    takes_user = ("set", "import")
    takes_dry_run = ("set", "import")
    dry_run_help = {
        "set": "Record the rate and roll it back: report, write nothing.",
        "import": "Check the file and report; write nothing.",
    }
    dry_run_rolls_back = ("set",)  # import has its own dry run

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        setting = sub.add_parser(
            "set", help="Record or change a rate; converts that month's charges in the currency."
        )
        setting.add_argument("currency", help="ISO 4217 code, e.g. EUR.")
        setting.add_argument("--period", required=True, help="The month, YYYY-MM.")
        setting.add_argument(
            "--rate",
            required=True,
            help="Home-currency units per one unit of the currency, e.g. 1.0850 (USD per EUR).",
        )
        setting.add_argument(
            "--note", help="Where the rate comes from (default: keep the recorded note)."
        )

        listing = sub.add_parser("list", help="List the recorded rates.")
        listing.add_argument("--period", help="Only this month (YYYY-MM).")

        importing = sub.add_parser(
            "import", help="Record the rates of a CSV file (currency,period,rate[,note])."
        )
        importing.add_argument("file", help="CSV file; `export` writes one.")

        exporting = sub.add_parser("export", help="Write the rates as CSV (re-importable).")
        exporting.add_argument("--period", help="Only this month (YYYY-MM).")
        exporting.add_argument("--output", help="File to write (default: standard output).")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action']}")(options)

    def _set(self, options: dict[str, Any]) -> None:
        change = exchange_rate_set(
            currency=options["currency"],
            period=options["period"],
            rate=options["rate"],
            note=options["note"],
            actor=self.actor(options),
        )
        rate = change.rate
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        **_as_dict(rate),
                        "created": change.created,
                        "changed": change.changed,
                        "converted": change.converted,
                    }
                )
            )
            return
        what = "recorded" if change.created else "changed" if change.changed else "unchanged"
        self.stdout.write(
            f"{rate.currency} {rate.period.period}: {rate.rate} {home_currency()} per "
            f"{rate.currency} ({what}); {count(change.converted, 'charge')} converted."
        )

    def _rates(self, options: dict[str, Any]) -> Any:
        rates = ExchangeRate.objects.select_related("period").order_by("period__period", "currency")
        if options.get("period"):
            rates = rates.filter(period__period=parse_period(options["period"]))
        return rates

    def _list(self, options: dict[str, Any]) -> None:
        rates = list(self._rates(options))
        if options["json"]:
            self.stdout.write(json.dumps([_as_dict(r) for r in rates]))
            return
        home = home_currency()
        self.stdout.write(f"{count(len(rates), 'exchange rate')} ({home} per unit)")
        for r in rates:
            self.stdout.write(
                f"{r.period.period} {r.currency} {r.rate:>14}  {r.updated_by:<16} "
                f"{r.updated_at:%Y-%m-%d %H:%M}  {r.note}"
            )

    def _import(self, options: dict[str, Any]) -> None:
        path = Path(options["file"])
        try:
            text = path.read_bytes().decode("utf-8-sig")  # CR and CRLF kept as written
        except (OSError, UnicodeDecodeError) as exc:
            raise BillingError(f"{path.name}: cannot read the file ({exc})") from None
        result = exchange_rates_import(
            text=text,
            file_name=path.name,
            actor=self.actor(options),
            dry_run=options["dry_run"],
        )
        if options["json"]:
            self.stdout.write(json.dumps({"dry_run": options["dry_run"], **vars(result)}))
            return
        prefix = "Dry run, nothing written: would record" if options["dry_run"] else "Recorded"
        self.stdout.write(
            f"{prefix} {count(result.rows, 'rate')} from {path.name}: {result.created:,} new, "
            f"{result.changed:,} changed, {result.unchanged:,} unchanged; "
            f"{count(result.converted, 'charge')} converted."
        )

    def _export(self, options: dict[str, Any]) -> None:
        buffer = io.StringIO(newline="")
        writer = CsvWriter(buffer, neutralise=True)  # the import restores the text
        writer.writerow(EXPORT_COLUMNS)
        for rate in self._rates(options):
            row = _as_dict(rate)
            writer.writerow([str(row[c]) for c in EXPORT_COLUMNS])
        if not options["output"]:
            self.stdout.write(buffer.getvalue(), ending="")
            return
        try:
            Path(options["output"]).write_bytes(buffer.getvalue().encode("utf-8"))
        except OSError as exc:
            raise BillingError(f"cannot write {options['output']}: {exc.strerror}") from None


def _as_dict(rate: ExchangeRate) -> dict[str, Any]:
    return {
        "currency": rate.currency,
        "period": rate.period.period,
        "rate": rate.rate,
        "note": rate.note,
        "updated_by": rate.updated_by,
        "updated_at": rate.updated_at.isoformat(timespec="seconds"),
    }
