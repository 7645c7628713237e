"""Statement PDFs print names in any script and wrap tokens of any length.

Each name is printed on a real statement (PI, project title, resource,
service, institution: header, tables and footer), read back from the PDF,
and checked against the fonts themselves: every character drawn in an
embedded font has a glyph there (none falls back to .notdef).
"""

from __future__ import annotations

import io
import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

import pytest
from fontTools.ttLib import TTFont as FontFile
from pypdf import PdfReader
from pypdf.generic import ContentStream
from reportlab.pdfgen.canvas import Canvas

from billing.audit import Actor
from billing.models import BillingPeriod, Charge, InstitutionSettings, Project
from billing.services import finalize_blockers, period_close
from statements import fonts, pdf
from statements.models import Statement
from statements.selectors import plan
from statements.services import statements_generate
from tests.factories import FOCUS_ROW_OWNER, make_charges

NAMES = {
    "chinese": "张伟 研究组",
    "japanese": "山田太郎 研究室",
    "japanese-kana": "やまだ たろう 研究室",  # with kana: the Japanese face
    "arabic": "محمد الأحمد",
    "greek": "Αλέξανδρος Παπαδόπουλος",
    "emoji": "🔬🧬 Lab",
    "mixed": "Ada 张伟 محمد Αλέξανδρος 🔬 김민준 Дмитрий שלום",
}


def _statement(
    actor: Actor,
    *,
    name: str = "Ada",
    resource: str = "vm-1",
    resource_id: str | None = None,
    category: str = "Usage",
) -> Statement:
    """One statement whose PI, project title, service, resource and institution are
    `name` (as much of it as each field holds)."""
    billed = "-2.00" if category == "Credit" else "2.00"
    make_charges(
        {
            "resource": resource_id if resource_id is not None else resource,
            "resource_name": resource,
            "service": name[:200],
            "billed": billed,
            "charge_category": category,
        },
        {"resource": "vm-2", "service": "Compute", "billed": "5.00", "charge_category": "Usage"},
        **{**FOCUS_ROW_OWNER, "project": "p-1"},
    )
    Charge.objects.update(review_state="approved")
    period_close(period="2025-01", actor=actor)
    inst = InstitutionSettings.load()
    inst.name = name[:200]
    inst.save()
    Project.objects.update(title=name[:300])
    charge = Charge.objects.select_related("pi").first()
    assert charge is not None
    assert charge.pi is not None
    charge.pi.name = name[:200]
    charge.pi.save()
    result = statements_generate(period="2025-01", actor=actor, sync=True)
    assert [s.status for s in result.created] == [Statement.Status.READY]
    return result.created[0]


def _text(content: bytes) -> str:
    """The text of every page, as a PDF reader extracts it."""
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def _squeezed(value: str) -> str:
    """Compatibility forms folded (Arabic presentation forms to letters), no whitespace."""
    return "".join(unicodedata.normalize("NFKC", value).split())


def _notdef(content: bytes) -> list[str]:
    """What is drawn as .notdef (a box): each code shown in an embedded TrueType
    subset that its font program maps to no glyph, as the character its ToUnicode
    map says (or the code, when it names none). Helvetica (not embedded, Windows-1252
    only) is checked apart, in _in_font_files."""
    bad = []
    reader = PdfReader(io.BytesIO(content))
    for page in reader.pages:
        subsets = {}
        resources: Any = page["/Resources"]
        for key, ref in resources["/Font"].items():
            font = ref.get_object()
            if "/FontDescriptor" not in font:
                continue
            program = font["/FontDescriptor"].get_object()["/FontFile2"].get_object()
            cmap = FontFile(io.BytesIO(program.get_data()))["cmap"].tables[0].cmap
            unicode_map = font["/ToUnicode"].get_object().get_data().decode()
            chars = {
                int(code, 16): bytes.fromhex(char).decode("utf-16-be")
                for code, char in re.findall(r"<([0-9A-F]{2})> <([0-9A-F]{4,8})>", unicode_map)
            }
            subsets[key] = (cmap, chars)
        current = None
        for operands, operator in ContentStream(page.get_contents(), reader).operations:
            if operator == b"Tf":
                current = subsets.get(operands[0])
            elif operator in (b"Tj", b"TJ") and current is not None:
                cmap, chars = current
                shown = operands[0]
                for part in [shown] if operator == b"Tj" else shown:
                    if isinstance(part, (int, float)):
                        continue  # a TJ kerning adjustment
                    for code in _bytes(part):
                        if cmap.get(code, ".notdef") == ".notdef":
                            char = chars.get(code, "\0")
                            bad.append(char if char != "\0" else f"<{code:02X}>")
    return bad


def _bytes(value: object) -> bytes:
    original = getattr(value, "original_bytes", None)
    return original if original is not None else bytes(value)  # type: ignore[call-overload]


def _in_font_files(value: str) -> list[str]:
    """Characters of `value` missing from the cmap of the font file its run is drawn in."""
    files = {}
    for face in fonts.CHAIN:
        files[face.name] = face.regular
        if face.bold:
            files[f"{face.name}-Bold"] = face.bold
    missing = []
    for bold in (fonts.BASE, fonts.BASE_BOLD):
        for name, part in fonts.runs(value, bold):
            if name in (fonts.BASE, fonts.BASE_BOLD):
                missing += [c for c in part if not fonts._in_base(c)]
                continue
            cmap = FontFile(str(files[name]), lazy=True).getBestCmap()
            missing += [c for c in part if ord(c) not in cmap]
    return missing


