"""Hostile files: every one is refused with one line naming file, line and
column (or, for tags, its row flagged ``invalid_tags``) while the import
process stays under a memory ceiling (docs/security.md, "Limits").

Each file is built in ``tmp_path`` and small on disk: the bombs repeat one
gzip member, so a gigabyte is never held by the test. Each runs through the
CLI in a subprocess whose peak RSS is measured (``os.wait4``), on the backend
the tests use, and through the upload page's preview job.
"""

from __future__ import annotations

import gzip
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.conf import settings as django_settings

from billing import flags
from billing.audit import Actor
from billing.models import Charge, Source
from ingest.focus.errors import IngestError
from ingest.focus.services import file_import
from ingest.models import Import, Upload
from ingest.uploads import jobs
from ingest.uploads import services as uploads
from ingest.uploads.staging import UPLOAD_DIR
from tests.conftest import FOCUS_COLUMNS, focus_row, fresh_database_url
from tests.ingest_helpers import ROOT, cli_env, focus_lines, join_lines, replace_field

# The documented ceiling of an import process's peak memory.
CEILING_MIB = 512
MIB = 1024 * 1024

RESOURCE_NAME = FOCUS_COLUMNS.index("ResourceName")
TAGS = FOCUS_COLUMNS.index("Tags")
NO_RATIO = {"OPENCHARGEBACK_INGEST_MAX_COMPRESSION_RATIO": "0"}


def _lines(count: int = 3) -> list[str]:
    rows = [focus_row(resource=f"r-{i}", day=1 + i % 28) for i in range(count)]
    return focus_lines(rows)


def _gzip_bomb(path: Path, head: bytes, body: bytes, repeats: int, tail: bytes = b"") -> Path:
    """A gzip file of ``head``, ``repeats`` times ``body``, then ``tail``: one
    member compressed once and written again (gzip reads members in a row)."""
    member = gzip.compress(body, compresslevel=9)
    with path.open("wb") as fh:
        fh.write(gzip.compress(head))
        for _ in range(repeats):
            fh.write(member)
        if tail:
            fh.write(gzip.compress(tail))
    return path


# --- the hostile files ---------------------------------------------------------------


def wide_header(tmp: Path) -> Path:
    columns = 32_000
    head = ("BillingPeriodStart,BilledCost" + "," * (columns - 2) + "\n").encode()
    row = ("2025-01-01T00:00:00Z,1.00" + "," * (columns - 2) + "\n").encode()
    return _gzip_bomb(tmp / "aws_2025-01.csv.gz", head, row * 32, 64)


def wide_rows(tmp: Path) -> Path:
    lines = _lines(1)
    head = join_lines(lines).encode()
    row = (lines[1] + "," * 32_000 + "\n").encode()
    return _gzip_bomb(tmp / "aws_2025-01.csv.gz", head, row * 32, 64)


def _one_field(tmp: Path, filler: bytes) -> Path:
    lines = _lines(1)
    start = replace_field(lines[1], RESOURCE_NAME, '"@@')
    before, after = start.split("@@")
    head = (lines[0] + "\n" + before).encode()
    return _gzip_bomb(
        tmp / "aws_2025-01.csv.gz", head, filler * MIB, 1024, ('"' + after + "\n").encode()
    )


def gigabyte_field(tmp: Path) -> Path:
    """One 1 GiB field, about 1 MB on disk."""
    return _one_field(tmp, b"a")


def gigabyte_quoted_newlines(tmp: Path) -> Path:
    """One 1 GiB quoted field of newlines: every physical line is short."""
    return _one_field(tmp, b"\n")


def blank_lines_gz(tmp: Path) -> Path:
    """About 10 MB of gzip: 10 GiB of blank lines."""
    head = join_lines(_lines(1)).encode()
    return _gzip_bomb(tmp / "aws_2025-01.csv.gz", head, b"\n" * MIB, 10_000)


