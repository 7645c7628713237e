"""Journal entries from a period's charges: pure functions, no ORM.

The unit of rounding is the statement line (PI x project x source x
service, SPEC §2): each line's exact billed total is rounded to the cent
once, exactly as on the statement. A line whose charges go to several
fund/orgs or accounts is split among them by the largest-remainder method,
so the parts add up to the rounded line to the cent. Every format is built
from these parts, which is why, for any period,

    Σ statement totals = Σ summary = Σ detail = Σ gl debits = Σ gl credits.

Problems that would make a file wrong (a source with no credit fund/org, a
fund/org the configured pattern cannot split, an account that fails its
pattern or is missing) are collected and raised together as one
:class:`JournalError`, never written as an unbalanced file.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property

from billing.errors import BillingError
from billing.patterns import PatternError, UserPattern, compile_user_pattern
from billing.placeholders import fill, template_problem
from openchargeback.money import CENT, round_money

FORMATS = ("detail", "summary", "gl")
DESCRIPTION_FIELDS = ("source", "period", "fund_org", "pi_email", "project_id")


@dataclass(frozen=True)
class Problem:
    """One thing that stops an export: what, and what to fix (a source, some
    fund/orgs, or the journal settings)."""

    text: str
    cli: str = ""  # the command that fixes it
    source: str = ""  # the source to fix (slug)
    fund_orgs: tuple[str, ...] = ()  # the charges' fund/orgs to fix
    settings: bool = False  # the fix is in the journal settings

    def __str__(self) -> str:
        return f"{self.text} ({self.cli})" if self.cli else self.text


class JournalError(BillingError):
    """The export cannot be balanced or is not allowed; the message lists every problem."""

    def __init__(self, problems: Sequence[Problem | str]) -> None:
        self.problems = [p if isinstance(p, Problem) else Problem(p) for p in problems]
        super().__init__(
            "the journal cannot be exported until these are fixed: "
            + "; ".join(str(p) for p in self.problems)
        )


@dataclass(frozen=True)
class ChargeRow:
    """What the journal needs of one included charge."""

    charge_id: int
    source: str
    service: str
    pi_email: str
    project_id: str
    fund_org: str
    billed: Decimal  # exact
    account_code: str = ""  # the charge's own (its tag)
    project_account: str = ""
    reference_1: str = ""
    reference_2: str = ""
    count: int = 1  # charges this row stands for (a group of identical keys, summed)
    # detail rows of a charge converted from another currency (empty otherwise)
    original_currency: str = ""
    original_amount: Decimal | None = None
    exchange_rate: str = ""


@dataclass(frozen=True)
class SourceInfo:
    slug: str
    credit_fund_org: str
    account_code: str = ""


@dataclass(frozen=True)
class JournalConfig:
    fund_org_pattern: str = r"^(?P<fund>[^-]+)-(?P<orgn>.+)$"
    default_account: str = ""
    account_pattern: str = ""
    description_template: str = "{source} {period} {project_id}"
    description_max_length: int = 35

    @cached_property
    def fund_org_splitter(self) -> UserPattern | None:
        """The fund/org pattern, compiled once; None if it cannot run
        (:func:`problems` then says why and the export is refused)."""
        try:
            return compile_user_pattern(self.fund_org_pattern)
        except PatternError:
            return None


@dataclass(frozen=True)
class Entry:
    """One journal line. Amounts are positive; the side says debit or credit.

    `amount` is exact for `detail` rows (full precision) and in cents for
    everything else.
    """

    fund_org: str
    account: str
    amount: Decimal
    is_debit: bool
    description: str
    source: str
    period: str
    pi_email: str = ""
    project_id: str = ""
    reference_1: str = ""
    reference_2: str = ""
    parts: tuple[tuple[str, str], ...] = ()  # the fund/org's named parts
    charge_id: int | None = None  # detail rows
    kind: str = "charge"  # detail: charge | rounding; gl: debit | credit
    # detail rows of a charge converted from another currency: its own amount
    # (signed, in that currency) and the rate; `amount` is in the home currency.
    original_currency: str = ""
    original_amount: Decimal | None = None
    exchange_rate: str = ""

    @property
    def is_credit(self) -> bool:
        return not self.is_debit

    @property
    def debit(self) -> Decimal | str:
        return self.amount if self.is_debit else ""

    @property
    def credit(self) -> Decimal | str:
        return "" if self.is_debit else self.amount

    @property
    def signed(self) -> Decimal:
        return self.amount if self.is_debit else -self.amount

    def part(self, name: str) -> str:
        return dict(self.parts).get(name, "")

    @property
    def fund(self) -> str:
        return self.part("fund")

    @property
    def orgn(self) -> str:
        return self.part("orgn")


@dataclass
class Journal:
    """A journal's lines and totals.

    `entries` is a list, except for `detail`, where it is a one-pass iterator
    over the charges (a million rows are never all in memory); its totals
    and line count are known beforehand from the statement lines.
    """

    format: str
    period: str
    entries: Iterable[Entry]
    charge_count: int
    exact_total: Decimal  # unrounded Σ billed of the included charges
    debit_total: Decimal
    credit_total: Decimal
    charged_total: Decimal  # net charged to fund/orgs: what the statements add up to
    line_count: int


def _totals(entries: list[Entry]) -> tuple[Decimal, Decimal, Decimal]:
    debit = sum((e.amount for e in entries if e.is_debit), Decimal(0))
    credit = sum((e.amount for e in entries if e.is_credit), Decimal(0))
    charged = sum((e.signed for e in entries if e.kind != "credit"), Decimal(0))
    return debit, credit, charged


# --- Rounding -------------------------------------------------------------------


def allocate(total: Decimal, parts: Sequence[Decimal]) -> list[Decimal]:
    """Split a rounded `total` over exact `parts` (largest remainder): each part
    is its exact amount rounded down to the cent, plus one cent for the parts
    with the largest remainders until the parts add up to `total` exactly.
    Ties go to the earlier part, so the result is deterministic."""
    floors = [(p / CENT).to_integral_value(rounding="ROUND_FLOOR") * CENT for p in parts]
    missing = int((total - sum(floors, Decimal(0))) / CENT)
    if not 0 <= missing <= len(parts):
        raise ValueError(f"{total} is not the rounded sum of {list(parts)}")
    order = sorted(range(len(parts)), key=lambda i: (-(parts[i] - floors[i]), i))
    for i in order[:missing]:
        floors[i] += CENT
    return floors


@dataclass(frozen=True)
class Share:
    """A statement line's rounded amount for one (fund/org, account, references)."""

    source: str
    service: str
    pi_email: str
    project_id: str
    fund_org: str
    account: str
    reference_1: str
    reference_2: str
    exact: Decimal
    amount: Decimal  # in cents; the shares of a line add up to its rounded total