@pytest.mark.django_db
@pytest.mark.parametrize("script", list(NAMES))
def test_names_in_any_script_print(script: str, defaults: None, actor: Actor) -> None:
    name = NAMES[script]
    statement = _statement(actor, name=name, resource=name)
    content = statement.pdf.read()
    assert not _notdef(content)
    assert not _in_font_files(name)
    assert not fonts.missing(name)
    # PI, project title, service, resource, institution (header and footer); the
    # reader puts right-to-left text back in logical order
    assert _squeezed(_text(content)).count(_squeezed(name)) >= 6
    if script == "arabic":  # drawn shaped (the same letters, joined) in visual order
        drawn = _squeezed(fonts.visual(name))
        assert sorted(drawn) == sorted(name.replace(" ", ""))
        assert drawn != _squeezed(name)


def test_each_run_is_in_a_font_that_has_it() -> None:
    assert fonts.runs("Ada Lovelace") == [("Helvetica", "Ada Lovelace")]
    western = "Zoë, 50 € \u2013 “ok”"  # Windows-1252 all of it
    assert fonts.runs(western, fonts.BASE_BOLD) == [("Helvetica-Bold", western)]
    assert fonts.runs("Ada 张伟") == [("Helvetica", "Ada "), ("KurintoSansSC", "张伟")]
    assert fonts.runs("张伟 Lab", fonts.BASE_BOLD) == [
        ("KurintoSansSC-Bold", "张伟 "),
        ("Helvetica-Bold", "Lab"),
    ]
    # The same ideographs in a Japanese name (it has kana) and a Korean one (Hangul)
    assert fonts.runs("山田 やまだ")[0][0] == "KurintoSansJP"
    assert fonts.runs("金 김민준")[0][0] == "KurintoSansKR"
    assert fonts.runs("🔬🧬") == [("NotoEmoji", "🔬🧬")]
    # A variation selector and a zero-width joiner are dropped; control characters are spaces
    assert fonts.runs("a\u200db\ufe0f\tc") == [("Helvetica", "ab c")]


def test_a_character_no_font_has_prints_as_a_replacement_mark() -> None:
    private = "\U000f0000"  # a private-use character: no font has it
    assert fonts.missing(f"x{private}y") == private
    assert fonts.runs(f"x{private}y") == [
        ("Helvetica", "x"),
        ("KurintoSans", fonts.REPLACEMENT),
        ("Helvetica", "y"),
    ]


def test_the_notdef_check_sees_a_box() -> None:
    """_notdef is not vacuous: a character drawn in a font without it is found."""
    fonts.runs("λ")  # registers Kurinto Sans
    buffer = io.BytesIO()
    canvas = Canvas(buffer, invariant=1)
    canvas.setFont("KurintoSans", 10)
    canvas.drawString(10, 10, "λ\U000f0000")
    canvas.save()
    assert _notdef(buffer.getvalue()) == ["<00>"]  # the character had no code of its own


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("token", "category"),
    [
        ("W" * 2000, "Usage"),
        ("张伟研究组" * 400, "Usage"),
        ("M" * 12000, "Usage"),
        ("W" * 2000, "Credit"),
    ],
    ids=["wide-2000", "cjk-2000", "wide-12000", "credit-2000"],
)
def test_tokens_of_any_length_wrap_and_finalize_is_not_blocked(
    token: str, category: str, defaults: None, actor: Actor
) -> None:
    """A resource id thousands of characters wide (under its name, in the resource
    or the credit table) wraps anywhere in its column and its row continues on the
    next page: it used to stop the statement rendering, and so finalize."""
    statement = _statement(actor, resource="vm", resource_id=token, category=category)
    period = BillingPeriod.objects.get(period="2025-01")
    assert not any("statement" in line for line in finalize_blockers(period))
    content = statement.pdf.read()
    # The token's characters in reading order (a page's footer and the repeated
    # table head may come between its two halves)
    alphabet = set(token)
    assert token in "".join(c for c in _text(content) if c in alphabet)
    assert len(PdfReader(io.BytesIO(content)).pages) >= 2
    assert ("Total credits" in _text(content)) == (category == "Credit")


@pytest.mark.django_db
def test_long_names_in_the_header_wrap_and_the_footer_is_cut_short(
    defaults: None, actor: Actor
) -> None:
    long = "Ünïvérsité " + "X" * 400  # each field holds 200 or 300 characters of it
    statement = _statement(actor, name=long)
    text = _text(statement.pdf.read())
    squeezed = _squeezed(text)
    assert squeezed.count(_squeezed(long[:200])) >= 3  # PI name, title, service: wrapped
    assert _squeezed(long[:300]) in squeezed  # the project title
    footers = [line for line in text.splitlines() if "Generated" in line]
    assert footers
    assert all("Ünïvérsité X" in line and "X… · Generated" in line for line in footers)


@pytest.mark.django_db
def test_statements_in_other_scripts_render_identical_bytes(defaults: None, actor: Actor) -> None:
    _statement(actor, name=NAMES["mixed"])
    data = plan(BillingPeriod.objects.get(period="2025-01")).statements[0].data
    when = datetime(2025, 2, 1, 9, 30, tzinfo=UTC)
    one = pdf.render(data, number="2025-01-0001-v1", generated_at=when)
    assert one == pdf.render(data, number="2025-01-0001-v1", generated_at=when)