def blank_lines_csv(tmp: Path) -> Path:
    """10 MiB of blank lines between two rows (imports: blank lines are skipped)."""
    lines = _lines(2)
    path = tmp / "aws_2025-01.csv"
    path.write_bytes(
        ((lines[0] + "\n" + lines[1] + "\n") + "\n" * (10 * MIB) + lines[2] + "\n").encode()
    )
    return path


def ratio_bomb(tmp: Path) -> Path:
    """Valid rows, the same row over and over: 256 MiB from about 300 KB."""
    lines = _lines(1)
    row = (lines[1] + "\n").encode()
    body = row * (MIB // len(row))
    return _gzip_bomb(tmp / "aws_2025-01.csv.gz", (lines[0] + "\n").encode(), body, 256)


def long_header(tmp: Path) -> Path:
    lines = _lines(2)
    path = tmp / "aws_2025-01.csv"
    path.write_text(join_lines([lines[0] + "," + "x" * 100_000, *lines[1:]]))
    return path


def long_line(tmp: Path) -> Path:
    lines = _lines(3)
    lines[2] = replace_field(lines[2], RESOURCE_NAME, "y" * (2 * MIB))
    path = tmp / "aws_2025-01.csv"
    path.write_text(join_lines(lines))
    return path


def long_field(tmp: Path) -> Path:
    lines = _lines(3)
    lines[2] = replace_field(lines[2], RESOURCE_NAME, "z" * 100_000)
    path = tmp / "aws_2025-01.csv"
    path.write_text(join_lines(lines))
    return path


def nul_bytes(tmp: Path) -> Path:
    lines = _lines(3)
    lines[2] = replace_field(lines[2], RESOURCE_NAME, "web\x00x")
    path = tmp / "aws_2025-01.csv"
    path.write_bytes(join_lines(lines).encode())
    return path


def _parquet(path: Path, rows: int, extra: dict[str, pa.Array] | None = None, **kw: Any) -> Path:
    """FOCUS rows as Parquet, every column one dictionary-encoded value."""
    row = focus_row()
    arrays = {
        name: pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), [row[name]])
        for name in FOCUS_COLUMNS
    }
    arrays.update(extra or {})
    pq.write_table(pa.table(arrays), path, compression="zstd", **kw)
    return path


def dictionary_bomb(tmp: Path) -> Path:
    """One 1 MiB value, 4,000 times: 4 GiB decoded from a few KB."""
    value = pa.DictionaryArray.from_arrays(pa.array([0] * 4_000, pa.int32()), ["v" * MIB])
    return _parquet(tmp / "aws_2025-01.parquet", 4_000, {"ResourceName": value})


def dictionary_wide(tmp: Path) -> Path:
    """A 60,000-character value (under the field limit) 4,000 times in a column
    nobody reads: 240 MB decoded, imported in bounded chunks."""
    value = pa.DictionaryArray.from_arrays(pa.array([0] * 4_000, pa.int32()), ["w" * 60_000])
    return _parquet(tmp / "aws_2025-01.parquet", 4_000, {"x_notes": value})


def parquet_columns(tmp: Path) -> Path:
    extra = {f"x{i}": pa.array([""]) for i in range(1_001 - len(FOCUS_COLUMNS))}
    return _parquet(tmp / "aws_2025-01.parquet", 1, extra)


def parquet_row_group(tmp: Path) -> Path:
    return _parquet(tmp / "aws_2025-01.parquet", 1_000, use_dictionary=False)


def parquet_nul(tmp: Path) -> Path:
    names = pa.array(["ok", "web\x00x"])
    path = tmp / "aws_2025-01.parquet"
    row = focus_row()
    table = pa.table({name: [row[name]] * 2 for name in FOCUS_COLUMNS})
    table = table.set_column(RESOURCE_NAME, "ResourceName", names)
    pq.write_table(table, path)
    return path


