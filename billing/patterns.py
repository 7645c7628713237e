"""Regular expressions that people type: review patterns, fund/org patterns,
source file-name patterns, the journal's fund/org and account patterns.

They run on RE2 (the ``google-re2`` bindings), whose matching time is linear
in the length of the text, whatever the pattern: ``(.|.)*!`` or ``(a+)+$``
cannot pin a worker the way they pin Python's backtracking ``re``. RE2 has
no backreferences and no lookaround, and a few Python escapes differ; such
patterns are refused here with one line that says what is not supported
(docs/decisions/0009-patterns.md lists the differences).

Every user-supplied pattern is compiled by :func:`compile_user_pattern` and
by nothing else; Python's ``re`` stays for the project's own constant
patterns. The bounds:

- ``MAX_LENGTH`` characters of pattern text;
- ``MAX_REPEAT`` for any repetition count ``{n}``/``{n,m}`` (RE2's own limit
  too, also for counts multiplied by nesting);
- ``MAX_PROGRAM`` instructions once compiled: the work per character of text
  grows with it when RE2 falls back from its DFA to its NFA;
- ``MAX_MEM`` bytes of memory per compiled pattern (program and DFA cache).

Each compiled pattern is built afresh (the bindings' own process-wide cache of
128 patterns is bypassed), so a pattern tried in a preview is freed with it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeAlias

import re2

MAX_LENGTH = 1000
MAX_REPEAT = 1000
MAX_PROGRAM = 2000
MAX_MEM = 4 << 20  # 4 MiB

# The compiled type (what search/fullmatch/groupindex are called on).
UserPattern: TypeAlias = "re2._Regexp[str]"

_LINEAR = "patterns run in linear time"
# {n} or {n,m} as Python reads them (spaces tolerated, to refuse too much rather than too little).
_REPEAT = re.compile(r"(?<!\\)\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")
# {,m}: a repetition from 0 for Python, the text "{,m}" for RE2.
_NO_LOWER = re.compile(r"\{,(\d*)\}")
# What RE2 calls an "invalid perl operator", by how it starts.
_OPERATORS = (
    ("(?<=", "lookbehind (?<=…) is not supported"),
    ("(?<!", "negative lookbehind (?<!…) is not supported"),
    ("(?=", "lookahead (?=…) is not supported"),
    ("(?!", "negative lookahead (?!…) is not supported"),
    ("(?>", "an atomic group (?>…) is not supported"),
    ("(?#", "a comment (?#…) is not supported"),
    ("(?(", "a conditional (?(…) is not supported"),
)


class PatternError(ValueError):
    """A pattern that is refused, with why in one line (no position, no traceback)."""


def compile_user_pattern(text: str, *, ignore_case: bool = False) -> UserPattern:
    """`text` compiled on RE2 within the bounds above; PatternError says why not."""
    if len(text) > MAX_LENGTH:
        raise PatternError(f"{len(text):,} characters long; at most {MAX_LENGTH:,}")
    for low, high in _REPEAT.findall(text):
        if int(low) > MAX_REPEAT or (high and int(high) > MAX_REPEAT):
            raise PatternError(
                f"a repetition count above {MAX_REPEAT} ({{{low}{',' + high if high else ''}}})"
            )
    _refuse_python_only(text)
    options = re2.Options()
    options.max_mem = MAX_MEM
    options.log_errors = False  # the error is raised, not written to stderr
    options.case_sensitive = not ignore_case
    try:
        compiled = re2._Regexp(text, options)
    except re2.error as exc:
        raise PatternError(_explain(text, exc)) from None
    except UnicodeEncodeError:
        raise PatternError("it contains characters that are not valid text") from None
    if compiled.programsize > MAX_PROGRAM:
        raise PatternError(
            f"too complex: it compiles to {compiled.programsize:,} steps, at most "
            f"{MAX_PROGRAM:,}; use fewer or smaller repetition counts or character classes"
        )
    return compiled


# MemoSearch remembers values up to this long, this many at a time.
MEMO_TEXT = 256
MEMO_SIZE = 20_000


class MemoSearch:
    """Does any of `patterns` occur in a text? Remembered per text: an import
    meets the same service names and resource ids on every day of the month,
    and a dictionary look-up costs a small fraction of a call into RE2. Memory
    stays bounded: at most MEMO_SIZE texts of at most MEMO_TEXT characters."""

    def __init__(self, patterns: Sequence[UserPattern]) -> None:
        self.searches = [p.search for p in patterns]
        self.seen: dict[str, bool] = {}

    def __call__(self, text: str) -> bool:
        found = self.seen.get(text)
        if found is None:
            found = any(search(text) is not None for search in self.searches)
            if len(text) <= MEMO_TEXT:
                if len(self.seen) >= MEMO_SIZE:
                    self.seen.clear()
                self.seen[text] = found
        return found


def _refuse_python_only(text: str) -> None:
    """Refuse what RE2 would accept with another meaning than Python's re."""
    in_class = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            escape = text[i + 1 : i + 2]
            if escape == "C":
                raise PatternError("\\C (one byte) is not supported: write . for any character")
            i += 2
            continue
        if in_class:
            if text.startswith("[:", i):  # [:alpha:] inside a class
                end = text.find(":]", i + 2)
                i = end + 2 if end != -1 else i + 1
                continue
            if char == "]":
                in_class = False
        elif char == "[":
            in_class = True
            i += 1
            if text.startswith("^", i):
                i += 1
            if text.startswith("]", i):  # a leading ] is a literal
                i += 1
            continue
        elif char == "{":
            lazy = _NO_LOWER.match(text, i)
            if lazy:
                n = lazy.group(1)
                raise PatternError(
                    f"{{,{n}}} would be read as text, not as a repetition: write {{0,{n}}}"
                )
        i += 1


def _explain(text: str, exc: re2.error) -> str:
    """RE2's error as one line that says what is not supported and why."""
    raw = exc.args[0] if exc.args else ""
    message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    kind, _, fragment = message.partition(": ")
    if kind == "invalid perl operator":
        for start, words in _OPERATORS:
            if fragment.startswith(start):
                return f"{words}: {_LINEAR}"
        if fragment.startswith("(?P"):
            if "(?P=" in text:
                return f"a backreference (?P=name) is not supported: {_LINEAR}"
            return "a named group is written (?P<name>…); nothing else starts with (?P"
        return f"the inline flags {fragment}…) are not supported: use (?i), (?m), (?s) or (?U)"
    if kind == "invalid escape sequence":
        if fragment[1:2].isdigit():
            return f"a backreference {fragment} is not supported: {_LINEAR}"
        if fragment == "\\Z":
            return "\\Z is not supported: write \\z for the end of the text"
        if fragment in ("\\u", "\\U", "\\N"):
            return f"{fragment} escapes are not supported: write \\x{{e9}} for a character by code"
        return f"the escape {fragment} is not supported"
    if kind == "bad repetition operator" and len(fragment) == 2 and fragment.endswith("+"):
        return f"a possessive quantifier {fragment} is not supported: {_LINEAR}"
    if kind == "invalid repetition size":
        return (
            f"repetition counts multiply when nested ({fragment}), and may not exceed "
            f"{MAX_REPEAT} in all"
        )
    if message == "pattern too large - compile failed":
        return (
            "too complex once compiled; use fewer or smaller repetition counts or character classes"
        )
    return message