def account_for(row: ChargeRow, sources: dict[str, SourceInfo], config: JournalConfig) -> str:
    """Charge tag -> project -> source -> default."""
    source = sources.get(row.source)
    return (
        row.account_code
        or row.project_account
        or (source.account_code if source else "")
        or config.default_account
    )


def shares(
    rows: Iterable[ChargeRow], sources: dict[str, SourceInfo], config: JournalConfig
) -> tuple[list[Share], int, Decimal]:
    """The rounded statement lines split by fund/org, account and references.

    Returns (shares, charge count, exact total).
    """
    lines: dict[tuple[str, str, str, str], dict[tuple[str, str, str, str], Decimal]] = defaultdict(
        lambda: defaultdict(Decimal)
    )
    count, exact = 0, Decimal(0)
    for row in rows:
        line = (row.pi_email, row.project_id, row.source, row.service)
        sub = (row.fund_org, account_for(row, sources, config), row.reference_1, row.reference_2)
        lines[line][sub] += row.billed
        count += row.count
        exact += row.billed
    result = []
    for line in sorted(lines):
        subs = lines[line]
        keys = sorted(subs)
        amounts = allocate(round_money(sum(subs.values(), Decimal(0))), [subs[k] for k in keys])
        pi_email, project_id, source, service = line
        for key, amount in zip(keys, amounts, strict=True):
            fund_org, account, ref1, ref2 = key
            result.append(
                Share(
                    source=source,
                    service=service,
                    pi_email=pi_email,
                    project_id=project_id,
                    fund_org=fund_org,
                    account=account,
                    reference_1=ref1,
                    reference_2=ref2,
                    exact=subs[key],
                    amount=amount,
                )
            )
    return result, count, exact


# --- Checks ---------------------------------------------------------------------