def nested_tags(tmp: Path) -> Path:
    """Tags nested 5,000 deep and Tags of 40,000 characters: those rows flagged."""
    lines = _lines(4)
    deep = '{"a":' * 5_000 + "1" + "}" * 5_000
    large = "{" + ",".join(f'"k{i}":"{"v" * 30}"' for i in range(1_100)) + "}"
    lines[1] = replace_field(lines[1], TAGS, '"' + deep.replace('"', '""') + '"')
    lines[2] = replace_field(lines[2], TAGS, '"' + large.replace('"', '""') + '"')
    path = tmp / "aws_2025-01.csv"
    path.write_text(join_lines(lines))
    return path


@dataclass(frozen=True)
class Case:
    build: Callable[[Path], Path]
    message: str  # what the one line says after the file name ("" when it imports)
    env: dict[str, str] = field(default_factory=dict)
    seconds: float = 20.0  # the CLI run, start-up included


LINE_LIMIT = (
    "a line longer than 1,048,576 bytes (OPENCHARGEBACK_INGEST_MAX_LINE_BYTES), or a "
    "quoted field that is never closed"
)
RATIO = "decompresses to more than 100 times its size"
CASES = {
    "32000-columns-gz": Case(
        wide_header,
        ", line 1: 32,000 columns, more than the 1,000 allowed (OPENCHARGEBACK_INGEST_MAX_COLUMNS)",
    ),
    "32000-fields-in-rows-gz": Case(
        wide_rows,
        f": line 3: expected {len(FOCUS_COLUMNS)} columns, found 32013 (an unquoted comma",
        NO_RATIO,
    ),
    "1gib-field-gz": Case(gigabyte_field, f": {RATIO}"),
    "1gib-field-gz-no-ratio": Case(gigabyte_field, f", line 2: {LINE_LIMIT}", NO_RATIO),
    "1gib-quoted-newlines-gz": Case(gigabyte_quoted_newlines, f", line 2: {LINE_LIMIT}", NO_RATIO),
    "blank-lines-10mb-gz": Case(blank_lines_gz, f": {RATIO}", seconds=10),
    "ratio-bomb-gz": Case(ratio_bomb, f": {RATIO}"),
    "long-header": Case(
        long_header,
        ", line 1: a header line longer than 65,536 bytes (OPENCHARGEBACK_INGEST_MAX_HEADER_BYTES)",
    ),
    "long-line": Case(long_line, f", line 3: {LINE_LIMIT}"),
    "long-field": Case(
        long_field,
        f", line 3, column {RESOURCE_NAME + 1} (ResourceName): a field of 100,000 "
        "characters, more than the 65,536 allowed (OPENCHARGEBACK_INGEST_MAX_FIELD_CHARS)",
    ),
    "nul-bytes": Case(
        nul_bytes,
        f", line 3, column {RESOURCE_NAME + 1} (ResourceName): contains a NUL character "
        "(at character 4); a FOCUS file is text, remove the NUL bytes and import it again",
    ),
    "parquet-nul-bytes": Case(
        parquet_nul,
        f", row 2, column {RESOURCE_NAME + 1} (ResourceName): contains a NUL character",
    ),
    "parquet-dictionary-bomb": Case(
        dictionary_bomb,
        f", row 1, column {RESOURCE_NAME + 1} (ResourceName): a field of 1,048,576 "
        "characters, more than the 65,536 allowed (OPENCHARGEBACK_INGEST_MAX_FIELD_CHARS)",
    ),
    "parquet-1001-columns": Case(
        parquet_columns,
        ", schema: 1,001 columns, more than the 1,000 allowed (OPENCHARGEBACK_INGEST_MAX_COLUMNS)",
    ),
    "parquet-row-group": Case(
        parquet_row_group,
        ", rows 1 to 1,000: a row group of ",
        {"OPENCHARGEBACK_INGEST_MAX_ROW_GROUP_BYTES": "10000"},
    ),
}
# Files that import (dry run): bounded, not refused.
IMPORTED = {
    "blank-lines-10mib-csv": Case(blank_lines_csv, "", seconds=10),
    "parquet-dictionary-240mb": Case(dictionary_wide, ""),
    "nested-tags": Case(nested_tags, ""),
}


