"""Routing a multi-provider FOCUS file to sources by provider.

A FOCUS file may hold the charges of several providers (the FinOps
Foundation's sample has AWS, Microsoft and Oracle rows). Each source claims
provider names (``Source.provider_names``, any letter case); the file is
imported once per claiming source, keeping only that source's rows, with the
original line numbers and the original file kept. A provider no source
claims refuses the file.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from billing.errors import BillingError
from billing.models import Source
from ingest.focus.errors import IngestError
from ingest.focus.limits import ingest_limits
from ingest.focus.parsers import Chunk, FocusReader, is_null, open_focus

__all__ = ["provider_claims", "providers_in_file", "route_by_provider", "routed_reader"]

# The provider of a row: FOCUS 1.3 ServiceProviderName, else ProviderName.
PROVIDER_COLUMNS = ("ServiceProviderName", "ProviderName")


def split_names(text: str) -> list[str]:
    """'AWS, Amazon Web Services' -> ['AWS', 'Amazon Web Services'] (blanks dropped)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def provider_claims() -> dict[str, Source]:
    """Lower-cased provider name -> the enabled source claiming it.

    Two sources claiming one name is a configuration error (BillingError).
    """
    claims: dict[str, Source] = {}
    for source in Source.objects.filter(enabled=True).exclude(provider_names="").order_by("slug"):
        for name in split_names(source.provider_names):
            key = name.casefold()
            other = claims.get(key)
            if other is not None and other.pk != source.pk:
                raise BillingError(
                    f"provider {name!r} is claimed by sources {other.slug} and {source.slug}; "
                    "remove it from one with `openchargeback sources set SLUG "
                    '--provider-names "..."`'
                )
            claims[key] = source
    return claims


def row_providers(chunk: Chunk) -> list[str]:
    """Each row's provider name as written (ServiceProviderName, else ProviderName)."""
    service = chunk.columns.get("ServiceProviderName")
    fallback = chunk.columns.get("ProviderName")
    if service is None:
        return fallback or [""] * chunk.rows
    if fallback is None:
        return service
    return [s if not is_null(s) else f for s, f in zip(service, fallback, strict=True)]


def _open(path: Path, display_name: str) -> FocusReader:
    return open_focus(
        path,
        display_name=display_name,
        chunk_rows=settings.OPENCHARGEBACK_INGEST_CHUNK_ROWS,
        max_file_bytes=settings.OPENCHARGEBACK_INGEST_MAX_FILE_BYTES,
        limits=ingest_limits(),
    )


def providers_in_file(reader: FocusReader) -> tuple[Counter[str], dict[str, int]]:
    """(rows per provider name as written, first line of each); '' for rows without one."""
    if not any(column in reader.positions for column in PROVIDER_COLUMNS):
        raise IngestError(
            f"{reader.display_name}: no ProviderName column, so its rows cannot be routed "
            "by provider; import it with --source"
        )
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for chunk in reader.chunks():
        for line, value in zip(chunk.lines, row_providers(chunk), strict=True):
            name = "" if is_null(value) else value
            counts[name] += 1
            first.setdefault(name, line)
    return counts, first


def route_by_provider(*, path: Path, display_name: str) -> list[tuple[Source, frozenset[str]]]:
    """The sources a multi-provider file goes to, each with the (lower-cased)
    provider names of its rows; in slug order.

    Refuses (IngestError, one line) a file with rows of a provider no source
    claims, naming the provider, its row count and first line.
    """
    reader = _open(path, display_name)
    counts, first = providers_in_file(reader)
    claims = provider_claims()
    unclaimed = sorted(
        (name for name in counts if name.casefold() not in claims), key=lambda n: first[n]
    )
    if unclaimed:
        name = unclaimed[0]
        column = next(c for c in reversed(PROVIDER_COLUMNS) if c in reader.positions)
        where = reader.where(first[name], column)
        what = f"provider {name!r}" if name else "rows without a provider"
        more = (
            f" (and {len(unclaimed) - 1} more unclaimed: "
            f"{', '.join(repr(n) for n in unclaimed[1:])})"
            if len(unclaimed) > 1
            else ""
        )
        how = (
            f'claim it with `openchargeback sources set SLUG --provider-names "{name}"`'
            if name
            else "fill ProviderName in the file, or import it with --source"
        )
        raise IngestError(
            f"{where}: {what} is claimed by no source ({counts[name]:,} "
            f"row{'s' if counts[name] != 1 else ''}, this the first){more}; "
            f"{how}; nothing was imported"
        )
    routes: dict[int, tuple[Source, set[str]]] = {}
    for name in counts:
        source = claims[name.casefold()]
        routes.setdefault(source.pk, (source, set()))[1].add(name.casefold())
    return [
        (source, frozenset(names))
        for source, names in sorted(routes.values(), key=lambda item: item[0].slug)
    ]


@dataclasses.dataclass
class _RoutedReader(FocusReader):
    """A reader yielding only the rows of some providers (original line numbers)."""

    providers: frozenset[str] = frozenset()

    def chunks(self) -> Iterator[Chunk]:
        kept = 0
        for chunk in super().chunks():
            keep = [
                i
                for i, value in enumerate(row_providers(chunk))
                if value.casefold() in self.providers
            ]
            if not keep:
                continue
            if len(keep) == chunk.rows:
                yield dataclasses.replace(chunk, start=kept)
            else:
                cells = [[values[i] for i in keep] for values in chunk.cells]
                yield Chunk(
                    kept,
                    len(keep),
                    # The recognised columns are the same lists as their cells.
                    {name: cells[index] for name, index in self.positions.items()}
                    if cells
                    else {name: [v[i] for i in keep] for name, v in chunk.columns.items()},
                    [chunk.lines[i] for i in keep],
                    cells,
                    {pos: [values[i] for i in keep] for pos, values in chunk.legacy.items()},
                )
            kept += len(keep)


def routed_reader(reader: FocusReader, providers: frozenset[str]) -> FocusReader:
    """``reader`` restricted to the rows whose provider (lower-cased) is in ``providers``."""
    init = {f.name: getattr(reader, f.name) for f in dataclasses.fields(reader) if f.init}
    return _RoutedReader(**init, providers=providers)