def problems(
    items: Sequence[Share],
    sources: dict[str, SourceInfo],
    config: JournalConfig,
    *,
    needs_credits: bool,
) -> list[Problem]:
    """Everything that stops an export, each with what to fix."""
    found: list[Problem] = []
    pattern = _compile(config.fund_org_pattern, "fund/org pattern", found)
    account_pattern = (
        _compile(config.account_pattern, "account pattern", found)
        if config.account_pattern
        else None
    )
    template = template_problem(config.description_template, DESCRIPTION_FIELDS)
    if template is not None:
        found.append(Problem(f"the description template cannot be used: {template}", settings=True))
    used_sources = sorted({s.source for s in items})
    if needs_credits:
        for slug in used_sources:
            info = sources.get(slug)
            if info is None or not info.credit_fund_org:
                found.append(
                    Problem(
                        f"source {slug} has no credit fund/org",
                        cli=f"openchargeback sources set {slug} --credit-fund-org X",
                        source=slug,
                    )
                )
            elif pattern and not pattern.fullmatch(info.credit_fund_org):
                found.append(
                    Problem(
                        f"source {slug}'s credit fund/org {info.credit_fund_org!r} does not "
                        "match the fund/org pattern",
                        cli=f"openchargeback sources set {slug} --credit-fund-org X",
                        source=slug,
                    )
                )
    if pattern:
        blank = sum(1 for s in items if not s.fund_org)
        if blank:
            found.append(
                Problem(
                    f"{blank} statement lines have no fund/org (fix the charges' attribution)",
                    fund_orgs=("",),
                )
            )
        bad = sorted(
            {s.fund_org for s in items if s.fund_org and not pattern.fullmatch(s.fund_org)}
        )
        if bad:
            found.append(
                Problem(
                    "fund/orgs the fund/org pattern cannot split: "
                    + ", ".join(repr(b) for b in bad[:20])
                    + (f" and {len(bad) - 20} more" if len(bad) > 20 else ""),
                    fund_orgs=tuple(bad),
                )
            )
    accounts = {s.account for s in items}  # credits use the same accounts
    if "" in accounts:
        missing = sorted({s.source for s in items if not s.account})
        found.append(
            Problem(
                "charges with no account code: set one on the source "
                f"({', '.join(missing)}) or a default account",
                cli="openchargeback sources set SLUG --account-code X",
                source=missing[0],
                settings=True,
            )
        )
    if account_pattern:
        bad = sorted(a for a in accounts if a and not account_pattern.fullmatch(a))
        if bad:
            found.append(
                Problem(
                    "account codes that do not match the account pattern: "
                    + ", ".join(repr(b) for b in bad),
                    settings=True,
                )
            )
    return found


def _compile(pattern: str, what: str, found: list[Problem]) -> UserPattern | None:
    try:
        return compile_user_pattern(pattern)
    except PatternError as exc:
        found.append(Problem(f"the {what} is not a valid regular expression: {exc}", settings=True))
        return None


def split_fund_org(fund_org: str, config: JournalConfig) -> tuple[tuple[str, str], ...]:
    splitter = config.fund_org_splitter
    match = splitter.fullmatch(fund_org) if splitter is not None else None
    if splitter is None or match is None:
        return ()
    # In the pattern's order (RE2's groupdict orders the names alphabetically).
    groups = sorted(splitter.groupindex.items(), key=lambda item: item[1])
    return tuple((name, match.group(index) or "") for name, index in groups)


def describe(config: JournalConfig, **values: str) -> str:
    text = fill(config.description_template, DESCRIPTION_FIELDS, values)
    text = " ".join(text.split())
    return text[: config.description_max_length] if config.description_max_length else text


def _unique(values: Iterable[str]) -> str:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else ""


# --- Formats --------------------------------------------------------------------


def build(
    format: str,
    *,
    period: str,
    rows: Sequence[ChargeRow],
    sources: dict[str, SourceInfo],
    config: JournalConfig,
    charges: Iterable[ChargeRow] | None = None,
) -> Journal:
    """The journal of `format` (detail, summary or gl).

    `rows` may be charges or groups of charges with the same journal key
    (their `count` says how many). `detail` lists `charges` one by one (it
    defaults to `rows`), read once, while the file is written.
    """
    if format not in FORMATS:
        raise JournalError([f"unknown format {format!r} (choose {', '.join(FORMATS)})"])
    items, count, exact = shares(rows, sources, config)
    found = problems(items, sources, config, needs_credits=format == "gl")
    if found:
        raise JournalError(found)
    if format == "detail":
        adjustments = _roundings(period, items, config)
        rounded = sum((s.amount for s in items), Decimal(0))
        return Journal(
            format=format,
            period=period,
            entries=_detail(
                period, rows if charges is None else charges, adjustments, sources, config
            ),
            charge_count=count,
            exact_total=exact,
            debit_total=rounded,
            credit_total=rounded,
            charged_total=rounded,
            line_count=count + len(adjustments),
        )
    entries = (_summary if format == "summary" else _gl)(period, items, sources, config)
    debit, credit, charged = _totals(entries)
    if format == "summary":
        debit = credit = charged
    return Journal(
        format=format,
        period=period,
        entries=entries,
        charge_count=count,
        exact_total=exact,
        debit_total=debit,
        credit_total=credit,
        charged_total=charged,
        line_count=len(entries),
    )