# --- the CLI in a subprocess -----------------------------------------------------------


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    peak_mib: float
    seconds: float


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A migrated database for the CLI, on the tests' backend."""
    instance = tmp_path_factory.mktemp("hostile")
    with fresh_database_url(instance, "hostile") as url:
        done = _cli(instance, url, "migrate", "--no-input")
        assert done.returncode == 0, done.stderr
        yield instance, url


# A small Python process forks the command and writes the command's peak RSS
# (KiB on Linux) to the file named by its first argument. The command cannot
# be a direct child of the test process: on Linux a process's peak RSS starts
# at the RSS of the process it was forked from, and a test worker that has
# run hundreds of tests is itself hundreds of MiB.
_MEASURED = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _cli(instance: Path, url: str, *args: str, env: dict[str, str] | None = None) -> Run:
    """``openchargeback ARGS`` in a child process; its peak RSS from the kernel."""
    child_env = {**cli_env(instance), "DATABASE_URL": url, **(env or {})}
    peak = instance / "peak-rss-kib"
    started = time.monotonic()
    with (instance / "out").open("w+") as out, (instance / "err").open("w+") as err:
        returncode = subprocess.call(
            [sys.executable, "-c", _MEASURED, str(peak), "-m", "openchargeback.cli", *args],
            cwd=ROOT,
            env=child_env,
            stdout=out,
            stderr=err,
        )
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    kib = int(peak.read_text())
    return Run(returncode, stdout, stderr, kib / 1024, time.monotonic() - started)


def _counts(url: str) -> tuple[int, int]:
    """(charges, imports) in the CLI's database."""
    query = "SELECT (SELECT count(*) FROM billing_charge), (SELECT count(*) FROM ingest_import)"
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            row = conn.execute(query).fetchone()
    else:
        import psycopg

        with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as conn:
            row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _kept(instance: Path) -> list[Path]:
    """Files the CLI kept under its MEDIA_ROOT (copies of imported files)."""
    media = instance / "files"
    return sorted(p for p in media.rglob("*") if p.is_file()) if media.exists() else []


def _refused_line(run: Run, path: Path) -> str:
    """The one line of a refusal, after the file's name (the CLI names the path)."""
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr + run.stdout
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"CommandError: {path}"), lines[0]
    return lines[0].removeprefix(f"CommandError: {path}")


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(CASES))
def test_hostile_file_is_refused_in_one_line_within_the_memory_ceiling(
    name: str,
    site: tuple[Path, str],
    tmp_path: Path,
    defaults: None,
    settings: Any,
    actor: Actor,
) -> None:
    case = CASES[name]
    path = case.build(tmp_path)
    instance, url = site
    before = _counts(url), _kept(instance)
    run = _cli(instance, url, "ingest", str(path), "--source", "aws", env=case.env)
    message = _refused_line(run, path)
    assert message.startswith(case.message), message
    assert (_counts(url), _kept(instance)) == before  # nothing written
    assert run.peak_mib < CEILING_MIB, f"{name}: {run.peak_mib:.0f} MiB"
    assert run.seconds < case.seconds, f"{name}: {run.seconds:.1f} s"

    # The same file uploaded: its preview (a job) ends failed with the same line.
    for key, value in case.env.items():
        setattr(settings, key, int(value))
    upload = _previewed_upload(path, actor)
    assert upload.status == Upload.Status.FAILED
    assert upload.error == path.name + message
    assert not Charge.objects.exists()
    assert not Import.objects.exists()


