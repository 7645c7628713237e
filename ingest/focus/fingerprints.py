"""Row fingerprints and occurrence counts: the key a charge is deduplicated by. Pure.

A charge's key is (fingerprint, occurrence): the BLAKE2b of the whole row and
how many identical rows came before it in the delivery
(docs/decisions/0002-dedup.md). Apart from the row preparer so that the key,
which imported charges keep for ever, is read and changed in one place.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import numpy as np

# Columns left out of the whole-row fingerprint: they change between exports
# of the same line item (docs/decisions/0002-dedup.md).
VOLATILE_COLUMNS = frozenset({"InvoiceId", "BillingPeriodEnd"})
FINGERPRINT_VERSION = 2
_V2_PREFIX = "focus-row-v2\x1d"


class _SeenKeys:
    """Set of 64-bit row keys with ~8 bytes per row, for occurrence counting.

    A log-structured list of sorted numpy arrays: memory stays flat (8 bytes
    per row instead of ~100 for a Python set) as files grow.
    """

    def __init__(self) -> None:
        self.levels: list[np.ndarray] = []

    def contains(self, keys: np.ndarray) -> np.ndarray:
        found = np.zeros(len(keys), dtype=bool)
        for level in self.levels:
            idx = np.searchsorted(level, keys)
            idx[idx == len(level)] = 0
            found |= level[idx] == keys
        return found

    def add(self, keys: np.ndarray) -> None:
        new = np.sort(keys)
        while self.levels and len(self.levels[-1]) <= len(new):
            new = np.sort(np.concatenate((self.levels.pop(), new)))
        self.levels.append(new)


def legacy_fingerprints(columns: dict[str, list[str]]) -> list[bytes]:
    """Fingerprint version 1, verbatim: the 16-byte BLAKE2b of the recognised
    (version 1) columns' text as read, in sorted column order.

    Kept to recognise charges imported before version 2; never change it.
    """
    names = sorted(columns)
    header_tag = "\x1e".join(names) + "\x1f"
    blake2b = hashlib.blake2b
    return [
        blake2b((header_tag + "\x1f".join(values)).encode(), digest_size=16).digest()
        for values in zip(*[columns[name] for name in names], strict=True)
    ]


def row_fingerprints(names: list[str], cells: list[list[str]], n: int) -> list[bytes]:
    """Fingerprint version 2: the 16-byte BLAKE2b of the whole row.

    Every column but the volatile ones takes part under its canonical name,
    in sorted name order, as ``name RS value US``; an empty (or NULL) value
    takes no part, so a column added empty to a later export, or a value
    NULL in one file and absent in another, changes nothing.
    """
    order = sorted(
        (name, values)
        for name, values in zip(names, cells, strict=True)
        if name not in VOLATILE_COLUMNS
    )
    # The row text is joined from pieces in C: a column with a value in every
    # row adds its values between constant name pieces; only a column with
    # some empty values needs a token per cell. Same text either way.
    pieces: list[Any] = []
    pending = _V2_PREFIX
    for name, values in order:
        if all(values):
            pieces.append(itertools.repeat(pending + name + "\x1e", n))
            pieces.append(values)
            pending = "\x1f"
        elif any(values):
            tag = name + "\x1e"
            pieces.append(itertools.repeat(pending, n))
            pieces.append([tag + v + "\x1f" if v else "" for v in values])
            pending = ""
    pieces.append(itertools.repeat(pending, n))
    blake2b = hashlib.blake2b
    join = "".join
    return [
        blake2b(join(parts).encode(), digest_size=16).digest()
        for parts in zip(*pieces, strict=True)
    ]


def fingerprint_keys(digests: list[bytes]) -> np.ndarray:
    """The 64-bit keys occurrences are counted by: each digest's first 8 bytes."""
    return np.frombuffer(b"".join(d[:8] for d in digests), dtype="<i8")


class Occurrences:
    """The row keys seen so far and how often each repeated: shared by the
    files of one delivery, so occurrences are counted across its part files."""

    def __init__(self) -> None:
        self.seen = _SeenKeys()
        self.repeats: dict[int, int] = {}

    def count(self, keys: np.ndarray) -> list[int]:
        """0 for the first row with a key, 1 for the second, ... (over every call)."""
        in_previous = self.seen.contains(keys).tolist()
        self.seen.add(keys)
        repeats = self.repeats
        local: set[int] = set()
        result = []
        for key, before in zip(keys.tolist(), in_previous, strict=True):
            if key in repeats:
                result.append(repeats[key])
                repeats[key] += 1
            elif before or key in local:
                result.append(1)
                repeats[key] = 2
            else:
                result.append(0)
                local.add(key)
        return result