def _entry(
    config: JournalConfig, *, period: str, fund_org: str, amount: Decimal, **fields: object
) -> Entry:
    debit_side = bool(fields.pop("debit_side", True))
    values = {k: str(v) for k, v in fields.items() if k in DESCRIPTION_FIELDS}
    return Entry(
        fund_org=fund_org,
        amount=abs(amount),
        is_debit=(amount >= 0) == debit_side,
        description=describe(config, period=period, fund_org=fund_org, **values),
        period=period,
        parts=split_fund_org(fund_org, config),
        **fields,  # type: ignore[arg-type]
    )


def _roundings(period: str, items: Sequence[Share], config: JournalConfig) -> list[Entry]:
    """A row for each statement line part that rounding moved (rounded - exact)."""
    return [
        _entry(
            config,
            period=period,
            fund_org=share.fund_org,
            amount=share.amount - share.exact,
            account=share.account,
            source=share.source,
            pi_email=share.pi_email,
            project_id=share.project_id,
            reference_1=share.reference_1,
            reference_2=share.reference_2,
            kind="rounding",
        )
        for share in items
        if share.amount != share.exact
    ]


def _detail(
    period: str,
    charges: Iterable[ChargeRow],
    adjustments: list[Entry],
    sources: dict[str, SourceInfo],
    config: JournalConfig,
) -> Iterator[Entry]:
    """Every charge at full precision (in the order given), then the rounding rows."""
    for row in charges:
        yield _entry(
            config,
            period=period,
            fund_org=row.fund_org,
            amount=row.billed,
            account=account_for(row, sources, config),
            source=row.source,
            pi_email=row.pi_email,
            project_id=row.project_id,
            reference_1=row.reference_1,
            reference_2=row.reference_2,
            charge_id=row.charge_id,
            original_currency=row.original_currency,
            original_amount=row.original_amount,
            exchange_rate=row.exchange_rate,
        )
    yield from adjustments


def _summary(
    period: str,
    items: Sequence[Share],
    _sources: dict[str, SourceInfo],
    config: JournalConfig,
) -> list[Entry]:
    """PI x project x fund/org (the sources are not needed: the same call as _gl)."""
    totals: dict[tuple[str, str, str], list[Share]] = defaultdict(list)
    for share in items:
        totals[(share.pi_email, share.project_id, share.fund_org)].append(share)
    entries = []
    for (pi_email, project_id, fund_org), group in sorted(totals.items()):
        amount = sum((s.amount for s in group), Decimal(0))
        if amount:
            entries.append(
                _entry(
                    config,
                    period=period,
                    fund_org=fund_org,
                    amount=amount,
                    account=_unique(s.account for s in group),
                    source=_unique(s.source for s in group),
                    pi_email=pi_email,
                    project_id=project_id,
                    reference_1=_unique(s.reference_1 for s in group),
                    reference_2=_unique(s.reference_2 for s in group),
                )
            )
    return entries


def _gl(
    period: str,
    items: Sequence[Share],
    sources: dict[str, SourceInfo],
    config: JournalConfig,
) -> list[Entry]:
    """Debits per (fund/org, source, account); one credit per (source, account).

    A net negative amount goes on the opposite side; zero lines are left out.
    """
    debits: dict[tuple[str, str, str], list[Share]] = defaultdict(list)
    for share in items:
        debits[(share.source, share.account, share.fund_org)].append(share)
    entries: list[Entry] = []
    credits: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for (source, account, fund_org), group in sorted(debits.items()):
        amount = sum((s.amount for s in group), Decimal(0))
        credits[(source, account)] += amount
        if amount:
            entries.append(
                _entry(
                    config,
                    period=period,
                    fund_org=fund_org,
                    amount=amount,
                    account=account,
                    source=source,
                    pi_email=_unique(s.pi_email for s in group),
                    project_id=_unique(s.project_id for s in group),
                    reference_1=_unique(s.reference_1 for s in group),
                    reference_2=_unique(s.reference_2 for s in group),
                    kind="debit",
                )
            )
    for (source, account), amount in sorted(credits.items()):
        if amount:
            entries.append(
                _entry(
                    config,
                    period=period,
                    fund_org=sources[source].credit_fund_org,
                    amount=amount,
                    account=account,
                    source=source,
                    kind="credit",
                    debit_side=False,
                )
            )
    return entries