def _previewed_upload(path: Path, actor: Actor) -> Upload:
    """Stage ``path`` as the upload page does and run its preview job."""
    staged = Path(django_settings.MEDIA_ROOT) / UPLOAD_DIR / f"hostile-{path.name}"
    staged.parent.mkdir(parents=True, exist_ok=True)
    os.link(path, staged)
    upload = uploads.upload_stage(
        batch=uuid.uuid4(),
        file_name=path.name,
        stored_file=str(staged.relative_to(django_settings.MEDIA_ROOT)),
        size=staged.stat().st_size,
        source=None,
        period="",
        actor=actor,
    )
    upload = uploads.upload_preview(
        upload=upload, source=Source.objects.get(slug="aws"), period="", actor=actor
    )
    if upload.status == Upload.Status.PREVIEWING:
        jobs.upload_run_preview(upload.pk)
    upload.refresh_from_db()
    return upload


@pytest.mark.parametrize("name", list(IMPORTED))
def test_hostile_file_that_is_valid_imports_within_the_memory_ceiling(
    name: str, site: tuple[Path, str], tmp_path: Path
) -> None:
    case = IMPORTED[name]
    path = case.build(tmp_path)
    instance, url = site
    before = _counts(url)
    run = _cli(instance, url, "ingest", str(path), "--source", "aws", "--dry-run", env=case.env)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert _counts(url) == before
    assert run.peak_mib < CEILING_MIB, f"{name}: {run.peak_mib:.0f} MiB"
    assert run.seconds < case.seconds, f"{name}: {run.seconds:.1f} s"


# --- tags: the row is flagged, the file imported -----------------------------------------


@pytest.mark.django_db
def test_tags_too_deep_or_too_large_flag_their_row_not_the_file(
    tmp_path: Path, defaults: None, actor: Actor
) -> None:
    path = nested_tags(tmp_path)
    result = file_import(path=path, source=Source.objects.get(slug="aws"), actor=actor)
    assert result.charges_created == 4
    bit = flags.BIT["invalid_tags"]
    by_line = {c.line_number: c for c in Charge.objects.all()}
    assert by_line[2].flags & bit
    assert by_line[3].flags & bit
    assert not by_line[4].flags & bit
    assert not by_line[5].flags & bit
    assert by_line[2].tags == {}
    assert by_line[3].tags == {}


# --- what the record splitter must keep ----------------------------------------------


@pytest.mark.django_db
def test_lines_are_counted_across_blank_lines_and_quoted_newlines(
    tmp_path: Path, defaults: None, actor: Actor
) -> None:
    lines = _lines(3)
    lines[1] = replace_field(lines[1], RESOURCE_NAME, '"two\nlines"')
    lines[3] = replace_field(lines[3], FOCUS_COLUMNS.index("BilledCost"), "abc")
    path = tmp_path / "aws_2025-01.csv"
    path.write_text("\n".join([lines[0], lines[1], "", "  ", lines[2], "", lines[3]]) + "\n")
    with pytest.raises(IngestError) as refused:
        file_import(path=path, source=Source.objects.get(slug="aws"), actor=actor)
    # header 1, a record on lines 2-3, blank 4 and 5, then 6, blank 7, the bad row on 8
    assert str(refused.value).startswith("aws_2025-01.csv, line 8, column 7 (BilledCost)")


@pytest.mark.django_db
def test_a_stray_quote_in_an_unquoted_field_still_imports(
    tmp_path: Path, defaults: None, actor: Actor
) -> None:
    lines = _lines(2)
    lines[1] = replace_field(lines[1], RESOURCE_NAME, '12" pipe')
    path = tmp_path / "aws_2025-01.csv"
    path.write_text(join_lines(lines))
    result = file_import(path=path, source=Source.objects.get(slug="aws"), actor=actor)
    assert result.charges_created == 2
    assert Charge.objects.get(line_number=2).resource_name == '12" pipe'
